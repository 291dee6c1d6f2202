"""The eight board symmetries: bijections, inverses, and an equivariant averaged policy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine import Position
from engine.nn import (
    ALL_SYMMETRIES,
    Predictor,
    Symmetry,
    encode_position,
    transform_planes,
    transform_point,
    transform_policy,
)

from .conftest import make_small_model

# A game with a capture, a ko and a pass, so every kind of plane is non-trivial.
# Black's last move (1, 2) captures at (1, 1): white may not retake there at once.
GAME = [(0, 1), (0, 2), (1, 0), (2, 2), (2, 1), (1, 3), None, (1, 1), (1, 2)]


def _play(points: list[tuple[int, int] | None], size: int) -> Position:
    pos = Position(size)
    for pt in points:
        pos = pos.play_at(pt)
    return pos


@pytest.mark.parametrize("size", [2, 5, 9])
def test_each_symmetry_is_a_bijection_undone_by_its_inverse(size: int) -> None:
    points = [(r, c) for r in range(size) for c in range(size)]
    images = set()
    for sym in ALL_SYMMETRIES:
        moved = [transform_point(p, size, sym) for p in points]
        assert sorted(q for q in moved if q is not None) == points  # a permutation
        assert [transform_point(q, size, sym.inverse) for q in moved] == points
        assert transform_point(None, size, sym) is None
        images.add(tuple(moved))
        planes = np.arange(3 * size * size, dtype=np.float32).reshape(3, size, size)
        back = transform_planes(transform_planes(planes, sym), sym.inverse)
        assert np.array_equal(back, planes)
        policy = np.arange(size * size + 1, dtype=np.float32)
        there = transform_policy(policy, size, sym)
        assert there[-1] == policy[-1]  # pass stays put
        assert np.array_equal(transform_policy(there, size, sym.inverse), policy)
    if size > 1:
        assert len(images) == 8  # eight different symmetries


def test_arrays_move_like_points() -> None:
    size = 5
    for sym, (r, c) in itertools.product(ALL_SYMMETRIES, [(0, 1), (2, 4), (3, 3)]):
        board = np.zeros((size, size))
        board[r, c] = 1
        moved = transform_point((r, c), size, sym)
        assert moved is not None and transform_planes(board, sym)[moved] == 1
    ramp = np.arange(25).reshape(5, 5)
    assert np.array_equal(transform_planes(ramp, Symmetry.ROTATE_LEFT), np.rot90(ramp))
    assert np.array_equal(transform_planes(ramp, Symmetry.ROTATE_RIGHT), np.rot90(ramp, -1))


def test_symmetries_form_a_group() -> None:
    pts = [(r, c) for r in range(4) for c in range(4)]
    table = {tuple(transform_point(p, 4, s) for p in pts): s for s in ALL_SYMMETRIES}
    for a, b in itertools.product(ALL_SYMMETRIES, repeat=2):
        composed = tuple(transform_point(transform_point(p, 4, a), 4, b) for p in pts)
        assert composed in table


def test_tensors_and_arrays_agree() -> None:
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    for sym in ALL_SYMMETRIES:
        t = transform_planes(torch.from_numpy(a), sym)
        assert np.array_equal(t.numpy(), transform_planes(a, sym))
        p = a.reshape(2, -1)[:, :37]
        assert np.array_equal(
            transform_policy(torch.from_numpy(p.copy()), 6, sym).numpy(),
            transform_policy(p, 6, sym),
        )
    with pytest.raises(ValueError):
        transform_policy(np.zeros(11), 3, Symmetry.IDENTITY)
    with pytest.raises(ValueError):
        transform_planes(np.zeros((3, 4)), Symmetry.IDENTITY)


@pytest.mark.parametrize("sym", list(Symmetry))
def test_features_of_a_transformed_game_are_the_transformed_features(sym: Symmetry) -> None:
    pos = _play(GAME, 7)
    assert pos.ko is not None  # the game really has a ko to transform
    moved = _play([transform_point(p, 7, sym) for p in GAME], 7)
    assert np.array_equal(encode_position(moved), transform_planes(encode_position(pos), sym))


def test_averaged_policy_is_equivariant() -> None:
    predictor = Predictor(make_small_model(), threads=None)
    pos = _play(GAME, 7)
    base = predictor.predict(pos, ALL_SYMMETRIES)
    plain = predictor.predict(pos)
    differs = False
    for sym in ALL_SYMMETRIES:
        moved = _play([transform_point(p, 7, sym) for p in GAME], 7)
        got = predictor.predict(moved, ALL_SYMMETRIES)
        want = transform_policy(base.policy, 7, sym)
        assert np.allclose(got.policy, want, rtol=0, atol=1e-6)
        assert got.value == pytest.approx(base.value, abs=1e-6)
        assert got.score_lead == pytest.approx(base.score_lead, abs=1e-4)
        single = predictor.predict(moved)
        differs |= not np.allclose(single.policy, transform_policy(plain.policy, 7, sym), atol=1e-3)
    # Without averaging, the random network is not equivariant: the test above has teeth.
    assert differs
