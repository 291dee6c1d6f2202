"""The app's side of the network: plain records, the controller, and the flags.

Nothing here imports trio or libp2p, so the screens and the app import this module at
start-up for free. :class:`NetworkHost` is what the app owns: it imports
``p2pgo_tui._network`` (trio + py-libp2p, ~2 s of CPU) in a thread *after* the board is
usable, starts the runtime there (its own trio thread behind ``net.NetBridge``) and
forwards the screens' requests to it. Until the network is up the screens show its
:class:`NetStatus` instead of data.

The game link (:class:`NetGameLink`) and its time control and clocks live in
:mod:`p2pgo_tui._gamelink`; they are re-exported here, where the screens and the
net runtime have always found them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import importlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from p2pgo_tui._engine import GameRecord
from p2pgo_tui._gamelink import (
    LOW_TIME_S,
    ClockSnapshot,
    NetGameEnded,
    NetGameLink,
    TimeControl,
)
from p2pgo_tui._protocols import GameStorage
from p2pgo_tui._roundsmodel import JoinQuote, RoundsView
from p2pgo_tui._settings import GameSettings

__all__ = [
    "LOW_TIME_S",
    "ClockSnapshot",
    "GameResult",
    "LagProbe",
    "LinkKind",
    "ModelSink",
    "NetGameEnded",
    "NetGameLink",
    "NetSnapshot",
    "NetStatus",
    "NetworkError",
    "NetworkHost",
    "NetworkPlan",
    "PeerView",
    "RelayEndpoint",
    "TimeControl",
    "add_network_arguments",
    "describe_link",
    "network_plan",
    "short_id",
]

log = logging.getLogger(__name__)

_TRAIN_GAMES = 200  # the newest stored games the player trains on

ModelSink = Callable[[str, Path], None]
"""Told a model version and the file that holds it."""


class NetworkError(Exception):
    """A network request failed (not started, unreachable, refused); the message says why."""


class NetStatus(enum.Enum):
    OFF = "off"  # --no-embedded and no relay given: no network at all
    STARTING = "starting"
    UP = "up"
    FAILED = "failed"
    STOPPED = "stopped"


class LinkKind(enum.Enum):
    """How we are connected to a peer right now (DCUtR turns relayed into direct)."""

    DIRECT = "direct"
    RELAYED = "relayed"
    BOTH = "direct+relayed"  # DCUtR keeps the relayed connection for a grace period
    NONE = "not connected"


def short_id(peer_id: str) -> str:
    """``12D3KooW…`` ids share their prefix: show the distinctive tail."""
    return f"…{peer_id[-8:]}" if len(peer_id) > 8 else peer_id


@dataclass(frozen=True, slots=True)
class NetworkPlan:
    """What network the app runs: from the command line, fixed for the session."""

    data_dir: Path
    embedded: bool = True  # run a relay (+ coordinator) and bot peers on loopback
    relays: tuple[str, ...] = ()  # real relays to use (multiaddrs with /p2p/)
    metrics_urls: tuple[str, ...] = ()  # Prometheus endpoints of those relays
    bots: int = 3
    bot_max_moves: int = 200  # a bot passes after this many moves
    # Federated rounds. None: fl's default budget (the player's privacy is not weakened
    # by the app); the rest shape the embedded network's rounds (see _fl_runtime).
    epsilon_budget: float | None = None
    train_steps: int = 16  # local training steps per round (batch 16)
    bot_games: int = 4  # self-play games each bot is seeded with
    round_interval_s: float = 300.0  # between embedded rounds, unless the player asks


@dataclass(frozen=True, slots=True)
class RelayEndpoint:
    """One federation member the operator view follows."""

    name: str
    role: str
    peer_id: str = ""
    addr: str = ""
    metrics_url: str = ""


@dataclass(frozen=True, slots=True)
class PeerView:
    """One peer as the Peers screen shows it (read on the net thread, then frozen)."""

    peer_id: str
    name: str
    addrs: tuple[str, ...] = ()
    link: LinkKind = LinkKind.NONE
    latency_ms: float | None = None
    rejections: int = 0
    relay_id: str = ""  # the relay whose directory lists it ("" for relays themselves)
    is_relay: bool = False
    reserved: bool = False  # relays: we hold a live reservation there


@dataclass(frozen=True, slots=True)
class NetSnapshot:
    me: str
    my_addrs: tuple[str, ...]
    relays: tuple[PeerView, ...]
    peers: tuple[PeerView, ...]
    rejections: int  # gossip we refused, in total
    taken_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class GameResult:
    """How a network game ended, as the net layer (both signatures) saw it."""

    game_id: str
    phase: str
    result: str
    moves: int
    record_id: str | None


class _Runtime(Protocol):
    """What ``p2pgo_tui._network.NetRuntime`` offers (imported lazily)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def snapshot(self) -> NetSnapshot: ...
    async def challenge(
        self, peer_id: str, settings: GameSettings, link: NetGameLink
    ) -> GameResult: ...
    async def resign(self, link: NetGameLink) -> None: ...
    def embedded_relay(self) -> RelayEndpoint | None: ...
    async def rounds_view(self) -> RoundsView: ...
    async def round_quote(self) -> JoinQuote: ...
    async def join_round(self, max_epsilon: float) -> None: ...
    async def leave_round(self) -> str: ...
    async def prepare_rounds(self) -> None: ...


class NetworkHost:
    """The app's handle on the network runtime; every method is called on the UI loop."""

    def __init__(
        self,
        plan: NetworkPlan | None,
        storage: GameStorage | None = None,
        on_model: ModelSink | None = None,
    ) -> None:
        self.plan = plan
        self._storage = storage
        # Told (on the UI loop) the version and file of each model the player's
        # federated participant holds: adopted after a round, or followed.
        self._on_model = on_model
        self._loop: asyncio.AbstractEventLoop | None = None
        self._game_cache: dict[str, GameRecord] = {}
        self.status = NetStatus.OFF if plan is None else NetStatus.STARTING
        self.error = ""
        self.started_in_s: float | None = None
        self._runtime: _Runtime | None = None
        self._links: set[NetGameLink] = set()
        self._stopping = False
        self._start_task: asyncio.Task[None] | None = None

    def begin(self) -> None:
        """Start the network in the background (the UI goes on at once)."""
        # Never once stopping: a late caller (the app waiting for the AI) must not start
        # a network that nobody will stop.
        if self.plan is not None and self._start_task is None and not self._stopping:
            self._start_task = asyncio.get_running_loop().create_task(self.start())

    @property
    def enabled(self) -> bool:
        return self.plan is not None

    async def start(self) -> None:
        """Import and start the runtime (in the background); errors end in ``FAILED``."""
        plan = self.plan
        if plan is None or self._runtime is not None:
            return
        began = time.perf_counter()
        try:
            # libp2p's import costs ~2 s of CPU: never on the UI thread.
            module = await asyncio.to_thread(importlib.import_module, "p2pgo_tui._network")
            # Opening the keys and the game store is file I/O: off the UI thread too.
            self._loop = asyncio.get_running_loop()
            runtime: _Runtime = await asyncio.to_thread(
                module.NetRuntime,
                plan,
                self._local_games if self._storage else None,
                self._model_from_net if self._on_model is not None else None,
            )
            self._runtime = runtime
            await runtime.start()
        except Exception as exc:  # any start failure is shown, never a crash
            log.exception("the network did not start")
            self.status = NetStatus.FAILED
            self.error = f"{type(exc).__name__}: {exc}"
            return
        if self._stopping:
            return
        self.started_in_s = time.perf_counter() - began
        self.status = NetStatus.UP
        log.info("network up in %.1f s", self.started_in_s)

    async def stop(self) -> None:
        """Close open games, then stop the runtime and its thread. Safe to call twice."""
        self._stopping = True
        task = self._start_task
        if task is not None and not task.done():
            # Stopping a half-started bridge could miss its nursery: let it finish first.
            await asyncio.wait({task}, timeout=60)
        for link in list(self._links):
            link.close("the app is closing")
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.stop()
        if self.status is not NetStatus.OFF:
            self.status = NetStatus.STOPPED

    def describe(self) -> str:
        """One line for a screen's status bar."""
        if self.status is NetStatus.FAILED:
            return f"network failed: {self.error}"
        if self.status is NetStatus.OFF:
            return "no network (--no-embedded)"
        if self.status is NetStatus.STARTING:
            return "network starting…"
        if self.status is NetStatus.STOPPED:
            return "network stopped"
        where = "embedded relay on loopback" if self.plan and self.plan.embedded else "relay"
        took = f" (up in {self.started_in_s:.1f} s)" if self.started_in_s else ""
        return f"network up: {where}{took}"

    def _ready(self) -> _Runtime:
        if self._runtime is None or self.status is not NetStatus.UP:
            raise NetworkError(self.describe())
        return self._runtime

    async def snapshot(self) -> NetSnapshot:
        return await self._ready().snapshot()

    def _model_from_net(self, version: str, path: Path) -> None:
        """The participant holds model ``version`` in ``path`` (called on the net
        thread: hands over to the UI loop and returns at once)."""
        loop, sink = self._loop, self._on_model
        if loop is None or sink is None or self._stopping:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the app is leaving
            loop.call_soon_threadsafe(sink, version, path)

    def _local_games(self) -> list[GameRecord]:
        """The app's finished games, for the player's local training (any thread: the
        storage locks itself)."""
        storage = self._storage
        if storage is None:
            return []
        wanted = [g.record_id for g in storage.games()[:_TRAIN_GAMES] if g.result]
        cache = self._game_cache  # loading verifies signatures and replays: once per game
        for record_id in wanted:
            if record_id not in cache:
                cache[record_id] = storage.load(record_id)
        for gone in set(cache) - set(wanted):
            del cache[gone]
        return [cache[record_id] for record_id in wanted]

    async def rounds(self) -> RoundsView:
        """The rounds as the player sees them now."""
        return await self._ready().rounds_view()

    async def round_quote(self) -> JoinQuote:
        """What joining the next round would cost (NetworkError if it cannot be joined)."""
        return await self._ready().round_quote()

    async def join_round(self, max_epsilon: float) -> None:
        """Take part in the next round if it keeps the total epsilon <= `max_epsilon`."""
        await self._ready().join_round(max_epsilon)

    async def leave_round(self) -> str:
        return await self._ready().leave_round()

    async def prepare_rounds(self) -> None:
        """Get local training ready (imports) before the player joins a round."""
        await self._ready().prepare_rounds()

    def relays(self) -> tuple[RelayEndpoint, ...]:
        """The relays to watch: the embedded one, those given (paired with the metrics
        URLs in order), then any metrics URLs left over."""
        plan = self.plan
        if plan is None:
            return ()
        embedded = self._runtime.embedded_relay() if self._runtime is not None else None
        urls = list(plan.metrics_urls)
        given = tuple(
            RelayEndpoint(
                f"relay {i + 1}",
                "relay (given)",
                peer_id=addr.rsplit("/p2p/", 1)[-1],
                addr=addr,
                metrics_url=urls[i] if i < len(urls) else "",
            )
            for i, addr in enumerate(plan.relays)
        )
        extra = tuple(
            RelayEndpoint(f"metrics {i + 1}", "relay (metrics only)", metrics_url=url)
            for i, url in enumerate(urls[len(plan.relays) :])
        )
        return (*((embedded,) if embedded else ()), *given, *extra)

    async def challenge(
        self, peer_id: str, settings: GameSettings, link: NetGameLink
    ) -> GameResult:
        """Play a game against ``peer_id`` to its end (the board drives ``link``)."""
        runtime = self._ready()
        self._links.add(link)
        try:
            return await runtime.challenge(peer_id, settings, link)
        finally:
            self._links.discard(link)
            link.close("the game is over")

    async def resign(self, link: NetGameLink) -> None:
        """Resign ``link``'s game now, on either player's turn (nothing if it is over)."""
        await self._ready().resign(link)


class LagProbe:
    """Measures how late the UI's event loop runs a timer (it freezes if this grows).

    A task sleeps ``interval`` seconds at a time and records how much later than asked
    it woke up; :attr:`worst` and :meth:`percentile` say how responsive the UI stayed.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval)  # the measurement itself
            self.lags.append(max(0.0, loop.time() - asked - self.interval))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def worst(self) -> float:
        return max(self.lags, default=0.0)

    def percentile(self, p: float) -> float:
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def describe_link(kind: LinkKind, latency_ms: float | None) -> str:
    """``relayed · 3.1 ms`` for the graph and the table."""
    if latency_ms is None:
        return kind.value
    return f"{kind.value} · {latency_ms:.1f} ms"


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line's network flags (``p2pgo-tui --help`` lists them)."""
    group = parser.add_argument_group("network")
    group.add_argument(
        "--operator",
        action="store_true",
        help="open the relay operator's console (relay health) instead of the board",
    )
    group.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="ADDR",
        help="use this relay (multiaddr ending /p2p/<peer id>; repeatable) instead of "
        "the embedded one",
    )
    group.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="URL",
        help="a relay's Prometheus endpoint for the operator view (repeatable), "
        "e.g. http://127.0.0.1:9100/metrics",
    )
    group.add_argument(
        "--no-embedded",
        action="store_true",
        help="run no embedded relay or bot peers (with no --relay: no network at all)",
    )
    group.add_argument(
        "--bots", type=int, default=4, help="local bot peers on the embedded network (default: 4)"
    )
    group.add_argument(
        "--epsilon-budget",
        type=float,
        default=None,
        metavar="EPS",
        help="your privacy budget for federated rounds (default: p2pgo's, epsilon 1); "
        "a round that would take your total over it is refused",
    )


def network_plan(args: argparse.Namespace, data_dir: Path) -> NetworkPlan | None:
    """The network the flags ask for (None: none at all); ValueError for bad flags."""
    for addr in args.relay:
        if "/p2p/" not in addr or not addr.startswith("/"):
            raise ValueError(f"--relay {addr!r}: expected a multiaddr ending in /p2p/<peer id>")
    for url in args.metrics:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--metrics {url!r}: expected an http:// URL")
    if not 0 <= args.bots <= 16:
        raise ValueError("--bots must be from 0 to 16")
    budget = args.epsilon_budget
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise ValueError("--epsilon-budget must be a positive number")
    embedded = not args.no_embedded and not args.relay
    if not embedded and not args.relay and not args.metrics:
        return None
    return NetworkPlan(
        data_dir,
        embedded=embedded,
        relays=tuple(args.relay),
        metrics_urls=tuple(args.metrics),
        bots=args.bots,
        epsilon_budget=budget,
    )
