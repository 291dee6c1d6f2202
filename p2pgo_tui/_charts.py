"""Small text charts for the network screens: a latency histogram and number formats.

Textual 8.2 has a ``Sparkline`` (used for series over time) but no bar chart, so the
histogram of a Prometheus ``histogram`` metric is drawn here as rows of block
characters in a Rich ``Text``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text

__all__ = ["format_bytes", "format_duration", "format_seconds", "histogram_text"]

_EIGHTHS = " ▏▎▍▌▋▊▉█"


def format_seconds(seconds: float) -> str:
    """A bucket bound for people: ``1 ms``, ``2.5 ms``, ``1 s``, ``+Inf``."""
    if math.isinf(seconds):
        return "+Inf"
    if seconds < 1:
        return f"{seconds * 1000:g} ms"
    return f"{seconds:g} s"


def format_duration(seconds: float | None) -> str:
    """An uptime: ``42 s``, ``5 m 03 s``, ``2 h 07 m``, ``3 d 04 h``."""
    if seconds is None:
        return "?"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} m {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} m"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def format_bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def histogram_text(buckets: Sequence[tuple[float, float]], *, width: int = 24) -> Text:
    """Rows ``≤ 2.5 ms ███▍ 12`` from cumulative ``(upper bound, count)`` buckets.

    Prometheus buckets are cumulative; each row shows the count that fell into that
    bucket alone. Rows after the last non-empty bucket are left out.
    """
    text = Text()
    if not buckets:
        text.append("no observations yet", style="dim")
        return text
    counts: list[tuple[float, float]] = []
    below = 0.0
    for bound, cumulative in sorted(buckets):
        counts.append((bound, max(0.0, cumulative - below)))
        below = max(below, cumulative)
    last = max((i for i, (_, c) in enumerate(counts) if c > 0), default=-1)
    if last < 0:
        text.append("no observations yet", style="dim")
        return text
    counts = counts[: last + 1]
    peak = max(c for _, c in counts)
    label_width = max(len(format_seconds(b)) for b, _ in counts) + 2
    for i, (bound, count) in enumerate(counts):
        if i:
            text.append("\n")
        text.append(f"≤ {format_seconds(bound)}".rjust(label_width), style="dim")
        text.append(" ")
        eighths = round(count / peak * width * 8) if peak else 0
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        text.append(bar.ljust(width), style="bold")
        text.append(f" {count:g}")
    return text
