"""One network game's link to the Board screen, and its time control and clocks.

:class:`NetGameLink` joins one peer-to-peer game to the Board screen: it is the
board's :class:`~p2pgo_tui.AiOpponent` (``choose`` runs in the board's worker thread)
and the net side's source of our moves (its game policy runs in trio's worker
threads). The two sides meet only through two thread-safe queues and one attribute
the net thread replaces (the latest :class:`ClockSnapshot` of a timed game, which the
screen reads on a timer); the net thread never calls into the UI.

Like :mod:`p2pgo_tui._netmodel`, which re-exports these names, nothing here imports
trio or libp2p.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from p2pgo_tui._engine import Color, Move, Position
from p2pgo_tui._settings import SettingsError

__all__ = [
    "LOW_TIME_S",
    "ClockSnapshot",
    "NetGameEnded",
    "NetGameLink",
    "TimeControl",
]

# Below this a clock is shown in the warning colour, with tenths of a second.
LOW_TIME_S = 10.0
_MAX_MAIN_TIME_S = 3 * 60 * 60
_MAX_INCREMENT_S = 600


@dataclass(frozen=True, slots=True)
class TimeControl:
    """A challenge's Fischer time control: main time, plus an increment after each move.

    A main time of 0 means untimed (the increment is then ignored). Whole seconds,
    as ``net.GameTerms`` carry them.
    """

    main_time_s: int = 0
    increment_s: int = 0

    def __post_init__(self) -> None:
        if type(self.main_time_s) is not int or not 0 <= self.main_time_s <= _MAX_MAIN_TIME_S:
            raise SettingsError(f"main time must be 0 to {_MAX_MAIN_TIME_S // 60} minutes")
        if type(self.increment_s) is not int or not 0 <= self.increment_s <= _MAX_INCREMENT_S:
            raise SettingsError(f"the increment must be 0 to {_MAX_INCREMENT_S} seconds")

    @property
    def timed(self) -> bool:
        return self.main_time_s > 0

    def describe(self) -> str:
        """``5 min + 3 s``, ``30 s``, or ``untimed``."""
        if not self.timed:
            return "untimed"
        minutes, seconds = divmod(self.main_time_s, 60)
        main = f"{minutes} min" if not seconds else f"{self.main_time_s} s"
        return main + (f" + {self.increment_s} s" if self.increment_s else "")


@dataclass(frozen=True, slots=True)
class ClockSnapshot:
    """Both clocks of a timed game as the net last reported them (a ``game_clock`` event).

    ``taken_at`` is ``time.monotonic()`` when it was read: the running side's clock
    has gone down by the time since then (the screen counts down locally between
    reports).
    """

    black_s: float
    white_s: float
    running: Color | None  # whose clock runs (None: stopped, or a move in flight)
    taken_at: float

    def remaining(self, color: Color, now: float) -> float:
        """Seconds ``color`` has left at ``now`` (monotonic), never below zero."""
        left = self.black_s if color is Color.BLACK else self.white_s
        if color is self.running:
            left -= max(0.0, now - self.taken_at)
        return max(0.0, left)


class NetGameEnded(Exception):
    """The network game ended (or broke) while the board waited for the opponent."""


class NetGameLink:
    """One network game between the board and the net thread (see the module docstring).

    Board side: :meth:`push_human_moves` after every change and :meth:`choose` for
    the opponent's move. Net side: :meth:`deliver` the game's moves so far and
    :meth:`next_move` for ours.
    """

    def __init__(
        self,
        human: Color,
        *,
        opponent_name: str = "peer",
        time_control: TimeControl | None = None,
    ) -> None:
        self.human = human
        self.opponent_name = opponent_name
        self.time_control = time_control = time_control or TimeControl()
        # Replaced whole by the net thread (one reference swap): the screen reads it.
        self.clock: ClockSnapshot | None = None
        if time_control.timed:
            main = float(time_control.main_time_s)
            self.clock = ClockSnapshot(main, main, None, time.monotonic())
        self._ours: queue.Queue[Move | None] = queue.Queue()
        self._theirs: queue.Queue[Move | None] = queue.Queue()
        self._pushed = 0  # our moves handed to the net (board side only)
        self._delivered = 0  # their moves handed to the board (net side only)
        self._lock = threading.Lock()
        self.closed_reason = ""

    # -- the board's side (worker threads and the UI loop) -----------------------

    def push_human_moves(self, position: Position) -> None:
        """Hand the human's moves in ``position`` that the net has not seen yet."""
        ours = [m for m in position.history() if m.color is self.human]
        with self._lock:
            fresh, self._pushed = ours[self._pushed :], max(self._pushed, len(ours))
        for move in fresh:
            self._ours.put(move)

    def choose(self, position: Position) -> Move:
        """The opponent's move (the board's ``AiOpponent``): waits for it to arrive."""
        self.push_human_moves(position)
        move = self._theirs.get()
        if move is None:
            raise NetGameEnded(self.closed_reason or "the game ended")
        return move

    # -- the net's side (trio worker threads) ---------------------------------------

    def deliver(self, moves: Sequence[Move]) -> None:
        """The game's moves so far: pass the opponent's new ones to the board."""
        theirs = [m for m in moves if m.color is not self.human]
        with self._lock:
            fresh, self._delivered = theirs[self._delivered :], max(self._delivered, len(theirs))
        for move in fresh:
            self._theirs.put(move)

    def update_clock(self, snapshot: ClockSnapshot) -> None:
        """The net's latest view of both clocks (any thread)."""
        self.clock = snapshot

    def next_move(self) -> Move:
        """Our next move (blocks until the human plays; resign once the link closes)."""
        move = self._ours.get()
        return Move.resign(self.human) if move is None else move

    def close(self, reason: str) -> None:
        """Wake both sides for good (the game ended, failed, or the app closes)."""
        if not self.closed_reason:
            self.closed_reason = reason
        self._ours.put(None)
        self._theirs.put(None)
