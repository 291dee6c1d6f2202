"""The Rounds screen and the embedded federated rounds, against a real embedded network.

The Pilot tests start the app's embedded relay (which coordinates rounds) and bot peers
that train the shipped Go network on their own self-play games; training is cut to a
few steps so a round takes seconds. The rest checks the pieces without a network: the
relay's round metrics as the operator view reads them, and the privacy arithmetic the
embedded settings promise.
"""

from __future__ import annotations

import types
from collections import Counter, deque
from pathlib import Path
from typing import Any

import cbor2
import pytest
from prometheus_client import generate_latest
from textual.widgets import DataTable

from engine import GameRecord, HeuristicPlayer, Position, Rules, score
from fl import PrivacyLedger
from net import CoordinatorReport, RelayMetrics
from p2pgo_tui import GameSettings, P2PGoApp, make_app
from p2pgo_tui._dialogs import ConfirmDialog
from p2pgo_tui._fl_runtime import embedded_round_settings
from p2pgo_tui._model_choice import ModelChoice
from p2pgo_tui._netmodel import NetStatus, NetworkPlan
from p2pgo_tui._relay_screen import RelayScreen
from p2pgo_tui._rounds_screen import RoundsScreen, budget_text
from p2pgo_tui._roundsmodel import MyStatus, RoundsView
from p2pgo_tui._scrape import parse_metrics

from .conftest import MemoryStorage, current, run
from .test_network import until


def _storage(games: int = 1) -> MemoryStorage:
    """The player's own finished games (what local training uses)."""
    storage = MemoryStorage()
    for i in range(games):
        player = HeuristicPlayer(500 + i)
        position = Position(9, Rules.named("chinese"))
        while not position.is_game_over:
            position = position.play(player.choose(position))
        storage.save(
            GameRecord.from_position(position, result=score(position).result(), game_id=f"g{i}")
        )
    return storage


def _app(
    tmp_path: Path, *, bots: int, budget: float | None = None, models: ModelChoice | None = None
) -> P2PGoApp:
    plan = NetworkPlan(
        tmp_path / "data", bots=bots, train_steps=3, bot_games=1, epsilon_budget=budget
    )
    return make_app(
        ai=HeuristicPlayer(1),
        settings=GameSettings(size=5, komi=0.5),
        storage=_storage(),
        network=plan,
        models=models,
    )


def _view(screen: RoundsScreen) -> RoundsView:
    assert screen.view is not None
    return screen.view


async def _rounds_screen(app: P2PGoApp, pilot: Any) -> RoundsScreen:
    await until(pilot, lambda: app.network.status is not NetStatus.STARTING, "network")
    assert app.network.status is NetStatus.UP, app.network.error
    await pilot.press("f4")
    screen = current(app)
    assert isinstance(screen, RoundsScreen)
    # The player's participant starts after the network is up (with the bots): its
    # ledger read is what says it is there.
    await until(
        pilot,
        lambda: screen.view is not None and screen.view.epsilon_spent is not None,
        "the player's participant",
    )
    return screen


def test_one_key_joins_a_round_that_completes_and_changes_the_model(
    tmp_path: Path, notices: Any
) -> None:
    models = ModelChoice(tmp_path / "data")
    shipped = models.version

    async def scenario() -> None:
        app = _app(tmp_path, bots=3, models=models)
        async with app.run_test(size=(160, 50)) as pilot:
            screen = await _rounds_screen(app, pilot)
            held = _view(screen).model_version
            assert _view(screen).my_status is MyStatus.IDLE
            await pilot.press("j")
            await until(pilot, lambda: isinstance(current(app), ConfirmDialog), "the question")
            question = str(current(app).query_one("Label").render())
            # The ledger's epsilon_after for one round of the embedded settings.
            assert "costs epsilon 0.595" in question and "leaving 0.405" in question
            assert "no sampling amplification" in question
            await pilot.press("y")

            def verified() -> bool:
                history = _view(screen).history
                return bool(history) and history[-1].mine in ("verified", "failed", "refused")

            await until(pilot, verified, "the round to end")
            view = _view(screen)
            last = view.history[-1]
            assert (last.outcome, last.mine) == ("completed", "verified"), last
            assert last.participants == 4 and last.loss is not None
            assert last.model_version and last.model_version != last.parent_version
            # The model I hold now is the round's new one (adopted after verifying it).
            await until(
                pilot, lambda: _view(screen).model_version == last.model_version, "adoption"
            )
            assert held in ("", last.parent_version)
            assert _view(screen).my_status is MyStatus.VERIFIED
            assert _view(screen).epsilon_spent == pytest.approx(0.5945, abs=1e-3)
            assert "0.595 of 1 spent" in str(screen.query_one("#privacy").render())
            # The AI follows: the adopted model is installed as the AI's model, and
            # the table marks it.
            await until(pilot, lambda: models.version == last.model_version, "the AI's model")
            assert models.version != shipped
            screen.action_refresh()
            table = screen.query_one("#versions", DataTable)
            await until(pilot, lambda: "◀ AI" in str(table.get_row_at(0)[2]), "the mark")
            assert table.row_count == 1
            row = [str(cell) for cell in table.get_row_at(0)]
            assert row[:2] == ["1", "completed"]
            assert row[2] == f"{last.model_version[:10]} ◀ AI"
            assert row[-1] == "verified"
            assert any("The AI now plays with model" in n for n in notices())
            assert any("Round 1 completed with 4 peers" in n for n in notices())
            # The operator view: the embedded relay exports the round on /metrics.
            await pilot.press("f5")
            relay = current(app)
            assert isinstance(relay, RelayScreen)

            def listed() -> bool:
                return any(1 in rows for rows in relay.round_rows.values())

            await until(pilot, listed, "the round in the relay's history")
            history = relay.query_one("#rounds", DataTable)
            first = [str(cell) for cell in history.get_row_at(0)]
            assert first[:3] == ["1", "4", "completed"]
            assert first[3] == last.model_version[:16]
            assert "1 completed, 0 aborted" in str(relay.query_one("#rounds").border_title)

    run(scenario)


def test_a_round_over_the_budget_is_refused_before_anything_is_spent(
    tmp_path: Path, notices: Any
) -> None:
    async def scenario() -> None:
        app = _app(tmp_path, bots=0, budget=0.5)  # one embedded round costs ~0.59
        async with app.run_test(size=(160, 50)) as pilot:
            screen = await _rounds_screen(app, pilot)
            await pilot.press("j")
            await until(pilot, lambda: any("Join refused" in n for n in notices()), "refusal")
            (refusal,) = [n for n in notices() if "Join refused" in n]
            assert "epsilon 0.595 in total" in refusal and "budget of 0.5" in refusal
            assert not isinstance(current(app), ConfirmDialog)  # nothing to confirm
            await until(pilot, lambda: _view(screen).taken_at > 0, "a view")
            assert _view(screen).my_status is MyStatus.IDLE
            assert _view(screen).epsilon_budget == 0.5
        ledger = tmp_path / "data" / "net" / "player" / "fl" / "ledger.cbor"
        assert not ledger.exists()  # not a round's worth of budget was recorded

    run(scenario)


def test_joining_then_leaving_withdraws_from_the_next_round(tmp_path: Path, notices: Any) -> None:
    async def scenario() -> None:
        # A spent round already in the ledger: the quote starts from it.
        ledger_dir = tmp_path / "data" / "net" / "player" / "fl"
        ledger_dir.mkdir(parents=True)
        event = embedded_round_settings(NetworkPlan(tmp_path)).params(1).privacy_event()
        spent = PrivacyLedger().record(event)
        (ledger_dir / "ledger.cbor").write_bytes(cbor2.dumps(spent.to_dict(), canonical=True))
        app = _app(tmp_path, bots=0)  # no round can start: the player stays "joining"
        async with app.run_test(size=(160, 50)) as pilot:
            screen = await _rounds_screen(app, pilot)
            await pilot.press("j")
            await until(pilot, lambda: isinstance(current(app), ConfirmDialog), "the question")
            question = str(current(app).query_one("Label").render())
            assert "from 0.595 to 0.868" in question
            await pilot.press("y")
            await until(pilot, lambda: _view(screen).my_status is MyStatus.JOINING, "joining")
            await pilot.press("l")
            await until(pilot, lambda: _view(screen).my_status is MyStatus.IDLE, "left")
            assert any("You will not join the next round" in n for n in notices())
            await pilot.press("l")  # nothing to leave: a notice, not an error
            await until(pilot, lambda: any("Cannot leave" in n for n in notices()), "notice")

    run(scenario)


class _Coordinator:
    """What `RelayMetrics` reads from an `FlCoordinatorService`."""

    def __init__(self) -> None:
        self.sessions = ("a", "b", "c")
        self.reports: deque[CoordinatorReport] = deque()
        self.rounds_ended = 0

    def end(self, round_id: int, completed: bool, survivors: int, seconds: float) -> None:
        self.reports.append(
            CoordinatorReport(
                round_id=round_id,
                completed=completed,
                reason="" if completed else "too few",
                parent_version=f"{round_id - 1:064x}",
                model_version=f"{round_id:064x}" if completed else "",
                ready=survivors,
                selected=(),
                survivors=tuple(str(i) for i in range(survivors)),
                dropped=(),
                stages=(),
                rejections=0,
                blob_failures=0,
                seconds=seconds,
                bytes_in={},
                bytes_out={},
            )
        )
        self.rounds_ended += 1


def test_a_coordinating_relay_exports_its_round_history_for_the_operator() -> None:
    node = types.SimpleNamespace(
        connected_peers=lambda: [],
        stats=types.SimpleNamespace(rejections=types.SimpleNamespace(by_peer={})),
    )
    relay = types.SimpleNamespace(
        stats=types.SimpleNamespace(
            circuits_active=0,
            reservations_accepted=0,
            circuits_opened=0,
            bytes_relayed=0,
            refused=Counter(),
        ),
        active_reservations=lambda: 0,
    )
    rounds = _Coordinator()
    metrics = RelayMetrics(node, relay, rounds=rounds)  # type: ignore[arg-type]
    for round_id in range(1, 14):
        rounds.end(round_id, completed=round_id != 12, survivors=3 + round_id % 2, seconds=2.5)
        if round_id in (1, 13):
            metrics.sample()
    sample = parse_metrics(generate_latest(metrics.registry).decode())
    assert sample.ok
    assert sample.rounds["p2pgo_rounds_total{outcome=completed}"] == 12
    assert sample.rounds["p2pgo_rounds_total{outcome=aborted}"] == 1
    assert sample.rounds["p2pgo_round_last_id"] == 13
    assert sample.rounds["p2pgo_round_sessions"] == 3
    rows = sample.round_history
    assert [r.round_id for r in rows] == list(range(4, 14))  # the last ten
    aborted = next(r for r in rows if r.round_id == 12)
    assert aborted.outcome == "aborted" and aborted.model_version == f"{11:064x}"
    assert rows[-1].participants == 4 and rows[-1].seconds == 2.5
    assert rows[-1].model_version == f"{13:064x}"


def test_the_embedded_rounds_cost_what_the_settings_promise() -> None:
    event = embedded_round_settings(NetworkPlan(Path("."))).params(1).privacy_event()
    assert not event.amplified  # peers all take part: no sampling amplification claimed
    ledger = PrivacyLedger(epsilon_budget=1.0)
    one = ledger.epsilon_after(event)
    two = ledger.record(event).epsilon_after(event)
    three = ledger.record(event).record(event).epsilon_after(event)
    assert one == pytest.approx(0.5945, abs=1e-3)
    assert two < 1.0 < three  # a budget of epsilon 1 allows two rounds
    assert "0.595 of 1 spent · 0.405 left" in budget_text(one, 1.0, 1e-5).plain
    assert "reading" in budget_text(None, 1.0, 1e-5).plain


def test_without_a_network_the_rounds_screen_says_so_and_join_is_a_notice(notices: Any) -> None:
    async def scenario() -> None:
        app = make_app(ai=HeuristicPlayer(1), settings=GameSettings(size=5))
        async with app.run_test(size=(140, 45)) as pilot:
            titles = {c.title for c in app.get_system_commands(app.screen)}
            assert "Rounds" in titles  # the palette reaches the screen too
            await pilot.press("f4")
            await pilot.pause()
            screen = current(app)
            assert isinstance(screen, RoundsScreen)
            assert "no network" in str(screen.query_one("#status").render())
            own = {c.title for c in app.get_system_commands(app.screen)}
            assert {"Join the next round", "Leave the round"} <= own
            await pilot.press("j")
            await until(pilot, lambda: any("Cannot join" in n for n in notices()), "notice")
            assert "no network" in next(n for n in notices() if "Cannot join" in n)

    run(scenario)
