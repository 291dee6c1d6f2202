"""The round coordinator, driven through every transition by fake peers.

A `FakePeer` is a test double built from the real SecAgg+ participant: it signs what
the test tells it to, so tests can also send wrong, late, duplicate or forged input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import blake3
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from fl import (
    TRANSITIONS,
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShare,
    Event,
    FedAdam,
    FedProx,
    GradientSubmission,
    KeyRoster,
    LocalProtocolError,
    ModelUpdate,
    NotSelected,
    PeerReady,
    PowChallenge,
    RateLimiter,
    RoundAborted,
    RoundCoordinator,
    RoundMessage,
    RoundParams,
    RoundStage,
    RoundStart,
    RoundTiming,
    Sampling,
    SecAggConfig,
    SecAggParticipant,
    SecAggStep,
    Selection,
    Send,
    ShareBundle,
    ShareKeys,
    SurvivorList,
    SurvivorsAck,
    UnmaskRequest,
    UnmaskResponse,
    dequantize_sum,
    flatten,
    merkle_root,
    pack_quantized,
    secagg_round_id,
    sign_message,
    solve_pow,
    verify_model_update,
    verify_pow,
)

MODEL = {"w": np.zeros(6, np.float32), "b": np.full(2, 0.5, np.float32)}
D = 8
S = RoundStage
SECAGG_STAGES = [S.ADVERTISE_KEYS, S.SHARE_KEYS, S.MASKED_INPUT, S.CONSISTENCY_CHECK, S.UNMASK]


def _params(**changes: object) -> RoundParams:
    base = RoundParams.create(
        clip_norm=1.0,
        noise_multiplier=1.0,
        sampling=Sampling.POISSON_SECRET,
        sampling_rate=1.0,
        min_participants=3,
        target_participants=5,
        expected_dropout=0.0,
        quant_range=1.0,
        pow_difficulty=4,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class FakePeer:
    def __init__(self, seed: int) -> None:
        self.key = SigningKey(bytes([seed + 1]) * 32)
        self.pk = bytes(self.key.verify_key)
        self.inbox: list[RoundMessage] = []
        self.secagg: SecAggParticipant | None = None

    def last(self, kind: type) -> RoundMessage:
        for message in reversed(self.inbox):
            body = message.body if isinstance(message, SecAggStep) else message
            if isinstance(body, kind):
                return message
        raise AssertionError(f"no {kind.__name__} received")

    def sign(self, message: RoundMessage) -> RoundMessage:
        return sign_message(message, self.key)

    def ready(self, start: RoundStart, round_id: int | None = None) -> RoundMessage:
        rid = start.round_id if round_id is None else round_id
        return self.sign(PeerReady(rid, self.pk, 3, b"d" * 32, bytes([self.pk[0]]) * 32))

    def join(self, start: RoundStart) -> None:
        sel = self.last(Selection)
        assert isinstance(sel, Selection)
        config = SecAggConfig(
            secagg_round_id(start),
            sel.selected,
            start.vector_length,
            start.params.modulus_bits,
            sel.threshold,
            sel.degree,
            sel.graph_seed,
        )
        self.secagg = SecAggParticipant(config, sel.selected.index(self.pk), self.key)

    def step(self, body: object, round_id: int) -> RoundMessage:
        return self.sign(SecAggStep(round_id, self.pk, body))  # type: ignore[arg-type]

    def submit(self, start: RoundStart, values: np.ndarray) -> tuple[RoundMessage, bytes]:
        assert self.secagg is not None
        bundle = self.last(ShareBundle)
        assert isinstance(bundle, SecAggStep) and isinstance(bundle.body, ShareBundle)
        masked = self.secagg.masked_input(bundle.body, values)
        return self.submit_blob(start, pack_quantized(masked.masked, start.params.modulus_bits))

    def submit_blob(self, start: RoundStart, blob: bytes) -> tuple[RoundMessage, bytes]:
        digest = blake3.blake3(blob).digest()
        challenge = PowChallenge(
            secagg_round_id(start), self.pk, digest, start.params.pow_difficulty
        )
        nonce = solve_pow(challenge)
        sub = GradientSubmission(start.round_id, self.pk, digest, len(blob), 5, nonce)
        return self.sign(sub), blob


class Harness:
    """One coordinator and `n` fake peers, stepped stage by stage."""

    def __init__(self, n: int = 5, params: RoundParams | None = None, **kwargs: object) -> None:
        self.ckey = SigningKey(b"\xc0" * 32)
        self.peers = [FakePeer(i) for i in range(n)]
        self.by_pk = {p.pk: p for p in self.peers}
        self.coord = RoundCoordinator(
            round_id=7,
            signing_key=self.ckey,
            model=MODEL,
            params=params or _params(),
            timing=RoundTiming(10.0, 20.0, 5.0),
            seed=b"s" * 32,
            **kwargs,  # type: ignore[arg-type]
        )
        self.now = 0.0
        self.broadcasts: list[RoundMessage] = []
        self.values: dict[bytes, np.ndarray] = {}
        self.start_msg: RoundStart | None = None

    def deliver(self, sends: list[Send]) -> list[Send]:
        for send in sends:
            assert not isinstance(send.message, bytes)
            message = send.message
            assert isinstance(message, RoundMessage.__args__)  # type: ignore[attr-defined]
            if send.to is None:
                self.broadcasts.append(message)
                for peer in self.peers:
                    peer.inbox.append(message)
            else:
                self.by_pk[send.to].inbox.append(message)
        return sends

    def send(self, peer: FakePeer, message: RoundMessage) -> list[Send]:
        return self.deliver(self.coord.receive(peer.pk, message, self.now))

    def tick(self, dt: float | None = None) -> list[Send]:
        deadline = self.coord.deadline
        assert deadline is not None
        self.now = deadline if dt is None else self.now + dt
        return self.deliver(self.coord.tick(self.now))

    @property
    def start(self) -> RoundStart:
        assert self.start_msg is not None
        return self.start_msg

    def selected(self) -> list[FakePeer]:
        sel = self.coord.selection
        assert sel is not None
        return [self.by_pk[pk] for pk in sel.selected]

    def run(
        self, until: RoundStage, silent: set[bytes] | None = None, drop_at: S | None = None
    ) -> None:
        """Advance to `until`; peers in `silent` say nothing from stage `drop_at` on."""
        mute = silent or set()
        order = [S.COLLECT_READY, *SECAGG_STAGES, S.DONE]

        def speaks(peer: FakePeer, stage: RoundStage) -> bool:
            return (
                peer.pk not in mute or drop_at is None or order.index(stage) < order.index(drop_at)
            )

        if self.coord.stage is S.NEW:
            self.start_msg = self.deliver(self.coord.start(self.now))[0].message  # type: ignore[assignment]
        steps: dict[RoundStage, Callable[[FakePeer], None]] = {
            S.COLLECT_READY: lambda p: self._send_list(p, [p.ready(self.start)]),
            S.ADVERTISE_KEYS: self._keys,
            S.SHARE_KEYS: self._shares,
            S.MASKED_INPUT: self._masked,
            S.CONSISTENCY_CHECK: self._consistency,
            S.UNMASK: self._unmask,
        }
        while self.coord.stage is not until and self.coord.stage in steps:
            stage = self.coord.stage
            peers = self.peers if stage is S.COLLECT_READY else self.selected()
            for peer in peers:
                if speaks(peer, stage) and self.coord.stage is stage:
                    steps[stage](peer)
            if self.coord.stage is stage:
                self.tick()

    def _send_list(self, peer: FakePeer, messages: list[RoundMessage]) -> None:
        for message in messages:
            self.send(peer, message)

    def _keys(self, peer: FakePeer) -> None:
        peer.join(self.start)
        assert peer.secagg is not None
        self.send(peer, peer.step(peer.secagg.advertise_keys(), 7))

    def _shares(self, peer: FakePeer) -> None:
        roster = peer.last(KeyRoster)
        assert isinstance(roster, SecAggStep) and peer.secagg is not None
        self.send(peer, peer.step(peer.secagg.share_keys(roster.body), 7))  # type: ignore[arg-type]

    def _masked(self, peer: FakePeer) -> None:
        spec = self.coord.quant_spec
        assert spec is not None
        rng = np.random.default_rng(peer.pk[0])
        values = rng.integers(0, spec.levels + 1, D, dtype=np.uint32)
        sub, blob = peer.submit(self.start, values)
        self.send(peer, sub)
        before = len(self.coord.rejections)
        self.deliver(self.coord.receive_blob(peer.pk, blob, self.now))
        if len(self.coord.rejections) == before:
            self.values[peer.pk] = values

    def _consistency(self, peer: FakePeer) -> None:
        ack = peer.last(SurvivorsAck)
        assert isinstance(ack, SurvivorsAck) and peer.secagg is not None
        survivors = SurvivorList(secagg_round_id(self.start), ack.survivors)
        self.send(peer, peer.step(peer.secagg.consistency_check(survivors), 7))

    def _unmask(self, peer: FakePeer) -> None:
        request = peer.last(UnmaskRequest)
        assert isinstance(request, SecAggStep) and peer.secagg is not None
        self.send(peer, peer.step(peer.secagg.unmask(request.body), 7))  # type: ignore[arg-type]

    def expected_mean(self, survivors: tuple[bytes, ...]) -> np.ndarray:
        spec = self.coord.quant_spec
        assert spec is not None
        total = sum((self.values[pk].astype(np.uint64) for pk in survivors), np.uint64(0))
        field = (np.asarray(total) & np.uint64((1 << spec.modulus_bits) - 1)).astype(np.uint32)
        out: np.ndarray = dequantize_sum(field, spec, len(survivors)).astype(np.float64) / len(
            survivors
        )
        return out


def test_every_transition_of_a_clean_round() -> None:
    h = Harness()
    assert h.coord.stage is S.NEW and h.coord.deadline is None
    sends = h.deliver(h.coord.start(0.0))
    start = sends[0].message
    assert [s.to for s in sends] == [None] and isinstance(start, RoundStart)
    h.start_msg = start
    assert h.coord.stage is S.COLLECT_READY and h.coord.deadline == 10.0
    for peer in h.peers:
        assert h.send(peer, peer.ready(start)) == []
    assert h.coord.stage is S.COLLECT_READY  # closes only at the ready deadline
    assert h.tick(1.0) == []
    sends = h.tick()
    assert h.coord.stage is S.ADVERTISE_KEYS and h.coord.deadline == 10.0 + 20.0
    assert {s.to for s in sends} == {p.pk for p in h.peers}
    assert all(isinstance(s.message, Selection) for s in sends)
    expected = {
        S.ADVERTISE_KEYS: (S.SHARE_KEYS, KeyRoster),
        S.SHARE_KEYS: (S.MASKED_INPUT, ShareBundle),
        S.MASKED_INPUT: (S.CONSISTENCY_CHECK, SurvivorsAck),
        S.CONSISTENCY_CHECK: (S.UNMASK, UnmaskRequest),
        S.UNMASK: (S.DONE, ModelUpdate),
    }
    for nxt, reply in expected.values():
        count = len(h.broadcasts) + sum(len(p.inbox) for p in h.peers)
        h.run(nxt)
        assert h.coord.stage is nxt
        assert sum(len(p.inbox) for p in h.peers) > count
        got = h.peers[0].last(reply)
        assert got.sender == bytes(h.ckey.verify_key)
    assert h.coord.deadline is None and h.coord.rejections == ()
    outcome = h.coord.outcome
    assert outcome is not None and len(outcome.survivors) == 5 and outcome.dropped == ()
    mean, _ = flatten(outcome.mean_delta)
    np.testing.assert_allclose(mean, h.expected_mean(outcome.survivors), atol=1e-6)
    new, _ = flatten(outcome.weights)
    old, _ = flatten(MODEL)
    np.testing.assert_allclose(new, old + mean, atol=1e-6)  # FedAvg, server lr 1
    update = outcome.update
    verify_model_update(update, bytes(h.ckey.verify_key), start.model_version)
    assert update.merkle_root == merkle_root(update.submissions)
    assert update.metric_dict()["survivors"] == 5.0
    assert outcome.num_examples == 25
    # Counts outside the DP accounting are not published to every peer.
    assert not {"ready", "selected", "num_examples"} & set(update.metric_dict())


def test_the_table_is_the_only_way_between_stages() -> None:
    assert (S.NEW, Event.START) in TRANSITIONS
    assert all((stage, Event.ABORT) not in TRANSITIONS for stage in (S.NEW, S.DONE, S.ABORTED))
    h = Harness()
    h.run(S.COLLECT_READY)
    with pytest.raises(LocalProtocolError):
        h.coord.start(1.0)
    h.run(S.DONE)
    with pytest.raises(LocalProtocolError):
        h.coord.abort("operator", 99.0)
    assert h.coord.tick(1e9) == []
    fresh = Harness()
    with pytest.raises(LocalProtocolError):
        fresh.coord.abort("too early", 0.0)
    with pytest.raises(LocalProtocolError):
        fresh.coord.receive(b"p" * 32, "not a message", 0.0)  # type: ignore[arg-type]


def test_operator_abort_broadcasts_and_stops() -> None:
    h = Harness()
    h.run(S.SHARE_KEYS)
    sends = h.deliver(h.coord.abort("operator stop", 3.0))
    assert [s.to for s in sends] == [None] and isinstance(sends[0].message, RoundAborted)
    assert h.coord.stage is S.ABORTED and h.coord.abort_reason == "operator stop"
    assert h.coord.tick(1e9) == []


def _snapshot(c: RoundCoordinator) -> tuple[object, ...]:
    return (c.stage, c.deadline, c.pending(), c.ready_peers, c.selection)


def _forged(message: RoundMessage) -> RoundMessage:
    sig = bytearray(message.signature)
    sig[0] ^= 1
    return dataclasses.replace(message, signature=bytes(sig))


@pytest.mark.parametrize("stage", [S.COLLECT_READY, *SECAGG_STAGES])
def test_bad_input_is_rejected_without_state_change(stage: RoundStage) -> None:
    h = Harness(n=6, params=_params(target_participants=5))
    h.run(stage)
    assert h.coord.stage is stage
    outsider = FakePeer(99)
    peer = h.peers[0] if stage is S.COLLECT_READY else h.selected()[0]
    other = next(p for p in h.peers if p is not peer)
    early_keys = AdvertiseKeys(b"r", 0, b"c" * 32, b"m" * 32, b"s" * 64)
    if stage is S.COLLECT_READY:
        h.send(peer, peer.ready(h.start))
        wrong_stage = peer.sign(SecAggStep(7, peer.pk, early_keys))
    else:
        wrong_stage = peer.ready(h.start)
    cases: list[tuple[FakePeer, RoundMessage, str]] = [
        (peer, peer.ready(h.start, round_id=8), "round 8"),
        (peer, wrong_stage, "not accepted at stage"),
        (peer, _forged(peer.ready(h.start)), ""),
        (other, peer.ready(h.start), "sender"),
        (peer, h.start, "not a participant message"),
    ]
    if stage is not S.COLLECT_READY:
        cases.append((outsider, outsider.ready(h.start), "not accepted"))
        keys = outsider.sign(SecAggStep(7, outsider.pk, early_keys))
        cases.append((outsider, keys, ""))
    before = _snapshot(h.coord)
    count = len(h.coord.rejections)
    for sender, message, reason in cases:
        assert h.coord.receive(sender.pk, message, h.now) == []
        assert _snapshot(h.coord) == before
        assert len(h.coord.rejections) == count + 1, message.kind
        rejection = h.coord.rejections[-1]
        assert rejection.peer == sender.pk and reason in rejection.reason
        assert rejection.stage is stage
        count += 1


def test_secagg_level_checks_reject_without_state_change() -> None:
    h = Harness()
    h.run(S.ADVERTISE_KEYS)
    a, b = h.selected()[:2]
    a.join(h.start)
    b.join(h.start)
    assert a.secagg is not None and b.secagg is not None
    keys_b = b.secagg.advertise_keys()
    before = _snapshot(h.coord)
    # a wraps b's SecAgg message under its own signature: the index does not match.
    h.send(a, a.step(keys_b, 7))
    assert "SecAgg index" in h.coord.rejections[-1].reason
    # a duplicate is refused; so is an unselected outsider's.
    h.send(b, b.step(keys_b, 7))
    assert _snapshot(h.coord) != before  # that one was accepted
    h.send(b, b.step(keys_b, 7))
    assert "duplicate" in h.coord.rejections[-1].reason
    outsider = FakePeer(50)
    h.send(outsider, outsider.step(keys_b, 7))
    assert "not selected" in h.coord.rejections[-1].reason


def test_submission_checks_pow_hash_and_blob() -> None:
    h = Harness()
    h.run(S.MASKED_INPUT)
    spec = h.coord.quant_spec
    assert spec is not None
    a, b = h.selected()[:2]
    values = np.zeros(D, dtype=np.uint32)
    sub, blob = a.submit(h.start, values)
    assert isinstance(sub, GradientSubmission)
    bad_nonce = sub.pow_nonce + 1
    challenge = PowChallenge(secagg_round_id(h.start), a.pk, sub.submission_hash, 4)
    while verify_pow(challenge, bad_nonce):
        bad_nonce += 1
    before = _snapshot(h.coord)
    h.send(a, a.sign(dataclasses.replace(sub, pow_nonce=bad_nonce)))
    assert h.coord.rejections[-1].reason == "bad proof of work"
    h.deliver(h.coord.receive_blob(b.pk, b"x" * 10**6, h.now))
    assert h.coord.rejections[-1].reason == "blob is larger than a masked vector"
    h.send(a, a.sign(dataclasses.replace(sub, blob_bytes=10**9)))
    assert "larger" in h.coord.rejections[-1].reason
    assert _snapshot(h.coord) == before
    h.send(a, sub)
    h.send(a, sub)
    assert h.coord.rejections[-1].reason == "duplicate submission"
    h.deliver(h.coord.receive_blob(a.pk, blob[:-1] + bytes([blob[-1] ^ 1]), h.now))
    assert "hash" in h.coord.rejections[-1].reason
    assert h.coord.pending() == before[2]
    h.deliver(h.coord.receive_blob(a.pk, blob, h.now))
    assert a.pk not in h.coord.pending()
    h.deliver(h.coord.receive_blob(a.pk, blob, h.now))
    assert h.coord.rejections[-1].reason == "duplicate blob"
    # A blob may overtake its submission; a blob in another field is still refused.
    wide_sub, wide_blob = b.submit_blob(h.start, pack_quantized(values, 15))
    count = len(h.coord.rejections)
    h.deliver(h.coord.receive_blob(b.pk, wide_blob, h.now))
    assert len(h.coord.rejections) == count  # held until its submission arrives
    h.deliver(h.coord.receive_blob(b.pk, wide_blob, h.now))
    assert h.coord.rejections[-1].reason == "duplicate blob"
    h.send(b, wide_sub)
    assert "field" in h.coord.rejections[-1].reason
    assert b.pk in h.coord.pending()
    c = h.selected()[2]
    c_sub, c_blob = c.submit(h.start, values)
    h.deliver(h.coord.receive_blob(c.pk, c_blob, h.now))
    h.send(c, c_sub)
    assert c.pk not in h.coord.pending()


def test_rate_limit_applies_before_signature_checks() -> None:
    h = Harness(limiter=RateLimiter(2, 0.0))
    h.run(S.COLLECT_READY)
    peer = h.peers[0]
    for _ in range(2):
        h.send(peer, _forged(peer.ready(h.start)))
    h.send(peer, peer.ready(h.start))
    assert h.coord.rejections[-1].reason == "rate limited"
    assert h.coord.ready_peers == ()


@pytest.mark.parametrize("drop_at", SECAGG_STAGES)
def test_a_silent_peer_at_any_stage_is_a_dropout(drop_at: RoundStage) -> None:
    h = Harness()
    h.run(S.ADVERTISE_KEYS)
    victim = h.selected()[2]
    h.run(S.DONE, silent={victim.pk}, drop_at=drop_at)
    assert h.coord.stage is S.DONE, h.coord.abort_reason
    outcome = h.coord.outcome
    assert outcome is not None
    in_sum = drop_at in (S.CONSISTENCY_CHECK, S.UNMASK)  # its masked input arrived
    assert (victim.pk in outcome.survivors) == in_sum
    assert len(outcome.survivors) == (5 if in_sum else 4)
    mean, _ = flatten(outcome.mean_delta)
    np.testing.assert_allclose(mean, h.expected_mean(outcome.survivors), atol=1e-6)
    assert h.coord.rejections == ()


def test_too_few_ready_peers_abort_at_selection() -> None:
    h = Harness(n=2)
    h.run(S.ADVERTISE_KEYS)
    assert h.coord.stage is S.ABORTED and "need 3" in (h.coord.abort_reason or "")
    assert isinstance(h.broadcasts[-1], RoundAborted)


def test_too_few_masked_inputs_abort_before_unmasking() -> None:
    h = Harness()
    h.run(S.ADVERTISE_KEYS)
    silent = {p.pk for p in h.selected()[:3]}
    h.run(S.DONE, silent=silent, drop_at=S.MASKED_INPUT)
    assert h.coord.stage is S.ABORTED
    assert "masked inputs arrived" in (h.coord.abort_reason or "")
    assert not any(isinstance(m, UnmaskRequest) for p in h.peers for m in p.inbox)
    assert isinstance(h.broadcasts[-1], RoundAborted) and h.coord.outcome is None


def test_below_secagg_threshold_aborts() -> None:
    h = Harness(params=_params(min_participants=2))
    h.run(S.ADVERTISE_KEYS)
    silent = {p.pk for p in h.selected()[:3]}  # 2 of 5 left; threshold is 3
    h.run(S.DONE, silent=silent, drop_at=S.ADVERTISE_KEYS)
    assert h.coord.stage is S.ABORTED and "can take part" in (h.coord.abort_reason or "")


def test_secret_selection_reveals_nothing_to_the_unselected() -> None:
    h = Harness(n=12, params=_params(sampling_rate=0.5, target_participants=6))
    h.run(S.ADVERTISE_KEYS)
    sel = h.coord.selection
    assert sel is not None and sel.reveal == b"" and sel.ready == ()
    assert 0 < len(sel.selected) < 12 and sel.rate == 0.5
    for peer in h.peers:
        kinds = {type(m) for m in peer.inbox} - {RoundStart}
        if peer.pk in sel.selected:
            assert kinds == {Selection}
        else:
            assert kinds == {NotSelected}
            note = peer.last(NotSelected)
            assert isinstance(note, NotSelected) and note.recipient == peer.pk


def test_commit_reveal_selection_is_public_and_recomputable() -> None:
    h = Harness(n=8, params=_params(sampling=Sampling.NONE, sampling_rate=0.8))
    h.run(S.ADVERTISE_KEYS)
    sel = h.coord.selection
    assert sel is not None and isinstance(h.broadcasts[-1], Selection)
    assert len(sel.ready) == 8 and len(sel.reveal) == 32


def test_strategy_hyperparams_and_fedadam_state() -> None:
    h = Harness(strategy=FedProx(proximal_mu=0.25))
    h.run(S.COLLECT_READY)
    assert h.start.params.hyperparam_dict() == {"proximal_mu": 0.25}
    h2 = Harness(strategy=FedAdam(lr=0.1))
    h2.run(S.DONE)
    outcome = h2.coord.outcome
    assert outcome is not None and outcome.server_state is not None
    assert outcome.server_state.step == 1
    assert outcome.update.new_version != h2.start.model_version


_ints = st.integers(0, 8)
_raw = st.binary(max_size=100)


def _bodies(rid: bytes) -> st.SearchStrategy[object]:
    rids = st.sampled_from([rid, b"other-round"])
    shares = st.lists(st.builds(EncryptedShare, _ints, _ints, _raw), max_size=6).map(tuple)
    pairs = st.lists(st.tuples(_ints, _raw), max_size=6).map(tuple)
    return st.one_of(
        st.builds(AdvertiseKeys, rids, _ints, _raw, _raw, _raw),
        st.builds(ShareKeys, rids, _ints, _raw, shares),
        st.builds(ConsistencySignature, rids, _ints, _raw),
        st.builds(UnmaskResponse, rids, _ints, pairs, pairs),
    )


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.sampled_from(SECAGG_STAGES), st.data())
def test_random_signed_input_is_rejected_never_raised(
    stage: RoundStage, data: st.DataObject
) -> None:
    h = Harness()
    h.run(stage)
    peer = data.draw(st.sampled_from(h.selected()))
    before = _snapshot(h.coord)
    count = len(h.coord.rejections)
    if data.draw(st.booleans()):
        body = data.draw(_bodies(secagg_round_id(h.start)))
        h.send(peer, peer.step(body, 7))
    else:
        sub = GradientSubmission(
            7, peer.pk, data.draw(st.binary(min_size=32, max_size=32)), data.draw(_ints), 1, 0
        )
        h.send(peer, peer.sign(sub))
        h.deliver(h.coord.receive_blob(peer.pk, data.draw(st.binary(max_size=64)), h.now))
    # Nothing raised; whatever was not rejected must have been a well-formed message
    # (an UnmaskResponse with no shares is one), so the state changed only then.
    assert len(h.coord.rejections) > count or _snapshot(h.coord) != before
