"""Participants and whole rounds: real coordinator, real participants, in-memory delivery.

Covers the end-to-end result against plaintext FedAvg, dropouts at every stage, order of
arrival, the privacy ledger, and detection of a coordinator that lies.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from fl import (
    DROP_STAGES,
    EpsilonFn,
    FedAvg,
    FitResult,
    LocalProtocolError,
    ModelUpdate,
    NamedTensors,
    NotSelected,
    ParticipantStage,
    ParticipantStatus,
    PrivacyEvent,
    PrivacyLedger,
    RemoteProtocolError,
    RoundCoordinator,
    RoundMessage,
    RoundParams,
    RoundParticipant,
    RoundStage,
    RoundStart,
    RoundTiming,
    Sampling,
    Selection,
    Send,
    SurvivorsAck,
    drive_round,
    flatten,
    merkle_root,
    sign_message,
    tensors_version,
    unflatten,
    verify_model_update,
)

MODEL: NamedTensors = {"w": np.zeros(6, np.float32), "b": np.full(2, 0.5, np.float32)}
CKEY = SigningKey(b"\xc0" * 32)
CPK = bytes(CKEY.verify_key)


def _params(**changes: object) -> RoundParams:
    base = RoundParams.create(
        clip_norm=1.0,
        noise_multiplier=1.0,
        sampling=Sampling.POISSON_SECRET,
        sampling_rate=1.0,
        min_participants=3,
        target_participants=5,
        expected_dropout=0.0,
        quant_range=4.0,
        pow_difficulty=4,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _train(i: int) -> Callable[..., tuple[NamedTensors, int, dict[str, float]]]:
    def train(
        weights: NamedTensors, hyperparams: Mapping[str, float]
    ) -> tuple[NamedTensors, int, dict[str, float]]:
        rng = np.random.default_rng(100 + i)
        delta = {
            name: rng.normal(0, 0.2, w.shape).astype(np.float32) for name, w in weights.items()
        }
        return delta, 10 + i, {"loss": float(i)}

    return train


@functools.lru_cache(maxsize=64)
def _epsilon_after(ledger: PrivacyLedger, event: PrivacyEvent) -> float:
    # The PLD accountant takes ~0.2 s a call; every peer of a test round asks the same.
    return ledger.epsilon_after(event)


def _round(
    n: int = 5,
    params: RoundParams | None = None,
    *,
    budget: float = 100.0,
    coordinator: type[RoundCoordinator] = RoundCoordinator,
    epsilon_after: EpsilonFn = _epsilon_after,
) -> tuple[RoundCoordinator, dict[bytes, RoundParticipant]]:
    coord = coordinator(
        round_id=3,
        signing_key=CKEY,
        model=MODEL,
        params=params or _params(),
        timing=RoundTiming(10.0, 20.0, 5.0),
        seed=b"s" * 32,
    )
    parts = {}
    for i in range(n):
        key = SigningKey(bytes([i + 1]) * 32)
        parts[bytes(key.verify_key)] = RoundParticipant(
            signing_key=key,
            coordinator_key=CPK,
            model=MODEL,
            ledger=PrivacyLedger(epsilon_budget=budget),
            train=_train(i),
            game_count=i,
            epsilon_after=epsilon_after,
            rng=np.random.default_rng(i),
            keep_contribution=True,
        )
    return coord, parts


def test_end_to_end_round_equals_plaintext_fedavg_within_quantisation_error() -> None:
    coord, parts = _round()
    trace = drive_round(coord, parts, keep_inputs=True)
    outcome = coord.outcome
    assert outcome is not None, coord.abort_reason
    assert set(trace.inputs) == set(outcome.survivors) == set(parts)
    inputs = list(trace.inputs.values())
    spec = coord.quant_spec
    assert spec is not None
    assert max(float(np.abs(x).max()) for x in inputs) < spec.clip  # nothing was clamped
    results = [
        FitResult(pk.hex(), unflatten(x, flatten(MODEL)[1]), 1) for pk, x in trace.inputs.items()
    ]
    plain, _ = FedAvg().aggregate(3, MODEL, results, [])
    secure, _ = flatten(outcome.weights)
    expected, _ = flatten(plain)
    # Each summand's stochastic rounding is off by less than one step, so the mean is too.
    assert float(np.abs(secure - expected).max()) < spec.step
    assert float(np.abs(secure - expected).max()) > 0  # it really was quantised
    for party in parts.values():
        assert party.status is ParticipantStatus.VERIFIED, party.reason
        assert party.verdict is not None and party.verdict.adopt
        assert party.accept_weights(outcome.weights) == outcome.weights
        assert party.epsilon is not None and party.epsilon > 0
        assert len(party.ledger.events) == 1
        assert party.train_metrics.keys() == {"loss"}
        assert party.stage is ParticipantStage.FINISHED
    assert outcome.update.new_version == tensors_version(outcome.weights)
    assert trace.upload_bytes and min(trace.upload_bytes.values()) > 2 * 8


def test_clipping_bounds_each_contribution() -> None:
    def huge(
        weights: NamedTensors, hp: Mapping[str, float]
    ) -> tuple[NamedTensors, int, dict[str, float]]:
        return {n: np.full(w.shape, 100.0, np.float32) for n, w in weights.items()}, 1, {}

    coord, parts = _round(
        params=_params(noise_multiplier=1e-6, quant_range=1.0), epsilon_after=lambda _l, _e: 0.0
    )
    for party in parts.values():
        party._train = huge  # the test swaps in an oversized update
    trace = drive_round(coord, parts, keep_inputs=True)
    for contribution in trace.inputs.values():
        assert float(np.linalg.norm(contribution)) <= 1.0 + 1e-4


def test_a_trainer_that_raises_fails_that_peer_without_escaping() -> None:
    def broken(
        weights: NamedTensors, hp: Mapping[str, float]
    ) -> tuple[NamedTensors, int, dict[str, float]]:
        raise RuntimeError("out of memory")

    coord, parts = _round(n=6)
    victim = next(iter(parts.values()))
    victim._train = broken  # the test swaps in a failing trainer
    drive_round(coord, parts)  # the trainer's exception must not escape receive()
    assert victim.status is ParticipantStatus.FAILED
    assert "local training failed: out of memory" in victim.reason


@pytest.mark.parametrize("drop_at", DROP_STAGES, ids=lambda s: s.value)
def test_dropout_at_every_stage(drop_at: RoundStage) -> None:
    coord, parts = _round()
    victim = sorted(parts)[1]
    drive_round(coord, parts, dropouts={victim: drop_at})
    outcome = coord.outcome
    assert outcome is not None, coord.abort_reason
    counted = drop_at in (RoundStage.CONSISTENCY_CHECK, RoundStage.UNMASK)
    assert (victim in outcome.survivors) == counted
    for pk, party in parts.items():
        assert party.verdict is not None and party.verdict.adopt, party.reason
        if pk != victim:
            assert party.status is ParticipantStatus.VERIFIED
    expected = ParticipantStatus.VERIFIED if counted else ParticipantStatus.FAILED
    assert parts[victim].status is expected


def test_too_many_dropouts_abort_and_everyone_hears() -> None:
    coord, parts = _round()
    silent = dict.fromkeys(sorted(parts)[:3], RoundStage.MASKED_INPUT)
    drive_round(coord, parts, dropouts=silent)
    assert coord.stage is RoundStage.ABORTED
    for party in parts.values():
        assert party.status is ParticipantStatus.FAILED
        assert "aborted" in party.reason or party.stage is ParticipantStage.FINISHED
        assert party.verdict is None


@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1))
def test_order_of_arrival_does_not_matter(seed: int) -> None:
    reference, parts = _round(n=4)
    drive_round(reference, parts)
    shuffled, parts = _round(n=4)
    drive_round(shuffled, parts, shuffle=np.random.default_rng(seed))
    assert reference.outcome is not None and shuffled.outcome is not None
    assert shuffled.outcome.update.new_version == reference.outcome.update.new_version
    assert shuffled.outcome.survivors == reference.outcome.survivors


def test_a_peer_over_its_budget_refuses_and_still_verifies() -> None:
    coord, parts = _round(n=6)
    poor_key = sorted(parts)[0]
    poor = parts[poor_key]
    poor._ledger = PrivacyLedger(epsilon_budget=0.5)  # z=1 costs epsilon ~4.4 per round
    trace = drive_round(coord, parts)
    assert poor.status is ParticipantStatus.REFUSED and "budget" in poor.reason
    # The reason says what one round costs and why no round at these settings can fit.
    assert "z=1 " in poor.reason and "q=1" in poor.reason and "no round" in poor.reason
    assert poor.ledger.events == () and poor.epsilon is None and poor.charged is None
    assert trace.upload_bytes.get(poor_key, 0) == 0  # it never said it was ready
    assert poor_key not in coord.ready_peers
    assert poor.verdict is not None and poor.verdict.adopt
    assert coord.outcome is not None and len(coord.outcome.survivors) == 5


def test_a_refusal_after_earlier_rounds_says_what_is_spent() -> None:
    params = _params(sampling_rate=0.1, noise_multiplier=2.0, min_participants=2)
    one = PrivacyEvent(2.0, Sampling.POISSON_SECRET, 0.1)
    # 16 rounds fit in epsilon 1 at z=2, q=0.1; a 17th does not (see docs/privacy.md).
    spent = PrivacyLedger(epsilon_budget=1.0).record(dataclasses.replace(one, rounds=16))
    coord, parts = _round(n=4, params=params)
    tired = parts[sorted(parts)[0]]
    tired._ledger = spent
    drive_round(coord, parts)
    assert tired.status is ParticipantStatus.REFUSED
    assert "q=0.1 (secret Poisson sampling)" in tired.reason
    assert "already spent" in tired.reason and tired.ledger is spent


def test_the_coordinator_announces_a_rate_derived_from_the_eligible_peers() -> None:
    # 40 peers expected, 5 survivors wanted: q = 5/40. Ten turn up and say ready: each is
    # charged the amplified event at the announced q, selected or not, and the draw uses
    # exactly that q (it does not rise to reach the target among the ten).
    params = _params(sampling_rate=0.5, target_participants=5, min_participants=2)
    _, parts = _round(n=10, params=params)
    eligible = RoundCoordinator(
        round_id=3,
        signing_key=CKEY,
        model=MODEL,
        params=params,
        timing=RoundTiming(10.0, 20.0, 5.0),
        seed=b"s" * 32,
        eligible=40,
    )
    drive_round(eligible, parts)
    start = eligible.round_start
    assert start is not None and start.params.sampling_rate == pytest.approx(5 / 40)
    sel = eligible.selection
    assert sel is None or sel.rate == pytest.approx(5 / 40)
    for party in parts.values():
        (event,) = party.ledger.events
        assert event.amplified and event.sampling_rate == pytest.approx(5 / 40)
    # In a tiny network the announced rate is high (capped): the same round costs more.
    tiny = RoundCoordinator(
        round_id=3, signing_key=CKEY, model=MODEL, params=params, seed=b"s" * 32, eligible=4
    )
    assert tiny.params.sampling_rate == 0.5


def test_privacy_events_follow_the_sampling_claim() -> None:
    # Commit-reveal (public) selection: no amplification, and nothing recorded unless the
    # peer really submitted.
    coord, parts = _round(params=_params(sampling=Sampling.NONE))
    early = sorted(parts)[0]
    drive_round(coord, parts, dropouts={early: RoundStage.ADVERTISE_KEYS})
    assert parts[early].ledger.events == () and parts[early].charged is None
    submitter = parts[sorted(parts)[1]]
    (event,) = submitter.ledger.events
    assert submitter.charged == event
    assert event.sampling is Sampling.NONE and event.sampling_rate == 1.0
    # Secret Poisson sampling: the amplified event counts for every eligible peer.
    coord, parts = _round(n=10, params=_params(sampling_rate=0.5, min_participants=2))
    drive_round(coord, parts)
    sel = coord.selection
    assert sel is not None and len(sel.selected) < 10
    for party in parts.values():
        (event,) = party.ledger.events
        assert event.amplified and event.sampling_rate == 0.5
        assert party.charged == event
    unselected = [p for pk, p in parts.items() if pk not in sel.selected]
    assert unselected and all(p.status is ParticipantStatus.IDLE for p in unselected)
    assert all(p.verdict is not None and p.verdict.adopt for p in unselected)


class _Tampering(RoundCoordinator):
    """A coordinator that rewrites (and re-signs) some of what it sends."""

    tamper: Callable[[RoundMessage], RoundMessage] = staticmethod(lambda m: m)  # type: ignore[assignment]

    def _post(self, sends: list[Send]) -> list[Send]:
        return [Send(s.to, self.tamper(s.message)) for s in sends]  # type: ignore[arg-type]

    def receive(self, peer: bytes, message: RoundMessage, now: float) -> list[Send]:
        return self._post(super().receive(peer, message, now))

    def receive_blob(self, peer: bytes, data: bytes, now: float) -> list[Send]:
        return self._post(super().receive_blob(peer, data, now))

    def tick(self, now: float) -> list[Send]:
        return self._post(super().tick(now))


def _resigned_update(update: ModelUpdate, hashes: tuple[bytes, ...]) -> ModelUpdate:
    forged = dataclasses.replace(
        update, submissions=hashes, participant_count=len(hashes), merkle_root=merkle_root(hashes)
    )
    return sign_message(forged, CKEY)


def _run_tampered(tamper: Callable[[RoundMessage], RoundMessage]) -> dict[bytes, RoundParticipant]:
    coord, parts = _round(coordinator=_Tampering)
    assert isinstance(coord, _Tampering)
    coord.tamper = tamper  # type: ignore[method-assign]
    drive_round(coord, parts)
    return parts


def test_a_dropped_submission_is_detected() -> None:
    victim_hash: list[bytes] = []

    def drop_first(message: RoundMessage) -> RoundMessage:
        if isinstance(message, ModelUpdate):
            victim_hash.append(message.submissions[0])
            return _resigned_update(message, message.submissions[1:])
        return message

    parts = _run_tampered(drop_first)
    for party in parts.values():
        assert party.verdict is not None and not party.verdict.adopt
        assert party.status is ParticipantStatus.FAILED
        if party.submission_hash == victim_hash[0]:
            assert "my submission is missing" in party.verdict.reason
        else:
            assert "differs from the acknowledged" in party.verdict.reason


def test_an_altered_submission_is_detected() -> None:
    def swap_last(message: RoundMessage) -> RoundMessage:
        if isinstance(message, ModelUpdate):
            return _resigned_update(message, (*message.submissions[:-1], b"\x00" * 32))
        return message

    parts = _run_tampered(swap_last)
    assert all(p.verdict is not None and not p.verdict.adopt for p in parts.values())


def test_a_wrong_acknowledgement_is_refused_before_signing() -> None:
    def bad_ack(message: RoundMessage) -> RoundMessage:
        if isinstance(message, SurvivorsAck):
            forged = dataclasses.replace(
                message, submissions=(b"\x01" * 32, *message.submissions[1:])
            )
            return sign_message(forged, CKEY)
        return message

    parts = _run_tampered(bad_ack)
    victims = [p for p in parts.values() if "acknowledged hash" in p.reason]
    assert len(victims) == 1 and victims[0].status is ParticipantStatus.FAILED
    # The others signed off on the forged list, so the honest update contradicts it.
    for party in parts.values():
        assert party.verdict is not None and not party.verdict.adopt
        if party is victims[0]:
            assert "broke this round" in party.verdict.reason
        else:
            assert "differs from the acknowledged" in party.verdict.reason


def test_a_selection_that_is_not_the_committed_draw_is_detected() -> None:
    def drop_selected(message: RoundMessage) -> RoundMessage:
        if isinstance(message, Selection):
            forged = dataclasses.replace(message, selected=message.selected[1:])
            return sign_message(forged, CKEY)
        return message

    coord, parts = _round(params=_params(sampling=Sampling.NONE), coordinator=_Tampering)
    coord.tamper = drop_selected  # type: ignore[method-assign]
    drive_round(coord, parts)
    assert all(p.status is ParticipantStatus.FAILED for p in parts.values())
    assert all("committed draw" in p.reason for p in parts.values())
    assert all(p.verdict is None or not p.verdict.adopt for p in parts.values())


def _start(round_id: int = 3, key: SigningKey = CKEY, **changes: object) -> RoundStart:
    base = RoundStart(
        round_id,
        bytes(key.verify_key),
        tensors_version(MODEL),
        "",
        8,
        _params(),
        10.0,
        20.0,
        5.0,
        b"c" * 32,
    )
    return sign_message(dataclasses.replace(base, **changes), key)  # type: ignore[arg-type]


def test_participant_rejects_foreign_and_ignores_repeated_messages() -> None:
    _, parts = _round(n=1)
    (party,) = parts.values()
    with pytest.raises(LocalProtocolError):
        party.receive(b"not a message", 0.0)  # type: ignore[arg-type]
    impostor = SigningKey(b"\x77" * 32)
    assert party.receive(_start(key=impostor), 0.0) == []
    assert party.rejections[-1][1] == "not from this round's coordinator"
    forged = dataclasses.replace(_start(), round_id=4)
    assert party.receive(forged, 0.0) == []
    assert party.rejections[-1][1] == "bad coordinator signature"
    assert party.stage is ParticipantStage.WAIT_START
    start = _start()
    (ready,) = party.receive(start, 0.0)
    assert ready.to == CPK and party.status is ParticipantStatus.READY
    count = len(party.rejections)
    assert party.receive(start, 1.0) == []  # a re-announcement
    assert len(party.rejections) == count
    assert party.receive(_start(round_id=9), 1.0) == []
    assert "round 9" in party.rejections[-1][1]
    note = sign_message(NotSelected(3, CPK, b"\x05" * 32), CKEY)
    assert party.receive(note, 1.0) == []
    assert "another peer" in party.rejections[-1][1]
    assert party.stage is ParticipantStage.WAIT_SELECTION
    mine = sign_message(NotSelected(3, CPK, party.peer_id), CKEY)
    party.receive(mine, 1.0)
    assert party.stage is ParticipantStage.OBSERVING and party.status is ParticipantStatus.IDLE


def test_participant_refuses_a_model_it_does_not_hold_and_times_out() -> None:
    _, parts = _round(n=2)
    first, second = parts.values()
    first.receive(_start(model_version="ef" * 32), 0.0)
    assert first.status is ParticipantStatus.REFUSED and "model" in first.reason
    second.receive(_start(), 0.0)
    second.tick(10.0 + 20.0 + 6 * 5.0 - 1)
    assert second.stage is ParticipantStage.WAIT_SELECTION
    second.tick(10.0 + 20.0 + 6 * 5.0)
    assert second.stage is ParticipantStage.FINISHED and second.status is ParticipantStatus.IDLE


def test_weights_must_match_the_verified_version() -> None:
    coord, parts = _round()
    party = next(iter(parts.values()))
    with pytest.raises(LocalProtocolError):
        party.accept_weights(MODEL)
    drive_round(coord, parts)
    with pytest.raises(RemoteProtocolError):
        party.accept_weights(MODEL)


def test_verify_model_update_checks_everything() -> None:
    hashes = (b"a" * 32, b"b" * 32)
    parent = tensors_version(MODEL)
    good = sign_message(
        ModelUpdate(3, CPK, "12" * 32, parent, 2, merkle_root(hashes), hashes, ()), CKEY
    )
    verify_model_update(good, CPK, parent, b"a" * 32)
    other = SigningKey(b"\x66" * 32)
    cases = {
        "not signed": sign_message(
            dataclasses.replace(good, sender=bytes(other.verify_key)), other
        ),
        "builds on": good,
        "count": sign_message(dataclasses.replace(good, participant_count=3), CKEY),
        "repeats": _resigned_update(good, (b"a" * 32, b"a" * 32)),
        "Merkle": sign_message(dataclasses.replace(good, merkle_root=b"x" * 32), CKEY),
        "missing": good,
    }
    for reason, update in cases.items():
        expected_parent = "34" * 32 if reason == "builds on" else parent
        mine = b"c" * 32 if reason == "missing" else None
        with pytest.raises(RemoteProtocolError, match=reason):
            verify_model_update(update, CPK, expected_parent, mine)
