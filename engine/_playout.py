"""Fast random playouts on a mutable padded board, for ownership and dead-stone estimates.

The immutable :class:`~engine._rules.Position` is right for games and search but pays
for a new object per move. A playout needs none of that: it mutates one bytearray in
the same padded layout (stride ``size + 1``, border value 3), with simple ko only.
Each side plays uniformly at random among points that are not its own eyes, not
suicide and not self-atari (unless the move captures), until both pass.
"""

from __future__ import annotations

import random

from engine._rules import _BORDER, _EMPTY, Position, _dead_group, _eye_like

__all__ = ["playout_ownership"]


def _liberties_up_to_two(board: bytearray, start: int, w: int) -> int:
    color = board[start]
    stack = [start]
    seen = {start}
    libs: set[int] = set()
    while stack:
        s = stack.pop()
        for n in (s - 1, s + 1, s - w, s + w):
            v = board[n]
            if v == _EMPTY:
                libs.add(n)
                if len(libs) >= 2:
                    return 2
            elif v == color and n not in seen:
                seen.add(n)
                stack.append(n)
    return len(libs)


def _try_play(board: bytearray, p: int, c: int, w: int) -> list[int] | None:
    """Play ``c`` at ``p``; the captured points, or ``None`` (and no change) if the
    move is suicide or a self-atari that captures nothing."""
    o = 3 - c
    board[p] = c
    captured: list[int] = []
    for q in (p - 1, p + 1, p - w, p + w):
        if board[q] == o:
            dead = _dead_group(board, q, w)
            if dead is not None:
                for s in dead:
                    board[s] = _EMPTY
                captured.extend(dead)
    if not captured and _liberties_up_to_two(board, p, w) < 2:
        board[p] = _EMPTY
        return None
    return captured


def _one_playout(board: bytearray, to_play: int, ko: int, w: int, rng: random.Random) -> None:
    empties = [i for i, v in enumerate(board) if v == _EMPTY]
    color = to_play
    passes = 0
    cap = 3 * len(empties) + 20
    for _ in range(cap):
        n = len(empties)
        played = False
        tried = 0
        while tried < n:
            j = rng.randrange(tried, n)
            empties[tried], empties[j] = empties[j], empties[tried]
            p = empties[tried]
            tried += 1
            if p == ko or _eye_like(board, p, color, w):
                continue
            captured = _try_play(board, p, color, w)
            if captured is None:
                continue
            empties[tried - 1] = empties[-1]
            empties.pop()
            empties.extend(captured)
            ko = -1
            if len(captured) == 1:
                libs = sum(1 for q in (p - 1, p + 1, p - w, p + w) if board[q] == _EMPTY)
                friends = any(board[q] == color for q in (p - 1, p + 1, p - w, p + w))
                if libs == 1 and not friends:
                    ko = captured[0]
            played = True
            break
        if played:
            passes = 0
        else:
            passes += 1
            ko = -1
            if passes >= 2:
                return
        color = 3 - color


def playout_ownership(position: Position, playouts: int, seed: int) -> list[float]:
    """Row-major mean ownership over ``playouts`` games: +1 black, -1 white."""
    rng = random.Random(seed)
    size = position.size
    start, w, ko = position._playout_state()
    total = [0.0] * (size * size)
    for _ in range(playouts):
        board = bytearray(start)
        _one_playout(board, position.to_play.value, ko, w, rng)
        for r in range(size):
            base = (r + 1) * w
            for c in range(size):
                p = base + c
                v = board[p]
                if v == _EMPTY:
                    # After a playout every empty point is an eye or dame: its
                    # neighbours decide.
                    seen = {board[n] for n in (p - 1, p + 1, p - w, p + w)} - {_BORDER}
                    v = seen.pop() if len(seen) == 1 else _EMPTY
                if v == 1:
                    total[r * size + c] += 1.0
                elif v == 2:
                    total[r * size + c] -= 1.0
    return [t / playouts for t in total]
