"""Gossipsub mesh maintenance on real nodes: a pruned peer is not cut off (issue 4).

py-libp2p 0.8.1's heartbeat PRUNEs a peer without recording a backoff for it on the
pruning side, so the pruner may GRAFT it again at its next heartbeat; the pruned peer,
which is in backoff (and within the "GRAFT flood" threshold), answers with a PRUNE, and
from then on both sides are in backoff: no mesh link and, since 0.8.1 also skips
backed-off peers when it picks whom to send IHAVE gossip, no gossip either, for the
whole backoff (60 s by default); its "GRAFT flood" branch, which refuses without
renewing its own backoff, can keep two such peers PRUNEing each other after that. These
tests pin down the configuration `Node.run` gives its `GossipSub` (net/_gossipsub.py):
a short prune backoff, no flood check, no opportunistic grafting (which re-grafted
just-pruned peers every heartbeat) and a heartbeat that stays at 1 s.
"""

from __future__ import annotations

from pathlib import Path

import trio
from libp2p.pubsub.gossipsub import GossipSub
from nacl.signing import SigningKey

from net import ANNOUNCE_TOPIC, Accepted, Node, RoundAnnouncement, Signer
from net._gossipsub import PRUNE_BACKOFF_S, ValidatedMessages
from net._wire import encode
from tests.net._helpers import run_trio, running_nodes

# Well under py-libp2p's 60 s default backoff, well over what the fixed setup needs (~5 s).
REACH_AGAIN_S = 15.0


def _router(node: Node) -> GossipSub:
    router = node._running_pubsub().router
    assert isinstance(router, GossipSub)
    return router


async def _star(hub: Node, leaves: list[Node]) -> None:
    """Connect every leaf to the hub only, all subscribed, until each link is in both meshes.

    Leaves must be at most `degree_high`, or the hub's heartbeat prunes some of them.
    """
    await hub.subscribe(ANNOUNCE_TOPIC)
    for leaf in leaves:
        await leaf.connect(hub.listen_addrs[0])
        await leaf.subscribe(ANNOUNCE_TOPIC)
    for leaf in leaves:
        await _router(leaf).wait_for_mesh(hub.host.get_id(), ANNOUNCE_TOPIC, timeout=10)
        await _router(hub).wait_for_mesh(leaf.host.get_id(), ANNOUNCE_TOPIC, timeout=10)


def test_a_peer_pruned_by_the_heartbeat_is_reached_again_within_seconds(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_nodes(tmp_path, 2) as (a, b):
            await _star(a, [b])
            inbox = await b.subscribe(ANNOUNCE_TOPIC)
            router, b_id = _router(a), b.host.get_id()
            # What `GossipSub.heartbeat` does to a peer over degree_high: drop it from
            # the mesh and send a PRUNE through the heartbeat's own control path.
            router.mesh[ANNOUNCE_TOPIC].discard(b_id)
            await router._emit_control_msgs({}, {b_id: [ANNOUNCE_TOPIC]}, {})

            async def ack_announcements() -> None:
                async for received in inbox:
                    if isinstance(received.message, RoundAnnouncement):
                        await b.ack(received)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ack_announcements)
                with trio.fail_after(REACH_AGAIN_S):
                    ackers = await a.announce_until_acked(
                        ANNOUNCE_TOPIC, RoundAnnouncement(1, bytes(32), 1), expected=1
                    )
                nursery.cancel_scope.cancel()
            assert ackers == {b.public_key}
            # The link is a mesh link again (not only gossip).
            assert b_id in router.mesh[ANNOUNCE_TOPIC]

    run_trio(body, timeout=REACH_AGAIN_S + 20)


def test_a_hub_within_its_degree_bounds_grafts_nobody(tmp_path: Path) -> None:
    """Opportunistic grafting would graft just-pruned peers again (every heartbeat)."""

    async def body() -> None:
        async with running_nodes(tmp_path, 4) as (hub, *leaves):
            await _star(hub, leaves)
            router = _router(hub)
            leaf_ids = [leaf.host.get_id() for leaf in leaves]
            # Within [degree_low, degree_high] with one subscribed peer outside the mesh;
            # no await between setting the mesh and the heartbeat step, so the running
            # heartbeat cannot interleave.
            router.mesh[ANNOUNCE_TOPIC] = set(leaf_ids[: router.degree_low])
            to_graft, to_prune = router.mesh_heartbeat()
            assert dict(to_graft) == {} and dict(to_prune) == {}
            assert router.mesh[ANNOUNCE_TOPIC] == set(leaf_ids[: router.degree_low])

    run_trio(body)


def test_the_heartbeat_and_degrees_do_not_drift_with_network_health(tmp_path: Path) -> None:
    """py-libp2p's adaptive gossip turns a 1 s heartbeat into 30-60 s after 30 s."""

    async def body() -> None:
        async with running_nodes(tmp_path, 2) as (a, b):
            await _star(a, [b])
            router = _router(a)
            before = (router.heartbeat_interval, router.degree_low, router.degree_high)
            router.last_health_update = 0  # what 30 s of running would do
            router._update_network_health()
            router._adapt_gossip_parameters()
            effective = (
                (router.adaptive_degree_low, router.adaptive_degree_high)
                if router.adaptive_gossip_enabled
                else (router.degree_low, router.degree_high)
            )
            assert (router.heartbeat_interval, *effective) == before
            assert router.heartbeat_interval == a.config.heartbeat_interval

    run_trio(body)


def test_the_router_gets_a_short_backoff_no_scorer_and_no_adaptive_gossip(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_nodes(tmp_path, 1) as (a,):
            router = _router(a)
            assert router.prune_back_off == PRUNE_BACKOFF_S < 60
            # No "GRAFT flood" window (min(threshold, backoff)): the backoff check refuses
            # early GRAFTs and renews the backoff on both sides.
            assert min(router.graft_flood_threshold, router.prune_back_off) == 0
            assert router.scorer is None and not router.adaptive_gossip_enabled

    run_trio(body)


def _accepted(seq: int) -> tuple[bytes, Accepted]:
    signer = Signer(SigningKey(bytes([7]) * 32), clock=lambda: 1_000.0)
    envelope = signer.seal(ANNOUNCE_TOPIC, RoundAnnouncement(seq, bytes(32), 1))
    return encode(envelope), Accepted(envelope, RoundAnnouncement(seq, bytes(32), 1))


def test_validated_messages_hand_over_the_decoding_once_and_stay_bounded() -> None:
    validated = ValidatedMessages(capacity=2)
    items = [_accepted(seq) for seq in range(3)]
    for data, accepted in items:
        validated.put(data, accepted)
    assert len(validated) == 2  # the oldest was dropped
    data, accepted = items[2]
    envelope, message = validated.take(data)
    assert envelope is accepted.envelope and message is accepted.message
    assert len(validated) == 1
    # Not kept (dropped, or taken already): decoded again, to equal records.
    for data, accepted in (items[0], items[2]):
        assert validated.take(data) == (accepted.envelope, accepted.message)
