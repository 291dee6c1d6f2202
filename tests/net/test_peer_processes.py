"""Real `p2pgo-peer` processes on loopback: an announcement reaches every peer."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0


class Peer:
    """One `python -m net.peer` child; its stdout JSON lines arrive on a queue."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "net.peer",
                "--data-dir",
                str(data_dir),
                "--exit-on-stdin-eof",
                *args,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait_for(self, event: str, deadline: float) -> dict[str, Any]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event!r} event before the deadline")
            try:
                got = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if got["event"] == event:
                return got

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
            self._reader.join(timeout=5)  # it ends at EOF on stdout
            assert self.proc.stdout is not None
            self.proc.stdout.close()


@contextmanager
def peers() -> Iterator[list[Peer]]:
    started: list[Peer] = []
    try:
        yield started
    finally:
        for peer in started:
            if peer.proc.poll() is None:
                with suppress(subprocess.TimeoutExpired):
                    peer.stop()  # it was killed; the test already failed


@pytest.mark.slow
def test_an_announcement_reaches_every_peer_process(tmp_path: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    with peers() as started:
        hub = Peer(tmp_path / "hub")
        started.append(hub)
        hub_addr = hub.wait_for("listening", deadline)["addrs"][0]
        leaf = Peer(tmp_path / "leaf", "--connect", hub_addr)
        started.append(leaf)
        announcer = Peer(
            tmp_path / "announcer",
            "--connect",
            hub_addr,
            "--announce-round",
            "42",
            "--min-participants",
            "2",
            "--expect-acks",
            "2",
        )
        started.append(announcer)
        listening = {p: p.wait_for("listening", deadline) for p in (leaf, announcer)}

        acked = announcer.wait_for("acked", deadline)
        for receiver in (hub, leaf):
            got = receiver.wait_for("announcement", deadline)
            assert got["round_id"] == 42
            assert got["min_participants"] == 2
            assert got["origin"] == listening[announcer]["peer_id"]
        assert acked["round_id"] == 42
        assert len(acked["ackers"]) == 2
        # The leaf only reaches the announcer through the hub: gossip was forwarded.
        assert all(p.stop() == 0 for p in started)
        for p in started:
            assert p.wait_for("stopped", deadline)
