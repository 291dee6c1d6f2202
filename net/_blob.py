"""The blob protocol ``/p2pgo/blob/1``: chunked, verified, resumable transfer by BLAKE3.

Theory of operation. Frames on a stream are a 4-byte big-endian length and one wire
message. The client sends `BlobRequest(digest, offset)`; the server answers
`BlobNotFound`, `BlobRefused(reason)`, or a `BlobManifest` (size, chunk size, BLAKE3
of every chunk) followed by `BlobChunk`s from the chunk holding `offset` to the end.
The stream then accepts another request.

The client checks the manifest names the digest it asked for, checks each chunk's
index, length and hash against the manifest *as it arrives* (so a corrupt or lying
server is caught at the first bad chunk, not after gigabytes), appends it to a
partial blob in the store, and at the end commits the partial only if the whole
content hashes to the digest. A dropped transfer leaves the partial in place and the
next fetch asks from its end. Memory is bounded by one chunk plus the muxer window.

The server limits each peer's concurrent streams and bytes per second.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import blake3
import trio
from libp2p.exceptions import BaseLibp2pError

from net._blobstore import BlobStore
from net._errors import BlobError, ProtocolError
from net._wire import (
    MAX_MESSAGE_BYTES,
    BlobChunk,
    BlobManifest,
    BlobNotFound,
    BlobRefused,
    BlobRequest,
    Message,
    decode,
    encode,
)

BLOB_PROTOCOL = "/p2pgo/blob/1"
DEFAULT_MAX_BLOB = 1 << 30
_READ = 64 * 1024
_HEADER = struct.Struct(">I")
log = logging.getLogger(__name__)


class Stream(Protocol):
    """The part of a libp2p `INetStream` the protocol uses (tests may pass fakes)."""

    async def read(self, n: int | None = None) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


class FramedStream:
    """Length-prefixed wire messages over a byte stream."""

    def __init__(self, stream: Stream, *, max_frame: int = MAX_MESSAGE_BYTES) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._max_frame = max_frame

    async def send(self, message: Message) -> None:
        data = encode(message)
        await self._stream.write(_HEADER.pack(len(data)) + data)

    async def _fill(self, n: int) -> bool:
        """Buffer at least `n` bytes; False on a clean end of stream before any byte."""
        while len(self._buffer) < n:
            try:
                data = await self._stream.read(_READ)
            except EOFError:  # libp2p's StreamEOF is an EOFError
                data = b""
            if not data:
                if self._buffer:
                    raise ProtocolError("stream ended inside a frame")
                return False
            self._buffer += data
        return True

    async def receive(self) -> Message | None:
        """The next message, or None when the peer closed the stream between frames."""
        if not await self._fill(_HEADER.size):
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > self._max_frame:
            raise ProtocolError(f"frame of {length} bytes exceeds {self._max_frame}")
        await self._fill(_HEADER.size + length)
        frame = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
        del self._buffer[: _HEADER.size + length]
        return decode(frame)


class _RateLimiter:
    """Token bucket per peer: at most `rate` bytes/s with one second of burst."""

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._tokens: dict[str, float] = {}
        self._stamp: dict[str, float] = {}

    async def spend(self, peer: str, n: int) -> None:
        if self._rate <= 0:
            return
        now = trio.current_time()
        tokens = min(
            float(self._rate),
            self._tokens.get(peer, float(self._rate))
            + (now - self._stamp.get(peer, now)) * self._rate,
        )
        tokens -= n
        self._tokens[peer], self._stamp[peer] = tokens, now
        if tokens < 0:
            await trio.sleep(-tokens / self._rate)  # pacing, not sequencing


def build_manifest(store: BlobStore, digest: bytes, chunk_size: int) -> BlobManifest | None:
    size = store.size(digest)
    if size is None:
        return None
    hashes = tuple(
        blake3.blake3(store.read(digest, off, chunk_size)).digest()
        for off in range(0, size, chunk_size)
    )
    return BlobManifest(digest, size, chunk_size, hashes)


@dataclass
class BlobServerStats:
    bytes_served: int = 0
    chunks_served: int = 0
    refused: Counter[str] = field(default_factory=Counter)


class BlobServer:
    """Serves a `BlobStore` to peers, with per-peer limits."""

    def __init__(
        self,
        store: BlobStore,
        *,
        chunk_size: int = 256 * 1024,
        streams_per_peer: int = 4,
        bytes_per_s: int = 0,
        idle_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self._idle_timeout = idle_timeout
        self.chunk_size = chunk_size
        self._streams_per_peer = streams_per_peer
        self._active: Counter[str] = Counter()
        self._limiter = _RateLimiter(bytes_per_s)
        self._manifests: dict[bytes, BlobManifest] = {}  # small cache: blobs are immutable
        self.stats = BlobServerStats()

    def _manifest(self, digest: bytes) -> BlobManifest | None:
        manifest = self._manifests.get(digest)
        if manifest is None:
            manifest = build_manifest(self.store, digest, self.chunk_size)
            if manifest is not None:
                if len(self._manifests) >= 64:
                    self._manifests.pop(next(iter(self._manifests)))
                self._manifests[digest] = manifest
        return manifest

    async def serve(self, stream: Stream, peer: str) -> None:
        """Answer requests on one stream until the peer closes or resets it.

        Raises `ProtocolError` for a malformed request and `trio.TooSlowError` for a peer
        idle longer than `idle_timeout`; the caller resets the stream.
        """
        framed = FramedStream(stream)
        if self._active[peer] >= self._streams_per_peer:
            self.stats.refused["busy"] += 1
            with trio.fail_after(self._idle_timeout):
                request = await framed.receive()
            digest = request.digest if isinstance(request, BlobRequest) else bytes(32)
            await framed.send(BlobRefused(digest, "too many concurrent blob streams"))
            await stream.close()
            return
        self._active[peer] += 1
        try:
            while True:
                with trio.fail_after(self._idle_timeout):
                    request = await framed.receive()
                if request is None:
                    break
                if not isinstance(request, BlobRequest):
                    raise ProtocolError(f"expected blob_request, got {request.KIND}")
                await self._answer(framed, peer, request)
            await stream.close()
        except (BaseLibp2pError, trio.BrokenResourceError) as err:
            log.debug("blob stream from %s ended: %r", peer, err)  # the peer went away
        finally:
            self._active[peer] -= 1
            if not self._active[peer]:
                del self._active[peer]

    async def _answer(self, framed: FramedStream, peer: str, request: BlobRequest) -> None:
        manifest = self._manifest(request.digest)
        if manifest is None:
            await framed.send(BlobNotFound(request.digest))
            return
        if request.offset > manifest.size:
            self.stats.refused["offset"] += 1
            await framed.send(BlobRefused(request.digest, f"offset beyond size {manifest.size}"))
            return
        await framed.send(manifest)
        for index in range(request.offset // self.chunk_size, len(manifest.chunk_hashes)):
            data = self.store.read(request.digest, index * self.chunk_size, self.chunk_size)
            await self._limiter.spend(peer, len(data))
            await framed.send(BlobChunk(index, data))
            self.stats.bytes_served += len(data)
            self.stats.chunks_served += 1


async def fetch_into(
    framed: FramedStream,
    store: BlobStore,
    digest: bytes,
    *,
    max_size: int = DEFAULT_MAX_BLOB,
    max_chunks: int | None = None,
) -> int:
    """Download `digest` into `store` over an open blob stream; returns bytes received.

    Resumes from the store's partial blob. `max_chunks` stops early (leaving the partial
    for a later resume; tests use it to simulate a dropped transfer). Raises `BlobError`.
    """
    if store.size(digest) is not None:
        return 0
    have = store.partial_size(digest)
    try:
        await framed.send(BlobRequest(digest, have))
        reply = await framed.receive()
        if isinstance(reply, BlobNotFound):
            raise BlobError(f"peer does not have blob {digest.hex()}")
        if isinstance(reply, BlobRefused):
            raise BlobError(f"peer refused blob {digest.hex()}: {reply.reason}")
        if not isinstance(reply, BlobManifest) or reply.digest != digest:
            raise BlobError("peer answered with something other than this blob's manifest")
        if reply.size > max_size:
            raise BlobError(f"blob of {reply.size} bytes exceeds the limit of {max_size}")
        if have > reply.size:
            store.discard_partial(digest)
            raise BlobError("partial download longer than the blob; discarded, retry")
        received = 0
        first = have // reply.chunk_size
        for index in range(first, len(reply.chunk_hashes)):
            if max_chunks is not None and index - first >= max_chunks:
                return received
            chunk = await framed.receive()
            if not isinstance(chunk, BlobChunk) or chunk.index != index:
                raise BlobError(f"expected chunk {index}, got {chunk!r:.80}")
            start = index * reply.chunk_size
            expected_len = min(reply.chunk_size, reply.size - start)
            if len(chunk.data) != expected_len:
                raise BlobError(
                    f"chunk {index} has {len(chunk.data)} bytes, expected {expected_len}"
                )
            if blake3.blake3(chunk.data).digest() != reply.chunk_hashes[index]:
                raise BlobError(f"chunk {index} does not match the manifest")
            new = chunk.data[have - start :] if have > start else chunk.data
            store.append_partial(digest, max(have, start), new)
            have = max(have, start) + len(new)
            received += len(chunk.data)
        store.commit_partial(digest)
        return received
    except ProtocolError as err:
        raise BlobError(f"peer broke the blob protocol: {err}") from None
    except (BaseLibp2pError, OSError, EOFError, trio.BrokenResourceError) as err:
        raise BlobError(f"blob stream failed: {err!r}") from None
