"""Scoring: area and territory with given dead stones, seki, dame, dead-stone estimates."""

from __future__ import annotations

import pytest

from engine import Color, Move, Position, Rules
from engine._scoring import estimate_dead, game_result, score, unconditionally_alive

B, W = Color.BLACK, Color.WHITE

SEKI = """
. O . O .
O O O O O
X X X X X
. X O O .
O O O O O
"""


def test_area_score_counts_stones_and_territory() -> None:
    p = Position.from_ascii(
        """
        . X O .
        . X O .
        X X O .
        . X O .
        """,
        rules=Rules.named("chinese", komi=0.5),
    )
    s = score(p)
    assert s.black == 8  # 5 stones + 3 points
    assert s.white == 8.5  # 4 stones + 4 points + komi
    assert s.result() == "W+0.5" and s.winner is W


def test_seki_shared_liberties_are_dame_and_seki_groups_live() -> None:
    p = Position.from_ascii(SEKI, rules=Rules.named("chinese", komi=0))
    s = score(p)
    assert (s.black, s.white) == (6.0, 17.0)
    assert (3, 0) not in s.black_area | s.white_area
    assert (3, 4) not in s.black_area | s.white_area
    assert estimate_dead(p) == frozenset()
    # Either side approaching a shared liberty puts itself in atari: that is what
    # makes it seki.
    for color in (B, W):
        q = p.play(Move.play(color, (3, 0)), strict_turn=False)
        assert len(q.liberties((3, 0))) == 1


def test_territory_score_counts_prisoners_and_dead_stones() -> None:
    p = Position.from_ascii(
        """
        . . X O . .
        . . X O . .
        . O X O . .
        . . X O . X
        . . X O . .
        . . X O . .
        """,
        rules=Rules.named("japanese", komi=6.5),
    )
    dead = {(2, 1), (3, 5)}
    s = score(p, dead)
    # Black: 12 points of territory (11 empty + the dead stone's point) + 1 dead white.
    assert s.black == 13
    # White: 12 points (11 empty + dead stone point) + 1 dead black + komi.
    assert s.white == 13 + 6.5
    area = score(p, dead, rules=Rules.named("chinese", komi=6.5))
    assert (area.black, area.white) == (6 + 12, 6 + 12 + 6.5)


def test_dame_counts_for_no_one() -> None:
    p = Position.from_ascii(
        """
        X . O
        X . O
        X . O
        """,
        rules=Rules.named("chinese", komi=0),
    )
    s = score(p)
    assert (s.black, s.white) == (3.0, 3.0) and s.result() == "0" and s.winner is None


def test_bad_dead_stones_are_rejected() -> None:
    p = Position.from_ascii(". X\n. .")
    with pytest.raises(ValueError):
        score(p, [(0, 0)])
    with pytest.raises(ValueError):
        score(p, [(5, 5)])


def test_estimate_marks_invaders_of_settled_areas_dead_and_walls_alive() -> None:
    p = Position.from_ascii(
        """
        . . X O . .
        . O X O . .
        . . X O . .
        . . X O X .
        . . X O . .
        . . X O . .
        """,
        rules=Rules.named("chinese"),
    )
    for seed in (0, 1, 2):
        assert estimate_dead(p, seed=seed) == frozenset({(1, 1), (3, 4)})


def test_benson_finds_two_eyed_group() -> None:
    p = Position.from_ascii(
        """
        . X . X O
        X X X X O
        O O O O O
        . . . . .
        . . . . .
        """
    )
    alive = unconditionally_alive(p)
    assert (0, 1) in alive and (1, 0) in alive
    assert (2, 0) not in alive  # white has no eyes yet


def test_game_result_for_resignation_and_count() -> None:
    p = Position(9).play(Move.resign(W))
    assert game_result(p) == "B+R"
    q = Position(9, Rules.named("chinese", komi=7.5))
    assert game_result(q) == "W+7.5"
