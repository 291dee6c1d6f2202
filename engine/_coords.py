"""Coordinates: one place that converts between every way a point is written.

=========  ==============================  =========================================
system     example (19x19, top-left)       notes
=========  ==============================  =========================================
(row, col) ``(0, 0)``                      row 0 is the **top** row, col 0 the left
                                           column; what the rest of the engine uses.
GTP vertex ``"A19"``                       column letters skip ``I``; row number 1 is
                                           the **bottom** row; ``"pass"``.
SGF point  ``"aa"``                        column letter then row letter, ``a`` = 0,
                                           row ``a`` is the **top**; ``""`` (or
                                           ``"tt"`` on boards up to 19x19) is a pass.
flat index ``(row + 1) * (size + 1) + col``  private to the rules: a padded board with
                                           one border column shared left/right and a
                                           border row above and below.
=========  ==============================  =========================================

Converters are tiny pure functions; each raises :class:`CoordinateError` (a
``ValueError``) for text or points that do not fit the board.
"""

from __future__ import annotations

__all__ = [
    "GTP_COLUMNS",
    "MAX_SIZE",
    "MIN_SIZE",
    "CoordinateError",
    "Point",
    "check_size",
    "from_gtp",
    "from_sgf",
    "to_gtp",
    "to_sgf",
]

MIN_SIZE = 2
MAX_SIZE = 25
# GTP skips the letter I to avoid confusion with J and 1.
GTP_COLUMNS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"
_SGF_LETTERS = "abcdefghijklmnopqrstuvwxyz"

Point = tuple[int, int]


class CoordinateError(ValueError):
    """A vertex, SGF point or (row, col) that does not exist on the board."""


def check_size(size: int) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise CoordinateError(f"board size must be an integer from {MIN_SIZE} to {MAX_SIZE}")
    return size


def _check_point(point: Point, size: int) -> Point:
    row, col = point
    if not (0 <= row < size and 0 <= col < size):
        raise CoordinateError(f"point {point} is off a {size}x{size} board")
    return point


def to_gtp(point: Point | None, size: int) -> str:
    """(row, col) -> GTP vertex; ``None`` is a pass."""
    if point is None:
        return "pass"
    row, col = _check_point(point, size)
    return f"{GTP_COLUMNS[col]}{size - row}"


def from_gtp(vertex: str, size: int) -> Point | None:
    """GTP vertex -> (row, col); ``"pass"`` (any case) gives ``None``."""
    text = vertex.strip().upper()
    if text == "PASS":
        return None
    if len(text) < 2 or text[0] not in GTP_COLUMNS[:size] or not text[1:].isdigit():
        raise CoordinateError(f"invalid vertex {vertex!r} for a {size}x{size} board")
    col = GTP_COLUMNS.index(text[0])
    number = int(text[1:])
    if not 1 <= number <= size:
        raise CoordinateError(f"invalid vertex {vertex!r} for a {size}x{size} board")
    return (size - number, col)


def to_sgf(point: Point | None, size: int) -> str:
    """(row, col) -> SGF point; ``None`` (a pass) is the empty string."""
    if point is None:
        return ""
    row, col = _check_point(point, size)
    return _SGF_LETTERS[col] + _SGF_LETTERS[row]


def from_sgf(text: str, size: int) -> Point | None:
    """SGF point -> (row, col); ``""`` and, on boards up to 19x19, ``"tt"`` are a pass."""
    if text == "" or (text == "tt" and size <= 19):
        return None
    if len(text) != 2 or text[0] not in _SGF_LETTERS or text[1] not in _SGF_LETTERS:
        raise CoordinateError(f"invalid SGF point {text!r}")
    point = (_SGF_LETTERS.index(text[1]), _SGF_LETTERS.index(text[0]))
    try:
        return _check_point(point, size)
    except CoordinateError:
        raise CoordinateError(f"SGF point {text!r} is off a {size}x{size} board") from None
