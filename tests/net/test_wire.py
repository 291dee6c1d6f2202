"""Wire messages: round trips, strict decoding, and the fuzz invariant."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from net._errors import ProtocolError
from net._wire import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    Ack,
    BlobChunk,
    BlobManifest,
    BlobNotFound,
    BlobRefused,
    BlobRequest,
    Hello,
    Message,
    RoundAnnouncement,
    SignedEnvelope,
    decode,
    encode,
)

D = bytes(range(32))

digests = st.binary(min_size=32, max_size=32)
uints = st.integers(min_value=0, max_value=2**63 - 1)
texts = st.text(max_size=40)


@st.composite
def manifests(draw: st.DrawFn) -> BlobManifest:
    chunk = draw(st.integers(min_value=1, max_value=1000))
    size = draw(st.integers(min_value=0, max_value=5000))
    n = -(-size // chunk)
    return BlobManifest(draw(digests), size, chunk, tuple(draw(digests) for _ in range(n)))


messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Hello, texts, st.lists(texts, max_size=4).map(tuple), texts),
    st.builds(RoundAnnouncement, uints, digests, st.integers(1, 2**63 - 1)),
    st.builds(Ack, digests),
    st.builds(
        SignedEnvelope,
        texts,
        digests,
        uints,
        uints,
        st.binary(max_size=64),
        st.binary(min_size=64, max_size=64),
    ),
    st.builds(BlobRequest, digests, uints),
    manifests(),
    st.builds(BlobChunk, uints, st.binary(max_size=100)),
    st.builds(BlobNotFound, digests),
    st.builds(BlobRefused, digests, texts),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    data = encode(message)
    assert decode(data) == message
    assert encode(decode(data)) == data


CORE = frozenset(
    {
        Hello,
        RoundAnnouncement,
        Ack,
        SignedEnvelope,
        BlobRequest,
        BlobManifest,
        BlobChunk,
        BlobNotFound,
        BlobRefused,
    }
)


def test_every_kind_has_a_round_trip_strategy() -> None:
    from tests.net.test_game_wire import COVERED

    assert len({cls.KIND for cls in MESSAGE_TYPES}) == len(MESSAGE_TYPES)
    assert set(MESSAGE_TYPES) == CORE | COVERED


@settings(max_examples=100, deadline=None)
@given(messages)
def test_the_core_strategy_draws_only_core_kinds(message: Message) -> None:
    assert type(message) in CORE


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        message = decode(data)
    except ProtocolError:
        return
    assert encode(message) == data


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@settings(max_examples=200, deadline=None)
@given(messages, st.data())
def test_a_mutated_field_raises_only_protocol_error(message: Message, data: st.DataObject) -> None:
    body = cbor2.loads(encode(message))
    key = data.draw(st.sampled_from(sorted(body)))
    body[key] = data.draw(json_like)
    encoded = cbor2.dumps(body, canonical=True)
    try:
        decoded = decode(encoded)
    except ProtocolError:
        return
    assert encode(decoded) == encoded


def _raw(**body: object) -> bytes:
    return cbor2.dumps(body, canonical=True)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xff\x00", "malformed"),
        (_raw(v=2, kind="ack", ref=D), "version"),
        (_raw(v=True, kind="ack", ref=D), "version"),
        (_raw(v=1, kind="gossip", ref=D), "unknown message kind"),
        (_raw(v=1, kind="ack"), "missing"),
        (_raw(v=1, kind="ack", ref=D, extra=1), "unexpected"),
        (_raw(v=1, kind="ack", ref="not bytes"), "expected bytes"),
        (_raw(v=1, kind="ack", ref=D[:31]), "32 bytes"),
        (
            _raw(
                v=1, kind="round_announcement", round_id=True, model_version=D, min_participants=1
            ),
            "expected int",
        ),
        (
            _raw(v=1, kind="round_announcement", round_id=-1, model_version=D, min_participants=1),
            "round_id",
        ),
        (
            _raw(v=1, kind="round_announcement", round_id=1, model_version=D, min_participants=0),
            "min_participants",
        ),
        (_raw(v=1, kind="hello", peer_id="x", addrs=["a", 1], agent="y"), "list of str"),
        (cbor2.dumps([1, 2]), "map"),
        (cbor2.dumps({"v": 1, "kind": "ack", "ref": D}), "canonical"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(data: bytes, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        decode(data)


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(encode(Ack(D)), max_size=10)


def test_deep_nesting_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode(b"\x81" * 100_000 + b"\x00")


def test_manifest_checks_the_chunk_count() -> None:
    with pytest.raises(ValueError, match="chunk hashes"):
        BlobManifest(D, 10, 4, (D, D))
