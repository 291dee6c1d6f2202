"""Relay health: the operator's view of the relay federation (``p2pgo-tui --operator``).

Every two seconds a thread worker scrapes each known relay's Prometheus ``/metrics``
(loopback HTTP, :mod:`p2pgo_tui._scrape`) and posts the samples back as one message;
the screen keeps a short history per relay and redraws:

- the federation members: role, reachable or not, scrape latency, uptime (from the
  metrics' creation times), connected peers, reservations, circuits, directory size;
- for the selected relay: bytes relayed per second as a ``Sparkline``, the message
  latency histogram (its handler-latency buckets), gossip messages by topic, and
  refused requests and messages by reason;
- round history (round, participants, outcome, model version, duration, newest
  first), when the relay also coordinates federated rounds: ``net.RelayMetrics``
  exports the last rounds as labelled samples, and rounds seen across scrapes are
  kept here too, so the table outlives the relay's short window.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Sparkline, Static

from p2pgo_tui._charts import format_bytes, format_duration, histogram_text
from p2pgo_tui._netmodel import NetStatus, NetworkHost, RelayEndpoint, short_id
from p2pgo_tui._scrape import RelayHistory, RelaySample, RoundRow, scrape

__all__ = ["RelayScreen"]

_SCRAPE_S = 2.0
_KEEP_ROUNDS = 200


class RelayScreen(Screen[None]):
    """Federation members and the selected relay's live metrics."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+r", "refresh", "Scrape now")]
    HELP_NOTES: ClassVar[tuple[str, ...]] = (
        "Numbers come from each relay's Prometheus /metrics, scraped every 2 s; select a "
        "relay in the table to see its charts.",
        "Latency is the relay's stream-handler time per request; bandwidth is bytes "
        "relayed through circuits per second.",
    )
    DEFAULT_CSS = """
    RelayScreen > #status { height: 1; padding: 0 1; background: $boost; }
    RelayScreen #members { height: auto; max-height: 10; border: round $foreground 30%; }
    RelayScreen #charts { height: 1fr; }
    RelayScreen #charts > Vertical { width: 1fr; border: round $foreground 30%; padding: 0 1; }
    RelayScreen #bandwidth { height: 4; }
    RelayScreen #rounds { height: auto; max-height: 9; border: round $foreground 30%; }
    """

    class Scraped(Message):
        def __init__(self, samples: list[tuple[RelayEndpoint, RelaySample]]) -> None:
            super().__init__()
            self.samples = samples

    def __init__(self, host: NetworkHost) -> None:
        super().__init__()
        self.host = host
        self.histories: dict[str, RelayHistory] = {}
        self.endpoints: tuple[RelayEndpoint, ...] = ()
        self._scraping = False
        self._pinging = False
        self.pings: dict[str, float | None] = {}  # relay peer id -> libp2p ping (ms)
        # relay key -> round id -> row: every round any scrape showed (the relay
        # exports only its last few)
        self.round_rows: dict[str, dict[int, RoundRow]] = {}

    def compose(self) -> ComposeResult:
        yield Static(self.host.describe(), id="status")
        members: DataTable[str | Text] = DataTable(id="members", cursor_type="row")
        members.add_columns(
            "Relay",
            "Role",
            "Health",
            "Ping",
            "Scrape",
            "Uptime",
            "Peers",
            "Reserv.",
            "Circuits",
            "Dir.",
        )
        yield members
        with Horizontal(id="charts"):
            with Vertical(id="traffic"):
                yield Static("", id="bandwidth-label")
                yield Sparkline([], id="bandwidth")
                yield Static("", id="topics")
            with Vertical(id="latency-box"):
                yield Static("", id="latency")
            with Vertical(id="rejections-box"):
                yield Static("", id="rejections")
        rounds: DataTable[str] = DataTable(id="rounds", cursor_type="none")
        rounds.add_columns("Round", "Participants", "Outcome", "Model version", "Duration")
        yield rounds
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#members").border_title = "Federation members"
        self.query_one("#traffic").border_title = "Bandwidth (bytes relayed/s)"
        self.query_one("#latency-box").border_title = "Message latency"
        self.query_one("#rejections-box").border_title = "Rejected"
        self.query_one("#rounds").border_title = "Rounds"
        self.query_one("#members").focus()
        self.set_interval(_SCRAPE_S, self.action_refresh)
        self.action_refresh()

    # ---- scraping (thread worker) ---------------------------------------------------

    def action_refresh(self) -> None:
        status = self.host.status
        self.endpoints = self.host.relays()
        if not self.endpoints:
            waiting = status is NetStatus.STARTING
            self._status(
                self.host.describe()
                + (" · waiting for the relay" if waiting else " · no relay metrics to show")
            )
            return
        if status is NetStatus.UP and not self._pinging:
            self._pinging = True
            self._ping()
        if self._scraping:
            return  # a slow relay: do not pile scrapes up
        self._scraping = True
        self._scrape(self.endpoints)

    @work(group="ping", exit_on_error=False)
    async def _ping(self) -> None:
        """Reachability over libp2p too: our node's ping round trip to each relay."""
        try:
            snapshot = await self.host.snapshot()
        except Exception as exc:  # the metrics still show; the column says why not
            self.pings = {}
            self._status(f"{self.host.describe()} · cannot ping relays: {exc}")
        else:
            self.pings = {r.peer_id: r.latency_ms for r in snapshot.relays}
        finally:
            self._pinging = False

    @work(thread=True, group="scrape", exit_on_error=False)
    def _scrape(self, endpoints: tuple[RelayEndpoint, ...]) -> None:
        samples = []
        for endpoint in endpoints:
            if endpoint.metrics_url:
                samples.append((endpoint, scrape(endpoint.metrics_url)))
            else:
                samples.append(
                    (endpoint, RelaySample("", time.time(), error="no metrics URL (--metrics)"))
                )
        self.post_message(self.Scraped(samples))

    @on(Scraped)
    def _scraped(self, event: Scraped) -> None:
        self._scraping = False
        for endpoint, sample in event.samples:
            key = self._key(endpoint)
            self.histories.setdefault(key, RelayHistory()).add(sample)
            rows = self.round_rows.setdefault(key, {})
            for row in sample.round_history:
                rows[row.round_id] = row
            for old in sorted(rows)[:-_KEEP_ROUNDS]:
                del rows[old]
        self._draw()

    @staticmethod
    def _key(endpoint: RelayEndpoint) -> str:
        return endpoint.metrics_url or endpoint.addr or endpoint.name

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    # ---- drawing ---------------------------------------------------------------------

    def selected(self) -> RelayEndpoint | None:
        table: DataTable[str | Text] = self.query_one("#members", DataTable)
        if not self.endpoints:
            return None
        row = min(table.cursor_row, len(self.endpoints) - 1)
        return self.endpoints[max(row, 0)]

    def _draw(self) -> None:
        table: DataTable[str | Text] = self.query_one("#members", DataTable)
        row = table.cursor_row
        table.clear()
        healthy = 0
        for endpoint in self.endpoints:
            history = self.histories.get(self._key(endpoint))
            last = history.last if history else None
            good = history.last_good() if history else None
            if last is not None and last.ok:
                healthy += 1
                health = Text("reachable", style="green")
            elif last is not None:
                health = Text(f"down: {last.error}", style="red")
            else:
                health = Text("?", style="dim")
            ping = self.pings.get(endpoint.peer_id) if endpoint.peer_id else None
            table.add_row(
                f"{endpoint.name} {short_id(endpoint.peer_id)}".strip(),
                endpoint.role,
                health,
                "-" if ping is None else f"{ping:.1f} ms",
                f"{last.scrape_ms:.0f} ms" if last is not None and last.ok else "-",
                format_duration(good.uptime_s()) if good else "?",
                f"{good.peers:g}" if good else "-",
                f"{good.reservations:g}" if good else "-",
                f"{good.circuits:g} ({good.circuits_opened:g} opened)" if good else "-",
                f"{good.directory_entries:g}" if good else "-",
            )
        if table.row_count:
            table.move_cursor(row=min(max(row, 0), table.row_count - 1))
        self._status(
            f"{self.host.describe()} · {healthy}/{len(self.endpoints)} relays reachable · "
            f"scraped {time.strftime('%H:%M:%S')}"
        )
        self._draw_selected()

    @on(DataTable.RowHighlighted, "#members")
    def _highlighted(self) -> None:
        self._draw_selected()

    def _draw_selected(self) -> None:
        endpoint = self.selected()
        history = self.histories.get(self._key(endpoint)) if endpoint else None
        good = history.last_good() if history else None
        if history is None or good is None:
            for wid in ("#bandwidth-label", "#topics", "#latency", "#rejections"):
                self.query_one(wid, Static).update(Text("no data yet", style="dim"))
            self.query_one("#bandwidth", Sparkline).data = []
            return
        rates = history.rate("bytes_relayed")
        now = rates[-1] if rates else 0.0
        self.query_one("#bandwidth", Sparkline).data = rates[-60:] or [0.0]
        self.query_one("#bandwidth-label", Static).update(
            f"now {format_bytes(now)}/s · peak {format_bytes(max(rates, default=0.0))}/s · "
            f"total {format_bytes(good.bytes_relayed)}"
        )
        topics = Text("gossip by topic\n", style="bold")
        for topic, n in sorted(good.messages.items()):
            topics.append(f"{topic}: {n:g}\n")
        if not good.messages:
            topics.append("none yet", style="dim")
        self.query_one("#topics", Static).update(topics)
        latency = histogram_text(good.latency_buckets)
        if good.latency_count:
            mean = good.latency_sum / good.latency_count * 1000
            latency.append(f"\n{good.latency_count:g} requests, mean {mean:.1f} ms", style="dim")
        self.query_one("#latency", Static).update(latency)
        rejected = Text()
        for reason, n in sorted(good.rejections.items(), key=lambda kv: -kv[1]):
            rejected.append(f"{reason}: ", style="bold")
            rejected.append(f"{n:g}\n")
        if not good.rejections:
            rejected.append("nothing refused", style="dim")
        self.query_one("#rejections", Static).update(rejected)
        self._draw_rounds(good, self.round_rows.get(self._key(endpoint), {}) if endpoint else {})

    def _draw_rounds(self, good: RelaySample, rows: dict[int, RoundRow]) -> None:
        table: DataTable[str] = self.query_one("#rounds", DataTable)
        table.clear()
        box = self.query_one("#rounds")
        if not good.rounds and not rows:
            box.border_title = "Rounds"
            table.add_row("no round coordinator on this relay", "", "", "", "")
            return
        completed = good.rounds.get("p2pgo_rounds_total{outcome=completed}", 0.0)
        aborted = good.rounds.get("p2pgo_rounds_total{outcome=aborted}", 0.0)
        sessions = good.rounds.get("p2pgo_round_sessions", 0.0)
        box.border_title = (
            f"Rounds: {completed:g} completed, {aborted:g} aborted · {sessions:g} sessions"
        )
        for row in sorted(rows.values(), key=lambda r: -r.round_id):
            table.add_row(
                str(row.round_id),
                f"{row.participants:g}",
                row.outcome,
                row.model_version[:16],
                f"{row.seconds:.1f} s",
            )
        if not rows:
            table.add_row("no round has ended yet", "", "", "", "")

    def commands(self) -> Iterator[SystemCommand]:
        yield SystemCommand("Scrape relays now", "Fetch every relay's metrics", self.action_refresh)
