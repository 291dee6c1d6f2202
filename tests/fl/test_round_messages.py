"""Round messages: canonical CBOR round trips, signatures bound to round and kind, and the
decoder's contract (a message or RemoteProtocolError, nothing else)."""

from __future__ import annotations

import contextlib
import dataclasses

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from fl import (
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShare,
    FlInputError,
    GradientSubmission,
    KeyRoster,
    ModelUpdate,
    NotSelected,
    PeerReady,
    RemoteProtocolError,
    RoundAborted,
    RoundMessage,
    RoundParams,
    RoundStart,
    Sampling,
    SecAggStep,
    Selection,
    ShareBundle,
    ShareKeys,
    SurvivorsAck,
    UnmaskRequest,
    UnmaskResponse,
    decode_round_message,
    encode_round_message,
    merkle_root,
    sign_message,
    verify_signature,
)

KEY = SigningKey(b"\x01" * 32)
ME = bytes(KEY.verify_key)
OTHER = bytes(SigningKey(b"\x02" * 32).verify_key)
V1, V2 = "ab" * 32, "cd" * 32
RID = b"\x07" * 32
PARAMS = RoundParams.create(
    clip_norm=1.0,
    noise_multiplier=1.1,
    sampling=Sampling.POISSON_SECRET,
    sampling_rate=0.25,
    min_participants=3,
    target_participants=5,
    quant_range=2.5,
    hyperparams={"proximal_mu": 0.01, "lr": 0.1},
)


def _samples() -> list[RoundMessage]:
    keys = AdvertiseKeys(RID, 1, b"c" * 32, b"m" * 32, b"s" * 64)
    share = EncryptedShare(1, 2, b"x" * 94)
    bodies = [
        keys,
        KeyRoster(RID, 2, (keys,)),
        ShareKeys(RID, 1, b"k" * 32, (share,)),
        ShareBundle(RID, 2, (share,)),
        ConsistencySignature(RID, 1, b"s" * 64),
        UnmaskRequest(RID, 2, (0, 1, 2), ((0, b"s" * 64), (1, b"t" * 64))),
        UnmaskResponse(RID, 2, ((0, b"a" * 33),), ((3, b"b" * 33),)),
    ]
    hashes = (b"h" * 32, b"i" * 32)
    plain: list[RoundMessage] = [
        RoundStart(9, ME, V1, "", 1000, PARAMS, 100.5, 600.0, 60.0, b"c" * 32),
        PeerReady(9, ME, 42, b"d" * 32, b"n" * 32),
        Selection(9, ME, tuple(sorted((ME, OTHER))), b"g" * 32, 1, 1, 0.5, 3, b"", ()),
        Selection(9, ME, (OTHER,), b"g" * 32, 0, 1, 1.0, 1, b"r" * 32, ((ME, b"n" * 32),)),
        NotSelected(9, ME, OTHER),
        GradientSubmission(9, ME, b"h" * 32, 2010, 17, 123456789),
        SurvivorsAck(9, ME, (0, 2), hashes),
        ModelUpdate(9, ME, V2, V1, 2, merkle_root(hashes), hashes, (("loss", 0.5),)),
        RoundAborted(9, ME, "too few survivors"),
    ]
    return plain + [SecAggStep(9, ME, body) for body in bodies]


SAMPLES = _samples()


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.kind)
def test_every_kind_round_trips_signed(message: RoundMessage) -> None:
    signed = sign_message(message, KEY)
    data = encode_round_message(signed)
    decoded = decode_round_message(data)
    assert decoded == signed
    assert verify_signature(decoded, ME)
    assert not verify_signature(decoded, OTHER)
    assert encode_round_message(decoded) == data


def test_kinds_are_distinct() -> None:
    kinds = [m.kind for m in SAMPLES]
    assert len(set(kinds)) == len(kinds) - 1  # two Selection samples


def test_signature_is_bound_to_round_kind_and_content() -> None:
    ready = sign_message(PeerReady(9, ME, 42, b"d" * 32, b"n" * 32), KEY)
    assert verify_signature(ready)
    # The same signature on the message moved to another round, or altered, fails.
    assert not verify_signature(dataclasses.replace(ready, round_id=10))
    assert not verify_signature(dataclasses.replace(ready, game_count=43))
    # ... and it cannot be replayed as another kind with the same body fields.
    aborted = sign_message(RoundAborted(9, ME, "x"), KEY)
    forged = NotSelected(9, ME, ME, aborted.signature)
    assert not verify_signature(forged)


def test_signing_needs_the_senders_key() -> None:
    with pytest.raises(FlInputError):
        sign_message(PeerReady(9, OTHER, 1, b"d" * 32, b"n" * 32), KEY)


def test_records_check_their_fields() -> None:
    with pytest.raises(FlInputError):
        PeerReady(9, b"short", 1, b"d" * 32, b"n" * 32)
    with pytest.raises(FlInputError):
        Selection(9, ME, tuple(sorted((ME, OTHER), reverse=True)), b"g" * 32, 1, 1, 0.5, 3, b"", ())
    with pytest.raises(FlInputError):
        RoundStart(9, ME, "nothex", "", 1, PARAMS, 0.0, 1.0, 1.0, b"c" * 32)
    with pytest.raises(FlInputError):
        RoundParams.create(
            clip_norm=1.0,
            noise_multiplier=1.0,
            sampling=Sampling.NONE,
            sampling_rate=0.5,
            min_participants=1,
            target_participants=5,
        )


def test_privacy_event_claims_amplification_only_for_secret_sampling() -> None:
    assert PARAMS.privacy_event().amplified
    public = dataclasses.replace(PARAMS, sampling=Sampling.NONE)
    event = public.privacy_event()
    assert not event.amplified and event.sampling_rate == 1.0


def test_non_canonical_and_unknown_inputs_are_rejected() -> None:
    data = encode_round_message(sign_message(SAMPLES[1], KEY))
    doc = cbor2.loads(data)
    with pytest.raises(RemoteProtocolError, match="canonical"):
        decode_round_message(cbor2.dumps(dict(reversed(doc.items())), canonical=False))
    for key, value in (("v", 2), ("kind", "nope"), ("round", -1), ("extra", 1)):
        bad = {**doc, key: value}
        with pytest.raises(RemoteProtocolError):
            decode_round_message(cbor2.dumps(bad, canonical=True))
    body_extra = {**doc, "body": {**doc["body"], "more": 1}}
    with pytest.raises(RemoteProtocolError, match="unknown keys"):
        decode_round_message(cbor2.dumps(body_extra, canonical=True))
    with pytest.raises(RemoteProtocolError, match="limit"):
        decode_round_message(b"\x00" * (5 * 1024 * 1024))


_ENCODED = [encode_round_message(sign_message(m, KEY)) for m in SAMPLES]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_remote_protocol_error(data: bytes) -> None:
    try:
        message = decode_round_message(data)
    except RemoteProtocolError:
        return
    assert encode_round_message(message) == data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_ENCODED), st.data())
def test_mutated_messages_decode_or_raise_remote_protocol_error(
    data: bytes, draw: st.DataObject
) -> None:
    blob = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        where = draw.draw(st.integers(0, len(blob) - 1))
        blob[where] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(1, len(blob)))
    with contextlib.suppress(RemoteProtocolError):
        decode_round_message(bytes(blob[:cut]))


_json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.binary(max_size=40)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted({m.kind for m in SAMPLES})), _json_like)
def test_well_formed_cbor_with_wrong_bodies_is_rejected_cleanly(kind: str, body: object) -> None:
    doc = {"v": 1, "kind": kind, "round": 1, "from": ME, "body": body, "sig": b"s" * 64}
    with contextlib.suppress(RemoteProtocolError):
        decode_round_message(cbor2.dumps(doc, canonical=True))
