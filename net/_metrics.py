"""Prometheus metrics for a relay: one registry, sampled from trio, served from a thread.

Threading: prometheus-client's HTTP server runs in its own (daemon) thread and reads
the registry whenever it is scraped. py-libp2p's state and our stats objects belong to
the trio thread, so the scrape thread never touches them: a trio task copies them into
the prometheus metrics (which are thread-safe) every `interval` seconds, and event
counters are advanced by the difference since the last sample. A scrape therefore
lags the truth by at most one interval. Handler latencies are observed directly (the
node calls `observe_handler` on the trio thread; `Histogram.observe` is thread-safe).

A relay that coordinates federated rounds passes its `FlCoordinatorService` as
`rounds`: rounds by outcome, the open sessions, the last round's id, participants and
duration, and the last `ROUND_HISTORY` rounds as one labelled sample each
(``p2pgo_round_history_*{round_id, outcome, model_version}``: a bounded set of series,
replaced as rounds end, so an operator who opens the console late still sees them).

The server binds 127.0.0.1 unless told otherwise: metrics name peers' activity and
are for the operator, not the internet. Each `RelayMetrics` has its own registry (no
process globals), so tests can run several.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter

from net._directory import DirectoryService
from net._relay import RelayService

if TYPE_CHECKING:
    from net._fl_coordinator import FlCoordinatorService

log = logging.getLogger(__name__)
ROUND_HISTORY = 10
_ROUND_LABELS = ("round_id", "outcome", "model_version")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """Where the endpoint listens (port chosen by the OS when 0 was asked for)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"


class RelayMetrics:
    """The relay's metrics; `run` samples them and serves ``/metrics``."""

    def __init__(
        self,
        node: Any,
        relay: RelayService,
        directory: DirectoryService | None = None,
        *,
        rounds: FlCoordinatorService | None = None,
        interval: float = 0.5,
    ) -> None:
        self._node = node
        self._relay = relay
        self._directory = directory
        self._rounds = rounds
        self._rounds_seen = 0
        self._interval = interval
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.peers = Gauge("p2pgo_relay_peers", "Connected peers", registry=r)
        self.reservations = Gauge(
            "p2pgo_relay_reservations_active", "Live circuit relay reservations", registry=r
        )
        self.reservations_accepted = PromCounter(
            "p2pgo_relay_reservations_accepted", "Reservations made or refreshed", registry=r
        )
        self.circuits = Gauge("p2pgo_relay_circuits_active", "Open relayed circuits", registry=r)
        self.circuits_opened = PromCounter(
            "p2pgo_relay_circuits_opened", "Relayed circuits opened", registry=r
        )
        self.bytes_relayed = PromCounter(
            "p2pgo_relay_bytes_relayed", "Bytes relayed (both directions)", registry=r
        )
        self.messages = PromCounter(
            "p2pgo_relay_messages", "Verified gossip messages seen", ["topic"], registry=r
        )
        self.rejections = PromCounter(
            "p2pgo_relay_rejections",
            "Refused requests and messages by reason (relay status, gossip, directory)",
            ["reason"],
            registry=r,
        )
        self.directory_entries = Gauge(
            "p2pgo_relay_directory_entries", "Peers listed in the directory", registry=r
        )
        self.directory_requests = PromCounter(
            "p2pgo_relay_directory_requests", "Directory requests by kind", ["kind"], registry=r
        )
        self.handler_seconds = Histogram(
            "p2pgo_relay_handler_seconds",
            "Stream handler run time by protocol",
            ["handler"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        if rounds is not None:
            self._round_metrics(r)
        self._messages: Counter[str] = Counter()
        self._seen: dict[str, int] = {}  # last sampled value of each event counter
        node.handler_observer = self.observe_handler

    def _round_metrics(self, r: CollectorRegistry) -> None:
        self.rounds_total = PromCounter(
            "p2pgo_rounds", "Federated rounds ended, by outcome", ["outcome"], registry=r
        )
        self.round_sessions = Gauge(
            "p2pgo_round_sessions", "Open /p2pgo/fl/1 participant sessions", registry=r
        )
        self.round_last_id = Gauge("p2pgo_round_last_id", "The last ended round's id", registry=r)
        self.round_last_participants = Gauge(
            "p2pgo_round_last_participants",
            "Participants whose input the last round aggregated",
            registry=r,
        )
        self.round_last_seconds = Gauge(
            "p2pgo_round_last_duration_seconds", "How long the last round took", registry=r
        )
        self.round_history_participants = Gauge(
            "p2pgo_round_history_participants",
            f"Aggregated participants of each of the last {ROUND_HISTORY} rounds",
            list(_ROUND_LABELS),
            registry=r,
        )
        self.round_history_seconds = Gauge(
            "p2pgo_round_history_duration_seconds",
            f"Duration of each of the last {ROUND_HISTORY} rounds",
            list(_ROUND_LABELS),
            registry=r,
        )
        for outcome in ("completed", "aborted"):
            self.rounds_total.labels(outcome=outcome)  # both series exist from the start

    def _sample_rounds(self, rounds: FlCoordinatorService) -> None:
        self.round_sessions.set(len(rounds.sessions))
        new = rounds.rounds_ended - self._rounds_seen
        if new <= 0:
            return
        self._rounds_seen = rounds.rounds_ended
        reports = list(rounds.reports)
        for report in reports[-new:]:
            self.rounds_total.labels(outcome="completed" if report.completed else "aborted").inc()
        last = reports[-1]
        self.round_last_id.set(last.round_id)
        self.round_last_participants.set(len(last.survivors))
        self.round_last_seconds.set(last.seconds)
        self.round_history_participants.clear()
        self.round_history_seconds.clear()
        for report in reports[-ROUND_HISTORY:]:
            labels = {
                "round_id": str(report.round_id),
                "outcome": "completed" if report.completed else "aborted",
                "model_version": report.model_version or report.parent_version,
            }
            self.round_history_participants.labels(**labels).set(len(report.survivors))
            self.round_history_seconds.labels(**labels).set(report.seconds)

    def observe_handler(self, name: str, seconds: float, failed: bool) -> None:
        self.handler_seconds.labels(handler=name).observe(seconds)

    def count_message(self, topic: str) -> None:
        """A verified gossip message arrived on `topic` (called by the relay's reader)."""
        self._messages[topic] += 1

    def _advance(self, key: str, metric: Any, value: int) -> None:
        delta = value - self._seen.get(key, 0)
        if delta > 0:
            metric.inc(delta)
            self._seen[key] = value

    def sample(self) -> None:
        """Copy the trio-side state into the metrics (call on the trio thread)."""
        node, stats = self._node, self._relay.stats
        self.peers.set(len(node.connected_peers()))
        self.reservations.set(self._relay.active_reservations())
        self.circuits.set(stats.circuits_active)
        self._advance("reservations", self.reservations_accepted, stats.reservations_accepted)
        self._advance("circuits", self.circuits_opened, stats.circuits_opened)
        self._advance("bytes", self.bytes_relayed, stats.bytes_relayed)
        for topic, n in list(self._messages.items()):
            self._advance(f"topic:{topic}", self.messages.labels(topic=topic), n)
        refused: Counter[str] = Counter(stats.refused)
        for per_peer in node.stats.rejections.by_peer.values():
            for rejection, n in per_peer.items():
                refused[f"gossip_{rejection.value}"] += n
        if self._directory is not None:
            self.directory_entries.set(len(self._directory.directory))
            for kind, n in self._directory.stats.requests.items():
                self._advance(f"dir:{kind}", self.directory_requests.labels(kind=kind), n)
            for reason, n in self._directory.stats.refused.items():
                refused[f"directory_{reason}"] += n
        for reason, n in refused.items():
            self._advance(f"rej:{reason}", self.rejections.labels(reason=reason), n)
        if self._rounds is not None:
            self._sample_rounds(self._rounds)

    async def run(
        self,
        *,
        port: int,
        host: str = "127.0.0.1",
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``http://host:port/metrics`` (port 0: any free port) and keep sampling.

        `task_status.started(MetricsServer)` once the socket listens.
        """
        self.sample()
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        try:
            task_status.started(MetricsServer(host, server.server_port))
            while True:
                await trio.sleep(self._interval)  # sampling period, not sequencing
                self.sample()
        finally:
            with trio.CancelScope(shield=True):
                # shutdown() waits for serve_forever's poll loop (0.5 s) to notice.
                await trio.to_thread.run_sync(_stop_server, server, thread)


def _stop_server(server: Any, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
