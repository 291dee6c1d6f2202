"""A real `p2pgo-relay` process: /metrics over HTTP, reservations, directory, a relayed game.

Also home of `Proc`, the child-process driver the game and netns tests share.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from tests.net._procs import Proc, processes


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> dict[str, float]:
    """Prometheus text format -> {sample name with labels: value} (no comments)."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@pytest.mark.slow
def test_a_game_only_through_the_relay_moves_its_metrics(tmp_path: Path) -> None:
    deadline = time.monotonic() + 90
    with processes() as started:
        relay = Proc("net.relay", tmp_path / "relay", "--metrics-port", str(free_port()))
        started.append(relay)
        up = relay.wait_for("listening", deadline)
        url, relay_addr = up["metrics_url"], up["addrs"][0]
        assert url.startswith("http://127.0.0.1:")
        assert up["limits"]["max_reservations"] == 128
        before = scrape(url)
        assert before["p2pgo_relay_circuits_opened_total"] == 0
        # Both peers: no DCUtR, so nothing but the relay ever carries the game.
        common = ["--relay", relay_addr, "--no-dcutr", "--size", "5", "--max-moves", "12"]
        black = Proc("net.peer", tmp_path / "black", *common, "--play")
        started.append(black)
        black_id = black.wait_for("listening", deadline)["peer_id"]
        registered = black.wait_for("registered", deadline)
        assert any("/p2p-circuit/" in a for a in registered["addrs"])
        white = Proc(
            "net.peer",
            tmp_path / "white",
            *common,
            "--challenge",
            black_id,
            "--via-relay",
            "--color",
            "white",
        )
        started.append(white)
        done = white.wait_for("challenge_done", deadline)
        assert "/p2p-circuit/" in done["addr"] and done["phase"] == "finished"
        theirs = black.wait_for("game_finished", deadline)
        ours = white.wait_for("game_finished", deadline)
        assert ours["record_id"] == theirs["record_id"] == done["record_id"]
        assert ours["connections"] == theirs["connections"] == ["relayed"]
        assert ours["signatures"] == theirs["signatures"] == 2

        after: dict[str, float] = {}
        while time.monotonic() < deadline:  # the sampler runs every 0.5 s
            after = scrape(url)
            # Both: a sample taken as the circuit opened has no bytes relayed yet.
            if (
                after["p2pgo_relay_circuits_opened_total"] >= 1
                and after["p2pgo_relay_bytes_relayed_total"] > 1000
            ):
                break
            time.sleep(0.2)
        assert after["p2pgo_relay_circuits_opened_total"] >= 1
        assert after["p2pgo_relay_bytes_relayed_total"] > 1000  # a whole game's frames
        assert after["p2pgo_relay_reservations_accepted_total"] >= 2
        assert after["p2pgo_relay_reservations_active"] == 2
        assert after["p2pgo_relay_peers"] >= 2
        assert after['p2pgo_relay_directory_requests_total{kind="directory_lookup"}'] >= 1
        assert after["p2pgo_relay_directory_entries"] == 2
        assert after['p2pgo_relay_messages_total{topic="p2pgo/announce/1"}'] >= 1  # hellos
        assert after['p2pgo_relay_handler_seconds_count{handler="directory_request"}'] >= 1
        assert all(p.stop() == 0 for p in started)
