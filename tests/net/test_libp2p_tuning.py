"""net/_libp2p_tuning.py: cached signed peer records never accept what py-libp2p would reject.

The receive cache is checked against py-libp2p's own `maybe_consume_signed_record` on
twin hosts (one tuned, one not) fed the same records, forged, tampered, older and newer
ones included; the send cache against the addresses a host listens on.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import multiaddr
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.envelope import consume_envelope, seal_record
from libp2p.peer.id import ID
from libp2p.peer.peer_record import PeerRecord
from libp2p.peer.peerstore import PeerStoreError, create_signed_peer_record
from libp2p.pubsub import gossipsub as gossipsub_module
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.pb.rpc_pb2 import RPC

from net import ANNOUNCE_TOPIC, Node, Received, RoundAnnouncement
from net import _libp2p_tuning as tuning
from tests.net._helpers import run_trio, running_nodes


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _peer(seed: int) -> tuple[KeyPair, ID]:
    keys = create_new_key_pair(bytes([seed]) * 32)
    return keys, ID.from_pubkey(keys.public_key)


def _signed(keys: KeyPair, port: int, seq: int, *, signer: KeyPair | None = None) -> bytes:
    """A marshalled signed peer record for `keys`' peer id, signed by `signer` (default: itself)."""
    peer_id = ID.from_pubkey(keys.public_key)
    record = PeerRecord(peer_id, [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")], seq)
    return seal_record(record, (signer or keys).private_key).marshal_envelope()


def _tamper(data: bytes, index: int) -> bytes:
    i = index % len(data)
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _twin_hosts(clock: FakeClock) -> tuple[IHost, IHost]:
    """A tuned and an untuned host with fresh peerstores (not running: none is needed)."""
    tuned, plain = (
        new_host(key_pair=create_new_key_pair()),
        new_host(key_pair=create_new_key_pair()),
    )
    tuning.tune_host(tuned, clock=clock)
    return tuned, plain


def _env_via(module: ModuleType, host: IHost) -> tuple[bytes, bool]:
    """Call `env_to_send_in_RPC` by the name pubsub's code looks up at run time."""
    result: tuple[bytes, bool] = module.__dict__["env_to_send_in_RPC"](host)
    return result


def _addrs(host: IHost, peer: ID) -> list[multiaddr.Multiaddr]:
    try:
        return host.get_peerstore().addrs(peer)
    except PeerStoreError:
        return []


def _consume_both(tuned: IHost, plain: IHost, data: bytes | None, sender: ID) -> bool:
    """Feed one RPC to the tuned host (via pubsub's name) and to py-libp2p's original."""
    rpc = RPC() if data is None else RPC(senderRecord=data)
    got: bool = pubsub_module.__dict__["maybe_consume_signed_record"](rpc, tuned, sender)
    want = tuning._ORIGINAL_CONSUME(rpc, plain, sender)
    assert got == want, "the cache answered differently from py-libp2p"
    assert _addrs(tuned, sender) == _addrs(plain, sender)
    return got


def test_tuning_is_idempotent_and_leaves_other_hosts_alone() -> None:
    clock = FakeClock()
    tuned, plain = _twin_hosts(clock)
    tuning.tune_host(tuned, clock=clock)
    for module in (pubsub_module, gossipsub_module):
        assert module.maybe_consume_signed_record is tuning._consume_signed_record
        assert module.env_to_send_in_RPC is tuning._env_to_send
    assert tuning._ORIGINAL_CONSUME is not tuning._consume_signed_record
    assert tuning._ORIGINAL_ENV is not tuning._env_to_send
    assert tuning.is_tuned(tuned) and not tuning.is_tuned(plain)
    assert tuning.caches(plain) is None


def test_an_unchanged_record_is_verified_once_then_served_from_the_cache() -> None:
    clock = FakeClock()
    tuned, plain = _twin_hosts(clock)
    keys, peer = _peer(1)
    data = _signed(keys, 4001, seq=10)
    for _ in range(5):
        assert _consume_both(tuned, plain, data, peer)
    caches = tuning.caches(tuned)
    assert caches is not None
    received, _ = caches
    assert (received.misses, received.hits) == (1, 4)
    # After the re-check interval the full path runs again (and refreshes the TTL).
    clock.now += tuning.RECORD_RECHECK_S
    assert _consume_both(tuned, plain, data, peer)
    assert received.misses == 2


def test_forged_and_tampered_records_are_still_rejected_after_a_genuine_one_was_cached() -> None:
    clock = FakeClock()
    tuned, plain = _twin_hosts(clock)
    keys, peer = _peer(1)
    other_keys, other = _peer(2)
    genuine = _signed(keys, 4001, seq=10)
    assert _consume_both(tuned, plain, genuine, peer)
    assert _consume_both(tuned, plain, genuine, peer)  # now cached
    # Every single-bit flip of the cached bytes is rejected, as py-libp2p rejects it.
    received, _ = tuning.caches(tuned) or (None, None)
    assert received is not None
    for index in range(len(genuine)):
        hits = received.hits
        assert not _consume_both(tuned, plain, _tamper(genuine, index), peer)
        assert received.hits == hits
        assert _consume_both(tuned, plain, genuine, peer)
    signature_flip = _tamper(genuine, len(genuine) - 1)
    assert not _consume_both(tuned, plain, signature_flip, peer)
    # A record naming `peer` but signed by another key, and `peer`'s genuine record
    # arriving on another peer's stream, are rejected too.
    forged = _signed(keys, 4002, seq=11, signer=other_keys)
    assert not _consume_both(tuned, plain, forged, peer)
    assert not _consume_both(tuned, plain, genuine, other)


def test_a_changed_record_is_consumed_and_the_old_one_then_refused() -> None:
    clock = FakeClock()
    tuned, plain = _twin_hosts(clock)
    keys, peer = _peer(1)
    old, new = _signed(keys, 4001, seq=10), _signed(keys, 4002, seq=11)
    assert _consume_both(tuned, plain, old, peer)
    assert _consume_both(tuned, plain, old, peer)
    assert _consume_both(tuned, plain, new, peer)
    assert tuned.get_peerstore().addrs(peer) == [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/4002")]
    # The old bytes were cached once; the peerstore now holds a newer record.
    assert not _consume_both(tuned, plain, old, peer)


def test_a_newer_record_stored_by_another_path_invalidates_the_cache() -> None:
    """Identify (or anything else) may store a newer record; cached older bytes must then fail."""
    clock = FakeClock()
    tuned, plain = _twin_hosts(clock)
    keys, peer = _peer(1)
    old, new = _signed(keys, 4001, seq=10), _signed(keys, 4002, seq=11)
    assert _consume_both(tuned, plain, old, peer)
    assert _consume_both(tuned, plain, old, peer)
    for host in (tuned, plain):
        envelope, _ = consume_envelope(new, "libp2p-peer-record")
        assert host.get_peerstore().consume_peer_record(envelope, 7200)
    assert not _consume_both(tuned, plain, old, peer)


_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["genuine", "tamper", "forge", "wrong-sender", "elsewhere", "tick", "none"]
        ),
        st.integers(0, 2),  # which peer
        st.integers(0, 3),  # which of its records (higher = newer)
        st.integers(0, 10_000),  # where to tamper
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(ops=_OPS)
def test_the_cache_answers_exactly_like_py_libp2p(
    ops: list[tuple[str, int, int, int]],
) -> None:
    clock = FakeClock()
    tuned, plain = _twin_hosts(clock)
    peers = [_peer(seed) for seed in (1, 2, 3)]
    records = {
        (p, v): _signed(peers[p][0], 4000 + 10 * p + v, seq=100 + v)
        for p in range(3)
        for v in range(4)
    }
    for op, p, version, where in ops:
        keys, peer = peers[p]
        data = records[p, version]
        if op == "genuine":
            _consume_both(tuned, plain, data, peer)
        elif op == "tamper":
            _consume_both(tuned, plain, _tamper(data, where), peer)
        elif op == "forge":
            forged = _signed(keys, 4999, seq=100 + version, signer=peers[(p + 1) % 3][0])
            assert not _consume_both(tuned, plain, forged, peer)
        elif op == "wrong-sender":
            assert not _consume_both(tuned, plain, data, peers[(p + 1) % 3][1])
        elif op == "elsewhere":  # another protocol (identify) stores the record directly
            envelope, _ = consume_envelope(data, "libp2p-peer-record")
            for host in (tuned, plain):
                host.get_peerstore().consume_peer_record(envelope, 7200)
        elif op == "tick":
            clock.now += tuning.RECORD_RECHECK_S * where / 10_000
        else:
            assert _consume_both(tuned, plain, None, peer)


def test_the_local_record_is_reused_and_reissued_when_a_listener_is_added() -> None:
    async def main() -> None:
        clock = FakeClock()
        host = new_host(key_pair=create_new_key_pair())
        tuning.tune_host(host, clock=clock)
        async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            first, created = _env_via(gossipsub_module, host)
            assert created
            again, created = _env_via(gossipsub_module, host)
            assert (again, created) == (first, False)
            _, local = tuning.caches(host) or (None, None)
            assert local is not None and local.hits == 1

            def addrs(data: bytes) -> set[multiaddr.Multiaddr]:
                return set(consume_envelope(data, "libp2p-peer-record")[1].addrs)

            assert addrs(first) == set(host.get_addrs())
            # Another loopback address: the swarm ignores a second listen on the same one.
            await host.get_network().listen(multiaddr.Multiaddr("/ip4/127.0.0.2/tcp/0"))
            second, created = _env_via(pubsub_module, host)
            assert created and second != first
            assert len(addrs(second)) == 2 and addrs(second) == set(host.get_addrs())
            # Someone else re-issuing the local record is noticed too.
            host.get_peerstore().set_local_record(
                create_signed_peer_record(host.get_id(), host.get_addrs(), host.get_private_key())
            )
            third, _ = _env_via(pubsub_module, host)
            assert third == host.get_peerstore().get_local_record().marshal_envelope()  # type: ignore[union-attr]
            # And past the re-check interval the full comparison runs again.
            clock.now += tuning.RECORD_RECHECK_S
            misses = local.misses
            assert _env_via(pubsub_module, host) == (third, False)
            assert local.misses == misses + 1
            await host.close()

    run_trio(main)


def test_yamux_credit_batching_respects_an_explicit_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(tuning.YAMUX_RELEASE_ON_READ_ENV, "1")
    tuning.tune_host(new_host(key_pair=create_new_key_pair()))
    assert os.environ[tuning.YAMUX_RELEASE_ON_READ_ENV] == "1"
    monkeypatch.delenv(tuning.YAMUX_RELEASE_ON_READ_ENV)
    tuning.tune_host(new_host(key_pair=create_new_key_pair()))
    assert os.environ[tuning.YAMUX_RELEASE_ON_READ_ENV] == "0"


def test_tuned_nodes_gossip_with_cached_records(tmp_path: Path) -> None:
    """Real nodes: announcements and acks flow and the caches are on the path."""

    async def main() -> None:
        async with running_nodes(tmp_path, 2) as (a, b), trio.open_nursery() as nursery:
            await b.connect(a.listen_addrs[0])
            inbox = await a.subscribe(ANNOUNCE_TOPIC)
            own = await b.subscribe(ANNOUNCE_TOPIC)
            seen: list[Received] = []
            nursery.start_soon(_ack_all, a, inbox, seen)
            nursery.start_soon(_drain, own)  # a full inbox would stall b's ack handling
            rounds = [RoundAnnouncement(i, bytes(32), 2) for i in range(1, 6)]
            for message in rounds:
                assert await b.announce_until_acked(ANNOUNCE_TOPIC, message, expected=1)
            assert {r.message for r in seen} == set(rounds)
            assert tuning.is_tuned(a.host) and tuning.is_tuned(b.host)
            for node in (a, b):
                received, local = tuning.caches(node.host) or (None, None)
                assert received is not None and received.hits > 0
                assert local is not None and local.hits > 0
            assert a.stats.rejections.total() == b.stats.rejections.total() == 0
            nursery.cancel_scope.cancel()

    run_trio(main)


async def _ack_all(
    node: Node, inbox: trio.MemoryReceiveChannel[Received], seen: list[Received]
) -> None:
    async for received in inbox:
        if isinstance(received.message, RoundAnnouncement):  # not acks, not our own acks
            seen.append(received)
            await node.ack(received)


async def _drain(inbox: trio.MemoryReceiveChannel[Received]) -> None:
    async for _ in inbox:
        pass
