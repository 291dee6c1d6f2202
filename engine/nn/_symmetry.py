"""The eight symmetries of the square board (the dihedral group D4).

Go is the same game under rotations and reflections, so a network sees a board in
any of eight orientations: for data augmentation in training, and at inference to
average the eight opinions of one network (which also makes the averaged policy
exactly equivariant).

A symmetry is an :class:`int` enum whose bits say what it does, applied in order:

=====  ==========================================
bit    step
=====  ==========================================
4      transpose (swap rows and columns) first
1      then flip the rows (top <-> bottom)
2      then flip the columns (left <-> right)
=====  ==========================================

On points of an ``n x n`` board, ``(r, c)`` goes to ``(c, r)`` if transposed, then
``r -> n-1-r`` and/or ``c -> n-1-c``. Arrays transform so that the value at point
``p`` moves to ``transform_point(p)``. A policy vector is the board row-major plus one
pass entry at the end; symmetries leave the pass entry where it is.
"""

from __future__ import annotations

import enum
from typing import TypeVar

import numpy as np
import torch

from engine._coords import Point

__all__ = [
    "ALL_SYMMETRIES",
    "Symmetry",
    "transform_planes",
    "transform_point",
    "transform_policy",
]


class Symmetry(enum.IntEnum):
    IDENTITY = 0
    FLIP_ROWS = 1  # mirror top <-> bottom
    FLIP_COLUMNS = 2  # mirror left <-> right
    ROTATE_180 = 3
    TRANSPOSE = 4  # mirror in the main diagonal
    ROTATE_LEFT = 5  # 90 degrees anticlockwise, like numpy.rot90
    ROTATE_RIGHT = 6  # 90 degrees clockwise
    ANTI_TRANSPOSE = 7  # mirror in the other diagonal

    @property
    def inverse(self) -> Symmetry:
        """The symmetry that undoes this one."""
        if not self & 4:
            return self  # flips commute and are their own inverses
        # (flips after a transpose) undone = the same flips on the other axes, then transpose.
        return Symmetry(4 | ((self & 1) << 1) | ((self & 2) >> 1))


ALL_SYMMETRIES: tuple[Symmetry, ...] = tuple(Symmetry)

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def transform_planes(planes: ArrayT, symmetry: Symmetry) -> ArrayT:
    """Apply ``symmetry`` to the last two axes (rows, columns) of a numpy array or tensor.

    The result may be a view; copy it before writing to it.
    """
    if planes.shape[-1] != planes.shape[-2]:
        raise ValueError(f"planes must be square in their last two axes, not {planes.shape}")
    if isinstance(planes, torch.Tensor):
        t = planes.transpose(-1, -2) if symmetry & 4 else planes
        dims = [d for bit, d in ((1, -2), (2, -1)) if symmetry & bit]
        return t.flip(dims) if dims else t
    a = planes.swapaxes(-1, -2) if symmetry & 4 else planes
    if symmetry & 1:
        a = a[..., ::-1, :]
    if symmetry & 2:
        a = a[..., ::-1]
    return a


def transform_point(point: Point | None, size: int, symmetry: Symmetry) -> Point | None:
    """Where ``point`` (``None``: a pass, which stays a pass) goes under ``symmetry``."""
    if point is None:
        return None
    r, c = point
    if symmetry & 4:
        r, c = c, r
    if symmetry & 1:
        r = size - 1 - r
    if symmetry & 2:
        c = size - 1 - c
    return (r, c)


def transform_policy(policy: ArrayT, size: int, symmetry: Symmetry) -> ArrayT:
    """Apply ``symmetry`` to policy vectors ``(..., size*size + 1)``; pass stays last."""
    n = size * size
    if policy.shape[-1] != n + 1:
        raise ValueError(f"a {size}x{size} policy has {n + 1} entries, not {policy.shape[-1]}")
    lead = tuple(policy.shape[:-1])
    board = policy[..., :n].reshape(*lead, size, size)  # (..., size, size)
    moved = transform_planes(board, symmetry).reshape(*lead, n)  # (..., size*size)
    if isinstance(policy, torch.Tensor):
        return torch.cat([moved, policy[..., n:]], dim=-1)
    return np.concatenate([moved, policy[..., n:]], axis=-1)
