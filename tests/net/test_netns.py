"""Relay traversal for real: two network namespaces that cannot route to each other.

Topology (all inside namespaces this test creates and deletes)::

    [ns A] 10.77.1.2 --veth-- 10.77.1.1 [ns R: p2pgo-relay] 10.77.2.1 --veth-- 10.77.2.2 [ns B]

R does not forward packets (a new namespace starts with ip_forward=0), A has no route
to 10.77.2.0/24 and B none to 10.77.1.0/24, so the only way between A and B is the
relay's circuit. DCUtR stays on: it must fail quietly and the game go on relayed.

Needs root (CAP_NET_ADMIN) and iproute2; skipped with a message where namespaces
cannot be created, except under CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net._procs import Proc, processes

TAG = f"p2pgo{os.getpid() % 100000}"
NS_A, NS_B, NS_R = f"{TAG}a", f"{TAG}b", f"{TAG}r"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _must(*args: str) -> None:
    done = _ip(*args)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _cannot_create_namespaces() -> str | None:
    """Why namespaces are unavailable here, or None (checked by trying)."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"{TAG}probe"
    done = _ip("netns", "add", probe)
    if done.returncode != 0:
        return f"`ip netns add` failed: {done.stderr.strip()} (needs root / CAP_NET_ADMIN)"
    _ip("netns", "del", probe)
    return None


@pytest.fixture
def namespaces() -> Iterator[None]:
    problem = _cannot_create_namespaces()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"network namespaces are required in CI: {problem}")
        pytest.skip(f"cannot create network namespaces here: {problem}")
    try:
        for ns in (NS_A, NS_B, NS_R):
            _must("netns", "add", ns)
            _must("-n", ns, "link", "set", "lo", "up")
        for side, ns, net in (("a", NS_A, "10.77.1"), ("b", NS_B, "10.77.2")):
            peer_end, relay_end = f"{TAG}{side}p", f"{TAG}{side}r"
            _must("link", "add", peer_end, "type", "veth", "peer", "name", relay_end)
            _must("link", "set", peer_end, "netns", ns)
            _must("link", "set", relay_end, "netns", NS_R)
            _must("-n", ns, "addr", "add", f"{net}.2/24", "dev", peer_end)
            _must("-n", NS_R, "addr", "add", f"{net}.1/24", "dev", relay_end)
            _must("-n", ns, "link", "set", peer_end, "up")
            _must("-n", NS_R, "link", "set", relay_end, "up")
        yield
    finally:
        for ns in (NS_A, NS_B, NS_R):
            _ip("netns", "del", ns)  # deleting a namespace deletes its veth ends


@pytest.mark.slow
def test_peers_that_cannot_route_to_each_other_play_through_the_relay(
    tmp_path: Path, namespaces: None
) -> None:
    # The premise: A has no route to B at all.
    assert _ip("-n", NS_A, "route", "get", "10.77.2.2").returncode != 0
    assert _ip("-n", NS_B, "route", "get", "10.77.1.2").returncode != 0
    deadline = time.monotonic() + 90
    exec_in = {ns: ("ip", "netns", "exec", ns) for ns in (NS_A, NS_B, NS_R)}
    with processes() as started:
        relay = Proc(
            "net.relay",
            tmp_path / "relay",
            "--listen",
            "/ip4/10.77.1.1/tcp/0",
            "--listen",
            "/ip4/10.77.2.1/tcp/0",
            prefix=exec_in[NS_R],
        )
        started.append(relay)
        addrs = relay.wait_for("listening", deadline)["addrs"]
        via_a = next(a for a in addrs if "/10.77.1.1/" in a)
        via_b = next(a for a in addrs if "/10.77.2.1/" in a)
        game = ["--size", "5", "--max-moves", "10"]
        black = Proc(
            "net.peer",
            tmp_path / "black",
            "--listen",
            "/ip4/10.77.2.2/tcp/0",
            "--relay",
            via_b,
            "--play",
            *game,
            prefix=exec_in[NS_B],
        )
        started.append(black)
        black_id = black.wait_for("listening", deadline)["peer_id"]
        registered = black.wait_for("registered", deadline)
        assert any("/10.77.2.2/" in a for a in registered["addrs"])  # unreachable from A
        white = Proc(
            "net.peer",
            tmp_path / "white",
            "--listen",
            "/ip4/10.77.1.2/tcp/0",
            "--relay",
            via_a,
            "--challenge",
            black_id,
            "--via-relay",
            "--color",
            "white",
            *game,
            prefix=exec_in[NS_A],
        )
        started.append(white)
        done = white.wait_for("challenge_done", deadline)
        theirs = black.wait_for("game_finished", deadline)
        ours = white.wait_for("game_finished", deadline)
        assert done["phase"] == "finished"
        assert ours["record_id"] == theirs["record_id"] == done["record_id"]
        assert ours["signatures"] == theirs["signatures"] == 2
        # No direct path exists, so DCUtR cannot have upgraded anything.
        assert ours["connections"] == theirs["connections"] == ["relayed"]
        assert all(p.stop() == 0 for p in started)
