"""Signed envelopes: every rejection reason, replay memory, counters."""

from __future__ import annotations

import dataclasses

from nacl.signing import SigningKey

from net._envelope import (
    Accepted,
    EnvelopeVerifier,
    Rejected,
    Rejection,
    RejectionCounters,
    Signer,
    payload_id,
)
from net._wire import Ack, Hello, RoundAnnouncement, SignedEnvelope, encode

T = "p2pgo/test/1"
HELLO = Hello("peer", ("/ip4/127.0.0.1/tcp/1",), "test")


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _pair() -> tuple[Signer, EnvelopeVerifier, FakeClock]:
    clock = FakeClock()
    return Signer(SigningKey(b"\x01" * 32), clock=clock), EnvelopeVerifier(clock=clock), clock


def _reason(verdict: object) -> Rejection:
    assert isinstance(verdict, Rejected), verdict
    return verdict.reason


def test_a_sealed_message_verifies_and_decodes() -> None:
    signer, verifier, _ = _pair()
    env = signer.seal(T, HELLO)
    verdict = verifier.verify(encode(env), T)
    assert verdict == Accepted(env, HELLO)
    assert env.sender == signer.public_key


def test_sequence_numbers_increase_even_within_one_clock_tick() -> None:
    signer, _, _ = _pair()
    seqs = [signer.seal(T, HELLO).seq for _ in range(5)]
    assert seqs == sorted(set(seqs))


def test_wrong_topic_is_rejected() -> None:
    signer, verifier, _ = _pair()
    assert _reason(verifier.verify(encode(signer.seal(T, HELLO)), "other")) is Rejection.WRONG_TOPIC


def test_a_retargeted_topic_breaks_the_signature() -> None:
    signer, verifier, _ = _pair()
    env = dataclasses.replace(signer.seal(T, HELLO), topic="other")
    assert _reason(verifier.verify(encode(env), "other")) is Rejection.BAD_SIGNATURE


def test_forged_payload_and_signature_are_rejected() -> None:
    signer, verifier, _ = _pair()
    env = signer.seal(T, HELLO)
    forged = dataclasses.replace(env, payload=encode(Ack(b"\x00" * 32)))
    assert _reason(verifier.verify(encode(forged), T)) is Rejection.BAD_SIGNATURE
    zero_sig = dataclasses.replace(env, signature=b"\x00" * 64)
    assert _reason(verifier.verify(encode(zero_sig), T)) is Rejection.BAD_SIGNATURE
    other = Signer(SigningKey(b"\x02" * 32), clock=FakeClock())
    stolen = dataclasses.replace(env, sender=other.public_key)
    assert _reason(verifier.verify(encode(stolen), T)) is Rejection.BAD_SIGNATURE


def test_a_forgery_does_not_poison_replay_memory() -> None:
    signer, verifier, _ = _pair()
    env = signer.seal(T, HELLO)
    forged = dataclasses.replace(env, signature=b"\x00" * 64)
    verifier.verify(encode(forged), T)
    assert isinstance(verifier.verify(encode(env), T), Accepted)


def test_replays_are_rejected_but_late_arrivals_accepted_once() -> None:
    signer, verifier, _ = _pair()
    first, second = signer.seal(T, HELLO), signer.seal(T, HELLO)
    assert isinstance(verifier.verify(encode(second), T), Accepted)
    assert isinstance(verifier.verify(encode(first), T), Accepted)  # out of order: fine
    assert _reason(verifier.verify(encode(first), T)) is Rejection.REPLAY
    assert _reason(verifier.verify(encode(second), T)) is Rejection.REPLAY


def test_sequence_numbers_below_the_window_are_replays() -> None:
    clock = FakeClock()
    signer = Signer(SigningKey(b"\x01" * 32), clock=clock)
    verifier = EnvelopeVerifier(clock=clock, replay_window=4)
    old = signer.seal(T, HELLO)
    newer = [signer.seal(T, HELLO) for _ in range(10)]
    for env in newer:
        assert isinstance(verifier.verify(encode(env), T), Accepted)
    assert _reason(verifier.verify(encode(old), T)) is Rejection.REPLAY


def test_a_late_message_from_a_while_ago_is_accepted_once() -> None:
    # Sequence numbers are microsecond timestamps: a message gossip delivers 200 ms
    # behind a later one is 200,000 numbers older, and must still be taken (once).
    signer, verifier, clock = _pair()
    early = signer.seal(T, HELLO)
    clock.now += 0.2
    later = [signer.seal(T, HELLO) for _ in range(3)]
    for env in later:
        assert isinstance(verifier.verify(encode(env), T), Accepted)
    assert isinstance(verifier.verify(encode(early), T), Accepted)
    assert _reason(verifier.verify(encode(early), T)) is Rejection.REPLAY
    assert later[1].seq - early.seq > 100_000


def test_the_replay_window_counts_messages_not_numbers() -> None:
    clock = FakeClock()
    signer = Signer(SigningKey(b"\x01" * 32), clock=clock)
    verifier = EnvelopeVerifier(clock=clock, replay_window=4)
    sealed = []
    for _ in range(6):
        sealed.append(signer.seal(T, HELLO))
        clock.now += 1.0
    for env in sealed[2:]:  # the window (4) is now full with the last four
        assert isinstance(verifier.verify(encode(env), T), Accepted)
    # Nothing forgotten yet, so a first-time late arrival is taken; being the oldest
    # of five, it becomes the floor at once: everything at or below it is refused.
    assert isinstance(verifier.verify(encode(sealed[1]), T), Accepted)
    assert _reason(verifier.verify(encode(sealed[1]), T)) is Rejection.REPLAY
    assert _reason(verifier.verify(encode(sealed[0]), T)) is Rejection.REPLAY  # below it
    for env in sealed[2:]:
        assert _reason(verifier.verify(encode(env), T)) is Rejection.REPLAY


def test_replay_memory_is_bounded_and_the_clock_still_guards() -> None:
    clock = FakeClock()
    verifier = EnvelopeVerifier(clock=clock, max_senders=3, max_skew_s=10)
    signers = [Signer(SigningKey(bytes([i + 1]) * 32), clock=clock) for i in range(5)]
    first = signers[0].seal(T, HELLO)
    assert isinstance(verifier.verify(encode(first), T), Accepted)
    for s in signers[1:]:
        assert isinstance(verifier.verify(encode(s.seal(T, HELLO)), T), Accepted)
    assert len(verifier._senders) == 3
    clock.now += 11
    assert _reason(verifier.verify(encode(first), T)) is Rejection.STALE


def test_timestamps_outside_the_window_are_rejected() -> None:
    signer, verifier, clock = _pair()
    stale = signer.seal(T, HELLO)
    clock.now += 121
    assert _reason(verifier.verify(encode(stale), T)) is Rejection.STALE
    future = signer.seal(T, HELLO)
    clock.now -= 121
    assert _reason(verifier.verify(encode(future), T)) is Rejection.FUTURE


def test_oversize_and_malformed_input() -> None:
    signer, verifier, _ = _pair()
    assert _reason(verifier.verify(b"\x00" * (64 * 1024 + 1), T)) is Rejection.OVERSIZE
    assert _reason(verifier.verify(b"\xff\xfe", T)) is Rejection.MALFORMED
    assert _reason(verifier.verify(encode(HELLO), T)) is Rejection.MALFORMED  # not an envelope
    env = signer.seal(T, HELLO)
    nested = SignedEnvelope(
        T, env.sender, env.seq + 1, env.timestamp_ms, encode(env), env.signature
    )
    assert _reason(verifier.verify(encode(nested), T)) is Rejection.MALFORMED


def test_payload_id_is_stable_across_resends() -> None:
    signer, _, _ = _pair()
    msg = RoundAnnouncement(3, b"\x07" * 32, 2)
    a, b = signer.seal(T, msg), signer.seal(T, msg)
    assert a.seq != b.seq
    assert payload_id(a.payload) == payload_id(b.payload) == payload_id(encode(msg))


def test_counters_by_peer_and_reason() -> None:
    counters = RejectionCounters()
    counters.add("a", Rejection.REPLAY)
    counters.add("a", Rejection.REPLAY)
    counters.add("b", Rejection.OVERSIZE)
    assert counters.for_peer("a") == {Rejection.REPLAY: 2}
    assert counters.total() == 3
    assert counters.total(Rejection.OVERSIZE) == 1
    assert counters.for_peer("nobody") == {}
