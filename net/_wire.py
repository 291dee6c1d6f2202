"""Typed wire messages and their one canonical encoding.

Every message is a frozen record encoded as canonical CBOR (cbor2, ``canonical=True``):
a map with ``v`` (schema version), ``kind`` (which record) and the record's fields.
`decode` is the only way in from the network and its contract is the h11 fuzz
invariant: it returns a record or raises `ProtocolError`, never anything else. It
checks the size before parsing, then field names and exact types, then value ranges,
and finally that the input *is* the canonical encoding (so a message has exactly one
byte form, and hashes and signatures over it are stable).

Only messages the network uses today live here; new kinds are added with a test
(directory and game kinds: tests/net/test_game_wire.py).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import cbor2

from net._errors import ProtocolError

SCHEMA_VERSION = 1
# Gossip carries small announcements; blob chunks (256 KiB) travel on streams. One
# limit covers both: anything bigger is not a message we would ever send.
MAX_MESSAGE_BYTES = 1024 * 1024
DIGEST_BYTES = 32  # BLAKE3 output and Ed25519 public keys
SIGNATURE_BYTES = 64
_MAX_UINT = 2**63 - 1


def _digest(name: str, value: bytes) -> None:
    if len(value) != DIGEST_BYTES:
        raise ValueError(f"{name} must be {DIGEST_BYTES} bytes, got {len(value)}")


def _uint(name: str, value: int, minimum: int = 0) -> None:
    if not minimum <= value <= _MAX_UINT:
        raise ValueError(f"{name} must be in [{minimum}, 2**63-1], got {value}")


@dataclass(frozen=True, slots=True)
class Hello:
    """A peer announces itself: who it is, where it listens, what software it runs."""

    KIND: ClassVar[str] = "hello"
    peer_id: str
    addrs: tuple[str, ...]
    agent: str


@dataclass(frozen=True, slots=True)
class RoundAnnouncement:
    """A coordinator opens a federated round (the plan's RoundStart)."""

    KIND: ClassVar[str] = "round_announcement"
    round_id: int
    model_version: bytes  # BLAKE3 of the model blob participants start from
    min_participants: int

    def __post_init__(self) -> None:
        _uint("round_id", self.round_id)
        _digest("model_version", self.model_version)
        _uint("min_participants", self.min_participants, minimum=1)


@dataclass(frozen=True, slots=True)
class Ack:
    """Receipt of a message, named by the BLAKE3 of its payload (stable across re-sends)."""

    KIND: ClassVar[str] = "ack"
    ref: bytes

    def __post_init__(self) -> None:
        _digest("ref", self.ref)


@dataclass(frozen=True, slots=True)
class SignedEnvelope:
    """An authored message: `payload` (a canonical message) signed by `sender`.

    The signature covers topic, sender, seq, timestamp and payload (see
    `net._envelope.signed_bytes`), so it cannot be replayed on another topic.
    """

    KIND: ClassVar[str] = "envelope"
    topic: str
    sender: bytes  # Ed25519 public key
    seq: int
    timestamp_ms: int
    payload: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _digest("sender", self.sender)
        _uint("seq", self.seq)
        _uint("timestamp_ms", self.timestamp_ms)
        if len(self.signature) != SIGNATURE_BYTES:
            raise ValueError(f"signature must be {SIGNATURE_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class BlobRequest:
    """Ask for blob `digest` starting at byte `offset` (a multiple of the chunk size)."""

    KIND: ClassVar[str] = "blob_request"
    digest: bytes
    offset: int

    def __post_init__(self) -> None:
        _digest("digest", self.digest)
        _uint("offset", self.offset)


@dataclass(frozen=True, slots=True)
class BlobManifest:
    """First answer to a request: the blob's size and the BLAKE3 of every chunk."""

    KIND: ClassVar[str] = "blob_manifest"
    digest: bytes
    size: int
    chunk_size: int
    chunk_hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _digest("digest", self.digest)
        _uint("size", self.size)
        _uint("chunk_size", self.chunk_size, minimum=1)
        expected = -(-self.size // self.chunk_size)
        if len(self.chunk_hashes) != expected:
            raise ValueError(f"{expected} chunk hashes expected, got {len(self.chunk_hashes)}")
        for h in self.chunk_hashes:
            _digest("chunk hash", h)


@dataclass(frozen=True, slots=True)
class BlobChunk:
    """Chunk number `index` of the blob named in the manifest before it."""

    KIND: ClassVar[str] = "blob_chunk"
    index: int
    data: bytes

    def __post_init__(self) -> None:
        _uint("index", self.index)


@dataclass(frozen=True, slots=True)
class BlobNotFound:
    """The server does not hold blob `digest`."""

    KIND: ClassVar[str] = "blob_not_found"
    digest: bytes

    def __post_init__(self) -> None:
        _digest("digest", self.digest)


@dataclass(frozen=True, slots=True)
class BlobRefused:
    """The server will not serve this request now (busy, bad offset); `reason` says why."""

    KIND: ClassVar[str] = "blob_refused"
    digest: bytes
    reason: str

    def __post_init__(self) -> None:
        _digest("digest", self.digest)


# -- peer directory (/p2pgo/directory/1, served by relays) -----------------------------

MAX_DIRECTORY_ADDRS = 8
MAX_ADDR_CHARS = 256


def _addrs(addrs: tuple[str, ...]) -> None:
    if len(addrs) > MAX_DIRECTORY_ADDRS:
        raise ValueError(f"at most {MAX_DIRECTORY_ADDRS} addresses, got {len(addrs)}")
    for addr in addrs:
        if not 0 < len(addr) <= MAX_ADDR_CHARS:
            raise ValueError(f"an address must be 1..{MAX_ADDR_CHARS} characters")


@dataclass(frozen=True, slots=True)
class DirectoryRegister:
    """List me under the stream's (authenticated) peer id at `addrs` for `ttl_s` seconds."""

    KIND: ClassVar[str] = "directory_register"
    addrs: tuple[str, ...]
    agent: str
    ttl_s: int

    def __post_init__(self) -> None:
        _addrs(self.addrs)
        _uint("ttl_s", self.ttl_s, minimum=1)
        if len(self.agent) > 64:
            raise ValueError("agent must be at most 64 characters")


@dataclass(frozen=True, slots=True)
class DirectoryRegistered:
    """The registration is held for `ttl_s` seconds (the server may shorten it)."""

    KIND: ClassVar[str] = "directory_registered"
    ttl_s: int

    def __post_init__(self) -> None:
        _uint("ttl_s", self.ttl_s)


@dataclass(frozen=True, slots=True)
class DirectoryLookup:
    """Ask for one peer's entry (answered with 0 or 1 entries)."""

    KIND: ClassVar[str] = "directory_lookup"
    peer_id: str


@dataclass(frozen=True, slots=True)
class DirectoryList:
    """Ask for up to `limit` entries, most recently registered first."""

    KIND: ClassVar[str] = "directory_list"
    limit: int

    def __post_init__(self) -> None:
        _uint("limit", self.limit, minimum=1)


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One registered peer; `expires_in_s` counts from when the server answered."""

    KIND: ClassVar[str] = "directory_entry"
    peer_id: str
    addrs: tuple[str, ...]
    agent: str
    expires_in_s: int

    def __post_init__(self) -> None:
        _addrs(self.addrs)
        _uint("expires_in_s", self.expires_in_s)


@dataclass(frozen=True, slots=True)
class DirectoryEntries:
    """An answer: each item is the canonical encoding of a `DirectoryEntry`.

    Records only hold scalars and lists of scalars, so nested records travel encoded.
    """

    KIND: ClassVar[str] = "directory_entries"
    entries: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class DirectoryRefused:
    """The server will not do this (rate limit, full, bad address); `reason` says why."""

    KIND: ClassVar[str] = "directory_refused"
    reason: str


# -- peer-to-peer games (/p2pgo/game/1) -------------------------------------------------

MAX_GAME_ID_CHARS = 64
MAX_KOMI_HALVES = 1000  # |komi| <= 500


def _game_id(game_id: str) -> None:
    if not 0 < len(game_id) <= MAX_GAME_ID_CHARS:
        raise ValueError(f"game_id must be 1..{MAX_GAME_ID_CHARS} characters")


@dataclass(frozen=True, slots=True)
class GameChallenge:
    """Propose a game; the terms fix the game record's header (and so its hash chain).

    `challenger_color` is 1 (black) or 2 (white); `black` and `white` are the players'
    peer ids; komi travels as an integer number of half points.
    """

    KIND: ClassVar[str] = "game_challenge"
    game_id: str
    size: int
    rules: str
    komi_halves: int
    challenger_color: int
    main_time_s: int
    increment_s: int
    date: str
    black: str
    white: str

    def __post_init__(self) -> None:
        _game_id(self.game_id)
        if not 2 <= self.size <= 25:
            raise ValueError(f"size must be 2..25, got {self.size}")
        if abs(self.komi_halves) > MAX_KOMI_HALVES:
            raise ValueError(f"komi_halves must be within +-{MAX_KOMI_HALVES}")
        if self.challenger_color not in (1, 2):
            raise ValueError("challenger_color must be 1 (black) or 2 (white)")
        _uint("main_time_s", self.main_time_s)
        _uint("increment_s", self.increment_s)


@dataclass(frozen=True, slots=True)
class GameAccept:
    KIND: ClassVar[str] = "game_accept"
    game_id: str

    def __post_init__(self) -> None:
        _game_id(self.game_id)


@dataclass(frozen=True, slots=True)
class GameDecline:
    KIND: ClassVar[str] = "game_decline"
    game_id: str
    reason: str

    def __post_init__(self) -> None:
        _game_id(self.game_id)


@dataclass(frozen=True, slots=True)
class GameMove:
    """Move `number` (1-based) of the game, played on top of chain head `prev_head`.

    `move_kind` is 0 play, 1 pass, 2 resign (the record's codes); row/col are 0 unless
    play. (Not ``kind``: that key names the record on the wire.)
    """

    KIND: ClassVar[str] = "game_move"
    game_id: str
    number: int
    color: int
    move_kind: int
    row: int
    col: int
    prev_head: bytes

    def __post_init__(self) -> None:
        _game_id(self.game_id)
        _uint("number", self.number, minimum=1)
        if self.color not in (1, 2):
            raise ValueError("color must be 1 (black) or 2 (white)")
        if self.move_kind not in (0, 1, 2):
            raise ValueError("move_kind must be 0 (play), 1 (pass) or 2 (resign)")
        _uint("row", self.row)
        _uint("col", self.col)
        _digest("prev_head", self.prev_head)


@dataclass(frozen=True, slots=True)
class GameMoveAck:
    """Move `number` was validated and applied; `head` is the chain head after it."""

    KIND: ClassVar[str] = "game_move_ack"
    game_id: str
    number: int
    head: bytes

    def __post_init__(self) -> None:
        _game_id(self.game_id)
        _uint("number", self.number, minimum=1)
        _digest("head", self.head)


@dataclass(frozen=True, slots=True)
class GameMoveRejected:
    """Move `number` was not applied; `reason` says why (illegal, out of turn, ...)."""

    KIND: ClassVar[str] = "game_move_rejected"
    game_id: str
    number: int
    reason: str

    def __post_init__(self) -> None:
        _game_id(self.game_id)
        _uint("number", self.number, minimum=1)


@dataclass(frozen=True, slots=True)
class GameSync:
    """Where my copy of the game stands: `moves` applied, ending in chain head `head`.

    Sent first on a resumed stream (and answered in kind) to find what was lost.
    """

    KIND: ClassVar[str] = "game_sync"
    game_id: str
    moves: int
    head: bytes

    def __post_init__(self) -> None:
        _game_id(self.game_id)
        _uint("moves", self.moves)
        _digest("head", self.head)


@dataclass(frozen=True, slots=True)
class GameDeadStones:
    """My proposal of the dead stones at chain head `head` (points as row * size + col)."""

    KIND: ClassVar[str] = "game_dead_stones"
    game_id: str
    head: bytes
    points: tuple[int, ...]

    def __post_init__(self) -> None:
        _game_id(self.game_id)
        _digest("head", self.head)
        if list(self.points) != sorted(set(self.points)):
            raise ValueError("points must be sorted and distinct")
        for point in self.points:
            _uint("point", point)


@dataclass(frozen=True, slots=True)
class GameSignature:
    """My Ed25519 signature over the final record (see `engine._store.sign_record`)."""

    KIND: ClassVar[str] = "game_signature"
    game_id: str
    record_digest: bytes  # BLAKE3 of the final record's canonical bytes
    signature: bytes

    def __post_init__(self) -> None:
        _game_id(self.game_id)
        _digest("record_digest", self.record_digest)
        if len(self.signature) != SIGNATURE_BYTES:
            raise ValueError(f"signature must be {SIGNATURE_BYTES} bytes")


Message = (
    Hello
    | RoundAnnouncement
    | Ack
    | SignedEnvelope
    | BlobRequest
    | BlobManifest
    | BlobChunk
    | BlobNotFound
    | BlobRefused
    | DirectoryRegister
    | DirectoryRegistered
    | DirectoryLookup
    | DirectoryList
    | DirectoryEntry
    | DirectoryEntries
    | DirectoryRefused
    | GameChallenge
    | GameAccept
    | GameDecline
    | GameMove
    | GameMoveAck
    | GameMoveRejected
    | GameSync
    | GameDeadStones
    | GameSignature
)

MESSAGE_TYPES: tuple[type[Message], ...] = typing.get_args(Message)
_BY_KIND: dict[str, type[Message]] = {cls.KIND: cls for cls in MESSAGE_TYPES}
# Field name -> expected type, resolved once; only these shapes occur on the wire.
_SCALARS: dict[Any, type] = {int: int, str: str, bytes: bytes}
_SCHEMAS: dict[type[Message], dict[str, Any]] = {
    cls: typing.get_type_hints(cls) for cls in MESSAGE_TYPES
}
for _cls, _hints in _SCHEMAS.items():
    _hints.pop("KIND")


def encode(message: Message) -> bytes:
    """The canonical CBOR bytes of `message`."""
    body: dict[str, Any] = {"v": SCHEMA_VERSION, "kind": message.KIND}
    for field in dataclasses.fields(message):
        value = getattr(message, field.name)
        body[field.name] = list(value) if isinstance(value, tuple) else value
    return cbor2.dumps(body, canonical=True)


def _check_value(kind: str, name: str, expected: Any, value: Any) -> Any:
    if expected in _SCALARS:
        # `type(...) is` because bool is an int and must not pass for one.
        if type(value) is not _SCALARS[expected]:
            raise ProtocolError(f"{kind}.{name}: expected {expected.__name__}")
        return value
    # The only container shape is tuple[scalar, ...].
    (item,) = (a for a in typing.get_args(expected) if a is not Ellipsis)
    if type(value) is not list or any(type(v) is not item for v in value):
        raise ProtocolError(f"{kind}.{name}: expected a list of {item.__name__}")
    return tuple(value)


def decode(data: bytes, *, max_size: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse one message; raises `ProtocolError` (and nothing else) on any bad input."""
    if len(data) > max_size:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        body = cbor2.loads(data)
    except Exception as err:  # cbor2 raises several types; all mean "malformed"
        raise ProtocolError(f"malformed CBOR: {err}") from None
    if type(body) is not dict:
        raise ProtocolError("a message must be a CBOR map")
    if body.get("v") != SCHEMA_VERSION or type(body.get("v")) is not int:
        raise ProtocolError(f"unsupported schema version {body.get('v')!r}")
    kind = body.get("kind")
    cls = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None or not isinstance(kind, str):
        raise ProtocolError(f"unknown message kind {kind!r}")
    schema = _SCHEMAS[cls]
    fields = {k: v for k, v in body.items() if k not in ("v", "kind")}
    if set(fields) != set(schema):
        missing = sorted(set(schema) - set(fields))
        extra = sorted(map(repr, set(fields) - set(schema)))
        raise ProtocolError(f"{kind}: missing fields {missing}, unexpected fields {extra}")
    args = {name: _check_value(kind, name, schema[name], fields[name]) for name in schema}
    try:
        message = cls(**args)
    except ValueError as err:
        raise ProtocolError(f"{kind}: {err}") from None
    if encode(message) != data:
        raise ProtocolError(f"{kind}: not in canonical CBOR form")
    return message
