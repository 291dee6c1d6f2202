"""Predictions and the policy-only player: legal moves only, whatever the network wants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from engine import Color, Move, Position
from engine.nn import (
    ALL_SYMMETRIES,
    ModelConfig,
    NetOutput,
    NeuralPlayer,
    Plane,
    PolicyValueNet,
    Predictor,
    legal_mask,
    load_arrays,
    model_to_arrays,
    save_weights,
)

from .conftest import SMALL, make_small_model, random_game


class _IllegalLover(PolicyValueNet):
    """A network that puts its weight on occupied points and the ko point, never on pass."""

    def forward(self, x: Tensor) -> NetOutput:
        b = x.shape[0]
        bad = x[:, Plane.OWN] + x[:, Plane.OPPONENT] + 3 * x[:, Plane.KO]  # (B, H, W)
        board = 30.0 * bad.flatten(1)  # (B, H*W)
        pass_logit = torch.full((b, 1), -30.0)  # (B, 1)
        return NetOutput(torch.cat([board, pass_logit], dim=1), torch.zeros(b), None)


# Black has just captured at (1, 1) with (1, 2): white may not retake (ko), and (4, 0)
# would be suicide, so white's only legal moves are (0, 3), (2, 4) and pass.
NEAR_FULL = """
X X O . O
X O . O O
X X O O .
X X X O O
. X X O O
"""


def _near_full_with_ko() -> Position:
    return Position.from_ascii(NEAR_FULL, to_play=Color.BLACK).play_at((1, 2))


@pytest.fixture
def predictor(small_model: PolicyValueNet) -> Predictor:
    return Predictor(small_model, threads=None)


@pytest.mark.parametrize("size", [9, 13, 19])
def test_prediction_shapes(size: int, predictor: Predictor) -> None:
    pos = random_game(size, 15, seed=size)
    p = predictor.predict(pos)
    assert p.size == size and p.to_play is pos.to_play
    assert p.policy.shape == (size * size + 1,) and p.policy.dtype == np.float32
    assert p.policy.sum() == pytest.approx(1.0, abs=1e-5)
    assert 0.0 < p.value < 1.0
    assert p.score_lead is not None
    assert not p.policy.flags.writeable
    top = p.top_k(5)
    assert len(top) == 5 and [q for _, q in top] == sorted((q for _, q in top), reverse=True)
    assert all(p.prob(m) == q for m, q in top)
    assert p.best() == top[0][0]


def test_illegal_moves_get_exactly_zero() -> None:
    pos = _near_full_with_ko()
    assert sorted(pos.legal_points()) == [(0, 3), (2, 4)] and pos.ko == (1, 1)
    predictor = Predictor(_IllegalLover(SMALL), threads=None)
    for syms in [(0,), ALL_SYMMETRIES]:
        p = predictor.predict(pos, syms)
        allowed = {(0, 3), (2, 4), None}
        assert {m for m, _ in p.top_k(100)} == allowed
        assert p.prob((1, 1)) == 0.0 and p.prob((4, 0)) == 0.0 and p.prob((0, 0)) == 0.0
        assert p.policy.sum() == pytest.approx(1.0, abs=1e-6)
        assert np.array_equal(p.policy > 0, legal_mask(pos))
    for temperature in (0.0, 1.0, 5.0):
        player = NeuralPlayer(predictor, temperature=temperature, seed=1)
        for _ in range(20):
            move = player.choose(pos)
            assert move.color is Color.WHITE and move.point in {(0, 3), (2, 4), None}
            pos.play(move)  # raises if illegal


def test_a_finished_game_has_no_moves(predictor: Predictor) -> None:
    pos = Position(5).play_at(None).play_at(None)
    p = predictor.predict(pos)
    assert p.policy.sum() == 0 and p.top_k(3) == [] and p.best() is None
    assert NeuralPlayer(predictor).choose(pos) == Move.pass_(Color.BLACK)


def test_pass_when_nothing_else_is_legal(predictor: Predictor) -> None:
    # White to move; every empty point is a black eye (suicide for white).
    pos = Position.from_ascii("X X .\nX . X\n. X X", to_play=Color.WHITE)
    assert pos.legal_points() == []
    assert predictor.predict(pos).policy[-1] == 1.0
    assert NeuralPlayer(predictor, temperature=1.0).choose(pos) == Move.pass_(Color.WHITE)


def test_players_finish_games_with_legal_moves_only(small_model: PolicyValueNet) -> None:
    predictor = Predictor(small_model, threads=None)
    players = {
        Color.BLACK: NeuralPlayer(predictor, temperature=1.0, seed=3),
        Color.WHITE: NeuralPlayer(predictor, temperature=0.5, seed=4, symmetries=[0, 5]),
    }
    pos = Position(5)
    for _ in range(60):
        if pos.is_game_over:
            break
        pos = pos.play(players[pos.to_play].choose(pos))  # strict: raises if illegal
    assert pos.move_number > 5


def test_argmax_and_seeded_sampling_are_reproducible(predictor: Predictor) -> None:
    pos = random_game(9, 12, seed=7)
    greedy = NeuralPlayer(predictor)
    assert greedy.choose(pos).point == predictor.predict(pos).best()
    a = [NeuralPlayer(predictor, temperature=1.0, seed=9).choose(pos) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    with pytest.raises(ValueError):
        NeuralPlayer(predictor, temperature=-1.0)
    with pytest.raises(ValueError):
        NeuralPlayer(predictor, temperature=float("nan"))


def test_batches_mix_sizes_and_match_single_predictions(predictor: Predictor) -> None:
    positions = [random_game(s, 10, seed=i) for i, s in enumerate([9, 13, 9, 19, 5])]
    batch = predictor.predict_batch(positions, ALL_SYMMETRIES[:3])
    assert [p.size for p in batch] == [9, 13, 9, 19, 5]
    for pos, got in zip(positions, batch, strict=True):
        alone = predictor.predict(pos, ALL_SYMMETRIES[:3])
        assert np.allclose(got.policy, alone.policy, atol=1e-6)
        assert got.value == pytest.approx(alone.value, abs=1e-6)
    chunked = Predictor(predictor.model, threads=None, max_batch=2).predict_batch(positions)
    assert all(
        np.allclose(a.policy, b.policy, atol=1e-6)
        for a, b in zip(chunked, predictor.predict_batch(positions), strict=True)
    )
    assert predictor.predict_batch([]) == []


def test_bad_arguments(predictor: Predictor, restore_threads: None) -> None:
    pos = Position(9)
    with pytest.raises(ValueError):
        predictor.predict(pos, symmetries=[8])
    with pytest.raises(ValueError):
        predictor.predict(pos, symmetries=[])
    with pytest.raises(ValueError):
        predictor.predict(pos).prob((9, 0))
    with pytest.raises(ValueError):
        Predictor(PolicyValueNet(ModelConfig(blocks=1, channels=8, input_planes=7)))
    with pytest.raises(ValueError):
        Predictor(predictor.model, threads=0)
    Predictor(predictor.model, threads=1)
    assert torch.get_num_threads() == 1  # documented: the setting is process-wide


class _Broken(PolicyValueNet):
    """A network whose outputs overflowed: NaN and infinities everywhere."""

    def forward(self, x: Tensor) -> NetOutput:
        b, n = x.shape[0], x.shape[2] * x.shape[3]
        logits = torch.full((b, n + 1), float("nan"))
        logits[:, 0] = float("inf")  # (0, 0) is occupied below
        return NetOutput(logits, torch.full((b,), float("nan")), torch.full((b,), float("inf")))


def test_overflowing_outputs_still_give_legal_moves() -> None:
    pos = _near_full_with_ko()
    predictor = Predictor(_Broken(SMALL), threads=None)
    p = predictor.predict(pos, ALL_SYMMETRIES)
    assert np.isfinite(p.policy).all() and np.array_equal(p.policy > 0, legal_mask(pos))
    assert p.policy.sum() == pytest.approx(1.0) and p.value == 0.5
    assert p.score_lead is not None and np.isfinite(p.score_lead)
    assert NeuralPlayer(predictor).choose(pos).point in {(0, 3), (2, 4), None}


def test_a_predictor_leaves_the_weights_alone(small_model: PolicyValueNet) -> None:
    before = save_weights(small_model)
    predictor = Predictor(small_model, threads=None)  # eval + channels_last, in place
    predictor.predict(Position(9))
    assert save_weights(small_model) == before
    load_arrays(small_model, model_to_arrays(make_small_model(seed=8)))
    assert save_weights(small_model) == save_weights(make_small_model(seed=8))
