"""Content-addressed blob storage: complete blobs by BLAKE3 digest, plus partial downloads.

A download appends verified chunks to a *partial* blob (so it can resume after a
dropped stream) and `commit_partial` promotes it only if the whole content hashes to
the digest it was requested by. Two implementations: `MemoryBlobStore` for tests and
simulations, `DirectoryBlobStore` for a node's data directory (files named by hex
digest, written via a temporary file and an atomic rename).

The directory store does blocking file I/O on the caller's thread; chunks are at most
a few hundred KiB, so each call is well under a millisecond.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import blake3

from net._errors import BlobError

_HASH_READ = 1024 * 1024


def blob_digest(data: bytes) -> bytes:
    """The content address of `data`."""
    return blake3.blake3(data).digest()


class BlobStore(Protocol):
    """What the blob protocol needs from storage."""

    def size(self, digest: bytes) -> int | None:
        """Size of the complete blob, or None if we do not hold it."""
        ...

    def read(self, digest: bytes, offset: int, length: int) -> bytes:
        """Up to `length` bytes of a complete blob from `offset`."""
        ...

    def put(self, data: bytes) -> bytes:
        """Store a complete blob; returns its digest."""
        ...

    def partial_size(self, digest: bytes) -> int:
        """Bytes held of an unfinished download (0 if none)."""
        ...

    def append_partial(self, digest: bytes, offset: int, data: bytes) -> None:
        """Append to an unfinished download; `offset` must equal `partial_size`."""
        ...

    def commit_partial(self, digest: bytes) -> None:
        """Promote a finished download; `BlobError` (and the partial is dropped) on mismatch."""
        ...

    def discard_partial(self, digest: bytes) -> None:
        """Forget an unfinished download."""
        ...


class MemoryBlobStore:
    """A `BlobStore` in memory."""

    def __init__(self) -> None:
        self._blobs: dict[bytes, bytes] = {}
        self._partial: dict[bytes, bytearray] = {}

    def size(self, digest: bytes) -> int | None:
        blob = self._blobs.get(digest)
        return None if blob is None else len(blob)

    def read(self, digest: bytes, offset: int, length: int) -> bytes:
        blob = self._blobs.get(digest)
        if blob is None:
            raise BlobError(f"blob {digest.hex()} not found")
        return blob[offset : offset + length]

    def put(self, data: bytes) -> bytes:
        digest = blob_digest(data)
        self._blobs[digest] = bytes(data)
        return digest

    def partial_size(self, digest: bytes) -> int:
        return len(self._partial.get(digest, b""))

    def append_partial(self, digest: bytes, offset: int, data: bytes) -> None:
        part = self._partial.setdefault(digest, bytearray())
        if offset != len(part):
            raise BlobError(f"append at {offset} but the partial blob holds {len(part)} bytes")
        part += data

    def commit_partial(self, digest: bytes) -> None:
        data = bytes(self._partial.pop(digest, b""))
        if blob_digest(data) != digest:
            raise BlobError(f"blob {digest.hex()} failed verification; discarded")
        self._blobs[digest] = data

    def discard_partial(self, digest: bytes) -> None:
        self._partial.pop(digest, None)


class DirectoryBlobStore:
    """A `BlobStore` in a folder: ``<hex>`` complete, ``partial/<hex>`` unfinished."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._partial_dir = root / "partial"
        self._partial_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: bytes) -> Path:
        return self._root / digest.hex()

    def _partial_path(self, digest: bytes) -> Path:
        return self._partial_dir / digest.hex()

    def size(self, digest: bytes) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def read(self, digest: bytes, offset: int, length: int) -> bytes:
        try:
            with open(self._path(digest), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            raise BlobError(f"blob {digest.hex()} not found") from None

    def put(self, data: bytes) -> bytes:
        digest = blob_digest(data)
        tmp = self._partial_dir / f".put-{digest.hex()}-{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, self._path(digest))
        return digest

    def partial_size(self, digest: bytes) -> int:
        try:
            return self._partial_path(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def append_partial(self, digest: bytes, offset: int, data: bytes) -> None:
        with open(self._partial_path(digest), "ab") as f:
            if f.tell() != offset:
                raise BlobError(f"append at {offset} but the partial blob holds {f.tell()} bytes")
            f.write(data)

    def commit_partial(self, digest: bytes) -> None:
        part = self._partial_path(digest)
        hasher = blake3.blake3()
        try:
            with open(part, "rb") as f:
                while block := f.read(_HASH_READ):
                    hasher.update(block)
        except FileNotFoundError:
            raise BlobError(f"no partial download of {digest.hex()}") from None
        if hasher.digest() != digest:
            part.unlink(missing_ok=True)
            raise BlobError(f"blob {digest.hex()} failed verification; discarded")
        os.replace(part, self._path(digest))

    def discard_partial(self, digest: bytes) -> None:
        self._partial_path(digest).unlink(missing_ok=True)
