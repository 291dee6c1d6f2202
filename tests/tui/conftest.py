"""Fakes and helpers for the terminal app's tests (Pilot drives the real app)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen

from engine import Color, GameRecord, Move, Position, from_gtp
from p2pgo_tui import GameSession, P2PGoApp, Phase, StorageError, StoredGame

NOTICE_LOGGER = "p2pgo_tui._app"


class MemoryStorage:
    """A :class:`~p2pgo_tui.GameStorage` in memory."""

    def __init__(self) -> None:
        self.records: dict[str, GameRecord] = {}

    def save(self, record: GameRecord) -> str:
        rid = record.record_id
        self.records[rid] = record
        return rid

    def games(self) -> list[StoredGame]:
        return [
            StoredGame(rid, r.date, r.size, r.black.name, r.white.name, r.result, len(r.moves))
            for rid, r in reversed(self.records.items())
        ]

    def load(self, record_id: str) -> GameRecord:
        try:
            return self.records[record_id]
        except KeyError:
            raise StorageError(f"no game {record_id}") from None


class ScriptedAi:
    """Plays the given GTP vertices in order (skipping illegal ones), then passes."""

    def __init__(self, *vertices: str) -> None:
        self.vertices = list(vertices)
        self.calls = 0

    def choose(self, position: Position) -> Move:
        self.calls += 1
        color = position.to_play
        while self.vertices:
            point = from_gtp(self.vertices.pop(0), position.size)
            if point is not None and position.is_legal(Move.play(color, point)):
                return Move.play(color, point)
        return Move.pass_(color)


class GatedAi:
    """Passes, but only once ``gate`` is set: the test decides when the AI answers."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def choose(self, position: Position) -> Move:
        self.started.set()
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        return Move.pass_(position.to_play)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run an async Pilot scenario from a plain test function (no asyncio plugin needed)."""
    asyncio.run(scenario())  # type: ignore[arg-type]


async def settle(pilot: Pilot[Any], rounds: int = 200) -> None:
    """Wait until no worker runs and every message they posted has been handled."""
    app = pilot.app
    quiet = 0
    for _ in range(rounds):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if any(w.is_running for w in app.workers):
            quiet = 0
            continue
        quiet += 1
        if quiet >= 2:
            return
    raise AssertionError("the app never became idle")


@pytest.fixture
def notices(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """What the app told the player (its notifications, as logged)."""
    caplog.set_level(logging.INFO, logger=NOTICE_LOGGER)

    def read() -> list[str]:
        prefix = "notice: "
        return [
            r.getMessage().removeprefix(prefix) for r in caplog.records if r.name == NOTICE_LOGGER
        ]

    yield read


def phase(session: GameSession) -> Phase:
    """The session's phase, read through a call so that type checkers do not narrow it."""
    return session.phase


def current(app: P2PGoApp) -> Screen[Any]:
    """The app's current screen (a call, for the same reason)."""
    return app.screen


def stones(app: P2PGoApp) -> tuple[int, int]:
    """(black, white) stones on the board screen's position."""
    cells = app.screen.session.position.cells()  # type: ignore[attr-defined]
    return cells.count(Color.BLACK), cells.count(Color.WHITE)
