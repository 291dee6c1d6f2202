"""Tactical facts about every point of a position, for the network's input planes.

A small network sees liberties but does not read: it misses that a move puts its own
group in atari, that a capture is on, or that a ladder works. AlphaGo's policy network
got such facts as input planes (capture size, self-atari, liberties after the move,
ladder capture and escape), and they are cheap to compute exactly. :func:`tactics`
computes them for the side to move, at every empty point:

* ``captures``: how many opponent stones a move there captures;
* ``liberties_after``: the liberties of the mover's chain after the move (0 where the
  move is illegal: occupied, the ko point, or suicide); 1 means self-atari;
* ``threatened``: how many of the mover's stones the *opponent* would capture there
  (the liberty of a mover's group in atari);
* ``ladder_capture``: the move puts an opponent group in atari and that group cannot
  escape the ladder that follows;
* ``ladder_escape_fails``: the point is the last liberty of a mover's group, and
  extending there still loses the group to a ladder.

Ladders are read on a mutable padded board (the layout of :class:`Position`: stride
``size + 1``, border value 3) with a node budget; a ladder that needs more reading than
the budget counts as not working (so the planes never claim more than was read). The
defender escapes by reaching three liberties or by capturing an attacking chain that
is in atari (which is how a ladder breaker works). Superko is ignored; simple ko is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine._moves import _EMPTY
from engine._rules import Position

__all__ = ["LADDER_BUDGET", "Tactics", "tactics"]

# Moves the ladder reader may try per question. A real ladder on 19x19 is at most a few
# dozen moves with two choices each, almost always one of them an immediate failure.
LADDER_BUDGET = 200

_Group = tuple[set[int], set[int]]  # (stones, liberties) as padded indices


@dataclass(frozen=True, slots=True)
class Tactics:
    """Row-major per-point facts for the side to move (see the module docstring)."""

    size: int
    captures: tuple[int, ...]
    liberties_after: tuple[int, ...]
    threatened: tuple[int, ...]
    ladder_capture: tuple[bool, ...]
    ladder_escape_fails: tuple[bool, ...]


def _group(board: bytearray, start: int, w: int) -> _Group:
    color = board[start]
    stones = {start}
    libs: set[int] = set()
    stack = [start]
    while stack:
        s = stack.pop()
        for n in (s - 1, s + 1, s - w, s + w):
            v = board[n]
            if v == _EMPTY:
                libs.add(n)
            elif v == color and n not in stones:
                stones.add(n)
                stack.append(n)
    return stones, libs


def _play(board: bytearray, p: int, color: int, w: int) -> bytearray | None:
    """A copy of ``board`` with ``color`` at ``p`` and captures removed; ``None`` if
    the point is taken or the move is suicide."""
    if board[p] != _EMPTY:
        return None
    out = bytearray(board)
    out[p] = color
    enemy = 3 - color
    for n in (p - 1, p + 1, p - w, p + w):
        if out[n] == enemy:
            stones, libs = _group(out, n, w)
            if not libs:
                for s in stones:
                    out[s] = _EMPTY
    _, libs = _group(out, p, w)
    return out if libs else None


class _Reader:
    """Ladder reading; each question (:meth:`captured`, :meth:`escape_fails`) gets
    ``budget`` moves."""

    def __init__(self, w: int, budget: int) -> None:
        self.w = w
        self.limit = budget
        self.budget = budget

    def captured(self, board: bytearray, stone: int) -> bool:
        """Whether the chain at ``stone``, in atari with its owner to move, dies."""
        self.budget = self.limit
        return self.dead(board, stone)

    def escape_fails(self, board: bytearray, liberty: int, defender: int) -> bool:
        """Whether ``defender``'s chain in atari still dies after extending at ``liberty``."""
        self.budget = self.limit
        return self._attack_wins(board, liberty, defender, 3 - defender)

    def dead(self, board: bytearray, stone: int) -> bool:
        """Whether the chain at ``stone`` (in atari, its owner to move) dies in a ladder."""
        w = self.w
        stones, libs = _group(board, stone, w)
        if len(libs) != 1:
            return not libs
        defender = board[stone]
        attacker = 3 - defender
        # Capturing an attacking chain in atari next to the group gains a liberty: the
        # ladder is broken (read no further).
        for s in stones:
            for n in (s - 1, s + 1, s - w, s + w):
                if board[n] == attacker and len(_group(board, n, w)[1]) == 1:
                    return False
        (liberty,) = libs
        return self._attack_wins(board, liberty, defender, attacker)

    def _attack_wins(self, board: bytearray, liberty: int, defender: int, attacker: int) -> bool:
        """The defender extends at ``liberty``; whether the attacker still captures."""
        w = self.w
        self.budget -= 1
        if self.budget < 0:
            return False
        after = _play(board, liberty, defender, w)
        if after is None:
            return True  # extending is suicide: the group is lost
        _, libs = _group(after, liberty, w)
        if len(libs) >= 3:
            return False
        if len(libs) <= 1:
            return True
        for atari in libs:
            attacked = _play(after, atari, attacker, w)
            if attacked is not None and self.dead(attacked, liberty):
                return True
            if self.budget < 0:
                return False
        return False


def tactics(position: Position, *, ladder_budget: int = LADDER_BUDGET) -> Tactics:
    """The tactical facts of ``position`` for the side to move (module docstring)."""
    n = position.size
    board, w, ko = position._playout_state()
    me = position.to_play.value
    enemy = 3 - me
    group_of: dict[int, int] = {}
    groups: list[_Group] = []
    for r in range(n):
        for c in range(n):
            p = (r + 1) * w + c
            if board[p] in (1, 2) and p not in group_of:
                found = _group(board, p, w)
                for s in found[0]:
                    group_of[s] = len(groups)
                groups.append(found)

    cells = n * n
    captures = [0] * cells
    liberties_after = [0] * cells
    threatened = [0] * cells
    ladder_capture = [False] * cells
    ladder_escape_fails = [False] * cells
    reader = _Reader(w, ladder_budget)
    for r in range(n):
        for c in range(n):
            p = (r + 1) * w + c
            if board[p] != _EMPTY:
                continue
            i = r * n + c
            own: set[int] = set()
            foe: set[int] = set()
            empties = []
            for q in (p - 1, p + 1, p - w, p + w):
                v = board[q]
                if v == _EMPTY:
                    empties.append(q)
                elif v == me:
                    own.add(group_of[q])
                elif v == enemy:
                    foe.add(group_of[q])
            taken = [g for g in foe if len(groups[g][1]) == 1]
            captures[i] = sum(len(groups[g][0]) for g in taken)
            threatened[i] = sum(len(groups[g][0]) for g in own if len(groups[g][1]) == 1)
            if p == ko:
                continue
            libs = set(empties)
            for g in own:
                libs |= groups[g][1]
            libs.discard(p)
            if taken:
                chain = {p}.union(*(groups[g][0] for g in own))
                for g in taken:
                    for s in groups[g][0]:
                        if any(q in chain for q in (s - 1, s + 1, s - w, s + w)):
                            libs.add(s)
            liberties_after[i] = len(libs)
            if not libs:
                continue  # suicide
            # Ladder capture: the move ataris an opponent chain that has two liberties now.
            if any(len(groups[g][1]) == 2 for g in foe):
                after = _play(board, p, me, w)
                if after is not None:
                    for g in foe:
                        stone = next(iter(groups[g][0]))
                        if (
                            len(groups[g][1]) == 2
                            and after[stone] == enemy
                            and reader.captured(after, stone)
                        ):
                            ladder_capture[i] = True
                            break
            # Ladder escape: the last liberty of a chain of ours in atari.
            if any(len(groups[g][1]) == 1 for g in own):
                ladder_escape_fails[i] = reader.escape_fails(board, p, me)
    return Tactics(
        size=n,
        captures=tuple(captures),
        liberties_after=tuple(liberties_after),
        threatened=tuple(threatened),
        ladder_capture=tuple(ladder_capture),
        ladder_escape_fails=tuple(ladder_escape_fails),
    )
