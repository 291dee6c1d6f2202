"""Input planes built from ASCII-art positions."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Color, Move, Position, Rules
from engine.nn import FEATURE_PLANES, Plane, encode_batch, encode_position


def test_stones_and_liberties_are_from_the_side_to_move() -> None:
    pos = Position.from_ascii(
        """
        . X O
        X O .
        . . .
        """,
        to_play=Color.WHITE,
    )
    f = encode_position(pos)
    assert f.shape == (FEATURE_PLANES, 3, 3) and f.dtype == np.float32
    assert (f[Plane.ON_BOARD] == 1).all()
    assert f[Plane.OWN].tolist() == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]
    assert f[Plane.OPPONENT].tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    # White (own): (0,2) has 1 liberty, (1,1) has 2. Black: (0,1) has 1, (1,0) has 2.
    assert f[Plane.OWN_LIBERTIES][0, 2] == 1 and f[Plane.OWN_LIBERTIES + 1][1, 1] == 1
    assert f[Plane.OPPONENT_LIBERTIES][0, 1] == 1
    assert f[Plane.OPPONENT_LIBERTIES + 1][1, 0] == 1
    assert f[Plane.OWN_LIBERTIES : Plane.OWN_LIBERTIES + 3].sum() == 2
    assert f[Plane.OPPONENT_LIBERTIES : Plane.OPPONENT_LIBERTIES + 3].sum() == 2
    assert (f[Plane.BLACK_TO_MOVE] == 0).all()
    assert np.allclose(f[Plane.KOMI], 7.5 / 15)  # white receives komi
    black_view = encode_position(pos.with_setup(to_play=Color.BLACK))
    assert np.array_equal(black_view[Plane.OWN], f[Plane.OPPONENT])
    assert (black_view[Plane.BLACK_TO_MOVE] == 1).all()
    assert np.allclose(black_view[Plane.KOMI], -7.5 / 15)


def test_three_or_more_liberties_share_a_plane() -> None:
    pos = Position.from_ascii(". . .\n. X .\n. . .")
    f = encode_position(pos.with_rules(Rules.named("japanese")))
    assert f[Plane.OPPONENT_LIBERTIES + 2][1, 1] == 0  # black to move: X is own
    assert f[Plane.OWN_LIBERTIES + 2][1, 1] == 1
    assert np.allclose(f[Plane.KOMI], -6.5 / 15)


def test_ko_history_and_passes() -> None:
    pos = Position.from_ascii(
        """
        . X O . .
        X O . O .
        . X O . .
        . . . . .
        . . . . .
        """
    )
    pos = pos.play_at((1, 2))  # black captures at (1,1): ko for white
    f = encode_position(pos)
    assert pos.ko == (1, 1)
    assert f[Plane.KO].sum() == 1 and f[Plane.KO][1, 1] == 1
    assert f[Plane.HISTORY][1, 2] == 1 and f[Plane.HISTORY].sum() == 1
    assert f[Plane.HISTORY + 1 : Plane.PASSED_1].sum() == 0  # setup is not a move
    assert f[Plane.PASSED_1 : Plane.BLACK_TO_MOVE].sum() == 0
    pos = pos.play_at((4, 4)).play_at(None)  # white, then black passes
    f = encode_position(pos)
    assert (f[Plane.PASSED_1] == 1).all() and (f[Plane.PASSED_2] == 0).all()
    assert f[Plane.HISTORY].sum() == 0  # a pass marks no point
    assert f[Plane.HISTORY + 1][4, 4] == 1 and f[Plane.HISTORY + 2][1, 2] == 1
    assert f[Plane.KO].sum() == 0
    pos = pos.play(Move.pass_(Color.WHITE))
    f = encode_position(pos)
    assert (f[Plane.PASSED_1] == 1).all() and (f[Plane.PASSED_2] == 1).all()


def test_history_stops_after_five_moves() -> None:
    pos = Position(9)
    for i in range(7):
        pos = pos.play_at((i, i))
    f = encode_position(pos)
    for k in range(5):
        assert f[Plane.HISTORY + k][6 - k, 6 - k] == 1
        assert f[Plane.HISTORY + k].sum() == 1


def test_batch_pads_smaller_boards_top_left() -> None:
    small, big = Position(9).play_at((0, 0)), Position(13)
    batch = encode_batch([small, big])
    assert batch.shape == (2, FEATURE_PLANES, 13, 13)
    assert np.array_equal(batch[0, :, :9, :9], encode_position(small))
    assert batch[0, :, 9:, :].sum() == 0 and batch[0, :, :, 9:].sum() == 0
    assert np.array_equal(batch[1], encode_position(big))
    assert encode_batch([small], size=11).shape == (1, FEATURE_PLANES, 11, 11)
    with pytest.raises(ValueError):
        encode_batch([big], size=9)
    with pytest.raises(ValueError):
        encode_batch([])
