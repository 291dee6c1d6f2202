"""The app's network runtime: the player's node, and the embedded network, on one trio thread.

Imported lazily by :class:`p2pgo_tui._netmodel.NetworkHost` (this module pulls in trio
and py-libp2p). One ``net.NetBridge`` runs the *player's* node in its own thread; the
node's one extra service, :class:`_Setup`, brings up everything else inside that node's
nursery, in order:

1. embedded mode: a relay node (circuit relay v2 hop + peer directory) on 127.0.0.1
   with an OS-chosen port, its Prometheus ``/metrics`` on an ephemeral loopback port,
   and its gossip counter (what ``p2pgo-relay`` runs);
2. the player's relay client (a reservation on every relay), the game service, and a
   directory registration on every relay (repeated before it expires);
3. embedded mode: ``plan.bots`` bot peers, each a real ``net.Node`` with its own relay
   reservation, directory entry and an AI that accepts challenges (``net.AiPolicy``);
4. the player dials each bot through the relay, so the Peers screen shows relayed links
   that DCUtR then upgrades to direct ones.

Federated rounds (:mod:`p2pgo_tui._fl_runtime`): in embedded mode the relay node also
runs the round coordinator and every bot a participant that joins each round; the
player's own participant starts last and joins only when the player asks. Without the
embedded network the given relays are the coordinators (as for ``p2pgo-peer``).

Bots run in-process rather than as ``p2pgo-peer`` children. Measured on this 2-core
machine: a child costs ~2.1 s of CPU to start (its own ``import libp2p``) and ~100 MB of
memory; an in-process bot ~0.1 s and no new interpreter. Idle, both cost about 1 ms of
CPU per second. Only the player runs DCUtR: when both ends of a pair in one process
try to upgrade, py-libp2p 0.8.1's hole punch fails on loopback and leaks its sockets.
Shutdown cancels the one nursery: every node closes its sockets in its ``finally``.

The UI reaches this module only through :class:`NetRuntime`'s coroutines, which run on
the trio thread via ``NetBridge.call``; results come back as frozen records. The one
exception is a timed game's clocks: the game service's ``game_clock`` events (on the
trio thread) replace the game link's :class:`~p2pgo_tui._netmodel.ClockSnapshot`,
which the game screen reads on its own timer.
"""

from __future__ import annotations

import datetime
import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio
from libp2p.abc import INetStream
from libp2p.connection_types import ConnectionType
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.peer.id import ID

from net import (
    ANNOUNCE_TOPIC,
    AiPolicy,
    Directory,
    DirectoryBlobStore,
    DirectoryClient,
    DirectoryError,
    DirectoryService,
    EphemeralBlobStore,
    GameError,
    GameService,
    GameSession,
    GameTerms,
    Identity,
    NetBridge,
    NetError,
    Node,
    NodeConfig,
    Received,
    RelayClient,
    RelayLimitsConfig,
    RelayMetrics,
    RelayService,
)
from p2pgo_tui._engine import Color, GameRecord, GameStore, Move, Point
from p2pgo_tui._fl_runtime import RoundsRuntime, warm_up_training
from p2pgo_tui._netmodel import (
    ClockSnapshot,
    GameResult,
    LinkKind,
    ModelSink,
    NetGameLink,
    NetSnapshot,
    NetworkError,
    NetworkPlan,
    PeerView,
    RelayEndpoint,
)
from p2pgo_tui._roundsmodel import JoinQuote, RoundsView
from p2pgo_tui._settings import GameSettings

__all__ = ["NetRuntime"]

log = logging.getLogger(__name__)
T = TypeVar("T")

AGENT = "p2pgo-tui/0.1"
BOT_AGENT = "p2pgo-bot/0.1"
_REGISTER_TTL_S = 120
_PING_TIMEOUT_S = 2.0
_LIST_TIMEOUT_S = 3.0


def _relay_id(addr: str) -> str:
    return addr.rsplit("/p2p/", 1)[-1]


def _loopback_first(addrs: Sequence[str]) -> str:
    return next((a for a in addrs if a.startswith("/ip4/127.0.0.1/")), addrs[0])


class _UiPolicy:
    """Our side of games the player plays: moves come from the board via a link."""

    def __init__(self) -> None:
        self.links: dict[str, NetGameLink] = {}
        # Dead stones as the bots propose them (seeded by the chain head), so both
        # sides usually agree at once.
        self._counter = AiPolicy()

    def decline_reason(self, terms: GameTerms) -> str | None:
        return "this player only plays the games it starts"

    def _link(self, session: GameSession) -> NetGameLink:
        link = self.links.get(session.game_id)
        if link is None:
            raise GameError(f"no board plays game {session.game_id}")
        return link

    def choose(self, session: GameSession) -> Move:
        link = self._link(session)
        link.deliver(session.record.moves)
        return link.next_move()

    def dead_stones(self, session: GameSession) -> frozenset[Point]:
        # The opponent's last pass reaches the board here: scoring starts without a
        # `choose` on our side.
        self._link(session).deliver(session.record.moves)
        return self._counter.dead_stones(session)


class _Pinger:
    """Round-trip times over persistent ``/ipfs/ping/1.0.0`` streams (one per peer)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._streams: dict[str, INetStream] = {}

    async def rtt_ms(self, peer_id: str) -> float | None:
        stream = self._streams.get(peer_id)
        try:
            with trio.fail_after(_PING_TIMEOUT_S):
                if stream is None:
                    stream = await self._node.new_stream(peer_id, PING_PROTOCOL)
                    self._streams[peer_id] = stream
                began = time.perf_counter()
                await perform_ping_roundtrip(stream)
                return (time.perf_counter() - began) * 1000
        except Exception as err:  # a dead or slow peer has no latency to show
            log.debug("ping %s failed: %r", peer_id, err)
            self._streams.pop(peer_id, None)
            if stream is not None:
                await _reset(stream)
            return None

    async def close(self) -> None:
        for stream in self._streams.values():
            await _reset(stream)
        self._streams.clear()


async def _reset(stream: INetStream) -> None:
    try:
        await stream.reset()
    except Exception as err:  # the stream may already be gone
        log.debug("resetting a stream failed: %r", err)


async def _keep_registered(
    client: DirectoryClient, addrs: Callable[[], tuple[str, ...]], agent: str, ttl: int
) -> None:
    """Re-register ``node`` before its directory entry expires (``addrs()`` is re-read)."""
    while True:
        await trio.sleep(max(1.0, ttl / 2))  # the refresh period, not sequencing
        try:
            await client.register(addrs(), agent, ttl)
        except DirectoryError as err:
            log.warning("directory registration on %s failed: %s", client.relay_peer_id, err)


def _addrs_of(node: Node, relays: RelayClient) -> tuple[str, ...]:
    return (*relays.circuit_addrs, *node.listen_addrs)


class _Setup:
    """The player node's service that starts everything else (see the module docstring)."""

    def __init__(self, runtime: NetRuntime) -> None:
        self._rt = runtime

    async def run(self, node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        rt = self._rt
        plan = rt.plan
        async with trio.open_nursery() as nursery:
            relays = list(plan.relays)
            if plan.embedded:
                relays.append(await nursery.start(self._embedded_relay))
            rt.relay_client = client = RelayClient(relays=relays)
            await nursery.start(client.run, node)
            await nursery.start(rt.games.run, node)
            for addr in relays:
                directory = DirectoryClient(node, _relay_id(addr))
                rt.directories.append(directory)
                await self._register(nursery, node, directory, client, AGENT)
            rt.nursery = nursery
            # Up: the player is on the network. The bots and the player's rounds follow
            # here (seeding games, opening stores: seconds of CPU on a busy machine), so
            # the screens work sooner and a quit during start-up does not wait for them.
            task_status.started()
            if plan.embedded:
                for i in range(plan.bots):
                    bot = await nursery.start(self._bot, i + 1, relays[-1])
                    rt.bots.append(bot)
                    nursery.start_soon(self._dial_bot, node, bot, relays[-1])
            coordinators = [_relay_id(a) for a in relays]
            player = await trio.to_thread.run_sync(rt.rounds.player_service, rt.store, coordinators)
            if player is not None:
                await nursery.start(player.run, node)
            await trio.sleep_forever()

    async def _register(
        self,
        nursery: trio.Nursery,
        node: Node,
        directory: DirectoryClient,
        relays: RelayClient,
        agent: str,
    ) -> None:
        """Register once now (so we are listed when start-up ends), then keep it so."""
        addrs = functools.partial(_addrs_of, node, relays)
        try:
            await directory.register(addrs(), agent, _REGISTER_TTL_S)
        except DirectoryError as err:  # listed later by the refresh loop, if ever
            log.warning("directory registration failed: %s", err)
        nursery.start_soon(_keep_registered, directory, addrs, agent, _REGISTER_TTL_S)

    async def _embedded_relay(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        rt = self._rt
        relay = RelayService(RelayLimitsConfig())
        directory = DirectoryService(Directory())
        data_dir = rt.plan.data_dir / "net" / "relay"
        # Decoding the first model imports torch (~2 s): off the trio thread.
        rounds = await trio.to_thread.run_sync(rt.rounds.coordinator_service, data_dir / "fl")
        node = Node(NodeConfig(data_dir=data_dir), services=[relay, directory, rounds])
        metrics = RelayMetrics(node, relay, directory, rounds=rounds)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            inbox = await node.subscribe(ANNOUNCE_TOPIC)
            nursery.start_soon(_count_gossip, metrics, inbox)
            server = await nursery.start(functools.partial(metrics.run, port=0))
            addr = _loopback_first(node.listen_addrs)
            rt.embedded = RelayEndpoint(
                "embedded relay",
                "relay + directory + rounds (embedded, loopback)",
                peer_id=node.peer_id,
                addr=addr,
                metrics_url=server.url,
            )
            task_status.started(addr)
            await trio.sleep_forever()

    async def _bot(
        self, number: int, relay: str, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        rt = self._rt
        name = f"bot-{number}"
        # Only the player upgrades relayed links (DCUtR): when both ends of a pair in one
        # process try, libp2p 0.8.1's hole punch fails on loopback and leaks its sockets.
        relays = RelayClient(relays=[relay], dcutr=False)
        games = GameService(
            None, AiPolicy(seed=number, max_moves=rt.plan.bot_max_moves), accept_challenges=True
        )
        config = NodeConfig(data_dir=rt.plan.data_dir / "net" / "bots" / name)
        identity = Identity.load_or_create(config.data_dir)
        rounds, store = await trio.to_thread.run_sync(
            rt.rounds.bot_service,
            name,
            number,
            config.data_dir,
            identity.signing_key,
            _relay_id(relay),
        )
        node = Node(
            config,
            identity,
            blob_store=_round_blobs(config.data_dir),
            services=[relays, games, rounds],
        )
        try:
            await self._run_bot(node, name, relay, relays, task_status=task_status)
        finally:
            store.close()

    async def _run_bot(
        self,
        node: Node,
        name: str,
        relay: str,
        relays: RelayClient,
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        rt = self._rt
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            directory = DirectoryClient(node, _relay_id(relay))
            await self._register(nursery, node, directory, relays, f"{BOT_AGENT} {name}")
            rt.names[node.peer_id] = name
            task_status.started(node)
            await trio.sleep_forever()

    async def _dial_bot(self, node: Node, bot: Node, relay: str) -> None:
        try:
            await node.connect(f"{relay}/p2p-circuit/p2p/{bot.peer_id}")
        except NetError as err:  # the peer list still shows it, as not connected
            log.warning("could not reach %s through the relay: %s", bot.peer_id, err)


async def _now(fn: Callable[[], T]) -> T:
    """``fn()`` as a coroutine, for ``NetBridge.call`` (it runs on the trio thread)."""
    return fn()


async def _warm_up() -> None:
    # Abandoned on shutdown: an import cannot be interrupted, and the app is leaving.
    await trio.to_thread.run_sync(warm_up_training, abandon_on_cancel=True)  # type: ignore[call-arg]


def _round_blobs(data_dir: Path) -> EphemeralBlobStore:
    """A node's blobs: masked round inputs in memory (forgotten after the round), the
    rest (models) on disk."""
    return EphemeralBlobStore(DirectoryBlobStore(data_dir / "blobs"))


async def _count_gossip(metrics: RelayMetrics, inbox: trio.MemoryReceiveChannel[Received]) -> None:
    async for received in inbox:
        metrics.count_message(received.topic)


class NetRuntime:
    """The network the app runs (see the module docstring); used from the UI loop."""

    def __init__(
        self,
        plan: NetworkPlan,
        local_games: Callable[[], Sequence[GameRecord]] | None = None,
        on_model: ModelSink | None = None,
    ) -> None:
        self.plan = plan
        # py-libp2p detaches its loggers (propagate off, no handler), so its warnings
        # reach Python's last-resort handler, i.e. stderr: route them to our log file.
        logging.getLogger("libp2p").propagate = True
        net_dir = plan.data_dir / "net"
        identity = Identity.load_or_create(net_dir / "player")
        self.policy = _UiPolicy()
        # Our finished network games, signed by both players, kept apart from the
        # app's own store (one writer per store).
        self.store = GameStore(net_dir / "gamestore", identity.signing_key)
        self.games = GameService(
            self.store, self.policy, accept_challenges=False, on_event=self._game_event
        )
        self.rounds = RoundsRuntime(plan, net_dir, local_games, on_model)
        self.node = Node(
            NodeConfig(data_dir=net_dir / "player"),
            identity,
            blob_store=_round_blobs(net_dir / "player"),
            services=[_Setup(self)],
        )
        self.bridge = NetBridge(self.node)
        self.relay_client: RelayClient | None = None
        self.directories: list[DirectoryClient] = []
        self.bots: list[Node] = []
        self.names: dict[str, str] = {}
        self.embedded: RelayEndpoint | None = None
        self.nursery: trio.Nursery | None = None  # _Setup's, for background work
        self._warmed = False
        self._pinger = _Pinger(self.node)

    async def start(self) -> None:
        await self.bridge.start()

    async def stop(self) -> None:
        for link in list(self.policy.links.values()):
            link.close("the app is closing")
        await self.bridge.stop()
        self.store.close()

    def embedded_relay(self) -> RelayEndpoint | None:
        """The embedded relay once it listens (None without one)."""
        return self.embedded

    async def snapshot(self) -> NetSnapshot:
        return await self.bridge.call(self._snapshot)

    async def challenge(
        self, peer_id: str, settings: GameSettings, link: NetGameLink
    ) -> GameResult:
        return await self.bridge.call(lambda node: self._challenge(node, peer_id, settings, link))

    async def rounds_view(self) -> RoundsView:
        return await self.bridge.call(lambda node: _now(self.rounds.view))

    async def round_quote(self) -> JoinQuote:
        return await self.bridge.call(lambda node: self.rounds.quote())

    async def join_round(self, max_epsilon: float) -> None:
        await self.bridge.call(lambda node: _now(functools.partial(self.rounds.join, max_epsilon)))

    async def leave_round(self) -> str:
        return await self.bridge.call(lambda node: _now(self.rounds.leave))

    async def prepare_rounds(self) -> None:
        await self.bridge.call(lambda node: _now(self._prepare_rounds))

    def _prepare_rounds(self) -> None:
        # torch's lazy imports (warm_up_training) cost seconds of CPU: only once the
        # player looks at rounds, not at every start while the first AI reply is due.
        if not self._warmed and self.nursery is not None:
            self._warmed = True
            self.nursery.start_soon(_warm_up)

    async def resign(self, link: NetGameLink) -> None:
        await self.bridge.call(lambda node: self._resign(link))

    # -- on the trio thread ------------------------------------------------------

    def _game_event(self, event: str, fields: dict[str, Any]) -> None:
        """The game service's events: a timed game's clocks go to its board's link."""
        if event != "game_clock":
            return
        link = self.policy.links.get(fields["game_id"])
        if link is None:
            return
        running = {"B": Color.BLACK, "W": Color.WHITE}.get(fields["running"] or "")
        link.update_clock(
            ClockSnapshot(fields["black_s"], fields["white_s"], running, time.monotonic())
        )

    async def _resign(self, link: NetGameLink) -> None:
        game_id = next((g for g, held in self.policy.links.items() if held is link), None)
        if game_id is None:
            return  # the game is over (or never started): nothing to resign
        try:
            await self.games.resign(game_id)
        except GameError as err:  # it ended meanwhile (a flag fell, the peer resigned)
            log.info("resigning game %s: %s", game_id, err)

    def _link(self, peer_id: str) -> LinkKind:
        conns = self.node.host.get_network().get_connections(ID.from_base58(peer_id))
        kinds = {c.get_connection_type() for c in conns}
        direct = ConnectionType.DIRECT in kinds
        relayed = ConnectionType.RELAYED in kinds
        if direct and relayed:
            return LinkKind.BOTH
        return LinkKind.DIRECT if direct else LinkKind.RELAYED if relayed else LinkKind.NONE

    async def _snapshot(self, node: Node) -> NetSnapshot:
        listed: dict[str, tuple[str, tuple[str, ...], str]] = {}  # peer -> relay, addrs, agent
        for directory in self.directories:
            try:
                with trio.fail_after(_LIST_TIMEOUT_S):
                    entries = await directory.list()
            except (DirectoryError, trio.TooSlowError) as err:
                log.info("directory list from %s failed: %r", directory.relay_peer_id, err)
                continue
            for entry in entries:
                if entry.peer_id != node.peer_id and entry.peer_id not in listed:
                    listed[entry.peer_id] = (directory.relay_peer_id, entry.addrs, entry.agent)
        relay_ids = [d.relay_peer_id for d in self.directories]
        rtts: dict[str, float | None] = {}

        async def ping(peer: str) -> None:
            rtts[peer] = await self._pinger.rtt_ms(peer)

        async with trio.open_nursery() as nursery:
            for peer in [*relay_ids, *listed]:
                if self._link(peer) is not LinkKind.NONE:
                    nursery.start_soon(ping, peer)
        rejections = node.stats.rejections
        reserved = {
            _relay_id(a) for a in (self.relay_client.reservations if self.relay_client else ())
        }
        relays = tuple(
            PeerView(
                rid,
                "embedded relay" if self.embedded and rid == self.embedded.peer_id else "relay",
                link=self._link(rid),
                latency_ms=rtts.get(rid),
                rejections=sum(rejections.for_peer(rid).values()),
                is_relay=True,
                reserved=rid in reserved,
            )
            for rid in relay_ids
        )
        peers = tuple(
            PeerView(
                peer,
                self.names.get(peer) or agent,
                addrs=addrs,
                link=self._link(peer),
                latency_ms=rtts.get(peer),
                rejections=sum(rejections.for_peer(peer).values()),
                relay_id=relay,
            )
            for peer, (relay, addrs, agent) in sorted(listed.items(), key=lambda kv: kv[1][2])
        )
        return NetSnapshot(node.peer_id, node.listen_addrs, relays, peers, rejections.total())

    async def _find(self, peer_id: str) -> str:
        """Where to reach ``peer_id``: a direct address if connected, else its circuit."""
        for directory in self.directories:
            try:
                entry = await directory.lookup(peer_id)
            except DirectoryError as err:
                log.info("lookup on %s failed: %s", directory.relay_peer_id, err)
                continue
            if entry is None:
                continue
            circuit = [a for a in entry.addrs if "/p2p-circuit" in a]
            direct = [a for a in entry.addrs if "/p2p-circuit" not in a]
            connected = self._link(peer_id) is not LinkKind.NONE
            ordered = (direct + circuit) if connected else (circuit + direct)
            if ordered:
                return ordered[0]
        raise NetworkError(f"{peer_id} is in no relay's directory")

    async def _challenge(
        self, node: Node, peer_id: str, settings: GameSettings, link: NetGameLink
    ) -> GameResult:
        addr = await self._find(peer_id)
        terms = self.games.new_terms(
            peer_id,
            size=settings.size,
            rules=settings.rules,
            komi=settings.komi,
            black=link.human is Color.BLACK,
            main_time_s=link.time_control.main_time_s,
            increment_s=link.time_control.increment_s,
            date=datetime.date.today().isoformat(),
        )
        self.policy.links[terms.game_id] = link
        try:
            outcome = await self.games.challenge(addr, terms)
        except (GameError, NetError) as err:
            raise NetworkError(str(err)) from None
        finally:
            self.policy.links.pop(terms.game_id, None)
            link.close("the game is over")
        return GameResult(
            outcome.game_id, outcome.phase.value, outcome.result, outcome.moves, outcome.record_id
        )
