"""Admission control: BLAKE3 hashcash on submissions and per-peer token-bucket rate limits.

A proof of work is a nonce such that BLAKE3(domain, round, peer, submission hash, nonce)
starts with `difficulty_bits` zero bits. Binding it to the round, the peer and the exact
submission stops reuse across rounds, peers or payloads; the coordinator sets the
difficulty. Rate limits take the time as an argument (no clock inside), so tests and the
simulator control time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

import blake3

from fl._errors import FlInputError

MAX_DIFFICULTY_BITS = 64
_DOMAIN = b"p2pgo-pow-v1\x00"


@dataclass(frozen=True, slots=True)
class PowChallenge:
    """What a proof of work is bound to, and how hard it must be."""

    round_id: bytes
    peer_id: bytes
    submission_hash: bytes
    difficulty_bits: int

    def __post_init__(self) -> None:
        if not 0 <= self.difficulty_bits <= MAX_DIFFICULTY_BITS:
            raise FlInputError(f"difficulty_bits must be in 0..{MAX_DIFFICULTY_BITS}")
        if len(self.submission_hash) != 32:
            raise FlInputError("submission_hash must be a 32-byte BLAKE3 hash")
        if not self.round_id or not self.peer_id:
            raise FlInputError("round_id and peer_id must be non-empty")

    def _prefix(self) -> blake3.blake3:
        hasher = blake3.blake3(_DOMAIN)
        for part in (self.round_id, self.peer_id, self.submission_hash):
            hasher.update(struct.pack(">I", len(part)))
            hasher.update(part)
        return hasher


def _leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest[:8], "big")
    return 64 - value.bit_length()


def solve_pow(challenge: PowChallenge, start: int = 0, max_tries: int = 1 << 32) -> int:
    """Find a nonce for `challenge` (expected 2^difficulty tries).

    Raises `FlInputError` if none is found within `max_tries`.
    """
    prefix = challenge._prefix()
    need = challenge.difficulty_bits
    for nonce in range(start, start + max_tries):
        hasher = prefix.copy()
        hasher.update(struct.pack(">Q", nonce))
        if _leading_zero_bits(hasher.digest(8)) >= need:
            return nonce
    raise FlInputError(f"no proof of work within {max_tries} tries")


def verify_pow(challenge: PowChallenge, nonce: int) -> bool:
    """True if `nonce` meets `challenge`'s difficulty (one hash)."""
    if not 0 <= nonce < 1 << 64:
        return False
    hasher = challenge._prefix()
    hasher.update(struct.pack(">Q", nonce))
    return _leading_zero_bits(hasher.digest(8)) >= challenge.difficulty_bits


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """A token bucket as a value: `take` returns whether it allowed and the new bucket."""

    capacity: float
    refill_per_second: float
    tokens: float
    updated_at: float

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.refill_per_second < 0:
            raise FlInputError("capacity must be positive and refill non-negative")

    @classmethod
    def full(cls, capacity: float, refill_per_second: float, now: float) -> TokenBucket:
        """A bucket holding `capacity` tokens at time `now`."""
        return cls(capacity, refill_per_second, capacity, now)

    def refilled(self, now: float) -> TokenBucket:
        """The bucket at time `now` (time going backwards adds nothing)."""
        elapsed = max(0.0, now - self.updated_at)
        tokens = min(self.capacity, self.tokens + elapsed * self.refill_per_second)
        return replace(self, tokens=tokens, updated_at=max(now, self.updated_at))

    def take(self, now: float, cost: float = 1.0) -> tuple[bool, TokenBucket]:
        """Spend `cost` tokens if available at `now`."""
        bucket = self.refilled(now)
        if bucket.tokens >= cost:
            return True, replace(bucket, tokens=bucket.tokens - cost)
        return False, bucket


class RateLimiter:
    """Per-peer token buckets; the caller passes the current time to every call."""

    def __init__(self, capacity: float, refill_per_second: float) -> None:
        TokenBucket.full(capacity, refill_per_second, 0.0)  # validates the parameters
        self._capacity = capacity
        self._rate = refill_per_second
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, peer: str, now: float, cost: float = 1.0) -> bool:
        """True (and spend) if `peer` may act at time `now`."""
        bucket = self._buckets.get(peer) or TokenBucket.full(self._capacity, self._rate, now)
        allowed, self._buckets[peer] = bucket.take(now, cost)
        return allowed

    def forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled completely (they behave like new ones)."""
        self._buckets = {
            peer: b for peer, b in self._buckets.items() if b.refilled(now).tokens < b.capacity
        }
