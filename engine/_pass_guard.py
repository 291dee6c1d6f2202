"""When a network player should not pass yet (area scoring).

A network trained on finished games learns to pass once the board *looks* settled.
Against GnuGo the shipped model then passed while the opponent still had moves that
counted, and went on passing while the opponent played them: in the lost games of
100-game matches against GnuGo level 1 the opponent made 3-16 more moves after the
network's first pass. Leela Zero's default (without ``--dumbpass``) and KataGo's
"conservative pass" guard against the same thing.

The rule here is deliberately simple and only for area scoring (Chinese,
Tromp-Taylor), where a stone inside one's own area costs nothing: **while some
empty region touches stones of both colours** (a neutral point, an invasion, a
stone still to capture), a pass is replaced by the best-ranked *safe* move inside
such a region: legal, not one of the player's own eye-like points, and not a
self-atari (a move that leaves its group one liberty without capturing anything).
With no safe move there the player passes. A region that touches both colours only
through seki liberties offers no safe move (each is a self-atari), so seki still ends
in passes. Under territory scoring (the position's rules) it never acts.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine._coords import Point
from engine._rules import Color, IllegalMove, Move, Position, ScoringRule

__all__ = ["contested_points", "pass_alternative"]


def contested_points(position: Position) -> frozenset[Point]:
    """The empty points of every connected empty region that borders both colours."""
    size = position.size
    cells = position.cells()
    seen = bytearray(size * size)
    out: list[int] = []
    for start in range(size * size):
        if cells[start] != Color.EMPTY or seen[start]:
            continue
        seen[start] = 1
        region = [start]
        stack = [start]
        borders = 0  # bit 1: black, bit 2: white
        while stack:
            i = stack.pop()
            r, c = divmod(i, size)
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if not (0 <= rr < size and 0 <= cc < size):
                    continue
                j = rr * size + cc
                cell = cells[j]
                if cell == Color.EMPTY:
                    if not seen[j]:
                        seen[j] = 1
                        stack.append(j)
                        region.append(j)
                else:
                    borders |= cell
        if borders == Color.BLACK | Color.WHITE:
            out.extend(region)
    return frozenset(divmod(i, size) for i in out)


def _is_safe(position: Position, point: Point, color: Color) -> bool:
    if position.is_eye_like(point, color):
        return False
    try:
        after = position.play(Move.play(color, point))
    except IllegalMove:
        return False
    captured = after.captures != position.captures
    return captured or len(after.liberties(point)) > 1


def pass_alternative(position: Position, ranked: Iterable[Point | None]) -> Point | None:
    """The first safe point of ``ranked`` (best first) inside a region that touches both
    colours; ``None`` (pass) if there is no such region or no safe point in one, and
    always under territory scoring (``position.rules``), where a stone at home costs."""
    if position.is_game_over or position.rules.scoring is not ScoringRule.AREA:
        return None
    contested = contested_points(position)
    if not contested:
        return None
    color = position.to_play
    for point in ranked:
        if point in contested and _is_safe(position, point, color):
            return point
    return None
