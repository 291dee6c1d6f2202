"""PUCT search: tactics with a material evaluator, tree reuse, budgets, policy-only play."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from engine import Color, Move, Position
from engine._search import PolicyArray, Search, SearchConfig

B, W = Color.BLACK, Color.WHITE


class MaterialEvaluator:
    """Uniform policy; value from the stone balance (stones on board plus prisoners)."""

    def __init__(self) -> None:
        self.calls = 0

    def evaluate(self, positions: Sequence[Position]) -> list[tuple[PolicyArray, float]]:
        self.calls += 1
        out = []
        for pos in positions:
            me, them = pos.to_play, pos.to_play.opponent
            balance = len(pos.stones(me)) - len(pos.stones(them))
            value = 1.0 / (1.0 + np.exp(-2.0 * balance))
            policy = np.ones(pos.size * pos.size + 1, dtype=np.float32)
            policy[-1] = 0.01  # passing is rarely interesting
            out.append((policy, float(value)))
        return out


class FixedPolicy:
    """Puts nearly all prior on one point, to test policy-only play and masking."""

    def __init__(self, index: int) -> None:
        self.index = index

    def evaluate(self, positions: Sequence[Position]) -> list[tuple[PolicyArray, float]]:
        out = []
        for pos in positions:
            policy = np.full(pos.size * pos.size + 1, 1e-3, dtype=np.float32)
            policy[self.index] = 1.0
            out.append((policy, 0.5))
        return out


def test_finds_the_capture_of_a_big_group() -> None:
    # Material is level; white's four stones have one liberty left, at (2, 4).
    pos = Position.from_ascii(
        """
        . . . . . O
        . X X X . O
        X O O O . .
        . X O X . .
        . . X . . .
        . . . . . O
        """
    )
    assert pos.liberties((2, 2)) == frozenset({(2, 4)})
    for seed in range(3):
        result = Search(MaterialEvaluator(), SearchConfig(visits=150, seed=seed)).run(pos)
        assert result.move == Move.play(B, (2, 4))
        assert result.winrate > 0.6


@pytest.mark.parametrize("seed", range(3))
def test_avoids_a_self_atari(seed: int) -> None:
    # Black to play with material level. (0, 2) and (2, 0) are self-atari: white
    # takes the stone at once. The search must see the reply and avoid them.
    pos = Position.from_ascii(
        """
        . O . . .
        O . O . .
        . O . . X
        . . . X X
        . . . X .
        """
    )
    assert len(pos.stones(B)) == len(pos.stones(W))
    result = Search(MaterialEvaluator(), SearchConfig(visits=400, seed=seed)).run(pos)
    after = pos.play(result.move)
    gains = [after.play(Move.play(W, pt)).captures[1] for pt in after.legal_points()]
    assert max(gains) == 0, f"{result.move} lets white capture"


def test_visit_budget_and_tree_reuse() -> None:
    ev = MaterialEvaluator()
    search = Search(ev, SearchConfig(visits=64, batch_size=4, seed=3))
    pos = Position(5)
    first = search.run(pos)
    assert first.visits >= 64
    assert sum(c.visits for c in first.candidates) <= first.visits
    assert abs(sum(first.visit_distribution.values()) - 1.0) < 1e-9
    search.advance(first.move)
    after = pos.play(first.move)
    reply = search.run(after, visits=32)
    # The reused subtree already had visits before this search added 32.
    assert reply.visits >= 32 + 1


def test_time_budget_with_injected_clock() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.01
        return now[0]

    search = Search(MaterialEvaluator(), SearchConfig(visits=10_000, batch_size=1), clock=clock)
    result = search.run(Position(5), seconds=0.1)
    assert 1 <= result.visits < 20


def test_policy_only_plays_the_prior_and_never_an_illegal_move() -> None:
    pos = Position.from_ascii(
        """
        . X .
        X . X
        . X .
        """,
        to_play=W,
    )
    # The prior points at (1, 1), suicide for white like every empty point here: the
    # only legal move is a pass, and policy-only play must find it.
    result = Search(FixedPolicy(4), SearchConfig(visits=0)).run(pos)
    assert result.move == Move.pass_(W)
    ok = Search(FixedPolicy(2), SearchConfig(visits=0)).run(Position(3))
    assert ok.move == Move.play(B, (0, 2))


def test_searching_a_finished_game_is_an_error() -> None:
    done = Position(5).play_at(None).play_at(None)
    with pytest.raises(ValueError):
        Search(MaterialEvaluator()).run(done)
