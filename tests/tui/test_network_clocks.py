"""Timed network games: the challenge's time control, both clocks on screen, a loss on
time, and a resignation on the opponent's turn.

The pure pieces (parsing, the countdown, the clock face) are tested without a
terminal; two Pilot scenarios play against a real bot on the embedded network (the
net enforces the clocks; the screen only shows them). Waits poll with a deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input, Static

from engine import Color, Move
from p2pgo_tui import P2PGoApp
from p2pgo_tui._dialogs import ChallengeDialog, parse_main_time
from p2pgo_tui._netmodel import ClockSnapshot, NetStatus, TimeControl
from p2pgo_tui._peers_screen import (
    ClockFace,
    GameClocks,
    NetGameScreen,
    PeersScreen,
    clock_face,
    format_clock,
)
from p2pgo_tui._session import Phase
from p2pgo_tui._settings import GameSettings, SettingsError

from .conftest import current, run
from .test_network import _point, build, status, until

# ---- without a network ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("", 0), ("0", 0), ("5", 300), ("0.5", 30), ("30s", 30), ("2S", 2), ("1:30", 90)],
)
def test_main_time_reads_minutes_seconds_or_m_ss(text: str, seconds: int) -> None:
    assert parse_main_time(text) == seconds


@pytest.mark.parametrize("text", ["-1", "abc", "1:75", "1:x", "0.2s", "nan", "1e999", "s"])
def test_bad_main_times_say_what_is_wrong(text: str) -> None:
    with pytest.raises(SettingsError, match="main time"):
        parse_main_time(text)


@given(st.text(max_size=12))
@settings(max_examples=60, deadline=None)
def test_any_typed_main_time_is_seconds_or_a_settings_error(text: str) -> None:
    try:
        seconds = parse_main_time(text)
    except SettingsError:
        return
    assert isinstance(seconds, int) and seconds >= 0


def test_time_controls_are_validated_and_described() -> None:
    assert TimeControl().describe() == "untimed" and not TimeControl().timed
    assert TimeControl(300, 3).describe() == "5 min + 3 s"
    assert TimeControl(2).describe() == "2 s"
    for bad in [(-1, 0), (0, -1), (10**6, 0), (60, 10**4)]:
        with pytest.raises(SettingsError):
            TimeControl(*bad)


def test_only_the_running_clock_counts_down_and_never_below_zero() -> None:
    snap = ClockSnapshot(30.0, 20.0, Color.BLACK, taken_at=100.0)
    assert snap.remaining(Color.BLACK, 104.5) == pytest.approx(25.5)
    assert snap.remaining(Color.WHITE, 104.5) == 20.0
    assert snap.remaining(Color.BLACK, 200.0) == 0.0
    face = clock_face(snap, 104.5, flagged=Color.WHITE)
    assert face.running is None and face.white_s == 0.0 and face.black_s == pytest.approx(25.5)


def test_clocks_show_tenths_only_when_time_runs_low() -> None:
    assert format_clock(299.9) == "4:59"
    assert format_clock(3723.0) == "1:02:03"
    assert format_clock(9.87) == "0:09.8"
    assert format_clock(-1.0) == "0:00.0"


def test_the_challenge_dialog_returns_a_time_control_or_shows_what_is_wrong() -> None:
    answers: list[TimeControl | None] = []

    class Host(App[None]):
        def on_mount(self) -> None:
            dialog = ChallengeDialog("bot-1", GameSettings(), TimeControl(300, 3))
            self.push_screen(dialog, answers.append)

    async def scenario() -> None:
        app = Host()
        async with app.run_test() as pilot:
            await pilot.pause()
            dialog = app.screen
            main = dialog.query_one("#main-time", Input)
            assert main.value == "5" and dialog.query_one("#increment", Input).value == "3"
            main.value = "soon"
            await pilot.press("enter")
            assert "main time" in str(dialog.query_one("#error", Static).render())
            assert answers == []
            main.value = "1:30"
            await pilot.press("enter")
            await pilot.pause()
            assert answers == [TimeControl(90, 3)]

    run(scenario)


# ---- against a bot on the embedded network ---------------------------------------


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Bots answer a move only once the gate opens (after the first move of the game)."""
    # Imported here: libp2p costs seconds, and only these scenarios need it at once.
    import p2pgo_tui._network as network_module
    from net import AiPolicy, GameSession

    opened = threading.Event()

    class GatedAi(AiPolicy):
        def choose(self, session: GameSession) -> Move:
            if not opened.wait(timeout=60):
                raise TimeoutError("the test never opened the gate")
            return super().choose(session)

    monkeypatch.setattr(network_module, "AiPolicy", GatedAi)
    yield opened
    opened.set()  # abandoned bot threads finish


async def _challenge(
    pilot: Pilot[Any], app: P2PGoApp, main_time: str, increment: str
) -> NetGameScreen:
    """Challenge the only bot through the dialog; returns the game screen."""
    await until(pilot, lambda: status(app) is not NetStatus.STARTING, "network")
    assert status(app) is NetStatus.UP
    await pilot.press("f3")
    peers = current(app)
    assert isinstance(peers, PeersScreen)
    await until(pilot, lambda: bool(peers.snapshot and peers.snapshot.peers), "the bot listed")
    await pilot.press("c")
    await until(pilot, lambda: isinstance(current(app), ChallengeDialog), "the dialog")
    dialog = current(app)
    dialog.query_one("#main-time", Input).value = main_time
    dialog.query_one("#increment", Input).value = increment
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(current(app), NetGameScreen), "the game screen")
    game = current(app)
    assert isinstance(game, NetGameScreen)
    return game


def _running(game: NetGameScreen) -> Color | None:
    clock = game.link.clock
    return clock.running if clock is not None else None


def _face(game: NetGameScreen) -> ClockFace:
    face = game.query_one(GameClocks).face
    assert face is not None
    return face


def _shown(game: NetGameScreen) -> str:
    return str(game.query_one("#clocks", GameClocks).render())


def test_a_timed_game_shows_both_clocks_counting_and_a_resign_on_their_turn_ends_it(
    tmp_path: Path, gate: threading.Event
) -> None:
    async def scenario() -> None:
        app = build(tmp_path, bots=1)
        async with app.run_test(size=(150, 40)) as pilot:
            game = await _challenge(pilot, app, "1", "5")
            assert game.time_control == TimeControl(60, 5)
            assert game.session.human is Color.BLACK
            # The accept starts black's clock; the screen counts it down between reports.
            await until(pilot, lambda: _running(game) is Color.BLACK, "black's clock running")
            first = game.clock_face()
            assert first is not None and first.white_s == 60.0
            await until(
                pilot,
                lambda: _face(game).black_s < first.black_s - 0.4,
                "black's clock to go down on screen",
            )
            assert "▶ Black" in _shown(game) and "1 min + 5 s" in _shown(game)

            game.board.cursor = _point("C3")
            await pilot.press("enter")
            # Our move is acked: white's clock runs, black got the increment.
            await until(pilot, lambda: _running(game) is Color.WHITE, "white's clock running")
            after = game.clock_face()
            assert after is not None and 60.0 < after.black_s <= 65.0
            await until(
                pilot,
                lambda: _face(game).white_s < 59.6,
                "white's clock to go down on screen",
            )
            assert "▶ White" in _shown(game)
            assert game.session.ai_to_move  # the bot is thinking (held by the gate)

            await pilot.press("r")
            await pilot.press("y")
            await until(pilot, lambda: game.result is not None or bool(game.failure), "result")
            assert game.result is not None, game.failure
            assert game.result.result == "W+R" and game.result.moves == 2
            assert game.session.phase is Phase.FINISHED
            assert "White wins by resignation" in game.panel.view.result
            face = game.clock_face()
            assert face is not None and face.running is None

    run(scenario)


def test_running_out_of_time_loses_the_game_on_screen(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = build(tmp_path, bots=1)
        async with app.run_test(size=(150, 40)) as pilot:
            game = await _challenge(pilot, app, "2s", "0")
            assert game.time_control == TimeControl(2, 0)
            # The player does not move: black's flag falls (2 s + the net's grace).
            await until(pilot, lambda: game.result is not None or bool(game.failure), "result")
            assert game.result is not None, game.failure
            assert game.result.result == "W+Time" and game.result.moves == 0
            assert game.result.record_id  # signed by both and stored
            assert game.session.phase is Phase.FINISHED
            assert game.flagged() is Color.BLACK
            assert game.panel.view.result.startswith("Black lost on time")
            assert "lost on time" in game.panel.view.status
            face = game.query_one(GameClocks).face
            assert face is not None and face.flagged is Color.BLACK and face.black_s == 0.0
            assert face.running is None
            assert "Black 0:00.0  lost on time" in _shown(game)

    run(scenario)
