"""The app's networked half against a real embedded network on loopback.

Each test starts the app with its embedded relay and bot peers (real ``net.Node`` s on
the network thread), drives it with Pilot, and waits on conditions with a deadline,
never on sleeps. How responsive the UI stays meanwhile is measured by
``benchmarks/bench_tui.py`` (a timing, so not asserted here).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Tree

from engine import Color, HeuristicPlayer
from p2pgo_tui import GameSettings, P2PGoApp, make_app
from p2pgo_tui._dialogs import ChallengeDialog
from p2pgo_tui._netmodel import LinkKind, NetStatus, NetworkHost, NetworkPlan
from p2pgo_tui._peers_screen import NetGameScreen, PeersScreen
from p2pgo_tui._relay_screen import RelayScreen
from p2pgo_tui._session import Phase

from .conftest import current, run

# Generous: the machine is shared (2 cores); the network is usually up in ~2-4 s.
DEADLINE_S = 45.0


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str) -> None:
    """Let the app run until ``condition()`` holds (an AssertionError after the deadline)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def status(app: P2PGoApp) -> NetStatus:
    """The network's status, read through a call so that type checkers do not narrow it."""
    return app.network.status


def build(tmp_path: Path, *, operator: bool = False, bots: int = 2) -> P2PGoApp:
    return make_app(
        ai=HeuristicPlayer(1),
        settings=GameSettings(size=5, komi=0.5),
        player_name="Tester",
        network=NetworkPlan(tmp_path / "data", bots=bots),
        operator=operator,
    )


def test_the_peers_screen_lists_the_bots_and_a_challenge_plays_a_real_p2p_game(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        app = build(tmp_path)
        async with app.run_test(size=(150, 40)) as pilot:
            assert status(app) is NetStatus.STARTING  # the board did not wait
            await until(pilot, lambda: status(app) is not NetStatus.STARTING, "network")
            assert status(app) is NetStatus.UP, app.network.error
            await pilot.press("f3")
            peers = current(app)
            assert isinstance(peers, PeersScreen)

            def listed() -> bool:
                snap = peers.snapshot
                return snap is not None and sorted(p.name for p in snap.peers) == [
                    "bot-1",
                    "bot-2",
                ]

            await until(pilot, listed, "both bots in the directory")
            assert peers.snapshot is not None
            (relay,) = peers.snapshot.relays
            assert relay.reserved and relay.link is LinkKind.DIRECT
            table = peers.query_one("#peers", DataTable)
            assert table.row_count == 2
            graph = peers.query_one("#graph", Tree)
            (branch,) = graph.root.children
            assert "embedded relay" in str(branch.label)
            assert sorted(str(leaf.label).split()[0] for leaf in branch.children) == [
                "bot-1",
                "bot-2",
            ]

            table.move_cursor(row=0)
            bot = peers.selected_peer()
            await pilot.press("c")
            await until(pilot, lambda: isinstance(current(app), ChallengeDialog), "dialog")
            await pilot.press("enter")  # the default: untimed
            await until(pilot, lambda: isinstance(current(app), NetGameScreen), "game screen")
            game = current(app)
            assert isinstance(game, NetGameScreen) and game.peer_id == bot
            assert not game.time_control.timed and not game.query("#clocks")
            session = game.session

            def replied(moves: int) -> bool:
                return session.position.move_number == moves

            assert session.human is Color.BLACK and session.size == 5
            for n, vertex in enumerate(["C3", "B2", "D4"], start=1):
                game.board.cursor = _point(vertex)
                await pilot.press("enter")
                # The peer's reply arrives over the game stream and lands on the board.
                await until(pilot, functools.partial(replied, 2 * n), f"the bot's reply {n}")
                assert session.position.last_move is not None
                assert session.position.last_move.color is Color.WHITE
            await pilot.press("r")
            await pilot.press("y")
            await until(pilot, lambda: game.result is not None or bool(game.failure), "result")
            assert game.result is not None, game.failure
            assert game.result.result == "W+R" and game.result.phase == "finished"
            assert game.result.moves == 7 and game.result.record_id
            assert session.phase is Phase.FINISHED

    run(scenario)


def _point(vertex: str) -> tuple[int, int]:
    from engine import from_gtp

    point = from_gtp(vertex, 5)
    assert point is not None
    return point


def test_the_operator_view_shows_live_metrics_of_the_embedded_relay(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = build(tmp_path, operator=True, bots=1)
        async with app.run_test(size=(150, 45)) as pilot:
            relay = current(app)
            assert isinstance(relay, RelayScreen)  # --operator opens straight into it
            await until(pilot, lambda: status(app) is NetStatus.UP, "network")

            def good() -> Any:
                histories = list(relay.histories.values())
                return histories[0].last_good() if histories else None

            def everyone_seen() -> bool:
                # The relay samples its state twice a second: wait for both reservations
                # and both directory entries (a bot registers after its node is up).
                sample = good()
                return (
                    sample is not None
                    and sample.reservations >= 2
                    and sample.directory_entries >= 2
                )

            await until(pilot, everyone_seen, "a scrape that shows the player and the bot")
            first = good()
            assert first.peers >= 2 and first.directory_entries == 2
            assert first.uptime_s() is not None
            members = relay.query_one("#members", DataTable)
            assert members.row_count == 1
            assert "reachable" in str(members.get_row_at(0)[2])
            # Activity: listing peers asks the relay's directory (and pings over circuits).
            for _ in range(3):
                await app.network.snapshot()
            await until(
                pilot,
                lambda: good().latency_count > first.latency_count,
                "the latency histogram to grow",
            )
            later = good()
            assert later.fetched_at > first.fetched_at
            assert sum(c for _, c in later.latency_buckets if c) > 0
            assert "requests, mean" in str(relay.query_one("#latency").render())

    run(scenario)


def test_without_a_network_the_screens_say_so(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = make_app(ai=HeuristicPlayer(1), settings=GameSettings(size=5))
        async with app.run_test(size=(120, 40)) as pilot:
            assert status(app) is NetStatus.OFF
            await pilot.press("f3")
            await pilot.pause()
            peers = current(app)
            assert isinstance(peers, PeersScreen)
            assert "no network" in str(peers.query_one("#status").render())
            await pilot.press("c")  # nothing to challenge: a notice, not a crash
            await pilot.press("f5")
            await pilot.pause()
            assert isinstance(current(app), RelayScreen)
            assert "no relay metrics" in str(current(app).query_one("#status").render())

    run(scenario)


def test_the_operator_view_follows_a_given_relay_and_its_metrics(tmp_path: Path) -> None:
    """``--operator --relay ADDR --metrics URL``: a relay this app does not run."""

    async def scenario() -> None:
        remote = NetworkHost(NetworkPlan(tmp_path / "remote", bots=0))
        await remote.start()
        try:
            (embedded,) = remote.relays()
            plan = NetworkPlan(
                tmp_path / "operator",
                embedded=False,
                relays=(embedded.addr,),
                metrics_urls=(embedded.metrics_url,),
            )
            app = make_app(ai=HeuristicPlayer(1), network=plan, operator=True)
            async with app.run_test(size=(150, 45)) as pilot:
                screen = current(app)
                assert isinstance(screen, RelayScreen)
                (endpoint,) = screen.endpoints
                assert endpoint.peer_id == embedded.peer_id
                assert endpoint.metrics_url == embedded.metrics_url

                def seen() -> bool:
                    history = screen.histories.get(embedded.metrics_url)
                    sample = history.last_good() if history else None
                    # The remote's own player and this operator's node are connected.
                    return (
                        sample is not None
                        and sample.peers >= 2
                        and screen.pings.get(embedded.peer_id) is not None
                    )

                await until(pilot, seen, "the given relay's metrics and a ping to it")
                await until(
                    pilot,
                    lambda: "ms" in str(screen.query_one("#members", DataTable).get_row_at(0)[3]),
                    "the ping column",
                )
                row = screen.query_one("#members", DataTable).get_row_at(0)
                assert "reachable" in str(row[2])
        finally:
            await remote.stop()

    run(scenario)
