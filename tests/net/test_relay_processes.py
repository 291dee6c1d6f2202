"""A real `p2pgo-relay` process: /metrics over HTTP, reservations, directory, a relayed game.

Also home of `Proc`, the child-process driver the game and netns tests share.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


class Proc:
    """`python -m <module>` (optionally under a command prefix such as ``ip netns exec``);
    its stdout JSON lines arrive on a queue."""

    def __init__(self, module: str, data_dir: Path, *args: str, prefix: Sequence[str] = ()) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.log = data_dir.with_suffix(".stderr")
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    module,
                    "--data-dir",
                    str(data_dir),
                    "--exit-on-stdin-eof",
                    *args,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait_for(self, event: str, deadline: float) -> dict[str, Any]:
        for got in self.seen:
            if got["event"] == event:
                self.seen.remove(got)
                return got
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self.events.empty()):
                tail = self.log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"no {event!r} event before the deadline; stderr:\n{tail}")
            try:
                got = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if got["event"] == event:
                return got
            self.seen.append(got)

    def stop(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the clean way out
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._reader.join(timeout=5)
            assert self.proc.stdout is not None
            self.proc.stdout.close()


@contextmanager
def processes() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in started:
            if p.proc.poll() is None:
                with suppress(subprocess.TimeoutExpired):
                    p.stop()


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
            if after["p2pgo_relay_circuits_opened_total"] >= 1:
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
