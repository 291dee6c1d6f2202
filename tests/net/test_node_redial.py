"""Configured peers are redialled after they drop; gossipsub peer exchange never makes us dial."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.envelope import seal_record
from libp2p.peer.id import ID
from libp2p.peer.peer_record import PeerRecord
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2

from net import MemoryBlobStore, Node, NodeConfig
from net._errors import ConfigError
from tests.net._helpers import run_trio

# Fast backoff so a test sees several attempts in well under a second.
FAST = {"redial_initial_s": 0.05, "redial_max_s": 0.4, "redial_check_s": 0.5}

Stop = Callable[[], Awaitable[None]]


def _node(data_dir: Path, **config: Any) -> Node:
    return Node(NodeConfig.load(data_dir=data_dir, **config), blob_store=MemoryBlobStore())


async def _start(nursery: trio.Nursery, node: Node) -> Stop:
    """Run `node` in its own cancel scope; the returned coroutine stops it and waits."""
    scope = trio.CancelScope()
    done = trio.Event()

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with scope:
                await node.run(task_status=task_status)
        finally:
            done.set()

    await nursery.start(run)

    async def stop() -> None:
        scope.cancel()
        await done.wait()

    return stop


async def _until(condition: Callable[[], bool]) -> None:
    """Poll `condition` (the caller's trio deadline bounds the wait)."""
    while not condition():
        await trio.sleep(0.01)


def _port(addr: str) -> int:
    return int(multiaddr.Multiaddr(addr).value_for_protocol("tcp"))


def test_a_configured_peer_that_restarts_is_redialled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            b_dir = tmp_path / "b"
            b1 = _node(b_dir)
            stop_b1 = await _start(nursery, b1)
            b_addr = b1.listen_addrs[0]
            a = _node(tmp_path / "a", peers=(b_addr,), **FAST)
            await _start(nursery, a)
            assert a.connected_peers() == (b1.peer_id,)  # the first dial, before started()
            assert a.stats.redial_attempts == 0
            with caplog.at_level(logging.DEBUG, logger="net._node"):
                await stop_b1()
                # B is gone: the keeper notices and its redials fail (refused).
                await _until(lambda: a.stats.redial_attempts >= 3)
                assert a.connected_peers() == ()
                assert a.stats.redial_successes == 0
                # Same identity (data dir) and port: what a restarted process looks like.
                b2 = _node(b_dir, listen=(f"/ip4/127.0.0.1/tcp/{_port(b_addr)}",))
                await _start(nursery, b2)
                assert b2.peer_id == b1.peer_id
                # b2 dials nobody, so a connection means a redialled it.
                await _until(lambda: a.stats.redial_successes == 1)
                assert a.connected_peers() == (b2.peer_id,)
                await _until(lambda: b2.connected_peers() == (a.peer_id,))
            failures = [r for r in caplog.records if r.getMessage().startswith("redial of")]
            assert len(failures) >= 2  # every failure is logged ...
            warnings = [r for r in failures if r.levelno == logging.WARNING]
            assert len(warnings) == 1  # ... but only the first one at warning
            assert any(r.getMessage().startswith("reconnected to") for r in caplog.records)
            nursery.cancel_scope.cancel()

    run_trio(main, timeout=20)


def test_a_peer_that_is_down_at_start_is_dialled_once_it_is_up(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            b_dir = tmp_path / "b"
            b1 = _node(b_dir)
            stop_b1 = await _start(nursery, b1)
            b_addr = b1.listen_addrs[0]
            await stop_b1()
            a = _node(tmp_path / "a", peers=(b_addr,), **FAST)
            await _start(nursery, a)  # the failed first dial does not stop the node
            assert a.connected_peers() == ()
            await _until(lambda: a.stats.redial_attempts >= 1)
            b2 = _node(b_dir, listen=(f"/ip4/127.0.0.1/tcp/{_port(b_addr)}",))
            await _start(nursery, b2)
            await _until(lambda: a.stats.redial_successes == 1)
            assert a.connected_peers() == (b2.peer_id,)
            nursery.cancel_scope.cancel()

    run_trio(main, timeout=20)


def test_shutdown_in_the_middle_of_a_redial_is_clean(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            b = _node(tmp_path / "b")
            stop_b = await _start(nursery, b)
            b_addr = b.listen_addrs[0]
            a = _node(tmp_path / "a", peers=(b_addr,), **FAST)
            stop_a = await _start(nursery, a)
            await stop_b()
            # In B's place, a socket that accepts and never answers: a's redial hangs
            # in the security handshake until we shut a down.
            listeners = await trio.open_tcp_listeners(_port(b_addr), host="127.0.0.1")
            accepted: list[trio.SocketStream] = []
            dialled = trio.Event()

            async def hold() -> None:
                while True:
                    accepted.append(await listeners[0].accept())
                    dialled.set()

            nursery.start_soon(hold)
            await dialled.wait()
            attempts = a.stats.redial_attempts
            with trio.fail_after(5):
                await stop_a()
            assert attempts >= 1
            assert a.stats.redial_successes == 0
            with pytest.raises(RuntimeError, match="not running"):
                a.connected_peers()
            nursery.cancel_scope.cancel()
        for stream in accepted:
            await stream.aclose()
        for listener in listeners:
            await listener.aclose()

    run_trio(main, timeout=20)


def _router(node: Node) -> GossipSub:
    pubsub = node._pubsub  # the test needs the router itself
    assert pubsub is not None
    return cast(GossipSub, pubsub.router)


def _prune_with_px(topic: str, listed_port: int) -> rpc_pb2.ControlPrune:
    """A PRUNE naming one fresh peer, with a valid signed record for a loopback port."""
    key_pair = create_new_key_pair()
    peer = ID.from_pubkey(key_pair.public_key)
    addr = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{listed_port}")
    envelope = seal_record(PeerRecord(peer, [addr]), key_pair.private_key)
    info = rpc_pb2.PeerInfo(peerID=peer.to_bytes(), signedPeerRecord=envelope.marshal_envelope())
    return rpc_pb2.ControlPrune(topicID=topic, peers=[info], backoff=60)


@pytest.mark.parametrize("gossip_px", [False, True])
def test_a_prune_with_peer_exchange_makes_us_dial_only_when_enabled(
    tmp_path: Path, gossip_px: bool
) -> None:
    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with trio.open_nursery() as nursery:
            listed_port = listeners[0].socket.getsockname()[1]
            dialled = trio.Event()

            async def refuse() -> None:
                while True:
                    stream = await listeners[0].accept()
                    dialled.set()
                    await stream.aclose()  # the dial then fails at once

            nursery.start_soon(refuse)
            a = _node(tmp_path / "a", gossip_px=gossip_px)
            await _start(nursery, a)
            attacker = _node(tmp_path / "attacker")
            await _start(nursery, attacker)
            await attacker.connect(a.listen_addrs[0])
            a_id, attacker_id = ID.from_base58(a.peer_id), ID.from_base58(attacker.peer_id)
            a_pubsub, attacker_pubsub = a._pubsub, attacker._pubsub
            assert a_pubsub is not None and attacker_pubsub is not None
            await _until(lambda: attacker_id in a_pubsub.peers and a_id in attacker_pubsub.peers)
            router = _router(a)
            assert (router.do_px, router.px_peers_count) == (gossip_px, 16 if gossip_px else 0)
            # One RPC over the attacker's real gossipsub stream: the PRUNE with PX, then
            # a plain PRUNE for another topic. a handles them in order, so once the
            # second one's backoff shows, the first one's PX handling is over.
            control = rpc_pb2.ControlMessage(
                prune=[
                    _prune_with_px("some/topic", listed_port),
                    rpc_pb2.ControlPrune(topicID="sentinel", backoff=60),
                ]
            )
            await _router(attacker).emit_control_message(control, a_id)
            await _until(lambda: attacker_id in router.back_off.get("sentinel", {}))
            assert attacker_id in router.back_off["some/topic"]
            if gossip_px:
                with trio.fail_after(5):
                    await dialled.wait()
            else:
                assert not dialled.is_set()
                assert a.connected_peers() == (attacker.peer_id,)
            nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()

    run_trio(main, timeout=20)


def test_redial_and_px_defaults_and_toml(tmp_path: Path) -> None:
    config = NodeConfig(data_dir=tmp_path)
    assert (config.redial_initial_s, config.redial_max_s) == (1.0, 60.0)
    assert config.redial_check_s > 0
    assert config.gossip_px is False
    path = tmp_path / "p2pgo.toml"
    path.write_text(
        "[net]\nredial_initial_s = 2\nredial_max_s = 30.5\nredial_check_s = 3\ngossip_px = true\n"
    )
    loaded = NodeConfig.load(path)
    assert (loaded.redial_initial_s, loaded.redial_max_s, loaded.redial_check_s) == (
        2.0,
        30.5,
        3.0,
    )
    assert loaded.gossip_px is True


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"redial_initial_s": 0}, "redial_initial_s must be positive"),
        ({"redial_initial_s": -1.0}, "redial_initial_s must be positive"),
        ({"redial_check_s": 0}, "redial_check_s must be positive"),
        ({"redial_initial_s": 5, "redial_max_s": 2}, "redial_max_s must be at least"),
        ({"redial_max_s": float("inf")}, "redial_max_s must be a finite"),
        ({"redial_initial_s": float("nan")}, "redial_initial_s must be a finite"),
        ({"redial_check_s": float("inf")}, "redial_check_s must be a finite"),
        ({"redial_initial_s": "1"}, "redial_initial_s must be a number"),
        ({"redial_max_s": True}, "redial_max_s must be a number"),
        ({"gossip_px": 1}, "gossip_px must be true or false"),
        ({"gossip_px": "yes"}, "gossip_px must be true or false"),
    ],
)
def test_bad_redial_and_px_settings_are_named(
    tmp_path: Path, values: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        NodeConfig.from_mapping({"data_dir": str(tmp_path), **values})
