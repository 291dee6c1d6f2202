"""Blob storage and the /p2pgo/blob/1 protocol between real nodes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from net import (
    BLOB_PROTOCOL,
    BlobError,
    DirectoryBlobStore,
    MemoryBlobStore,
    Node,
    NodeConfig,
    blob_digest,
)
from tests.net._helpers import run_trio, running_nodes

CHUNK = 256 * 1024
DATA = os.urandom(3 * 1024 * 1024 + 12345)  # 13 chunks, the last one short


@pytest.mark.parametrize("kind", ["memory", "directory"])
def test_store_round_trip_and_partial_commit(tmp_path: Path, kind: str) -> None:
    store = MemoryBlobStore() if kind == "memory" else DirectoryBlobStore(tmp_path / "blobs")
    digest = store.put(b"hello world")
    assert digest == blob_digest(b"hello world")
    assert store.size(digest) == 11
    assert store.read(digest, 6, 100) == b"world"
    assert store.size(b"\x00" * 32) is None

    target = blob_digest(b"abcdef")
    store.append_partial(target, 0, b"abc")
    assert store.partial_size(target) == 3
    with pytest.raises(BlobError, match="holds 3 bytes"):
        store.append_partial(target, 1, b"x")
    store.append_partial(target, 3, b"def")
    store.commit_partial(target)
    assert store.read(target, 0, 6) == b"abcdef"
    assert store.partial_size(target) == 0

    wrong = blob_digest(b"other")
    store.append_partial(wrong, 0, b"not it")
    with pytest.raises(BlobError, match="failed verification"):
        store.commit_partial(wrong)
    assert store.size(wrong) is None
    assert store.partial_size(wrong) == 0


def test_a_few_megabytes_transfer_verified_and_resumed(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_nodes(tmp_path, 2) as (a, b):
            digest = a.blob_store.put(DATA)
            await b.connect(a.listen_addrs[0])
            # A transfer that stops after 3 chunks (as if the stream dropped)...
            got = await b.fetch_blob(a.peer_id, digest, max_chunks=3)
            assert got == 3 * CHUNK
            assert b.blob_store.size(digest) is None
            assert b.blob_store.partial_size(digest) == 3 * CHUNK
            # ...resumes where it stopped, and nothing is sent twice.
            served_before = a.blob_server.stats.bytes_served
            got = await b.fetch_blob(a.peer_id, digest)
            assert got == len(DATA) - 3 * CHUNK
            assert b.blob_store.read(digest, 0, len(DATA)) == DATA
            assert a.blob_server.stats.bytes_served - served_before == got
            assert await b.fetch_blob(a.peer_id, digest) == 0  # already held
            assert not a.stats.handler_errors

    run_trio(main)


def test_missing_and_lying_blobs_are_clear_errors(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_nodes(tmp_path, 2) as (a, b):
            await b.connect(a.listen_addrs[0])
            with pytest.raises(BlobError, match="does not have"):
                await b.fetch_blob(a.peer_id, b"\x01" * 32)
            # A server holding different content under a digest: caught at the end.
            fake = blob_digest(b"what was asked for")
            assert isinstance(a.blob_store, MemoryBlobStore)
            a.blob_store._blobs[fake] = b"something else entirely"
            with pytest.raises(BlobError, match="failed verification"):
                await b.fetch_blob(a.peer_id, fake)
            assert b.blob_store.size(fake) is None
            with pytest.raises(BlobError, match="cannot open"):
                await b.fetch_blob("12D3KooWLRVLDBbjUqTUyRgBtvaEh7yu3tvHx7UgxMDAvtwHpUgJ", fake)

    run_trio(main)


def test_a_corrupt_chunk_is_caught_when_it_arrives(tmp_path: Path) -> None:
    class Flaky(MemoryBlobStore):
        reads = 0

        def read(self, digest: bytes, offset: int, length: int) -> bytes:
            self.reads += 1
            data = super().read(digest, offset, length)
            # Reads 1..13 build the manifest; the 15th is chunk 1 on the wire.
            return bytes([data[0] ^ 1]) + data[1:] if self.reads == 15 else data

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a = Node(NodeConfig.load(data_dir=tmp_path / "a"), blob_store=Flaky())
            b = Node(NodeConfig.load(data_dir=tmp_path / "b"), blob_store=MemoryBlobStore())
            await nursery.start(a.run)
            await nursery.start(b.run)
            digest = a.blob_store.put(DATA)
            await b.connect(a.listen_addrs[0])
            with pytest.raises(BlobError, match="chunk 1 does not match"):
                await b.fetch_blob(a.peer_id, digest)
            assert b.blob_store.partial_size(digest) == CHUNK  # chunk 0 kept for resume
            assert await b.fetch_blob(a.peer_id, digest) == len(DATA) - CHUNK
            assert b.blob_store.read(digest, 0, len(DATA)) == DATA
            nursery.cancel_scope.cancel()

    run_trio(main)


def test_per_peer_stream_and_rate_limits(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_nodes(
            tmp_path, 2, blob_streams_per_peer=1, blob_bytes_per_s=1024 * 1024
        ) as (a, b):
            small = a.blob_store.put(b"x" * 1000)
            big = a.blob_store.put(DATA[: 2 * 1024 * 1024])
            await b.connect(a.listen_addrs[0])
            host = b._host
            assert host is not None
            idle = await host.new_stream(ID.from_base58(a.peer_id), [TProtocol(BLOB_PROTOCOL)])
            with pytest.raises(BlobError, match="too many concurrent"):
                await b.fetch_blob(a.peer_id, small)
            await idle.close()
            with trio.fail_after(5):
                while a.blob_server._active:
                    await trio.sleep(0.01)  # the server notices the close
            start = trio.current_time()
            await b.fetch_blob(a.peer_id, big)
            # 2 MiB at 1 MiB/s with a 1 MiB burst: at least ~1 s.
            assert trio.current_time() - start >= 0.8
            assert a.blob_server.stats.refused["busy"] == 1

    run_trio(main)


def test_garbage_on_the_blob_protocol_does_not_hurt_the_server(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_nodes(tmp_path, 2) as (a, b):
            digest = a.blob_store.put(b"still here")
            await b.connect(a.listen_addrs[0])
            host = b._host
            assert host is not None
            for junk in (
                b"\x00\x00\x00\x03abc",
                struct.pack(">I", 1 << 30),
                b"\x00\x00\x00\x01\xa0",
            ):
                stream = await host.new_stream(
                    ID.from_base58(a.peer_id), [TProtocol(BLOB_PROTOCOL)]
                )
                await stream.write(junk)
                await stream.close()
            with trio.fail_after(5):
                while a.stats.handler_errors["blob"] < 3:
                    await trio.sleep(0.01)
            assert await b.fetch_blob(a.peer_id, digest) == len(b"still here")

    run_trio(main)
