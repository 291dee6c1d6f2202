"""The peer directory ``/p2pgo/directory/1``: peers register with a relay and find each other.

Theory of operation. A relay runs `DirectoryService`; a peer opens a stream and sends
length-prefixed wire messages (the blob protocol's framing), one answer per request:

- `DirectoryRegister(addrs, agent, ttl_s)` -> `DirectoryRegistered(ttl_s)` or
  `DirectoryRefused(reason)`. The entry is filed under the stream's remote peer id,
  which Noise authenticated, so nobody can register for someone else. A peer behind
  NAT registers its ``/p2p-circuit`` address through this relay.
- `DirectoryLookup(peer_id)` / `DirectoryList(limit)` -> `DirectoryEntries` (each item
  an encoded `DirectoryEntry`, newest registration first).

Entries expire after their (clamped) TTL; peers re-register to stay listed. The table
(`Directory`) is plain data with an injected clock so it is tested without a network.
Limits: entries in total, addresses per entry, entries per answer, and an idle timeout
per stream. Anything else a peer sends is a protocol error and ends its stream.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from libp2p.abc import INetStream

from net._blob import FramedStream
from net._errors import NetError, ProtocolError
from net._wire import (
    DirectoryEntries,
    DirectoryEntry,
    DirectoryList,
    DirectoryLookup,
    DirectoryRefused,
    DirectoryRegister,
    DirectoryRegistered,
    Message,
    decode,
    encode,
)

DIRECTORY_PROTOCOL = "/p2pgo/directory/1"
MAX_ANSWER_ENTRIES = 256
log = logging.getLogger(__name__)


class DirectoryError(NetError):
    """A directory request failed: refused, the server broke the protocol, or no stream."""


@dataclass(frozen=True, slots=True)
class _Listing:
    addrs: tuple[str, ...]
    agent: str
    expires_at: float


def _check_addr(addr: str) -> str | None:
    """Why `addr` cannot be listed, or None if it can (TCP or a relay circuit)."""
    try:
        parsed = multiaddr.Multiaddr(addr)
    except Exception as err:  # the multiaddr parser raises several types
        return f"{addr!r} is not a multiaddr ({err})"
    names = {p.name for p in parsed.protocols()}
    if "tcp" not in names and "p2p-circuit" not in names:
        return f"{addr!r} is neither a TCP nor a /p2p-circuit address"
    return None


class Directory:
    """The table: peer id -> addresses, with expiry and a size bound."""

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        max_ttl_s: int = 600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, _Listing] = OrderedDict()  # oldest registration first
        self._max_entries = max_entries
        self.max_ttl_s = max_ttl_s
        self._clock = clock

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def _expire(self) -> None:
        now = self._clock()
        for peer in [p for p, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[peer]

    def register(self, peer_id: str, message: DirectoryRegister) -> DirectoryRegistered:
        """File `peer_id`'s addresses; raises `ProtocolError` (bad address) or
        `DirectoryError` (the table is full)."""
        for addr in message.addrs:
            problem = _check_addr(addr)
            if problem is not None:
                raise ProtocolError(problem)
        self._expire()
        if peer_id not in self._entries and len(self._entries) >= self._max_entries:
            raise DirectoryError(f"the directory is full ({self._max_entries} peers)")
        ttl = min(message.ttl_s, self.max_ttl_s)
        self._entries.pop(peer_id, None)
        self._entries[peer_id] = _Listing(message.addrs, message.agent, self._clock() + ttl)
        return DirectoryRegistered(ttl)

    def _entry(self, peer_id: str, listing: _Listing) -> DirectoryEntry:
        left = max(0, int(listing.expires_at - self._clock()))
        return DirectoryEntry(peer_id, listing.addrs, listing.agent, left)

    def lookup(self, peer_id: str) -> DirectoryEntry | None:
        self._expire()
        listing = self._entries.get(peer_id)
        return None if listing is None else self._entry(peer_id, listing)

    def list(self, limit: int) -> list[DirectoryEntry]:
        """Up to `limit` entries, the most recent registration first."""
        self._expire()
        newest = reversed(self._entries.items())
        return [self._entry(p, e) for p, e in list(newest)[: min(limit, MAX_ANSWER_ENTRIES)]]


@dataclass
class DirectoryStats:
    requests: Counter[str] = field(default_factory=Counter)  # by request kind
    refused: Counter[str] = field(default_factory=Counter)  # by reason


class DirectoryService:
    """Serves a `Directory` on ``/p2pgo/directory/1`` (a `NodeService`)."""

    def __init__(self, directory: Directory | None = None, *, idle_timeout: float = 30.0) -> None:
        self.directory = directory or Directory()
        self.stats = DirectoryStats()
        self._idle_timeout = idle_timeout
        self._node: Any = None

    async def run(self, node: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._node = node
        node.handle(DIRECTORY_PROTOCOL, "directory", self.serve)
        task_status.started()
        await trio.sleep_forever()

    def answer(self, peer_id: str, request: Message) -> Message:
        """The reply to one request from `peer_id`; `ProtocolError` for a non-request."""
        self.stats.requests[request.KIND] += 1
        if isinstance(request, DirectoryRegister):
            try:
                return self.directory.register(peer_id, request)
            except (DirectoryError, ProtocolError) as err:
                reason = "full" if isinstance(err, DirectoryError) else "bad_address"
                self.stats.refused[reason] += 1
                return DirectoryRefused(str(err))
        if isinstance(request, DirectoryLookup):
            found = self.directory.lookup(request.peer_id)
            return DirectoryEntries(() if found is None else (encode(found),))
        if isinstance(request, DirectoryList):
            return DirectoryEntries(tuple(encode(e) for e in self.directory.list(request.limit)))
        self.stats.refused["protocol"] += 1
        raise ProtocolError(f"expected a directory request, got {request.KIND}")

    async def serve(self, stream: INetStream, peer: str) -> None:
        """Answer requests until the peer closes; errors propagate to the node's guard."""
        framed = FramedStream(stream)
        while True:
            with trio.fail_after(self._idle_timeout):
                request = await framed.receive()
            if request is None:
                break
            started = trio.current_time()
            await framed.send(self.answer(peer, request))
            # Streams are kept open, so the node's per-handler timing would measure the
            # stream's life; request latency is what an operator wants to see.
            observe = self._node.handler_observer if self._node is not None else None
            if observe is not None:
                observe("directory_request", trio.current_time() - started, False)
        await stream.close()


def _entries(reply: Message) -> list[DirectoryEntry]:
    if isinstance(reply, DirectoryRefused):
        raise DirectoryError(f"directory refused: {reply.reason}")
    if not isinstance(reply, DirectoryEntries):
        raise DirectoryError(f"directory answered {reply.KIND}")
    out = []
    for item in reply.entries:
        try:
            entry = decode(item)
        except ProtocolError as err:
            raise DirectoryError(f"bad directory entry: {err}") from None
        if not isinstance(entry, DirectoryEntry):
            raise DirectoryError(f"expected a directory entry, got {entry.KIND}")
        out.append(entry)
    return out


class DirectoryClient:
    """Requests to one relay's directory over one (reused) stream."""

    def __init__(self, node: Any, relay_peer_id: str, *, timeout: float = 10.0) -> None:
        self._node = node
        self.relay_peer_id = relay_peer_id
        self._timeout = timeout
        self._stream: INetStream | None = None
        self._framed: FramedStream | None = None
        self._lock = trio.Lock()

    async def _ask(self, request: Message) -> Message:
        async with self._lock:
            for attempt in (1, 2):  # a stale stream (relay restarted) gets one fresh retry
                try:
                    with trio.fail_after(self._timeout):
                        if self._framed is None:
                            self._stream = await self._node.new_stream(
                                self.relay_peer_id, DIRECTORY_PROTOCOL
                            )
                            self._framed = FramedStream(self._stream)
                        await self._framed.send(request)
                        reply = await self._framed.receive()
                    if reply is None:
                        raise DirectoryError("the directory closed the stream")
                    return reply
                except (ProtocolError, trio.TooSlowError) as err:
                    await self.close()
                    raise DirectoryError(f"directory request failed: {err!r}") from None
                except Exception as err:  # libp2p stream/dial errors come in many types
                    await self.close()
                    if attempt == 2 or isinstance(err, DirectoryError):
                        raise DirectoryError(f"directory request failed: {err!r}") from None
            raise AssertionError("unreachable")

    async def register(self, addrs: tuple[str, ...], agent: str, ttl_s: int) -> int:
        """List us at `addrs`; returns the TTL granted. Raises `DirectoryError`."""
        reply = await self._ask(DirectoryRegister(addrs, agent, ttl_s))
        if isinstance(reply, DirectoryRefused):
            raise DirectoryError(f"registration refused: {reply.reason}")
        if not isinstance(reply, DirectoryRegistered):
            raise DirectoryError(f"directory answered {reply.KIND}")
        return reply.ttl_s

    async def lookup(self, peer_id: str) -> DirectoryEntry | None:
        found = _entries(await self._ask(DirectoryLookup(peer_id)))
        return found[0] if found else None

    async def list(self, limit: int = MAX_ANSWER_ENTRIES) -> list[DirectoryEntry]:
        return _entries(await self._ask(DirectoryList(limit)))

    async def close(self) -> None:
        stream, self._stream, self._framed = self._stream, None, None
        if stream is not None:
            try:
                await stream.close()
            except Exception as err:  # closing a broken stream can fail; nothing to do
                log.debug("closing the directory stream failed: %r", err)
