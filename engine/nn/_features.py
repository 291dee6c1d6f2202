"""Input planes: what the network sees of a position.

Every plane is a ``size x size`` float32 array, everything from the point of view of
the side to move ("own" = the player about to move), so one network plays both colours:

=====  ===================================================================
plane  meaning
=====  ===================================================================
0      on the board (all ones): marks the real board inside a padded batch,
       and lets 3x3 convolutions tell the edge from empty points
1, 2   own stones, opponent stones
3-5    own stones whose group has 1, 2, 3+ liberties
6-8    opponent stones whose group has 1, 2, 3+ liberties
9      the ko point the side to move may not retake at
10-14  the stone moves 1..5 plies ago (one point each; empty for passes)
15     the last move was a pass (all ones)
16     the move before it was a pass (all ones)
17     black is to move (all ones), so the net can learn colour-specific play
18     komi / 15 from the side to move's view (+ for white, - for black)
=====  ===================================================================

A batch of different board sizes is padded to the largest, each board in the top-left
corner with zeros elsewhere (so plane 0 is the board mask); the network masks its
activations with plane 0 so padding does not change what a board's points see.

Cost on 19x19 is dominated by the engine's ``liberty_map()`` (pure Python, ~0.8 ms
mid-game); the numpy part is ~0.1 ms. Measured in ``benchmarks/bench_inference.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import numpy as np

from engine._rules import Color, Position
from engine.nn._config import FEATURE_PLANES

__all__ = [
    "HISTORY_MOVES",
    "KOMI_SCALE",
    "Plane",
    "encode_batch",
    "encode_position",
]

HISTORY_MOVES = 5
KOMI_SCALE = 15.0


class Plane(enum.IntEnum):
    """Indices of the input planes (see the module table); ranges start at their name."""

    ON_BOARD = 0
    OWN = 1
    OPPONENT = 2
    OWN_LIBERTIES = 3  # 3, 4, 5: 1, 2, 3+ liberties
    OPPONENT_LIBERTIES = 6  # 6, 7, 8
    KO = 9
    HISTORY = 10  # 10..14: 1..5 plies ago
    PASSED_1 = 15
    PASSED_2 = 16
    BLACK_TO_MOVE = 17
    KOMI = 18


assert Plane.KOMI + 1 == FEATURE_PLANES


def _fill(out: np.ndarray, position: Position) -> None:
    """Write ``position``'s planes into ``out`` (FEATURE_PLANES, >= size, >= size), zeroed."""
    n = position.size
    me = position.to_play
    cells = np.frombuffer(position.cells(), dtype=np.uint8).reshape(n, n)  # (n, n)
    libs = np.asarray(position.liberty_map(), dtype=np.int16).reshape(n, n)  # (n, n)
    own = cells == me.value
    opp = cells == me.opponent.value
    view = out[:, :n, :n]
    view[Plane.ON_BOARD] = 1.0
    view[Plane.OWN] = own
    view[Plane.OPPONENT] = opp
    clipped = np.minimum(libs, 3)
    for k in range(3):
        at = clipped == k + 1
        view[Plane.OWN_LIBERTIES + k] = own & at
        view[Plane.OPPONENT_LIBERTIES + k] = opp & at
    ko = position.ko
    if ko is not None:
        view[Plane.KO, ko[0], ko[1]] = 1.0
    pos: Position | None = position
    for k in range(HISTORY_MOVES):
        if pos is None or pos.last_move is None:
            break
        move = pos.last_move
        if move.point is not None:
            view[Plane.HISTORY + k, move.point[0], move.point[1]] = 1.0
        elif move.is_pass and k < 2:
            view[Plane.PASSED_1 + k] = 1.0
        pos = pos.parent
    if me is Color.BLACK:
        view[Plane.BLACK_TO_MOVE] = 1.0
    komi = position.rules.komi / KOMI_SCALE
    view[Plane.KOMI] = komi if me is Color.WHITE else -komi


def encode_position(position: Position) -> np.ndarray:
    """The input planes of one position: float32 ``(FEATURE_PLANES, size, size)``."""
    n = position.size
    out = np.zeros((FEATURE_PLANES, n, n), dtype=np.float32)  # (C, H, W)
    _fill(out, position)
    return out


def encode_batch(positions: Sequence[Position], size: int | None = None) -> np.ndarray:
    """Planes of many positions, ``(B, FEATURE_PLANES, S, S)`` with ``S`` = ``size`` or the
    largest board; smaller boards sit in the top-left corner, zero-padded."""
    if not positions:
        raise ValueError("encode_batch needs at least one position")
    biggest = max(p.size for p in positions)
    s = biggest if size is None else size
    if s < biggest:
        raise ValueError(f"padding size {s} is smaller than a {biggest}x{biggest} board")
    out = np.zeros((len(positions), FEATURE_PLANES, s, s), dtype=np.float32)  # (B, C, S, S)
    for i, position in enumerate(positions):
        _fill(out[i], position)
    return out
