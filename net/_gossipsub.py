"""The gossipsub router `Node.run` uses: py-libp2p 0.8.1's `GossipSub`, set up for small meshes.

`build_gossipsub` turns a `NodeConfig` into the router and keeps the reasons for each
setting next to it. Besides degrees, heartbeat and rate limit from the config:

- **Protocol order** 1.1 first (1.2 still accepted): under 1.2, 0.8.1 sends an
  IDONTWANT to every mesh peer for every message before forwarding it; on ten peers
  that tripled the RPCs and took announce latency from ~40 ms to seconds.
- **No IP-diversity grafting**: it assumes peers on many addresses; on loopback or one
  LAN every peer shares an IP and it only churns the small mesh.
- **Peer exchange off** unless `NodeConfig.gossip_px`: on a PRUNE, 0.8.1 dials up to
  ``px_peers_count`` of the peers listed, whatever ``do_px`` says, so any peer could
  choose whom we dial. 0 slices the list to nothing; ``do_px=False`` keeps our PRUNEs
  from handing our peers' records out.
- **Mesh maintenance that cannot cut a peer off** (issue 4, "GRAFT flood detected";
  docs/net-notes.md). 0.8.1's heartbeat PRUNEs a peer over ``degree_high`` without
  recording a backoff for it on its own side, so it may GRAFT that peer again at once;
  the pruned peer, inside its backoff and the "GRAFT flood" window (min(10 s, prune
  backoff)), answers with a PRUNE. Then both sides hold a backoff, and 0.8.1 leaves
  backed-off peers out of the mesh *and* out of IHAVE gossip, so nothing flows between
  them until it ends. Behind a hub (a node linked to the rest through one peer) that
  lost every announcement for the default 60 s. Hence:
  - ``prune_back_off`` of `PRUNE_BACKOFF_S` (a few heartbeats; also what our PRUNEs
    announce): such a cut now heals in seconds;
  - no "GRAFT flood" check: it answers a GRAFT inside its window with a PRUNE but,
    unlike the spec's backoff check behind it, does not renew its own backoff, so the
    answering side grafts again while the other's window is still open, and two peers
    with no other mesh peers PRUNEd each other for as long as we watched (backoffs
    also end up to 1 s early: py-libp2p rounds them down to whole seconds);
  - no scorer: with default `ScoreParams` every weight is 0 and every score 0, so it
    carries no information, but it drives opportunistic grafting, which then grafts 2
    non-mesh peers (all qualify) every heartbeat; on a hub over ``degree_high`` that
    re-grafted just-pruned peers every other heartbeat, each time such a cut;
  - no adaptive gossip: its health score (under 0.7 whenever scores are 0) sets the
    heartbeat to 30-60 s after the first 30 s and moves the degree bounds.

Re-check all of this on any py-libp2p upgrade: it names 0.8.1's attributes.
`ValidatedMessages` hands our topic validator's decoding to the subscription pump.
"""

from __future__ import annotations

from collections import OrderedDict

from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub

from net._config import NodeConfig
from net._envelope import Accepted
from net._wire import Message, SignedEnvelope, decode

__all__ = ["PRUNE_BACKOFF_S", "PX_PEERS", "ValidatedMessages", "build_gossipsub"]

PX_PEERS = 16  # py-libp2p's default, used only when `NodeConfig.gossip_px` is on
# Seconds a pruned peer waits before grafting again (py-libp2p: 60, at a 120 s
# heartbeat); over two of our 1 s heartbeats, so a prune is not undone at once.
PRUNE_BACKOFF_S = 3


def build_gossipsub(config: NodeConfig) -> GossipSub:
    """A `GossipSub` router for `config` (see the module docstring for each choice)."""
    router = GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID_V12, PROTOCOL_ID],
        degree=config.gossip_degree,
        degree_low=config.gossip_degree_low,
        degree_high=config.gossip_degree_high,
        heartbeat_interval=config.heartbeat_interval,
        heartbeat_initial_delay=0.1,
        max_messages_per_topic_per_second=config.gossip_rate_limit,
        eclipse_protection_enabled=False,
        do_px=config.gossip_px,
        px_peers_count=PX_PEERS if config.gossip_px else 0,
        prune_back_off=PRUNE_BACKOFF_S,
        adaptive_gossip_enabled=False,
    )
    router.scorer = None
    # 0 turns 0.8.1's extra "GRAFT flood" check off; the spec's backoff check behind it
    # still refuses a GRAFT inside the backoff, and (unlike the flood branch) renews our
    # own backoff, so both sides' backoffs end together instead of ping-ponging PRUNEs.
    router.graft_flood_threshold = 0.0
    return router


class ValidatedMessages:
    """What the topic validator decoded, by message bytes, for the subscription pump.

    Pubsub runs our validator on a message's bytes and then queues the same bytes for
    the subscription; handing the decoded envelope and message over saves decoding
    them a second time. Bounded (oldest dropped): bytes validated but never delivered
    must not pile up; a miss decodes again, with the same result.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._accepted: OrderedDict[bytes, Accepted] = OrderedDict()

    def __len__(self) -> int:
        return len(self._accepted)

    def put(self, data: bytes, accepted: Accepted) -> None:
        self._accepted[data] = accepted
        self._accepted.move_to_end(data)
        while len(self._accepted) > self._capacity:
            self._accepted.popitem(last=False)

    def take(self, data: bytes) -> tuple[SignedEnvelope, Message]:
        """The envelope and message of validated `data` (decoded again if not kept)."""
        accepted = self._accepted.pop(data, None)
        if accepted is not None:
            return accepted.envelope, accepted.message
        envelope = decode(data)
        assert isinstance(envelope, SignedEnvelope)  # the validator checked it
        return envelope, decode(envelope.payload)
