"""Real libp2p nodes on loopback: signed gossip, acks, and a hostile peer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from nacl.signing import SigningKey

from net import (
    ANNOUNCE_TOPIC,
    Ack,
    Hello,
    Node,
    Received,
    Rejection,
    RoundAnnouncement,
    Signer,
    encode,
    payload_id,
)
from tests.net._helpers import connect_chain, run_trio, running_nodes

ROUND = RoundAnnouncement(round_id=7, model_version=b"\x11" * 32, min_participants=2)


async def _ack_announcements(
    node: Node, inbox: trio.MemoryReceiveChannel[Received], seen: list[Received]
) -> None:
    async for received in inbox:
        if isinstance(received.message, RoundAnnouncement):
            seen.append(received)
            await node.ack(received)


def test_two_nodes_exchange_a_signed_announcement(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_nodes(tmp_path, 2) as (a, b), trio.open_nursery() as nursery:
            assert a.peer_id != b.peer_id
            assert a.listen_addrs[0].startswith("/ip4/127.0.0.1/tcp/")
            await b.connect(a.listen_addrs[0])
            inbox_a = await a.subscribe(ANNOUNCE_TOPIC)
            await b.subscribe(ANNOUNCE_TOPIC)
            seen: list[Received] = []
            nursery.start_soon(_ack_announcements, a, inbox_a, seen)
            ackers = await b.announce_until_acked(ANNOUNCE_TOPIC, ROUND, expected=1)
            assert ackers == {a.public_key}
            assert b.acks_for(ROUND) == {a.public_key}
            got = seen[0]
            assert got.message == ROUND
            assert got.sender == b.public_key
            assert got.origin == b.peer_id
            assert got.topic == ANNOUNCE_TOPIC
            assert a.stats.rejections.total() == 0
            nursery.cancel_scope.cancel()

    run_trio(main)


def test_an_announcement_crosses_a_line_of_four_nodes(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_nodes(tmp_path, 4) as nodes, trio.open_nursery() as nursery:
            await connect_chain(nodes)
            seen: list[list[Received]] = [[] for _ in nodes]
            for node, log in zip(nodes[1:], seen[1:], strict=True):
                inbox = await node.subscribe(ANNOUNCE_TOPIC)
                nursery.start_soon(_ack_announcements, node, inbox, log)
            await nodes[0].subscribe(ANNOUNCE_TOPIC)
            ackers = await nodes[0].announce_until_acked(ANNOUNCE_TOPIC, ROUND, expected=3)
            assert ackers == {n.public_key for n in nodes[1:]}
            assert all(log and log[0].message == ROUND for log in seen[1:])
            nursery.cancel_scope.cancel()

    run_trio(main)


def test_publish_refuses_oversized_gossip(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_nodes(tmp_path, 1, max_gossip_bytes=1024) as (a,):
            big = Hello("x" * 2000, (), "test")
            try:
                await a.publish(ANNOUNCE_TOPIC, big)
            except ValueError as err:
                assert "blobs" in str(err)
            else:
                raise AssertionError("oversized publish was accepted")

    run_trio(main)


def test_a_hostile_peer_is_dropped_counted_and_the_victim_stays_up(tmp_path: Path) -> None:
    """A raw libp2p peer (no validators of its own) gossips garbage at a node."""

    async def main() -> None:
        async with running_nodes(tmp_path, 2) as (victim, friend), trio.open_nursery() as nursery:
            inbox = await victim.subscribe(ANNOUNCE_TOPIC)
            await friend.subscribe(ANNOUNCE_TOPIC)
            await friend.connect(victim.listen_addrs[0])

            key_pair = create_new_key_pair()
            host = new_host(key_pair=key_pair)
            router = GossipSub([PROTOCOL_ID_V12], 3, 2, 6, heartbeat_interval=1)
            pubsub = Pubsub(host, router)
            listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
            async with (
                host.run(listen),
                background_trio_service(pubsub),
                background_trio_service(router),
            ):
                await pubsub.wait_until_ready()
                victim_id = info_from_p2p_addr(multiaddr.Multiaddr(victim.listen_addrs[0])).peer_id
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(victim.listen_addrs[0])))
                # Not subscribing: the attacker publishes via fanout straight to the victim.
                await pubsub.wait_for_subscription(victim_id, ANNOUNCE_TOPIC, timeout=10)

                signer = Signer(SigningKey(key_pair.private_key.to_bytes()))
                good = signer.seal(ANNOUNCE_TOPIC, Hello("attacker", (), "evil"))
                forged = dataclasses.replace(
                    signer.seal(ANNOUNCE_TOPIC, ROUND), signature=b"\x01" * 64
                )
                elsewhere = signer.seal("p2pgo/other/1", ROUND)
                attacks = {
                    Rejection.MALFORMED: b"\xa1\xff not cbor",
                    Rejection.BAD_SIGNATURE: encode(forged),
                    Rejection.OVERSIZE: b"\x00" * (100 * 1024),
                    Rejection.WRONG_TOPIC: encode(elsewhere),
                }
                await pubsub.publish(ANNOUNCE_TOPIC, encode(good))
                first = await inbox.receive()
                assert first.message == Hello("attacker", (), "evil")
                await pubsub.publish(ANNOUNCE_TOPIC, encode(good))  # replayed bytes
                for data in attacks.values():
                    await pubsub.publish(ANNOUNCE_TOPIC, data)

                attacker = host.get_id().to_base58()
                expected = {**dict.fromkeys(attacks, 1), Rejection.REPLAY: 1}
                while victim.stats.rejections.for_peer(attacker) != expected:
                    await trio.sleep(0.02)  # wait for a condition, bounded by run_trio
                # Nothing bad was delivered, nothing was blamed on the honest peer,
                # and the victim still works: a friend's announcement gets through.
                seen: list[Received] = []
                nursery.start_soon(_ack_announcements, victim, inbox, seen)
                await friend.announce_until_acked(ANNOUNCE_TOPIC, ROUND, expected=1)
                assert [r.message for r in seen] == [ROUND]
                assert victim.stats.rejections.for_peer(friend.peer_id) == {}
                assert not victim.stats.handler_errors
                await host.close()  # before cancellation, so its sockets are closed
            nursery.cancel_scope.cancel()

    run_trio(main, timeout=40)


def test_acks_name_the_payload_not_the_envelope(tmp_path: Path) -> None:
    ack = Ack(payload_id(encode(ROUND)))
    assert ack.ref == payload_id(encode(ROUND))
