"""The node runtime: one libp2p host, gossipsub with our validators, the blob protocol.

`Node.run` is a trio service: it builds the host (TCP + Noise + Yamux, our Ed25519
identity), starts pubsub/gossipsub with a 1 s heartbeat and small-network degrees
(`net._gossipsub`), registers ``/p2pgo/blob/1``, dials the configured peers and calls
``task_status.started()`` once listening. Everything else (`subscribe`, `publish`,
`fetch_blob`, ...) is called from trio tasks while `run` is running.

The node dials only what it is asked to (configured peers, `connect`, services such
as relays, DCUtR and games): py-libp2p's background AutoConnector, which would dial
every peer in the peerstore towards ~200 connections, is kept stopped, and the
swarm's connection caps and pruning come from `NodeConfig`. In its place, one keeper
task per configured peer redials it with exponential backoff whenever no connection
to it is open (relays have their own keeper in `net._relay`). Gossipsub peer exchange
is off unless `NodeConfig.gossip_px` says otherwise: py-libp2p dials the peers listed
in any PRUNE it receives, which would let every peer choose whom we dial.

Defences, because a peer's bad input must never kill the host:
- only Noise is offered for security (py-libp2p's default also accepts plaintext and
  secio, which would let a peer skip encryption);
- a topic validator checks every gossip message (size, decoding, topic binding,
  signature, timestamp window, replay) before pubsub delivers or forwards it, and
  counts rejections per forwarding peer; it never raises (an exception in a pubsub
  validator would escape into py-libp2p's service);
- every stream handler is wrapped: errors are logged, counted and the stream reset.

Critical announcements are re-sent until enough peers ack them
(`announce_until_acked`): gossip delivery is not guaranteed in sparse meshes.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import multiaddr
import trio
from libp2p import create_yamux_muxer_option, new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

from net._blob import BLOB_PROTOCOL, BlobServer, FramedStream, fetch_into
from net._blobstore import BlobStore, DirectoryBlobStore
from net._config import NodeConfig
from net._envelope import (
    Accepted,
    Clock,
    EnvelopeVerifier,
    Rejected,
    Rejection,
    RejectionCounters,
    Signer,
    payload_id,
)
from net._errors import BlobError, NetError
from net._gossipsub import ValidatedMessages, build_gossipsub
from net._identity import Identity
from net._libp2p_tuning import tune_host
from net._wire import Ack, Message, SignedEnvelope, encode

ANNOUNCE_TOPIC = "p2pgo/announce/1"
_REDIAL_WARN_EVERY_S = 60.0  # a peer down for hours should not flood the log
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    """A verified message delivered on a subscribed topic."""

    topic: str
    message: Message
    envelope: SignedEnvelope
    origin: str  # peer id that published it on pubsub (a relayer may re-publish others')

    @property
    def sender(self) -> bytes:
        """The author's Ed25519 public key."""
        return self.envelope.sender


class NodeService(Protocol):
    """A component that runs beside the host (relay, directory, games).

    `Node.run` starts each service once the host listens and pubsub is ready (before
    dialling the configured peers) with ``await nursery.start(service.run, node)``;
    a service registers its stream handlers (`Node.handle`) before calling
    ``task_status.started()`` and runs until cancelled with the node.
    """

    async def run(self, node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None: ...


# (handler name, seconds the handler ran, whether it failed); see `Node.handler_observer`.
HandlerObserver = Callable[[str, float, bool], None]
# Dials a ``/p2p-circuit`` multiaddr and returns the peer id (installed by the relay client).
CircuitDialer = Callable[[str], Awaitable[str]]


@dataclass
class NodeStats:
    rejections: RejectionCounters = field(default_factory=RejectionCounters)
    handler_errors: Counter[str] = field(default_factory=Counter)
    dropped_deliveries: int = 0  # a subscriber's buffer was full
    # Dials of configured peers by their keepers after the first one at start.
    redial_attempts: int = 0
    redial_successes: int = 0


class _ConnectionTracker(INotifee):
    """Remembers open connections so shutdown can close their sockets.

    When a whole trio run is cancelled at once (two nodes in one process, or a test),
    py-libp2p's connection tasks die before `host.close()` sees them and the TCP
    socket is left to the garbage collector (a ResourceWarning).
    It also wakes the peer keepers (`changed`) when a connection opens or closes.
    """

    def __init__(self) -> None:
        self._conns: set[INetConn] = set()
        # Set and replaced on every change; the swarm updates its connection table
        # before it notifies, so a woken task sees the new state.
        self.changed = trio.Event()

    def _signal(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._conns.add(conn)
        self._signal()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._conns.discard(conn)
        self._signal()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def close_all(self) -> None:
        for conn in list(self._conns):
            try:
                await conn.muxed_conn.secured_conn.close()  # type: ignore[attr-defined]
            except Exception as err:  # already closed or broken: nothing left to do
                log.debug("closing a connection at shutdown failed: %r", err)
        self._conns.clear()


class _NoAutoDial(AutoConnector):
    """py-libp2p's background dialer, kept stopped.

    The swarm's AutoConnector dials peers from the peerstore until it holds the
    midpoint of the low and high watermarks (~200 by default), every 30 s and after
    every disconnect. It learns addresses from the signed peer records riding on
    gossip RPCs, so a ten-peer benchmark densified on its own (a node went from 3 to
    6 peers) and every extra connection is another duplicate forward per message.
    0.8.1 has no switch for it and a low watermark of 0 does not stop it (the target
    is the midpoint), so the swarm gets this one, whose `start` leaves it stopped:
    its periodic task then returns at once and `maybe_connect` does nothing.
    """

    async def start(self) -> None:
        """Stay stopped (the swarm calls this when it starts)."""


def _connection_config(config: NodeConfig) -> ConnectionConfig:
    """The swarm's limits from our config (only pruning and caps; no auto-dialling)."""
    return ConnectionConfig(
        max_connections=config.max_connections,
        min_connections=0,
        low_watermark=config.conn_prune_to,
        high_watermark=config.conn_prune_above,
        max_connections_per_peer=config.max_connections_per_peer,
    )


def _disable_auto_dial(host: IHost) -> None:
    network = host.get_network()
    if not isinstance(network, Swarm):  # new_host always builds a Swarm in 0.8.1
        raise NetError(f"unexpected libp2p network {type(network).__name__}")
    network.auto_connector = _NoAutoDial(network)


class Node:
    """A p2pgo network node (a trio service)."""

    def __init__(
        self,
        config: NodeConfig,
        identity: Identity | None = None,
        *,
        clock: Clock = time.time,
        blob_store: BlobStore | None = None,
        services: Sequence[NodeService] = (),
    ) -> None:
        self.config = config
        self._services = tuple(services)
        # Called after every stream handler returns (metrics); must not raise or block.
        self.handler_observer: HandlerObserver | None = None
        # Set by a relay client service: `connect` hands ``/p2p-circuit`` addresses to it
        # because the swarm's own dialer filters them out.
        self.circuit_dialer: CircuitDialer | None = None
        self.identity = identity or Identity.load_or_create(config.data_dir)
        self.peer_id = self.identity.peer_id
        self.public_key = self.identity.public_key
        self.stats = NodeStats()
        self._rng = random.Random()  # redial jitter; not security sensitive
        self._signer = Signer(self.identity.signing_key, clock=clock)
        self._verifier = EnvelopeVerifier(
            clock=clock, max_skew_s=config.clock_skew_s, max_size=config.max_gossip_bytes
        )
        self.blob_store: BlobStore = blob_store or DirectoryBlobStore(config.data_dir / "blobs")
        self.blob_server = BlobServer(
            self.blob_store,
            chunk_size=config.blob_chunk_size,
            streams_per_peer=config.blob_streams_per_peer,
            bytes_per_s=config.blob_bytes_per_s,
        )
        self._host: IHost | None = None
        self._pubsub: Pubsub | None = None
        self._nursery: trio.Nursery | None = None
        self._listeners: dict[str, list[trio.MemorySendChannel[Received]]] = {}
        self._acks: dict[bytes, set[bytes]] = {}  # payload id -> ackers' public keys
        self._validated = ValidatedMessages()  # the validator's decodings, for `_pump`
        self._ack_changed = trio.Event()

    # -- lifecycle -------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; `task_status.started()` once listening and peers dialled."""
        key_pair = self.identity.libp2p_key_pair()
        listen = [multiaddr.Multiaddr(a) for a in self.config.listen]
        host = new_host(
            key_pair=key_pair,
            sec_opt={
                NOISE_PROTOCOL_ID: NoiseTransport(
                    key_pair, noise_privkey=create_x25519_key_pair().private_key
                )
            },
            muxer_opt=create_yamux_muxer_option(),
            listen_addrs=listen,
            connection_config=_connection_config(self.config),
        )
        _disable_auto_dial(host)
        # Skips re-verifying unchanged signed peer records on every gossip RPC and
        # batches Yamux window updates (net/_libp2p_tuning.py; cut CPU per hop).
        tune_host(host)
        # Small-mesh settings and the reasons for each: net/_gossipsub.py.
        gossipsub = build_gossipsub(self.config)
        pubsub = Pubsub(host, gossipsub)
        tracker = _ConnectionTracker()
        host.get_network().register_notifee(tracker)
        host.set_stream_handler(TProtocol(BLOB_PROTOCOL), self._guarded("blob", self._serve_blob))
        listening: list[str] = []
        async with (
            host.run(listen_addrs=listen),
            background_trio_service(pubsub),
            background_trio_service(gossipsub),
            trio.open_nursery() as nursery,
        ):
            listening = [str(a) for a in host.get_transport_addrs()]
            # py-libp2p only logs a failed listen and runs on without it.
            if len(listening) >= len(listen):
                await pubsub.wait_until_ready()
                self._host, self._pubsub, self._nursery = host, pubsub, nursery
                try:
                    for service in self._services:
                        await nursery.start(service.run, self)
                    async with trio.open_nursery() as dialers:
                        for addr in self.config.peers:
                            dialers.start_soon(self._dial_logged, addr)
                    for addr in self.config.peers:
                        nursery.start_soon(self._keep_peer, addr, host, tracker)
                    task_status.started()
                    await trio.sleep_forever()
                finally:
                    self._host = self._pubsub = self._nursery = None
                    for senders in self._listeners.values():
                        for send in senders:
                            send.close()
                    self._listeners.clear()
                    # Close connections explicitly: leaving host.run() by cancellation
                    # alone leaks sockets (ResourceWarning at garbage collection).
                    # Two budgets: on a loaded machine host.close() can use up its
                    # own, and the tracked sockets must be closed all the same.
                    with trio.CancelScope(shield=True):
                        with trio.move_on_after(2):
                            await host.close()
                        with trio.move_on_after(1):
                            await tracker.close_all()
            else:
                await host.close()
        # Raised out here, not inside the nurseries, so callers get a plain NetError.
        raise NetError(f"could not listen on all of {list(self.config.listen)}; got {listening}")

    @property
    def listen_addrs(self) -> tuple[str, ...]:
        """Our addresses including ``/p2p/<peer id>`` (for others to dial)."""
        return tuple(str(a) for a in self._running_host().get_addrs())

    def connected_peers(self) -> tuple[str, ...]:
        return tuple(p.to_base58() for p in self._running_host().get_connected_peers())

    @property
    def host(self) -> IHost:
        """The running libp2p host (for services); RuntimeError when not running."""
        return self._running_host()

    def _running_host(self) -> IHost:
        if self._host is None:
            raise RuntimeError("the node is not running")
        return self._host

    def _running_pubsub(self) -> Pubsub:
        if self._pubsub is None:
            raise RuntimeError("the node is not running")
        return self._pubsub

    async def connect(self, addr: str) -> str:
        """Dial a peer by multiaddr (with ``/p2p/``); returns its peer id.

        A ``/p2p-circuit`` address goes through the relay client service (see
        `net.RelayClient`); without one it raises `NetError`.
        """
        if "/p2p-circuit" in addr:
            if self.circuit_dialer is None:
                raise NetError(f"cannot dial {addr}: this node runs no relay client")
            return await self.circuit_dialer(addr)
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        await self._running_host().connect(info)
        return str(info.peer_id.to_base58())

    async def _dial_logged(self, addr: str) -> None:
        try:
            await self.connect(addr)
        except Exception as err:  # a dead bootstrap peer must not stop the node
            log.warning("could not connect to %s: %r", addr, err)

    async def _keep_peer(self, addr: str, host: IHost, tracker: _ConnectionTracker) -> None:
        """Redial configured peer `addr` whenever no connection (direct or relayed) is open.

        The wait doubles after every attempt from `redial_initial_s` to `redial_max_s`,
        jittered down to half so nodes that lost the same peer do not redial in step; it
        starts over only after a connection lasted `redial_max_s`, so a peer that
        accepts and drops at once is not redialled in a tight loop.
        """
        target = multiaddr.Multiaddr(addr).get_peer_id()  # the target of a circuit address
        if target is None or target == self.peer_id:  # config validation requires /p2p/
            return
        peer = ID.from_base58(target)
        cfg = self.config
        connections = host.get_network().connections
        delay = cfg.redial_initial_s
        failures = 0  # failed attempts since the last connection
        last_warning = -_REDIAL_WARN_EVERY_S
        while True:
            if peer in connections:
                since = trio.current_time()
                while peer in connections:
                    changed = tracker.changed
                    # A backstop timer, not sequencing: a lost notification cannot
                    # leave the peer unwatched for longer than this.
                    with trio.move_on_after(cfg.redial_check_s):
                        await changed.wait()
                if trio.current_time() - since >= cfg.redial_max_s:
                    delay = cfg.redial_initial_s
                log.info("configured peer %s disconnected; redialing", target)
            await trio.sleep(delay * self._rng.uniform(0.5, 1.0))  # the backoff itself
            delay = min(delay * 2, cfg.redial_max_s)
            if peer in connections:  # it dialled us, or someone else reconnected it
                failures = 0
                continue
            self.stats.redial_attempts += 1
            # The swarm refuses to dial a peer for 60 s after all its addresses
            # failed (its negative cache); this keeper does the rate limiting.
            network = host.get_network()
            if isinstance(network, Swarm):
                network.unblock_peer(peer)
            try:
                await self.connect(addr)
            except Exception as err:  # dial failures come in many types
                failures += 1
                now = trio.current_time()
                if now - last_warning >= _REDIAL_WARN_EVERY_S:
                    last_warning = now
                    log.warning(
                        "redial of %s failed (%d attempts so far, next in <= %.1f s): %r",
                        addr,
                        failures,
                        delay,
                        err,
                    )
                else:
                    log.debug("redial of %s failed: %r", addr, err)
                continue
            self.stats.redial_successes += 1
            log.info("reconnected to %s after %d failed attempts", addr, failures)
            failures = 0

    # -- gossip ----------------------------------------------------------------

    async def subscribe(
        self, topic: str, *, buffer: int = 256
    ) -> trio.MemoryReceiveChannel[Received]:
        """Verified messages on `topic`. A full buffer drops (and counts) new messages."""
        pubsub = self._running_pubsub()
        send, receive = trio.open_memory_channel[Received](buffer)
        if topic not in self._listeners:
            pubsub.set_topic_validator(topic, self._validator(topic), is_async_validator=False)
            subscription = await pubsub.subscribe(topic)
            self._listeners[topic] = []
            assert self._nursery is not None
            self._nursery.start_soon(self._pump, topic, subscription)
        self._listeners[topic].append(send)
        return receive

    def _validator(self, topic: str) -> Callable[[ID, rpc_pb2.Message], bool]:
        def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            try:
                if list(msg.topicIDs) != [topic]:
                    verdict: Accepted | Rejected = Rejected(
                        Rejection.WRONG_TOPIC, f"published to {list(msg.topicIDs)}"
                    )
                else:
                    verdict = self._verifier.verify(msg.data, topic)
            except Exception as err:  # must not escape into py-libp2p's pubsub service
                log.exception("gossip validator failed")
                verdict = Rejected(Rejection.INTERNAL, repr(err))
            if isinstance(verdict, Rejected):
                peer = forwarder.to_base58()
                self.stats.rejections.add(peer, verdict.reason)
                log.info(
                    "rejected gossip from %s: %s (%s)", peer, verdict.reason.value, verdict.detail
                )
                return False
            self._validated.put(msg.data, verdict)
            return True

        return validate

    async def _pump(self, topic: str, subscription: Any) -> None:
        while True:
            msg = await subscription.get()
            # The validator accepted these bytes already; decoding cannot fail.
            envelope, message = self._validated.take(msg.data)
            received = Received(topic, message, envelope, ID(msg.from_id).to_base58())
            if isinstance(message, Ack):
                self._acks.setdefault(message.ref, set()).add(envelope.sender)
                self._ack_changed.set()
                self._ack_changed = trio.Event()
            for send in list(self._listeners.get(topic, ())):
                try:
                    send.send_nowait(received)
                except trio.WouldBlock:
                    self.stats.dropped_deliveries += 1
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._listeners[topic].remove(send)

    async def publish(self, topic: str, message: Message) -> SignedEnvelope:
        """Sign `message` for `topic` and gossip it; returns the envelope sent."""
        envelope = self._signer.seal(topic, message)
        data = encode(envelope)
        if len(data) > self.config.max_gossip_bytes:
            raise ValueError(
                f"{message.KIND} is {len(data)} bytes; gossip carries at most "
                f"{self.config.max_gossip_bytes} (send large payloads as blobs)"
            )
        await self._running_pubsub().publish(topic, data)
        return envelope

    async def ack(self, received: Received) -> None:
        """Acknowledge a received message on its topic."""
        await self.publish(received.topic, Ack(payload_id(received.envelope.payload)))

    def acks_for(self, message: Message) -> frozenset[bytes]:
        """Public keys of the peers that acked `message` so far."""
        return frozenset(self._acks.get(payload_id(encode(message)), ()))

    async def announce_until_acked(
        self, topic: str, message: Message, *, expected: int, interval: float = 0.5
    ) -> frozenset[bytes]:
        """Publish `message` and re-publish every `interval` s until `expected` peers ack.

        The node must be subscribed to `topic` (acks arrive there). Bound it with a
        trio timeout. Returns the ackers' public keys.
        """
        if topic not in self._listeners:
            raise RuntimeError(f"subscribe to {topic!r} before announcing on it")
        ref = payload_id(encode(message))
        while True:
            await self.publish(topic, message)
            with trio.move_on_after(interval):  # re-send timer, not sequencing
                while len(self._acks.get(ref, ())) < expected:
                    await self._ack_changed.wait()
            ackers = frozenset(self._acks.get(ref, ()))
            if len(ackers) >= expected:
                return ackers

    # -- streams ---------------------------------------------------------------

    def handle(
        self, protocol: str, name: str, handler: Callable[[INetStream, str], Awaitable[None]]
    ) -> None:
        """Serve `protocol` with `handler(stream, peer id)`, guarded like our own handlers."""
        self._running_host().set_stream_handler(TProtocol(protocol), self._guarded(name, handler))

    async def new_stream(self, peer_id: str, protocol: str) -> INetStream:
        """Open a stream to a connected (or dialable) peer; libp2p errors pass through."""
        return await self._running_host().new_stream(ID.from_base58(peer_id), [TProtocol(protocol)])

    def _guarded(
        self, name: str, handler: Callable[[INetStream, str], Awaitable[None]]
    ) -> Callable[[INetStream], Awaitable[None]]:
        async def guarded(stream: INetStream) -> None:
            peer = stream.muxed_conn.peer_id.to_base58()
            started = trio.current_time()
            failed = False
            try:
                await handler(stream, peer)
            except Exception as err:  # a handler that raises would kill the host
                failed = True
                self.stats.handler_errors[name] += 1
                log.warning("%s handler failed for peer %s: %r", name, peer, err)
                try:
                    await stream.reset()
                except Exception as reset_err:  # the stream may already be gone
                    log.debug("reset after handler error failed: %r", reset_err)
            if self.handler_observer is not None:
                self.handler_observer(name, trio.current_time() - started, failed)

        return guarded

    async def _serve_blob(self, stream: INetStream, peer: str) -> None:
        await self.blob_server.serve(stream, peer)

    async def fetch_blob(
        self, peer_id: str, digest: bytes, *, max_chunks: int | None = None
    ) -> int:
        """Download blob `digest` from `peer_id` into our store (resuming); bytes received.

        Raises `BlobError`. A complete blob already in the store costs nothing.
        """
        if self.blob_store.size(digest) is not None:
            return 0
        host = self._running_host()
        try:
            stream = await host.new_stream(ID.from_base58(peer_id), [TProtocol(BLOB_PROTOCOL)])
        except Exception as err:  # dial/negotiation failures come in many types
            raise BlobError(f"cannot open a blob stream to {peer_id}: {err!r}") from None
        done = False
        try:
            received = await fetch_into(
                FramedStream(stream), self.blob_store, digest, max_chunks=max_chunks
            )
            done = self.blob_store.size(digest) is not None
            return received
        finally:
            try:
                # Reset an abandoned transfer: a half-close would leave the server
                # blocked writing into our full receive window.
                await (stream.close() if done else stream.reset())
            except Exception as err:  # closing a broken stream can fail; nothing to do
                log.debug("closing blob stream failed: %r", err)
