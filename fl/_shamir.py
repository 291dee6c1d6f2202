"""Shamir secret sharing of 32-byte secrets over the prime field GF(2^256 + 297).

Why not pycryptodome's `Shamir`: it works on 16-byte chunks in GF(2^128) with pure-Python
carry-less multiplication; measured here, recombining one chunk from 11 shares takes
~11 ms, so a 1,000-peer round (2,000 chunks) spends ~22 s in it. A prime field just above
2^256 holds a whole 32-byte key in one element, and CPython's big integers make a Lagrange
interpolation from 11 shares cost well under a millisecond.

Share x-coordinates are chosen by the caller (SecAgg uses `holder index + 1`), so every
party knows which point a share is without extra framing. Recombination uses exactly
`threshold` shares, as the degree of the polynomial requires.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from functools import lru_cache

from fl._errors import FlInputError

PRIME = 2**256 + 297
SECRET_BYTES = 32
SHARE_BYTES = 33


def split_secret(secret: bytes, threshold: int, xs: Sequence[int]) -> list[int]:
    """Share `secret` (32 bytes) so that any `threshold` of the points `xs` recover it.

    Returns the share values, one per x in `xs`. Coefficients come from `secrets`.
    """
    if len(secret) != SECRET_BYTES:
        raise FlInputError(f"secret must be {SECRET_BYTES} bytes")
    if not 1 <= threshold <= len(xs):
        raise FlInputError(f"threshold {threshold} not in 1..{len(xs)}")
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise FlInputError("share points must be distinct and non-zero")
    coeffs = [int.from_bytes(secret, "big")]
    coeffs += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    out = []
    for x in xs:
        acc = 0
        for c in reversed(coeffs):  # Horner
            acc = (acc * x + c) % PRIME
        out.append(acc)
    return out


@lru_cache(maxsize=8192)
def lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Lagrange basis coefficients l_i(0) for the points `xs` (cached: sets repeat)."""
    coeffs = []
    for i, xi in enumerate(xs):
        num = 1
        den = 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        coeffs.append(num * pow(den, -1, PRIME) % PRIME)
    return tuple(coeffs)


def combine_shares(shares: Sequence[tuple[int, int]], threshold: int) -> bytes:
    """Recover a secret from the first `threshold` of `shares` (pairs of x, value).

    Raises `FlInputError` if fewer than `threshold` shares are given, points repeat, or the
    result is not a 32-byte value (which means some share was wrong).
    """
    if threshold < 1 or len(shares) < threshold:
        raise FlInputError(f"need {threshold} shares, got {len(shares)}")
    used = shares[:threshold]
    xs = tuple(x for x, _ in used)
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise FlInputError("share points must be distinct and non-zero")
    if any(not 0 <= y < PRIME for _, y in used):
        raise FlInputError("share value out of field range")
    coeffs = lagrange_at_zero(xs)
    value = sum(c * y for c, (_, y) in zip(coeffs, used, strict=True)) % PRIME
    if value >= 1 << (8 * SECRET_BYTES):
        raise FlInputError("shares do not recombine to a 32-byte secret")
    return value.to_bytes(SECRET_BYTES, "big")


def encode_share(value: int) -> bytes:
    """Fixed-width big-endian encoding of a share value."""
    return value.to_bytes(SHARE_BYTES, "big")


def decode_share(data: bytes) -> int:
    """Inverse of `encode_share`; raises `FlInputError` on a malformed share."""
    if len(data) != SHARE_BYTES:
        raise FlInputError(f"share must be {SHARE_BYTES} bytes")
    value = int.from_bytes(data, "big")
    if value >= PRIME:
        raise FlInputError("share value out of field range")
    return value
