"""What the app needs from its collaborators, as ``typing.Protocol`` s.

:func:`p2pgo_tui.make_app` takes objects that satisfy these, so tests pass small fakes
and the real ones (the heuristic player today, the neural network later, the signed
game store) drop in without the screens knowing which they got. Every method here may
block: the app calls them from worker threads, never on the UI thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from p2pgo_tui._engine import GameRecord, Move, Position

__all__ = ["Advisor", "AiOpponent", "GameStorage", "StorageError", "StoredGame", "Suggestion"]


@runtime_checkable
class AiOpponent(Protocol):
    """Picks the AI's move (``engine``'s ``Player``: ``HeuristicPlayer``, later the net)."""

    def choose(self, position: Position) -> Move:
        """A move for ``position.to_play``: a stone, a pass or a resignation."""
        ...


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One candidate move from an :class:`Advisor`, with why it is suggested."""

    move: Move
    reason: str
    # The side to move's chance of winning after this move (0..1); None when the
    # advisor cannot estimate it (the heuristic player cannot; the network will).
    win_rate: float | None = None


@runtime_checkable
class Advisor(Protocol):
    """Suggests moves for the side to move (the hint action)."""

    def suggest(self, position: Position) -> Sequence[Suggestion]:
        """Candidates, best first; empty when there is nothing to suggest."""
        ...


class StorageError(Exception):
    """A game could not be stored, listed or loaded; the message says why."""


@dataclass(frozen=True, slots=True)
class StoredGame:
    """One row of the stored-games list."""

    record_id: str
    date: str
    size: int
    black: str
    white: str
    result: str
    moves: int


@runtime_checkable
class GameStorage(Protocol):
    """Where finished games go (the signed game store). Raises :class:`StorageError`."""

    def save(self, record: GameRecord) -> str:
        """Store ``record``; returns its id."""
        ...

    def games(self) -> list[StoredGame]:
        """Every stored game, newest first."""
        ...

    def load(self, record_id: str) -> GameRecord:
        """The game stored under ``record_id``."""
        ...
