"""Proof of work, rate limits and wire packing of quantised updates."""

from __future__ import annotations

import struct
import zlib

import blake3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl import (
    MAX_UPDATE_BYTES,
    FlInputError,
    PowChallenge,
    RateLimiter,
    TokenBucket,
    pack_quantized,
    solve_pow,
    unpack_quantized,
    verify_pow,
)


def _challenge(bits: int = 10, peer: bytes = b"peer-a") -> PowChallenge:
    return PowChallenge(b"round-7", peer, blake3.blake3(b"update").digest(), bits)


def test_pow_solves_verifies_and_is_bound_to_its_challenge() -> None:
    challenge = _challenge(bits=12)
    nonce = solve_pow(challenge)
    assert verify_pow(challenge, nonce)
    # Everything is fixed, so this is deterministic: the nonce does not carry over to
    # another peer, round, submission or a harder difficulty.
    h = challenge.submission_hash
    for other in (
        PowChallenge(b"round-7", b"peer-b", h, 12),
        PowChallenge(b"round-8", b"peer-a", h, 12),
        PowChallenge(b"round-7", b"peer-a", blake3.blake3(b"other").digest(), 12),
    ):
        assert not verify_pow(other, nonce)
    # A random nonce passes with probability 2^-bits.
    passes = sum(verify_pow(_challenge(bits=8), n) for n in range(4096))
    assert 4 <= passes <= 40
    assert verify_pow(_challenge(bits=0), 12345)
    assert not verify_pow(challenge, -1)


def test_pow_gives_up_and_rejects_bad_challenges() -> None:
    with pytest.raises(FlInputError):
        solve_pow(_challenge(bits=40), max_tries=10)
    with pytest.raises(FlInputError):
        PowChallenge(b"r", b"p", b"short", 4)
    with pytest.raises(FlInputError):
        PowChallenge(b"r", b"p", bytes(32), 65)


def test_token_bucket_with_an_injected_clock() -> None:
    bucket = TokenBucket.full(capacity=2, refill_per_second=1.0, now=100.0)
    ok1, bucket = bucket.take(100.0)
    ok2, bucket = bucket.take(100.0)
    ok3, bucket = bucket.take(100.0)
    assert (ok1, ok2, ok3) == (True, True, False)
    ok4, bucket = bucket.take(100.5)
    assert not ok4
    ok5, bucket = bucket.take(101.0)
    assert ok5
    ok6, _ = bucket.take(99.0)  # clock went backwards: no free tokens
    assert not ok6


def test_rate_limiter_is_per_peer() -> None:
    limiter = RateLimiter(capacity=3, refill_per_second=0.5)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0)
    assert limiter.allow("a", 2.0) and not limiter.allow("a", 2.0)
    limiter.forget_idle(100.0)
    assert limiter.allow("a", 100.0)


@pytest.mark.parametrize("bits", [6, 16, 20])
def test_pack_round_trips_within_two_bytes_per_param(bits: int) -> None:
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 2**bits, 10_000, dtype=np.uint32)
    frame = pack_quantized(values, bits)
    back, got_bits = unpack_quantized(frame)
    np.testing.assert_array_equal(back, values)
    assert got_bits == bits
    if bits <= 16:
        assert len(frame) <= 2 * values.size + 16


def test_update_size_limit() -> None:
    fits = np.random.default_rng(0).integers(0, 2**16, 5_000_000, dtype=np.uint32)
    assert len(pack_quantized(fits, 16)) <= MAX_UPDATE_BYTES
    too_big = np.random.default_rng(0).integers(0, 2**16, 5_300_000, dtype=np.uint32)
    with pytest.raises(FlInputError, match="limit"):
        pack_quantized(too_big, 16)


def test_pack_rejects_bad_input() -> None:
    with pytest.raises(FlInputError):
        pack_quantized(np.array([256], dtype=np.uint32), 8)
    with pytest.raises(FlInputError):
        pack_quantized(np.array([1.0]), 8)  # type: ignore[arg-type]


def test_unpack_rejects_hostile_frames() -> None:
    good = pack_quantized(np.zeros(1000, dtype=np.uint32), 16)
    bomb_body = zlib.compress(bytes(50_000_000))
    hostile = [
        b"",
        b"XXXX" + good[4:],
        good[:-3],
        struct.pack(">4sBBI", b"P2Q1", 16, 1, 10) + bomb_body,
        struct.pack(">4sBBI", b"P2Q1", 16, 7, 1) + b"\0\0",
        struct.pack(">4sBBI", b"P2Q1", 8, 0, 1) + b"\xff\xff",
        struct.pack(">4sBBI", b"P2Q1", 16, 0, 0xFFFFFFFF),
    ]
    for frame in hostile:
        with pytest.raises(FlInputError):
            unpack_quantized(frame)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_decoder_returns_or_raises_only_our_error(data: bytes) -> None:
    frame = struct.pack(">4sBBI", b"P2Q1", 16, data[0] % 3 if data else 0, len(data) // 2) + data
    for candidate in (data, frame):
        try:
            vector, _ = unpack_quantized(candidate)
        except FlInputError:
            continue
        assert vector.dtype == np.uint32


def test_uncompressed_frames_round_trip_and_skip_zlib() -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 1 << 16, size=10_000, dtype=np.uint32)
    frame = pack_quantized(values, 16, compress=False)
    assert len(frame) == len(pack_quantized(values, 16)) or len(frame) >= 2 * values.size
    decoded, bits = unpack_quantized(frame)
    assert bits == 16 and np.array_equal(decoded, values)
    zeros = np.zeros(10_000, dtype=np.uint32)
    assert len(pack_quantized(zeros, 16, compress=False)) > len(pack_quantized(zeros, 16))
