"""The operator view's data: Prometheus text to relay samples, rates, and the histogram."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pgo_tui._charts import format_bytes, format_duration, format_seconds, histogram_text
from p2pgo_tui._scrape import RelayHistory, RelaySample, parse_metrics, scrape

METRICS = """\
# HELP p2pgo_relay_peers Connected peers
# TYPE p2pgo_relay_peers gauge
p2pgo_relay_peers 3.0
# TYPE p2pgo_relay_reservations_active gauge
p2pgo_relay_reservations_active 2.0
# TYPE p2pgo_relay_circuits_active gauge
p2pgo_relay_circuits_active 1.0
# TYPE p2pgo_relay_bytes_relayed_total counter
p2pgo_relay_bytes_relayed_total 2048.0
# TYPE p2pgo_relay_bytes_relayed_created gauge
p2pgo_relay_bytes_relayed_created 1000.0
# TYPE p2pgo_relay_messages_total counter
p2pgo_relay_messages_total{topic="p2pgo/announce/1"} 5.0
# TYPE p2pgo_relay_rejections_total counter
p2pgo_relay_rejections_total{reason="gossip_bad_signature"} 2.0
p2pgo_relay_rejections_total{reason="resource_limit_exceeded"} 1.0
# TYPE p2pgo_relay_directory_entries gauge
p2pgo_relay_directory_entries 4.0
# TYPE p2pgo_relay_handler_seconds histogram
p2pgo_relay_handler_seconds_bucket{handler="directory_request",le="0.001"} 1.0
p2pgo_relay_handler_seconds_bucket{handler="directory_request",le="0.01"} 3.0
p2pgo_relay_handler_seconds_bucket{handler="directory_request",le="+Inf"} 3.0
p2pgo_relay_handler_seconds_count{handler="directory_request"} 3.0
p2pgo_relay_handler_seconds_sum{handler="directory_request"} 0.012
p2pgo_relay_handler_seconds_bucket{handler="game",le="0.001"} 0.0
p2pgo_relay_handler_seconds_bucket{handler="game",le="0.01"} 1.0
p2pgo_relay_handler_seconds_bucket{handler="game",le="+Inf"} 2.0
p2pgo_relay_handler_seconds_count{handler="game"} 2.0
p2pgo_relay_handler_seconds_sum{handler="game"} 1.5
"""


def test_a_relay_page_becomes_a_sample() -> None:
    sample = parse_metrics(METRICS, url="u", fetched_at=1060.0)
    assert sample.ok
    assert (sample.peers, sample.reservations, sample.circuits) == (3, 2, 1)
    assert sample.bytes_relayed == 2048 and sample.directory_entries == 4
    assert sample.messages == {"p2pgo/announce/1": 5}
    assert sample.rejections == {"gossip_bad_signature": 2, "resource_limit_exceeded": 1}
    # Buckets of both handlers are summed, bound by bound.
    assert sample.latency_buckets == ((0.001, 1.0), (0.01, 4.0), (math.inf, 5.0))
    assert sample.latency_count == 5 and sample.latency_sum == pytest.approx(1.512)
    assert sample.uptime_s() == 60


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no p2pgo relay metrics"),
        ("<html>hello</html>", "not Prometheus"),
        ("some_other_metric 1\n", "no p2pgo relay metrics"),
    ],
)
def test_pages_that_are_not_relay_metrics_give_an_error_sample(text: str, error: str) -> None:
    sample = parse_metrics(text)
    assert not sample.ok and error in sample.error


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_parsing_never_raises(text: str) -> None:
    sample = parse_metrics(text)
    assert isinstance(sample, RelaySample)


def test_an_unreachable_or_bad_url_is_a_sample_with_an_error() -> None:
    assert "not an http" in scrape("file:///etc/passwd").error
    # Port 9 (discard) on loopback: nothing listens there.
    assert "unreachable" in scrape("http://127.0.0.1:9/metrics", timeout=1).error


def test_rates_come_from_counter_differences_and_a_restart_counts_zero() -> None:
    history = RelayHistory(keep=10)
    for t, total in [(0.0, 0.0), (2.0, 200.0), (4.0, 1000.0), (6.0, 10.0)]:
        history.add(RelaySample("u", t, bytes_relayed=total))
    history.add(RelaySample("u", 7.0, error="unreachable"))
    assert history.rate("bytes_relayed") == [100.0, 400.0, 0.0]
    last_good = history.last_good()
    assert last_good is not None and last_good.fetched_at == 6.0
    assert history.last is not None and not history.last.ok


def test_the_histogram_shows_each_bucket_alone_up_to_the_last_used() -> None:
    text = histogram_text([(0.001, 1.0), (0.01, 4.0), (0.1, 4.0), (math.inf, 4.0)], width=8)
    lines = text.plain.splitlines()
    assert len(lines) == 2
    assert lines[0].strip().startswith("≤ 1 ms") and lines[0].endswith(" 1")
    assert lines[1].strip().startswith("≤ 10 ms") and lines[1].endswith(" 3")
    assert lines[1].count("█") == 8  # the peak fills the width
    assert "no observations" in histogram_text([]).plain
    assert "no observations" in histogram_text([(0.1, 0.0), (math.inf, 0.0)]).plain


def test_number_formats() -> None:
    assert format_seconds(0.0025) == "2.5 ms" and format_seconds(math.inf) == "+Inf"
    assert format_duration(None) == "?" and format_duration(42) == "42 s"
    assert format_duration(303) == "5 m 03 s" and format_duration(7620) == "2 h 07 m"
    assert format_bytes(512) == "512 B" and format_bytes(3 * 1024 * 1024) == "3.0 MiB"
