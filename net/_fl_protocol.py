"""``/p2pgo/fl/1``: the federated-round stream protocol, model codecs and round plumbing.

Theory of operation. A peer that joins rounds keeps one persistent stream to each
coordinator it trusts. The stream carries *frames*: a 4-byte big-endian length, then
the canonical CBOR of one `FlFrame`:

    FlHello   P -> C   first frame: the model version (and format) the peer holds
    FlModel   C -> P   the coordinator's current model (fetch it over /p2pgo/blob/1)
    FlRound   both     one `fl` round message in `fl`'s own signed wire encoding

Round messages that go to one peer (Selection, SecAgg steps, SurvivorsAck) or grow with
the round (ModelUpdate lists every accepted submission) travel only here; gossip
carries just a small `RoundAnnouncement` that wakes peers up. Vectors never travel in
frames: a masked input is a blob the participant serves and the coordinator fetches by
the BLAKE3 hash its GradientSubmission names; a model is a blob named by its version.

`decode_frame` is the only way in: it returns a frame or raises `FlFrameError`
(a `ProtocolError`), never anything else; `FlStream` bounds every frame's size before
reading its body, so a hostile length costs nothing. Either error means "drop this
peer's session", never "crash the host".

Model versions. A version is the BLAKE3 hex digest of the model's *blob*, the exact
bytes peers fetch: `engine.nn.weights_id` of the engine weight file (float32) for the Go
network (`GoModelCodec`), `fl.tensors_version` for plain named tensors (`TensorCodec`).
So a version is also the blob's address, and fetching it verifies it.

Time. `AnchoredClock` is trio's clock shifted to the wall clock once, at creation: it
runs with trio (mock clocks too), and deadlines a coordinator puts in a RoundStart mean
the same instant to peers in other processes (trio's own clock has a random offset).
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import blake3
import cbor2
import trio
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from fl import MAX_ROUND_MESSAGE_BYTES, NamedTensors, RemoteProtocolError
from fl import decode_tensors as _decode_tensors
from fl import encode_tensors as _encode_tensors
from net._blob import BLOB_PROTOCOL, FramedStream, Stream, fetch_into
from net._blobstore import BlobStore, MemoryBlobStore
from net._errors import BlobError, ProtocolError

FL_PROTOCOL = "/p2pgo/fl/1"
FRAME_VERSION = 1
_HEADER = struct.Struct(">I")
_READ = 64 * 1024
MAX_FRAME_TO_PARTICIPANT = MAX_ROUND_MESSAGE_BYTES + 1024
"""Largest frame a participant accepts: a whole round message plus the frame's fields."""
MAX_FRAME_TO_COORDINATOR = 1024 * 1024
"""Largest frame a coordinator accepts: participants send only small messages."""
MAX_MODEL_BLOB = 64 * 1024 * 1024
_MAX_FORMAT = 32
log = logging.getLogger(__name__)
EventSink = Callable[[str, dict[str, Any]], None]
# What a peer that went away raises while we read or write its stream.
GONE = (BaseLibp2pError, EOFError, OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class FlFrameError(ProtocolError):
    """A peer broke ``/p2pgo/fl/1`` (malformed, oversize or truncated frame)."""


def _check_version(value: str, *, allow_empty: bool) -> None:
    if allow_empty and value == "":
        return
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError("a model version is 64 lowercase hex digits")


def _check_format(value: str) -> None:
    if not 0 < len(value) <= _MAX_FORMAT or not value.isascii():
        raise ValueError(f"a model format is 1..{_MAX_FORMAT} ASCII characters")


@dataclass(frozen=True, slots=True)
class FlHello:
    """P -> C, first on a session: the model the peer holds ("" and "" for none)."""

    KIND: ClassVar[str] = "fl_hello"
    model_version: str
    model_format: str

    def __post_init__(self) -> None:
        _check_version(self.model_version, allow_empty=True)
        if self.model_format:
            _check_format(self.model_format)


@dataclass(frozen=True, slots=True)
class FlModel:
    """C -> P: the coordinator's current model is blob `model_version` (hex), in
    `model_format` (`ModelCodec.kind`); the coordinator serves it over the blob protocol."""

    KIND: ClassVar[str] = "fl_model"
    model_version: str
    model_format: str

    def __post_init__(self) -> None:
        _check_version(self.model_version, allow_empty=False)
        _check_format(self.model_format)


@dataclass(frozen=True, slots=True)
class FlRound:
    """One `fl` round message, as `fl.encode_round_message` wrote it."""

    KIND: ClassVar[str] = "fl_round"
    message: bytes

    def __post_init__(self) -> None:
        if not 0 < len(self.message) <= MAX_ROUND_MESSAGE_BYTES:
            raise ValueError("a round message is 1 byte .. MAX_ROUND_MESSAGE_BYTES")


FlFrame = FlHello | FlModel | FlRound


def encode_frame(frame: FlFrame) -> bytes:
    """The canonical CBOR body of `frame` (no length prefix)."""
    doc: dict[str, Any] = {"v": FRAME_VERSION, "kind": frame.KIND}
    if isinstance(frame, FlRound):
        doc["msg"] = frame.message
    else:
        doc["model"] = frame.model_version
        doc["format"] = frame.model_format
    data: bytes = cbor2.dumps(doc, canonical=True)
    return data


_KEYS: dict[str, frozenset[str]] = {
    FlHello.KIND: frozenset({"v", "kind", "model", "format"}),
    FlModel.KIND: frozenset({"v", "kind", "model", "format"}),
    FlRound.KIND: frozenset({"v", "kind", "msg"}),
}


def decode_frame(data: bytes) -> FlFrame:
    """Parse one frame body; anything else than a valid frame raises `FlFrameError`."""
    if len(data) > MAX_FRAME_TO_PARTICIPANT:
        raise FlFrameError(f"frame of {len(data)} bytes is over the limit")
    try:
        doc = cbor2.loads(
            data,
            max_depth=4,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
    except Exception as exc:
        # cbor2 fed hostile bytes may raise many types; all mean "not a frame".
        raise FlFrameError(f"frame is not well-formed CBOR ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("v") != FRAME_VERSION or type(doc["v"]) is not int:
        raise FlFrameError("frame must be a version-1 map")
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in _KEYS or set(doc) != _KEYS[kind]:
        raise FlFrameError(f"unknown frame kind or fields: {sorted(map(str, doc))[:6]}")
    try:
        frame: FlFrame
        if kind == FlRound.KIND:
            if not isinstance(doc["msg"], bytes):
                raise ValueError("msg must be bytes")
            frame = FlRound(doc["msg"])
        else:
            model, fmt = doc["model"], doc["format"]
            if not isinstance(model, str) or not isinstance(fmt, str):
                raise ValueError("model and format must be text")
            frame = FlHello(model, fmt) if kind == FlHello.KIND else FlModel(model, fmt)
    except ValueError as exc:
        raise FlFrameError(f"bad {kind} frame: {exc}") from None
    if encode_frame(frame) != data:
        raise FlFrameError("frame is not the canonical encoding")
    return frame


class FlStream:
    """Length-prefixed `FlFrame`s over a libp2p stream (or any `Stream`).

    `receive` raises `FlFrameError` for a frame over `max_frame` (before reading its
    body), a malformed one, or a stream that ends inside a frame; it returns None when
    the peer closed the stream between frames. libp2p errors (reset) pass through.
    """

    def __init__(self, stream: Stream, *, max_frame: int) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._max_frame = max_frame
        self.bytes_in = 0
        self.bytes_out = 0

    async def send(self, frame: FlFrame) -> None:
        await self.send_raw(encode_frame(frame))

    async def send_raw(self, body: bytes) -> None:
        """Send an already encoded frame body (encode once, send to many)."""
        data = _HEADER.pack(len(body)) + body
        await self._stream.write(data)
        self.bytes_out += len(data)

    async def _fill(self, n: int) -> bool:
        while len(self._buffer) < n:
            try:
                data = await self._stream.read(_READ)
            except EOFError:  # libp2p's StreamEOF
                data = b""
            if not data:
                if self._buffer:
                    raise FlFrameError("stream ended inside a frame")
                return False
            self._buffer += data
            self.bytes_in += len(data)
        return True

    async def receive(self) -> FlFrame | None:
        if not await self._fill(_HEADER.size):
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > self._max_frame:
            raise FlFrameError(f"frame of {length} bytes exceeds {self._max_frame}")
        await self._fill(_HEADER.size + length)
        body = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
        del self._buffer[: _HEADER.size + length]
        return decode_frame(body)


# -- identities ------------------------------------------------------------------------


def key_of_peer(peer_id: str) -> bytes:
    """The Ed25519 public key a peer id embeds (ours all do); `ValueError` otherwise."""
    public = ID.from_base58(peer_id).extract_public_key()
    if public is None:
        raise ValueError(f"peer id {peer_id} does not embed its public key")
    key = public.to_bytes()
    if len(key) != 32:
        raise ValueError(f"peer id {peer_id} is not an Ed25519 identity")
    return bytes(key)


def peer_of_key(key: bytes) -> str:
    """The peer id of an Ed25519 public key (the inverse of `key_of_peer`)."""
    return str(ID.from_pubkey(Ed25519PublicKey.from_bytes(key)).to_base58())


# -- clock ------------------------------------------------------------------------------


class AnchoredClock:
    """trio's clock shifted to the wall clock at creation (see the module docstring)."""

    def __init__(self) -> None:
        self._offset = time.time() - trio.current_time()

    def now(self) -> float:
        return trio.current_time() + self._offset

    def to_trio(self, instant: float) -> float:
        """The trio time of `instant` on this clock (for `trio.move_on_at`)."""
        return instant - self._offset


# -- model codecs ----------------------------------------------------------------------


class ModelError(ProtocolError):
    """A model blob cannot be used (malformed, another architecture or format)."""


class ModelCodec(Protocol):
    """How a model travels: `encode` gives the blob whose BLAKE3 hex is the version."""

    @property
    def kind(self) -> str: ...
    def encode(self, weights: Mapping[str, Any]) -> bytes: ...
    def decode(self, data: bytes) -> NamedTensors:
        """Weights of a model blob; `ModelError` if it is not one this codec can use."""
        ...

    def version(self, weights: Mapping[str, Any]) -> str: ...


def blob_version(data: bytes) -> str:
    """The version of a model blob: its BLAKE3 hex digest."""
    return blake3.blake3(data).hexdigest()


class TensorCodec:
    """Plain named float32 tensors (`fl.encode_tensors`): tests, benchmarks, simulators."""

    kind = "p2pgo-tensors"

    def encode(self, weights: Mapping[str, Any]) -> bytes:
        return _encode_tensors(weights)

    def decode(self, data: bytes) -> NamedTensors:
        try:
            return _decode_tensors(data)
        except RemoteProtocolError as exc:
            raise ModelError(str(exc)) from None

    def version(self, weights: Mapping[str, Any]) -> str:
        return blob_version(self.encode(weights))


class GoModelCodec:
    """The Go network's engine weight file (`engine.nn.encode_weights`, float32).

    The architecture (`engine.nn.ModelConfig`) is learnt from the first model decoded
    (or given); a later model of another architecture is refused. engine.nn (and torch)
    is imported on first use, so importing `net` stays light.
    """

    kind = "p2pgo-model"

    def __init__(self, config: Any = None) -> None:
        self.config: Any = config  # engine.nn.ModelConfig once known

    def encode(self, weights: Mapping[str, Any]) -> bytes:
        from engine.nn import encode_weights

        if self.config is None:
            raise ModelError("the model architecture is not known yet")
        try:
            return encode_weights(self.config, weights, "float32")
        except ValueError as exc:  # ModelFormatError included
            raise ModelError(f"weights do not fit the model: {exc}") from None

    def decode(self, data: bytes) -> NamedTensors:
        from engine.nn import decode_weights

        try:
            config, arrays = decode_weights(data)
        except ValueError as exc:  # ModelFormatError is a ValueError
            raise ModelError(f"not a usable weight file: {exc}") from None
        if self.config is None:
            self.config = config
        elif config != self.config:
            raise ModelError(f"model architecture changed: {config} != {self.config}")
        return arrays

    def version(self, weights: Mapping[str, Any]) -> str:
        return blob_version(self.encode(weights))


def codec_for(model_format: str) -> ModelCodec:
    """A fresh codec for a format name; `ModelError` for an unknown one."""
    if model_format == GoModelCodec.kind:
        return GoModelCodec()
    if model_format == TensorCodec.kind:
        return TensorCodec()
    raise ModelError(f"unknown model format {model_format!r}")


def load_model(data: bytes) -> tuple[ModelCodec, NamedTensors]:
    """A model file of either format: its codec and weights (`ModelError` if neither)."""
    if len(data) > MAX_MODEL_BLOB:
        raise ModelError(f"model file of {len(data)} bytes is over the limit")
    try:
        doc = cbor2.loads(data, max_depth=8, allow_indefinite=False)
    except Exception as exc:  # hostile bytes: any decoder error means "not a model"
        raise ModelError(f"model file is not CBOR ({type(exc).__name__})") from None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    codec = codec_for(kind if isinstance(kind, str) else "")
    return codec, codec.decode(data)


# -- blobs ------------------------------------------------------------------------------


class EphemeralBlobStore:
    """A `BlobStore` that also serves short-lived blobs from memory (masked inputs).

    Everything else, partial downloads included, goes to `inner`. A participant puts
    its masked vector here for the coordinator to fetch and forgets it after the round,
    so round traffic does not pile up in the data directory.
    """

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self._temporary: dict[bytes, bytes] = {}

    def put_ephemeral(self, data: bytes) -> bytes:
        digest = blake3.blake3(data).digest()
        self._temporary[digest] = bytes(data)
        return digest

    def forget(self, digest: bytes) -> None:
        self._temporary.pop(digest, None)

    def size(self, digest: bytes) -> int | None:
        blob = self._temporary.get(digest)
        return len(blob) if blob is not None else self.inner.size(digest)

    def read(self, digest: bytes, offset: int, length: int) -> bytes:
        blob = self._temporary.get(digest)
        if blob is not None:
            return blob[offset : offset + length]
        return self.inner.read(digest, offset, length)

    def put(self, data: bytes) -> bytes:
        return self.inner.put(data)

    def partial_size(self, digest: bytes) -> int:
        return self.inner.partial_size(digest)

    def append_partial(self, digest: bytes, offset: int, data: bytes) -> None:
        self.inner.append_partial(digest, offset, data)

    def commit_partial(self, digest: bytes) -> None:
        self.inner.commit_partial(digest)

    def discard_partial(self, digest: bytes) -> None:
        self.inner.discard_partial(digest)


class _Host(Protocol):
    async def new_stream(self, peer_id: ID, protocols: list[TProtocol]) -> Any: ...


async def fetch_blob_bytes(host: _Host, peer_id: str, digest: bytes, *, max_size: int) -> bytes:
    """Download blob `digest` (at most `max_size` bytes) from `peer_id` into memory.

    Raises `BlobError`. Unlike `Node.fetch_blob` it bounds the size by the caller's
    expectation (a masked vector, a model) and leaves nothing in the node's store.
    """
    try:
        stream = await host.new_stream(ID.from_base58(peer_id), [TProtocol(BLOB_PROTOCOL)])
    except Exception as err:  # dial and negotiation failures come in many types
        raise BlobError(f"cannot open a blob stream to {peer_id}: {err!r}") from None
    store = MemoryBlobStore()
    done = False
    try:
        await fetch_into(FramedStream(stream), store, digest, max_size=max_size)
        size = store.size(digest)
        if size is None:
            raise BlobError("blob transfer ended early")
        done = True
        return store.read(digest, 0, size)
    finally:
        try:
            await (stream.close() if done else stream.reset())
        except (BaseLibp2pError, OSError, trio.BrokenResourceError) as err:
            log.debug("closing a blob stream failed: %r", err)


# -- files ------------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a crash leaves the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
