"""Circuit relay v2: the relay's hop service and the peers' relay client (with DCUtR).

py-libp2p 0.8.1 has the pieces but no wiring (see docs/net-notes.md):

- `RelayService` (on the relay) runs `CircuitV2Protocol(allow_hop=True)` with explicit
  limits: reservations in total and their TTL, circuits per reserved peer, circuit
  duration and bytes. A small subclass counts what the relay does (reservations,
  circuits, bytes, refusals by status) for the metrics; it overrides private methods
  of 0.8.1 (pinned ``<0.9`` in pyproject), which is why it is kept tiny.
- `RelayClient` (on a peer) runs the STOP side (`CircuitV2Protocol(allow_hop=False)`)
  so relayed connections are accepted, makes and *keeps* a reservation on each
  configured relay (refreshed at half its TTL, re-made at once when the connection to
  the relay drops), gives the node a dialer for ``/p2p-circuit`` addresses (the
  swarm's own `connect` filters them out, so they go through
  `CircuitV2Transport.dial`), and runs `DCUtRProtocol`, whose loop tries every 2 s to
  upgrade relayed connections to direct ones. New streams prefer a direct connection
  once one exists (the swarm's default "best" connection choice).

We speak the RESERVE exchange ourselves instead of using the transport's refresher:
that one wakes at ``expiry - 30 s`` and so spins without pause for TTLs under 30 s.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from libp2p.abc import INetStream
from libp2p.connection_types import ConnectionType
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service

from net._errors import ConfigError, NetError

log = logging.getLogger(__name__)


class RelayError(NetError):
    """A reservation or a relayed dial failed."""


@dataclass(frozen=True, slots=True)
class RelayLimitsConfig:
    """What one relay grants. py-libp2p's defaults (4 reservations) are far too small."""

    max_reservations: int = 128
    reservation_ttl_s: int = 3600
    max_circuits_per_peer: int = 8  # concurrent circuits to one reserved peer
    circuit_duration_s: int = 3600  # 0: unlimited
    circuit_bytes: int = 256 * 1024 * 1024  # per circuit, both directions; 0: unlimited

    def __post_init__(self) -> None:
        for name in ("max_reservations", "reservation_ttl_s", "max_circuits_per_peer"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("circuit_duration_s", "circuit_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_libp2p(self) -> RelayLimits:
        return RelayLimits(
            duration=self.circuit_duration_s,
            data=self.circuit_bytes,
            max_circuit_conns=self.max_circuits_per_peer,
            max_reservations=self.max_reservations,
            reservation_ttl=self.reservation_ttl_s,
        )


@dataclass
class RelayStats:
    """What the hop service did; read by the metrics sampler on the trio thread."""

    reservations_accepted: int = 0
    circuits_opened: int = 0
    circuits_active: int = 0
    bytes_relayed: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # by relay status name


class _CountingHop(CircuitV2Protocol):
    """`CircuitV2Protocol` that counts; each override only observes and delegates."""

    def __init__(self, host: Any, limits: RelayLimits, stats: RelayStats) -> None:
        super().__init__(host, limits=limits, allow_hop=True)
        self.stats = stats
        self._directions: dict[frozenset[int], int] = {}

    async def _handle_reserve(self, stream: INetStream, msg: HopMessage) -> None:
        peer = stream.muxed_conn.peer_id
        manager = self.resource_manager
        if manager.has_reservation(peer) or manager.can_accept_reservation(peer):
            self.stats.reservations_accepted += 1
        else:
            self.stats.refused["reservation_limit"] += 1
        await super()._handle_reserve(stream, msg)

    async def _send_status(
        self, stream: Any, code: StatusCode, message: str, limit: Any = None
    ) -> None:
        if code != StatusCode.OK:
            self.stats.refused[code.name.lower()] += 1
        await super()._send_status(stream, code, message, limit)

    async def _read_stream_with_retry(
        self, stream: INetStream, max_retries: int = 3
    ) -> bytes | None:
        data = await super()._read_stream_with_retry(stream, max_retries)
        if data:  # only the relay loop reads through here: these bytes are relayed
            self.stats.bytes_relayed += len(data)
        return data

    async def _relay_data(self, src_stream: INetStream, dst_stream: INetStream, *args: Any) -> None:
        # Called once per direction; a circuit is the pair of streams.
        key = frozenset((id(src_stream), id(dst_stream)))
        if key not in self._directions:
            self._directions[key] = 0
            self.stats.circuits_opened += 1
            self.stats.circuits_active += 1
        self._directions[key] += 1
        try:
            await super()._relay_data(src_stream, dst_stream, *args)
        finally:
            self._directions[key] -= 1
            if self._directions[key] == 0:
                del self._directions[key]
                self.stats.circuits_active -= 1


class RelayService:
    """The relay side (a `NodeService`): circuit relay v2 hop with explicit limits."""

    def __init__(self, limits: RelayLimitsConfig | None = None) -> None:
        self.limits = limits or RelayLimitsConfig()
        self.stats = RelayStats()
        self._hop: _CountingHop | None = None

    def active_reservations(self) -> int:
        if self._hop is None:
            return 0
        manager = self._hop.resource_manager
        return sum(1 for peer in list(manager._reservations) if manager.get_reservation(peer))

    async def run(self, node: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        hop = _CountingHop(node.host, self.limits.to_libp2p(), self.stats)
        async with background_trio_service(hop):
            await hop.event_started.wait()
            self._hop = hop
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._hop = None


def _split_circuit(addr: str) -> tuple[str, str]:
    """``<relay addr>/p2p/<relay>/p2p-circuit/p2p/<target>`` -> (relay part, target id)."""
    relay, sep, target = addr.partition("/p2p-circuit/p2p/")
    if not sep or not relay or not target or "/" in target:
        raise RelayError(f"{addr!r} is not <relay multiaddr>/p2p-circuit/p2p/<peer id>")
    return relay, target


async def reserve(node: Any, relay_peer: ID, *, timeout: float = 10.0) -> float:
    """Make (or refresh) a reservation on a connected relay; returns its TTL in seconds."""
    with trio.fail_after(timeout):
        stream = await node.host.new_stream(relay_peer, [HOP_PROTOCOL])
        try:
            await write_delimited_msg(stream, HopMessage(type=HopMessage.RESERVE))
            reply = await read_delimited_msg(stream, HopMessage)
        finally:
            await stream.close()
    if reply.type != HopMessage.STATUS or StatusCode(reply.status) != StatusCode.OK:
        status = StatusCode(reply.status).name if reply.HasField("status") else "none"
        raise RelayError(f"relay {relay_peer} refused the reservation: {status}")
    if not reply.HasField("reservation"):
        raise RelayError(f"relay {relay_peer} sent no reservation")
    # The relay states an absolute expiry by its clock; trust it only as a TTL.
    return max(1.0, reply.reservation.expire - time.time())


class RelayClient:
    """A peer's relay side (a `NodeService`): reservations, circuit dials, DCUtR."""

    def __init__(
        self,
        relays: Sequence[str] | None = None,
        *,
        dcutr: bool = True,
        refresh_fraction: float = 0.5,
        check_interval: float = 2.0,
        max_backoff: float = 30.0,
    ) -> None:
        if not 0 < refresh_fraction < 1:
            raise ConfigError("refresh_fraction must be between 0 and 1")
        self._relays = None if relays is None else tuple(relays)
        self._dcutr_enabled = dcutr
        self._refresh_fraction = refresh_fraction
        self._check_interval = check_interval
        self._max_backoff = max_backoff
        self._node: Any = None
        self._transport: CircuitV2Transport | None = None
        # relay multiaddr (with /p2p/) -> local monotonic time its reservation expires
        self.reservations: dict[str, float] = {}
        self.refreshes = 0  # reservations made or renewed, for tests and logs
        self._changed = trio.Event()

    @property
    def circuit_addrs(self) -> tuple[str, ...]:
        """Where others can reach us: ``<relay>/p2p-circuit/p2p/<us>`` per live reservation."""
        now = trio.current_time()
        me = self._node.peer_id if self._node is not None else ""
        return tuple(
            f"{relay}/p2p-circuit/p2p/{me}"
            for relay, expires in self.reservations.items()
            if expires > now
        )

    async def wait_reserved(self, count: int = 1) -> None:
        """Wait until at least `count` reservations are live (bound it with a timeout)."""
        while len(self.circuit_addrs) < count:
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, node: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._node = node
        relays = node.config.relays if self._relays is None else self._relays
        for addr in relays:
            if "/p2p/" not in addr:
                raise ConfigError(f"relay {addr!r} must end with /p2p/<peer id>")
        host = node.host
        stop = CircuitV2Protocol(host, allow_hop=False)
        # STOP only: with the CLIENT role the transport would also reserve on every dial.
        self._transport = CircuitV2Transport(host, stop, RelayConfig(roles=RelayRole.STOP))
        async with background_trio_service(stop), trio.open_nursery() as nursery:
            await stop.event_started.wait()
            if self._dcutr_enabled:
                dcutr = DCUtRProtocol(host)
                nursery.start_soon(self._run_dcutr, dcutr)
                await dcutr.event_started.wait()
            node.circuit_dialer = self.dial
            try:
                for addr in relays:
                    await nursery.start(self._keep_reservation, addr)
                task_status.started()
                await trio.sleep_forever()
            finally:
                node.circuit_dialer = None

    async def _run_dcutr(self, dcutr: DCUtRProtocol) -> None:
        async with background_trio_service(dcutr):
            await trio.sleep_forever()

    async def _keep_reservation(
        self, relay: str, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Reserve on `relay` and keep it so; `started()` after the first attempt."""
        node = self._node
        info = info_from_p2p_addr(multiaddr.Multiaddr(relay))
        backoff = 1.0
        started = False
        while True:
            try:
                await node.host.connect(info)
                ttl = await reserve(node, info.peer_id)
            except Exception as err:  # dial and stream failures come in many types
                log.warning("reservation on %s failed: %r", relay, err)
                self.reservations.pop(relay, None)
                self._notify()
                wait = backoff
                backoff = min(backoff * 2, self._max_backoff)
            else:
                self.refreshes += 1
                self.reservations[relay] = trio.current_time() + ttl
                self._notify()
                backoff = 1.0
                wait = ttl * self._refresh_fraction
            if not started:
                started = True
                task_status.started()
            # Sleep until the refresh is due, waking early if the relay connection drops
            # (the relay forgets a reservation whose peer is not connected).
            deadline = trio.current_time() + wait
            while trio.current_time() < deadline:
                await trio.sleep(min(self._check_interval, deadline - trio.current_time()))
                if relay in self.reservations and not self._connected(info.peer_id):
                    log.info("lost the connection to relay %s; reserving again", relay)
                    break

    def _connected(self, peer: ID) -> bool:
        return bool(self._node.host.get_network().get_connections(peer))

    async def dial(self, addr: str) -> str:
        """Connect to a peer through a relay (``.../p2p-circuit/p2p/<peer>``); its peer id."""
        relay, target = _split_circuit(addr)
        if self._transport is None:
            raise RelayError("the relay client is not running")
        # A directory entry names the relay as the *target* reaches it; when it is one
        # of our relays, reach it our way (in split networks the addresses differ).
        relay_id = relay.rsplit("/p2p/", 1)[-1]
        for ours in self.reservations:
            if ours.rsplit("/p2p/", 1)[-1] == relay_id:
                relay, addr = ours, f"{ours}/p2p-circuit/p2p/{target}"
                break
        try:
            await self._node.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(relay)))
            await self._transport.dial(multiaddr.Multiaddr(addr))
        except Exception as err:  # libp2p raises several unrelated types here
            raise RelayError(f"relayed dial to {addr} failed: {err}") from None
        return target

    def is_direct(self, peer_id: str) -> bool:
        """Whether we hold a direct (not relayed) connection to `peer_id` (after DCUtR)."""
        conns = self._node.host.get_network().get_connections(ID.from_base58(peer_id))
        return any(c.get_connection_type() == ConnectionType.DIRECT for c in conns)
