"""Signed envelopes: authorship, topic binding, freshness and replay protection.

A `SignedEnvelope` wraps a message's canonical bytes with the sender's Ed25519 key, a
sequence number and a timestamp. The signature covers a domain tag and
(topic, sender, seq, timestamp, payload), so an envelope cannot be moved to another
topic or altered. `EnvelopeVerifier` checks, in this order, and rejects with a typed
reason: size, decoding, topic, signature, timestamp window (against an injected
clock), replay. Replay state is only updated for envelopes that passed every other
check, so forged messages cannot poison it.

Replay memory is bounded: per sender the last `replay_window` sequence numbers
accepted, counted in messages (sequence numbers are microsecond timestamps, so a
window in number space would be a fraction of a millisecond and refuse any message
gossip delivers behind a later one); a number below all of those once the window is
full is too old to tell and refused. At most `max_senders` senders are remembered
(least recently heard forgotten first). A forgotten sender's old envelopes are still
refused by the timestamp window, which is why both checks exist.
"""

from __future__ import annotations

import enum
import heapq
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import blake3
import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from net._errors import ProtocolError
from net._wire import MAX_MESSAGE_BYTES, Message, SignedEnvelope, decode, encode

_DOMAIN = "p2pgo/envelope/1"
Clock = Callable[[], float]  # seconds since the epoch (wall clock: peers compare them)


def signed_bytes(topic: str, sender: bytes, seq: int, timestamp_ms: int, payload: bytes) -> bytes:
    """The exact bytes an envelope signature covers."""
    return cbor2.dumps([_DOMAIN, topic, sender, seq, timestamp_ms, payload], canonical=True)


def payload_id(payload: bytes) -> bytes:
    """Stable name of a message (BLAKE3 of its canonical bytes); acks refer to it."""
    return blake3.blake3(payload).digest()


class Signer:
    """Signs messages as one identity with strictly increasing sequence numbers.

    Sequence numbers start at the clock in microseconds, so they keep increasing across
    restarts and peers that remember our highest number still accept us.
    """

    def __init__(self, key: SigningKey, *, clock: Clock = time.time) -> None:
        self._key = key
        self._clock = clock
        self._seq = 0
        self.public_key = bytes(key.verify_key)

    def seal(self, topic: str, message: Message) -> SignedEnvelope:
        now = self._clock()
        self._seq = max(self._seq + 1, int(now * 1_000_000))
        timestamp_ms = int(now * 1000)
        payload = encode(message)
        blob = signed_bytes(topic, self.public_key, self._seq, timestamp_ms, payload)
        signature = self._key.sign(blob).signature
        return SignedEnvelope(topic, self.public_key, self._seq, timestamp_ms, payload, signature)


class Rejection(enum.Enum):
    """Why an envelope was refused."""

    OVERSIZE = "oversize"
    MALFORMED = "malformed"  # not CBOR, wrong fields, or not an envelope
    WRONG_TOPIC = "wrong_topic"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"  # timestamp older than the window
    FUTURE = "future"  # timestamp too far ahead of our clock
    REPLAY = "replay"
    INTERNAL = "internal"  # our validator failed unexpectedly (a bug; logged)


@dataclass(frozen=True, slots=True)
class Accepted:
    envelope: SignedEnvelope
    message: Message


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Rejection
    detail: str


Verdict = Accepted | Rejected


class _SenderWindow:
    __slots__ = ("floor", "heap", "seen")

    def __init__(self) -> None:
        self.floor = -1  # numbers at or below it are too old to tell
        self.seen: set[int] = set()
        self.heap: list[int] = []  # the same numbers, smallest first


class EnvelopeVerifier:
    """Checks envelopes for one node; holds its replay memory."""

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        max_skew_s: float = 120.0,
        max_size: int = 64 * 1024,
        replay_window: int = 256,
        max_senders: int = 1024,
    ) -> None:
        if max_size > MAX_MESSAGE_BYTES:
            raise ValueError(f"max_size must be at most {MAX_MESSAGE_BYTES}")
        self._clock = clock
        self._max_skew_ms = int(max_skew_s * 1000)
        self.max_size = max_size
        self._replay_window = replay_window
        self._max_senders = max_senders
        self._senders: OrderedDict[bytes, _SenderWindow] = OrderedDict()

    def verify(self, data: bytes, topic: str) -> Verdict:
        if len(data) > self.max_size:
            return Rejected(Rejection.OVERSIZE, f"{len(data)} bytes > {self.max_size}")
        try:
            envelope = decode(data, max_size=self.max_size)
            if not isinstance(envelope, SignedEnvelope):
                return Rejected(Rejection.MALFORMED, f"expected an envelope, got {envelope.KIND}")
            message = decode(envelope.payload, max_size=self.max_size)
        except ProtocolError as err:
            return Rejected(Rejection.MALFORMED, str(err))
        if isinstance(message, SignedEnvelope):
            return Rejected(Rejection.MALFORMED, "nested envelope")
        if envelope.topic != topic:
            return Rejected(Rejection.WRONG_TOPIC, f"signed for {envelope.topic!r}")
        blob = signed_bytes(
            envelope.topic, envelope.sender, envelope.seq, envelope.timestamp_ms, envelope.payload
        )
        try:
            VerifyKey(envelope.sender).verify(blob, envelope.signature)
        except (BadSignatureError, ValueError) as err:
            return Rejected(Rejection.BAD_SIGNATURE, str(err) or "bad signature")
        now_ms = int(self._clock() * 1000)
        if envelope.timestamp_ms < now_ms - self._max_skew_ms:
            return Rejected(Rejection.STALE, f"{now_ms - envelope.timestamp_ms} ms old")
        if envelope.timestamp_ms > now_ms + self._max_skew_ms:
            return Rejected(Rejection.FUTURE, f"{envelope.timestamp_ms - now_ms} ms ahead")
        if not self._remember(envelope.sender, envelope.seq):
            return Rejected(Rejection.REPLAY, f"sequence number {envelope.seq} already seen")
        return Accepted(envelope, message)

    def _remember(self, sender: bytes, seq: int) -> bool:
        """Record `seq` for `sender`; False if it was seen or is too old to tell."""
        window = self._senders.get(sender)
        if window is None:
            window = self._senders[sender] = _SenderWindow()
            while len(self._senders) > self._max_senders:
                self._senders.popitem(last=False)
        else:
            self._senders.move_to_end(sender)
        if seq <= window.floor or seq in window.seen:
            return False
        # Gossip may deliver a sender's messages out of order: a late one is accepted
        # once, as long as it is newer than the oldest number still remembered.
        window.seen.add(seq)
        heapq.heappush(window.heap, seq)
        if len(window.heap) > self._replay_window:
            window.floor = heapq.heappop(window.heap)
            window.seen.discard(window.floor)
        return True


@dataclass
class RejectionCounters:
    """Rejections by peer (the one that forwarded the message to us) and reason."""

    by_peer: dict[str, Counter[Rejection]] = field(default_factory=dict)

    def add(self, peer: str, reason: Rejection) -> None:
        self.by_peer.setdefault(peer, Counter())[reason] += 1

    def total(self, reason: Rejection | None = None) -> int:
        return sum(sum(c.values()) if reason is None else c[reason] for c in self.by_peer.values())

    def for_peer(self, peer: str) -> dict[Rejection, int]:
        return dict(self.by_peer.get(peer, {}))
