"""Canonical CBOR encoding, signing and decoding of round messages.

Wire form: the canonical CBOR (cbor2 ``canonical=True``) of

    {"v": 1, "kind": str, "round": uint, "from": 32-byte key, "body": {...}, "sig": 64 bytes}

A signature covers ``["p2pgo/fl-round/1", kind, round, from, body]`` in canonical CBOR,
so it cannot be replayed in another round, as another kind, or under another sender.

`decode_round_message` is the only way in from the network. Its contract, after h11:
it returns a message or raises `RemoteProtocolError`, never anything else. It checks
the size before parsing, then the exact keys and types of every field, then value
ranges (the records' own checks), and finally that the input *is* the canonical
encoding, so every message has exactly one byte form and hashes over it are stable.
It does not check signatures (that needs to know who should have signed): the state
machines call `verify_signature` with the key they expect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import blake3
import cbor2
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from fl._dp import Sampling
from fl._errors import FlInputError, RemoteProtocolError
from fl._round_messages import (
    SECAGG_KINDS,
    GradientSubmission,
    ModelUpdate,
    NotSelected,
    PeerReady,
    RoundAborted,
    RoundMessage,
    RoundParams,
    RoundStart,
    SecAggBody,
    SecAggStep,
    Selection,
    SurvivorsAck,
)
from fl._secagg_types import (
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShare,
    KeyRoster,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)

SCHEMA_VERSION = 1
MAX_ROUND_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest encoded message accepted (a 100k-peer Selection is ~3.5 MB; gossip carries
only small ones, the net layer sends big ones over streams)."""
_DOMAIN = "p2pgo/fl-round/1"
_MAX_LIST = 200_000
_MAX_STR = 1_000
_MAX_BYTES = 1 << 20


def _fail(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed round message: {reason}")


class _Reader:
    """Typed access to one decoded CBOR map; every key must be read exactly once."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _fail(f"{where} must be a map with string keys")
        self._data: dict[str, object] = value
        self._where = where
        self._used: set[str] = set()

    def _get(self, key: str) -> object:
        if key not in self._data:
            raise _fail(f"{self._where} lacks {key!r}")
        self._used.add(key)
        return self._data[key]

    def uint(self, key: str) -> int:
        return _as_uint(self._get(key), f"{self._where}.{key}")

    def float_(self, key: str) -> float:
        value = self._get(key)
        if not isinstance(value, float):
            raise _fail(f"{self._where}.{key} must be a float")
        return value

    def bytes_(self, key: str) -> bytes:
        return _as_bytes(self._get(key), f"{self._where}.{key}")

    def str_(self, key: str) -> str:
        return _as_str(self._get(key), f"{self._where}.{key}")

    def list_(self, key: str) -> list[object]:
        return _as_list(self._get(key), f"{self._where}.{key}")

    def map_(self, key: str) -> object:
        return self._get(key)

    def done(self) -> None:
        extra = set(self._data) - self._used
        if extra:
            raise _fail(f"{self._where} has unknown keys {sorted(extra)[:5]}")


def _as_uint(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise _fail(f"{where} must be an unsigned integer")
    return value


def _as_bytes(value: object, where: str) -> bytes:
    if not isinstance(value, bytes) or len(value) > _MAX_BYTES:
        raise _fail(f"{where} must be a byte string")
    return value


def _as_str(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_STR:
        raise _fail(f"{where} must be a short text string")
    return value


def _as_list(value: object, where: str) -> list[object]:
    if not isinstance(value, list) or len(value) > _MAX_LIST:
        raise _fail(f"{where} must be an array")
    return value


def _pair(value: object, where: str) -> tuple[object, object]:
    items = _as_list(value, where)
    if len(items) != 2:
        raise _fail(f"{where} must be a pair")
    return items[0], items[1]


def _uint_bytes_pairs(value: object, where: str) -> tuple[tuple[int, bytes], ...]:
    out = []
    for item in _as_list(value, where):
        a, b = _pair(item, where)
        out.append((_as_uint(a, where), _as_bytes(b, where)))
    return tuple(out)


# -- SecAgg+ bodies ----------------------------------------------------------------------


def _enc_keys(m: AdvertiseKeys) -> dict[str, Any]:
    return {"r": m.round_id, "i": m.sender, "c": m.cipher_pk, "m": m.mask_pk, "s": m.signature}


def _dec_keys(value: object) -> AdvertiseKeys:
    r = _Reader(value, "advertise_keys")
    out = AdvertiseKeys(r.bytes_("r"), r.uint("i"), r.bytes_("c"), r.bytes_("m"), r.bytes_("s"))
    r.done()
    return out


def _enc_shares(shares: tuple[EncryptedShare, ...]) -> list[Any]:
    return [[s.sender, s.recipient, s.ciphertext] for s in shares]


def _dec_shares(value: object, where: str) -> tuple[EncryptedShare, ...]:
    out = []
    for item in _as_list(value, where):
        fields = _as_list(item, where)
        if len(fields) != 3:
            raise _fail(f"{where} entries must be [sender, recipient, ciphertext]")
        out.append(
            EncryptedShare(
                _as_uint(fields[0], where), _as_uint(fields[1], where), _as_bytes(fields[2], where)
            )
        )
    return tuple(out)


def _enc_body(body: SecAggBody) -> dict[str, Any]:
    if isinstance(body, AdvertiseKeys):
        return _enc_keys(body)
    if isinstance(body, KeyRoster):
        return {"r": body.round_id, "to": body.recipient, "keys": [_enc_keys(k) for k in body.keys]}
    if isinstance(body, ShareKeys):
        return {
            "r": body.round_id,
            "i": body.sender,
            "commit": body.seed_commitment,
            "shares": _enc_shares(body.shares),
        }
    if isinstance(body, ShareBundle):
        return {"r": body.round_id, "to": body.recipient, "shares": _enc_shares(body.shares)}
    if isinstance(body, ConsistencySignature):
        return {"r": body.round_id, "i": body.sender, "s": body.signature}
    if isinstance(body, UnmaskRequest):
        return {
            "r": body.round_id,
            "to": body.recipient,
            "u": list(body.survivors),
            "sigs": [[i, s] for i, s in body.signatures],
        }
    return {
        "r": body.round_id,
        "i": body.sender,
        "seed": [[o, s] for o, s in body.seed_shares],
        "key": [[o, s] for o, s in body.key_shares],
    }


def _dec_roster(value: object) -> KeyRoster:
    r = _Reader(value, "key_roster")
    out = KeyRoster(r.bytes_("r"), r.uint("to"), tuple(_dec_keys(k) for k in r.list_("keys")))
    r.done()
    return out


def _dec_share_keys(value: object) -> ShareKeys:
    r = _Reader(value, "share_keys")
    shares = _dec_shares(r.list_("shares"), "share_keys.shares")
    out = ShareKeys(r.bytes_("r"), r.uint("i"), r.bytes_("commit"), shares)
    r.done()
    return out


def _dec_bundle(value: object) -> ShareBundle:
    r = _Reader(value, "share_bundle")
    out = ShareBundle(r.bytes_("r"), r.uint("to"), _dec_shares(r.list_("shares"), "bundle"))
    r.done()
    return out


def _dec_consistency(value: object) -> ConsistencySignature:
    r = _Reader(value, "consistency")
    out = ConsistencySignature(r.bytes_("r"), r.uint("i"), r.bytes_("s"))
    r.done()
    return out


def _dec_unmask_request(value: object) -> UnmaskRequest:
    r = _Reader(value, "unmask_request")
    survivors = tuple(_as_uint(i, "unmask_request.u") for i in r.list_("u"))
    sigs = _uint_bytes_pairs(r.list_("sigs"), "unmask_request.sigs")
    out = UnmaskRequest(r.bytes_("r"), r.uint("to"), survivors, sigs)
    r.done()
    return out


def _dec_unmask_response(value: object) -> UnmaskResponse:
    r = _Reader(value, "unmask_response")
    seed = _uint_bytes_pairs(r.list_("seed"), "unmask_response.seed")
    key = _uint_bytes_pairs(r.list_("key"), "unmask_response.key")
    out = UnmaskResponse(r.bytes_("r"), r.uint("i"), seed, key)
    r.done()
    return out


_BODY_DECODERS: dict[str, Callable[[object], SecAggBody]] = {
    SECAGG_KINDS[AdvertiseKeys]: _dec_keys,
    SECAGG_KINDS[KeyRoster]: _dec_roster,
    SECAGG_KINDS[ShareKeys]: _dec_share_keys,
    SECAGG_KINDS[ShareBundle]: _dec_bundle,
    SECAGG_KINDS[ConsistencySignature]: _dec_consistency,
    SECAGG_KINDS[UnmaskRequest]: _dec_unmask_request,
    SECAGG_KINDS[UnmaskResponse]: _dec_unmask_response,
}


# -- round messages ----------------------------------------------------------------------


def _enc_params(p: RoundParams) -> dict[str, Any]:
    return {
        "clip": p.clip_norm,
        "z": p.noise_multiplier,
        "sampling": p.sampling.value,
        "q": p.sampling_rate,
        "min": p.min_participants,
        "target": p.target_participants,
        "dropout": p.expected_dropout,
        "bits": p.modulus_bits,
        "qrange": p.quant_range,
        "pow": p.pow_difficulty,
        "hp": [[name, value] for name, value in p.hyperparams],
    }


def _dec_params(value: object) -> RoundParams:
    r = _Reader(value, "params")
    sampling_name = r.str_("sampling")
    try:
        sampling = Sampling(sampling_name)
    except ValueError as exc:
        raise _fail(f"unknown sampling {sampling_name!r}") from exc
    hyper = []
    for item in r.list_("hp"):
        name, number = _pair(item, "params.hp")
        if not isinstance(number, float):
            raise _fail("hyperparameter values must be floats")
        hyper.append((_as_str(name, "params.hp"), number))
    out = RoundParams(
        r.float_("clip"),
        r.float_("z"),
        sampling,
        r.float_("q"),
        r.uint("min"),
        r.uint("target"),
        r.float_("dropout"),
        r.uint("bits"),
        r.float_("qrange"),
        r.uint("pow"),
        tuple(hyper),
    )
    r.done()
    return out


def _body(message: RoundMessage) -> dict[str, Any]:
    if isinstance(message, RoundStart):
        return {
            "model": message.model_version,
            "parent": message.parent_version,
            "d": message.vector_length,
            "params": _enc_params(message.params),
            "ready_deadline": message.ready_deadline,
            "train_timeout": message.train_timeout,
            "stage_timeout": message.stage_timeout,
            "commit": message.selection_commitment,
        }
    if isinstance(message, PeerReady):
        return {"games": message.game_count, "data": message.data_hash, "nonce": message.nonce}
    if isinstance(message, Selection):
        return {
            "selected": list(message.selected),
            "graph_seed": message.graph_seed,
            "degree": message.degree,
            "threshold": message.threshold,
            "rate": message.rate,
            "target": message.target,
            "reveal": message.reveal,
            "ready": [[p, n] for p, n in message.ready],
        }
    if isinstance(message, NotSelected):
        return {"to": message.recipient}
    if isinstance(message, SecAggStep):
        return _enc_body(message.body)
    if isinstance(message, GradientSubmission):
        return {
            "hash": message.submission_hash,
            "size": message.blob_bytes,
            "examples": message.num_examples,
            "pow": message.pow_nonce,
        }
    if isinstance(message, SurvivorsAck):
        return {"survivors": list(message.survivors), "hashes": list(message.submissions)}
    if isinstance(message, ModelUpdate):
        return {
            "new": message.new_version,
            "parent": message.parent_version,
            "count": message.participant_count,
            "root": message.merkle_root,
            "hashes": list(message.submissions),
            "metrics": [[n, v] for n, v in message.metrics],
        }
    return {"reason": message.reason}


def _dec_round_start(rid: int, sender: bytes, sig: bytes, body: object) -> RoundStart:
    r = _Reader(body, "round_start")
    out = RoundStart(
        rid,
        sender,
        r.str_("model"),
        r.str_("parent"),
        r.uint("d"),
        _dec_params(r.map_("params")),
        r.float_("ready_deadline"),
        r.float_("train_timeout"),
        r.float_("stage_timeout"),
        r.bytes_("commit"),
        sig,
    )
    r.done()
    return out


def _dec_peer_ready(rid: int, sender: bytes, sig: bytes, body: object) -> PeerReady:
    r = _Reader(body, "peer_ready")
    out = PeerReady(rid, sender, r.uint("games"), r.bytes_("data"), r.bytes_("nonce"), sig)
    r.done()
    return out


def _dec_selection(rid: int, sender: bytes, sig: bytes, body: object) -> Selection:
    r = _Reader(body, "selection")
    selected = tuple(_as_bytes(p, "selection.selected") for p in r.list_("selected"))
    ready = []
    for item in r.list_("ready"):
        peer, nonce = _pair(item, "selection.ready")
        ready.append((_as_bytes(peer, "selection.ready"), _as_bytes(nonce, "selection.ready")))
    out = Selection(
        rid,
        sender,
        selected,
        r.bytes_("graph_seed"),
        r.uint("degree"),
        r.uint("threshold"),
        r.float_("rate"),
        r.uint("target"),
        r.bytes_("reveal"),
        tuple(ready),
        sig,
    )
    r.done()
    return out


def _dec_not_selected(rid: int, sender: bytes, sig: bytes, body: object) -> NotSelected:
    r = _Reader(body, "not_selected")
    out = NotSelected(rid, sender, r.bytes_("to"), sig)
    r.done()
    return out


def _dec_submission(rid: int, sender: bytes, sig: bytes, body: object) -> GradientSubmission:
    r = _Reader(body, "gradient_submission")
    out = GradientSubmission(
        rid, sender, r.bytes_("hash"), r.uint("size"), r.uint("examples"), r.uint("pow"), sig
    )
    r.done()
    return out


def _dec_survivors(rid: int, sender: bytes, sig: bytes, body: object) -> SurvivorsAck:
    r = _Reader(body, "survivors_ack")
    survivors = tuple(_as_uint(i, "survivors_ack.survivors") for i in r.list_("survivors"))
    hashes = tuple(_as_bytes(h, "survivors_ack.hashes") for h in r.list_("hashes"))
    out = SurvivorsAck(rid, sender, survivors, hashes, sig)
    r.done()
    return out


def _dec_update(rid: int, sender: bytes, sig: bytes, body: object) -> ModelUpdate:
    r = _Reader(body, "model_update")
    metrics = []
    for item in r.list_("metrics"):
        name, number = _pair(item, "model_update.metrics")
        if not isinstance(number, float):
            raise _fail("metric values must be floats")
        metrics.append((_as_str(name, "model_update.metrics"), number))
    out = ModelUpdate(
        rid,
        sender,
        r.str_("new"),
        r.str_("parent"),
        r.uint("count"),
        r.bytes_("root"),
        tuple(_as_bytes(h, "model_update.hashes") for h in r.list_("hashes")),
        tuple(metrics),
        sig,
    )
    r.done()
    return out


def _dec_aborted(rid: int, sender: bytes, sig: bytes, body: object) -> RoundAborted:
    r = _Reader(body, "round_aborted")
    out = RoundAborted(rid, sender, r.str_("reason"), sig)
    r.done()
    return out


def _dec_secagg(kind: str) -> Callable[[int, bytes, bytes, object], SecAggStep]:
    def decode(rid: int, sender: bytes, sig: bytes, body: object) -> SecAggStep:
        return SecAggStep(rid, sender, _BODY_DECODERS[kind](body), sig)

    return decode


_DECODERS: dict[str, Callable[[int, bytes, bytes, object], RoundMessage]] = {
    RoundStart.KIND: _dec_round_start,
    PeerReady.KIND: _dec_peer_ready,
    Selection.KIND: _dec_selection,
    NotSelected.KIND: _dec_not_selected,
    GradientSubmission.KIND: _dec_submission,
    SurvivorsAck.KIND: _dec_survivors,
    ModelUpdate.KIND: _dec_update,
    RoundAborted.KIND: _dec_aborted,
    **{kind: _dec_secagg(kind) for kind in _BODY_DECODERS},
}


# -- public ------------------------------------------------------------------------------


def signed_bytes(message: RoundMessage) -> bytes:
    """The exact bytes `message.signature` covers."""
    doc = [_DOMAIN, message.kind, message.round_id, message.sender, _body(message)]
    data: bytes = cbor2.dumps(doc, canonical=True)
    return data


def encode_round_message(message: RoundMessage) -> bytes:
    """The canonical wire bytes of a (signed) message."""
    doc = {
        "v": SCHEMA_VERSION,
        "kind": message.kind,
        "round": message.round_id,
        "from": message.sender,
        "body": _body(message),
        "sig": message.signature,
    }
    data: bytes = cbor2.dumps(doc, canonical=True)
    return data


_M = TypeVar("_M", bound=RoundMessage)


def sign_message(message: _M, key: SigningKey) -> _M:
    """`message` signed by `key`, whose verify key must be `message.sender`."""
    if bytes(key.verify_key) != message.sender:
        raise FlInputError("signing key does not match the message's sender")
    signature = key.sign(signed_bytes(message)).signature
    return replace(message, signature=signature)


def verify_signature(message: RoundMessage, expected_sender: bytes | None = None) -> bool:
    """True if `message` is signed by its sender (and that sender is `expected_sender`)."""
    if expected_sender is not None and message.sender != expected_sender:
        return False
    if len(message.signature) != 64:
        return False
    try:
        VerifyKey(message.sender).verify(signed_bytes(message), message.signature)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


def message_digest(message: RoundMessage) -> bytes:
    """BLAKE3 of the canonical wire bytes: a stable name for acks and de-duplication."""
    return blake3.blake3(encode_round_message(message)).digest()


def decode_round_message(data: bytes) -> RoundMessage:
    """Parse wire bytes into a message; anything malformed raises `RemoteProtocolError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail("input is not bytes")
    raw = bytes(data)
    if len(raw) > MAX_ROUND_MESSAGE_BYTES:
        raise _fail(f"{len(raw)} bytes is over the {MAX_ROUND_MESSAGE_BYTES}-byte limit")
    try:
        doc = cbor2.loads(
            raw,
            max_depth=16,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
    except Exception as exc:
        # cbor2 is third-party code fed hostile bytes; whatever it raises (decode errors,
        # recursion, overflow, odd semantic tags) means only "not a round message".
        raise _fail(f"not well-formed CBOR ({type(exc).__name__})") from exc
    top = _Reader(doc, "message")
    version = top.uint("v")
    if version != SCHEMA_VERSION:
        raise _fail(f"unsupported schema version {version}")
    kind = top.str_("kind")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise _fail(f"unknown kind {kind!r}")
    round_id = top.uint("round")
    sender = top.bytes_("from")
    signature = top.bytes_("sig")
    body = top.map_("body")
    top.done()
    try:
        message = decoder(round_id, sender, signature, body)
    except FlInputError as exc:
        raise _fail(str(exc)) from exc
    if encode_round_message(message) != raw:
        raise _fail("not the canonical encoding")
    return message


def secagg_round_id(start: RoundStart) -> bytes:
    """The SecAgg+ round id (32 bytes): BLAKE3 of the signed RoundStart's content, so
    every SecAgg key, share and signature is bound to exactly this round's start."""
    return blake3.blake3(b"p2pgo/fl-round/secagg\x00" + signed_bytes(start)).digest()
