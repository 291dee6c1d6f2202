"""Move choosers: the :class:`Player` protocol and a simple heuristic player.

A player looks at a position and returns a move for the side to move. The GTP
engine (:mod:`engine.gtp`) and the match runner only depend on the protocol, so the
neural player that comes later drops in without touching them.

:class:`HeuristicPlayer` is a deliberately weak, fast, reproducible opponent. In
order of priority it:

1. captures, preferring the move that removes the most stones;
2. saves its own group in atari by extending, if that leaves the group more than
   one liberty (the biggest group first);
3. otherwise plays a random legal move that neither fills one of its own eyes
   (:meth:`Position.is_eye_like`) nor puts its own stones in atari;
4. passes when no such move is left.

With ``cleanup=True`` (GTP ``kgs-genmove_cleanup``) step 3 drops the self-atari
filter, so it keeps playing while any legal move outside its own eyes exists: that
is what removes the opponent's dead stones before the game is scored.

It never resigns. The same seed and the same sequence of positions give the same moves.
"""

from __future__ import annotations

import random
from typing import Protocol, runtime_checkable

from engine._coords import Point
from engine._rules import Color, IllegalMove, Move, Position

__all__ = ["HeuristicPlayer", "Player"]


@runtime_checkable
class Player(Protocol):
    """Anything that picks a move for the side to move in a position."""

    def choose(self, position: Position) -> Move:
        """A legal move (a stone, a pass or a resignation) for ``position.to_play``."""
        ...


class HeuristicPlayer:
    """Captures, escapes atari, avoids self-atari and own eyes, else plays at random."""

    def __init__(self, seed: int | None = 0, *, cleanup: bool = False) -> None:
        self._rng = random.Random(seed)
        self.cleanup = cleanup

    def choose(self, position: Position) -> Move:
        return self.choose_move(position, cleanup=self.cleanup)

    def choose_move(self, position: Position, *, cleanup: bool = False) -> Move:
        """:meth:`choose`, with the cleanup behaviour chosen per call."""
        color = position.to_play
        if position.is_game_over:
            return Move.pass_(color)
        for point in self._tactical_moves(position, color):
            if position.is_legal(Move.play(color, point)):
                return Move.play(color, point)
        return self._random_move(position, color, cleanup)

    # ---- the rules of thumb ---------------------------------------------------------

    def _tactical_moves(self, position: Position, color: Color) -> list[Point]:
        """Capturing moves (most stones first), then atari escapes (biggest group first)."""
        capture_size: dict[Point, int] = {}
        rescues: list[tuple[int, Point]] = []
        for group_color, stones, libs in position.groups():
            if len(libs) != 1:
                continue
            (lib,) = libs
            if group_color is color:
                # Extending is a real escape only if the group then has room to breathe.
                try:
                    after = position.play(Move.play(color, lib))
                except IllegalMove:
                    continue
                if len(after.liberties(lib)) > 1:
                    rescues.append((len(stones), lib))
            else:
                capture_size[lib] = capture_size.get(lib, 0) + len(stones)
        captures = sorted(capture_size, key=lambda p: (-capture_size[p], self._rng.random()))
        rescues.sort(key=lambda item: (-item[0], self._rng.random()))
        return captures + [p for _, p in rescues if p not in capture_size]

    def _random_move(self, position: Position, color: Color, cleanup: bool) -> Move:
        candidates = [p for p in position.empty_points() if not position.is_eye_like(p, color)]
        self._rng.shuffle(candidates)
        for point in candidates:
            move = Move.play(color, point)
            try:
                after = position.play(move)
            except IllegalMove:
                continue
            if cleanup or len(after.liberties(point)) > 1:
                return move
        return Move.pass_(color)
