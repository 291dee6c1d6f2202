"""The pieces between the board and the network that need no network: the game link,
the command line's network flags, and the lag probe."""

from __future__ import annotations

import argparse
import asyncio
import threading
from pathlib import Path

import pytest

from engine import Color, Move, Position
from p2pgo_tui._netmodel import (
    LagProbe,
    NetGameEnded,
    NetGameLink,
    NetStatus,
    NetworkError,
    NetworkHost,
    NetworkPlan,
    add_network_arguments,
    network_plan,
)


def test_the_link_hands_our_moves_to_the_net_and_theirs_to_the_board() -> None:
    link = NetGameLink(Color.BLACK)
    pos = Position(5)
    ours = Move.play(Color.BLACK, (2, 2))
    theirs = Move.play(Color.WHITE, (1, 1))
    after_ours = pos.play(ours)
    answer: list[Move] = []
    board = threading.Thread(target=lambda: answer.append(link.choose(after_ours)))
    board.start()
    assert link.next_move() == ours  # the net side gets our move...
    link.deliver([ours, theirs])  # ...and passes theirs back
    board.join(timeout=5)
    assert answer == [theirs]
    # Moves are handed over once, however often the same position is seen.
    link.push_human_moves(after_ours)
    link.deliver([ours, theirs])
    link.close("over")
    assert link.next_move() == Move.resign(Color.BLACK)  # closing wakes the net side
    with pytest.raises(NetGameEnded, match="over"):
        link.choose(after_ours.play(theirs))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_network_arguments(parser)
    return parser.parse_args(argv)


def test_network_flags_make_a_plan(tmp_path: Path) -> None:
    plan = network_plan(_args(), tmp_path)
    assert plan is not None and plan.embedded and plan.bots == 4 and not plan.relays
    assert plan.epsilon_budget is None  # the library's default budget, not the app's own
    plan = network_plan(_args("--epsilon-budget", "2.5"), tmp_path)
    assert plan is not None and plan.epsilon_budget == 2.5
    assert network_plan(_args("--no-embedded"), tmp_path) is None
    relay = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWFoo"
    url = "http://127.0.0.1:9100/metrics"
    plan = network_plan(_args("--relay", relay, "--metrics", url, "--operator"), tmp_path)
    assert plan is not None and not plan.embedded
    assert plan.relays == (relay,) and plan.metrics_urls == (url,)
    host = NetworkHost(plan)
    (endpoint,) = host.relays()  # the relay and its metrics are paired in order
    assert endpoint.metrics_url == url and endpoint.peer_id == "12D3KooWFoo"
    plan = network_plan(_args("--no-embedded", "--metrics", url), tmp_path)
    assert plan is not None and not plan.embedded and plan.metrics_urls == (url,)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--relay", "127.0.0.1:4001"], "/p2p/"),
        (["--metrics", "127.0.0.1:9100"], "http://"),
        (["--epsilon-budget", "0"], "--epsilon-budget"),
        (["--epsilon-budget", "nan"], "--epsilon-budget"),
        (["--bots", "99"], "--bots"),
    ],
)
def test_bad_network_flags_are_refused(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        network_plan(_args(*argv), tmp_path)


def test_a_host_without_a_network_refuses_requests_with_a_clear_error() -> None:
    host = NetworkHost(None)
    assert host.status is NetStatus.OFF and not host.enabled and host.relays() == ()

    async def ask() -> None:
        with pytest.raises(NetworkError, match="no network"):
            await host.snapshot()
        await host.stop()

    asyncio.run(ask())
    host = NetworkHost(NetworkPlan(Path("unused")))
    assert host.status is NetStatus.STARTING and "starting" in host.describe()


def test_the_lag_probe_sees_a_blocked_loop() -> None:
    probe = LagProbe(interval=0.01)

    async def scenario() -> None:
        probe.start()
        await asyncio.sleep(0.05)
        threading.Event().wait(0.2)  # block the loop on purpose, as a freeze would
        await asyncio.sleep(0.05)
        probe.stop()

    asyncio.run(scenario())
    assert probe.worst >= 0.15 and probe.percentile(50) < 0.1
