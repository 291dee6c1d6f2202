"""Reading a relay's Prometheus ``/metrics`` for the operator view.

:func:`scrape` fetches the text exposition over HTTP (loopback, ``urllib``, in a worker
thread) and :func:`parse_metrics` turns it into a :class:`RelaySample`, using
``prometheus_client.parser.text_string_to_metric_families``. The metric names are the
ones ``net.RelayMetrics`` exports (``p2pgo_relay_*``); round metrics of a coordinator
(``p2pgo_round*`` / ``p2pgo_fl*``) are kept as they come, by name, and its round
history (``p2pgo_round_history_*{round_id, outcome, model_version}``) becomes
:class:`RoundRow` s. Anything that is not Prometheus text gives a sample with
``error`` set, never an exception.

:class:`RelayHistory` keeps the last samples of one relay and derives rates from the
counters (bytes relayed per second for the bandwidth sparkline).
"""

from __future__ import annotations

import itertools
import math
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["RelayHistory", "RelaySample", "RoundRow", "parse_metrics", "scrape"]

_PREFIX = "p2pgo_relay_"
_HISTORY = {
    "p2pgo_round_history_participants": "participants",
    "p2pgo_round_history_duration_seconds": "seconds",
}
_MAX_BYTES = 4 * 1024 * 1024  # a metrics page is a few KiB; refuse anything absurd


@dataclass(frozen=True, slots=True)
class RoundRow:
    """One round of a coordinator's history, as its relay exports it."""

    round_id: int
    outcome: str
    model_version: str
    participants: float
    seconds: float


@dataclass(frozen=True, slots=True)
class RelaySample:
    """One scrape of one relay; ``error`` is set (and the numbers zero) if it failed."""

    url: str
    fetched_at: float
    error: str = ""
    scrape_ms: float = 0.0
    peers: float = 0.0
    reservations: float = 0.0
    circuits: float = 0.0
    directory_entries: float = 0.0
    bytes_relayed: float = 0.0
    circuits_opened: float = 0.0
    reservations_accepted: float = 0.0
    messages: Mapping[str, float] = field(default_factory=dict)  # by topic
    rejections: Mapping[str, float] = field(default_factory=dict)  # by reason
    # Handler latency, summed over handlers: (upper bound in s, cumulative count).
    latency_buckets: tuple[tuple[float, float], ...] = ()
    latency_count: float = 0.0
    latency_sum: float = 0.0
    started_at: float | None = None  # earliest ``*_created``: when the relay began
    rounds: Mapping[str, float] = field(default_factory=dict)  # coordinator metrics
    round_history: tuple[RoundRow, ...] = ()  # oldest first

    @property
    def ok(self) -> bool:
        return not self.error

    def uptime_s(self) -> float | None:
        if self.started_at is None:
            return None
        return max(0.0, self.fetched_at - self.started_at)


def parse_metrics(text: str, *, url: str = "", fetched_at: float | None = None) -> RelaySample:
    """The relay's numbers from Prometheus text (``error`` set if it is not that)."""
    now = time.time() if fetched_at is None else fetched_at
    values: dict[str, float] = {}
    messages: dict[str, float] = {}
    rejections: dict[str, float] = {}
    rounds: dict[str, float] = {}
    buckets: dict[float, float] = {}
    history: dict[tuple[str, ...], dict[str, float]] = {}
    created: list[float] = []
    count = total = 0.0
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, float(sample.value)
                if not math.isfinite(value):
                    continue
                if name.endswith("_created"):
                    created.append(value)
                elif name == f"{_PREFIX}messages_total":
                    messages[labels.get("topic", "?")] = value
                elif name == f"{_PREFIX}rejections_total":
                    rejections[labels.get("reason", "?")] = value
                elif name == f"{_PREFIX}handler_seconds_bucket":
                    le = float(labels.get("le", "inf"))
                    buckets[le] = buckets.get(le, 0.0) + value
                elif name == f"{_PREFIX}handler_seconds_count":
                    count += value
                elif name == f"{_PREFIX}handler_seconds_sum":
                    total += value
                elif name in _HISTORY:
                    key = tuple(labels.get(k, "") for k in ("round_id", "outcome", "model_version"))
                    history.setdefault(key, {})[_HISTORY[name]] = value
                elif name.startswith(("p2pgo_round", "p2pgo_fl")):
                    suffix = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                    rounds[f"{name}{{{suffix}}}" if suffix else name] = value
                elif name.startswith(_PREFIX) and not labels:
                    values[name.removeprefix(_PREFIX)] = value
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # not Prometheus text
        return RelaySample(url, now, error=f"not Prometheus metrics: {exc}")
    if not values and not buckets and not rounds and not history:
        return RelaySample(url, now, error="no p2pgo relay metrics in the answer")
    return RelaySample(
        url,
        now,
        peers=values.get("peers", 0.0),
        reservations=values.get("reservations_active", 0.0),
        circuits=values.get("circuits_active", 0.0),
        directory_entries=values.get("directory_entries", 0.0),
        bytes_relayed=values.get("bytes_relayed_total", 0.0),
        circuits_opened=values.get("circuits_opened_total", 0.0),
        reservations_accepted=values.get("reservations_accepted_total", 0.0),
        messages=messages,
        rejections=rejections,
        latency_buckets=tuple(sorted(buckets.items())),
        latency_count=count,
        latency_sum=total,
        started_at=min(created) if created else None,
        rounds=rounds,
        round_history=_round_rows(history),
    )


def _round_rows(
    history: Mapping[tuple[str, ...], Mapping[str, float]],
) -> tuple[RoundRow, ...]:
    rows = []
    for (round_id, outcome, version), numbers in history.items():  # three labels each
        if not round_id.isdigit():
            continue  # not a history a p2pgo relay writes
        rows.append(
            RoundRow(
                int(round_id),
                outcome,
                version,
                numbers.get("participants", 0.0),
                numbers.get("seconds", 0.0),
            )
        )
    return tuple(sorted(rows, key=lambda r: r.round_id))


def scrape(url: str, *, timeout: float = 2.0) -> RelaySample:
    """GET ``url`` and parse it (blocking: call from a worker thread)."""
    began = time.perf_counter()
    now = time.time()
    if not url.startswith(("http://", "https://")):
        return RelaySample(url, now, error=f"not an http(s) URL: {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = answer.read(_MAX_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return RelaySample(url, now, error=f"unreachable: {reason}")
    elapsed = (time.perf_counter() - began) * 1000
    if len(body) > _MAX_BYTES:
        return RelaySample(url, now, error="the metrics page is too large")
    sample = parse_metrics(body.decode("utf-8", errors="replace"), url=url, fetched_at=now)
    return replace(sample, scrape_ms=elapsed)


class RelayHistory:
    """The last ``keep`` samples of one relay, oldest first."""

    def __init__(self, keep: int = 120) -> None:
        self.samples: deque[RelaySample] = deque(maxlen=keep)

    def add(self, sample: RelaySample) -> None:
        self.samples.append(sample)

    @property
    def last(self) -> RelaySample | None:
        return self.samples[-1] if self.samples else None

    def last_good(self) -> RelaySample | None:
        return next((s for s in reversed(self.samples) if s.ok), None)

    def rate(self, attribute: str) -> list[float]:
        """Per-second increase of a counter between successive good samples.

        A counter that went down means the relay restarted: that interval counts as 0.
        """
        good = [s for s in self.samples if s.ok]
        out: list[float] = []
        for before, after in itertools.pairwise(good):
            dt = after.fetched_at - before.fetched_at
            delta = float(getattr(after, attribute)) - float(getattr(before, attribute))
            out.append(delta / dt if dt > 0 and delta > 0 else 0.0)
        return out
