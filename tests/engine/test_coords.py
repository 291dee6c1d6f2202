"""Coordinate conversions between (row, col), GTP vertices and SGF points."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import CoordinateError, from_gtp, from_sgf, to_gtp, to_sgf


def test_known_points() -> None:
    assert to_gtp((0, 0), 19) == "A19"
    assert to_gtp((18, 18), 19) == "T1"
    assert to_gtp((15, 3), 19) == "D4"
    assert from_gtp("j10", 19) == (9, 8)  # J follows H: I is skipped
    assert to_sgf((0, 0), 19) == "aa" and to_sgf((3, 15), 19) == "pd"
    assert from_sgf("dd", 19) == (3, 3) and from_gtp("D16", 19) == (3, 3)
    assert from_gtp("PASS", 9) is None and to_gtp(None, 9) == "pass"
    assert from_sgf("", 9) is None and from_sgf("tt", 19) is None and to_sgf(None, 9) == ""


@pytest.mark.parametrize("bad", ["", "I5", "A0", "A20", "Z1", "5A", "AA", "A-1", "A1.5"])
def test_bad_gtp_vertices(bad: str) -> None:
    with pytest.raises(CoordinateError):
        from_gtp(bad, 19)


@pytest.mark.parametrize("bad", ["a", "abc", "zz", "A1", "sa"])
def test_bad_sgf_points(bad: str) -> None:
    with pytest.raises(CoordinateError):
        from_sgf(bad, 9)


@given(
    st.integers(2, 25).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n - 1), st.integers(0, n - 1))
    )
)
def test_round_trips(args: tuple[int, int, int]) -> None:
    size, r, c = args
    assert from_gtp(to_gtp((r, c), size), size) == (r, c)
    assert from_sgf(to_sgf((r, c), size), size) == (r, c)
