"""A participant's session with one coordinator: its state and the stream that carries it.

`net._fl_participant.FlParticipantService` keeps one `Link` per trusted coordinator.
`follow` keeps a persistent ``/p2pgo/fl/1`` stream open to it (the peer dials, since
it may sit behind NAT), says `FlHello` on every connect, pumps incoming frames into
the link's `frames` channel and the link's `outbox` onto the stream, and reconnects
with backoff (an announcement wakes it early). Round processing is the service's job;
this module only moves frames. `reset_stream` is shared with the coordinator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from fl import RoundParticipant, RoundStart
from net._fl_local import ParticipantStats
from net._fl_protocol import (
    FL_PROTOCOL,
    GONE,
    MAX_FRAME_TO_PARTICIPANT,
    FlFrame,
    FlFrameError,
    FlHello,
    FlStream,
)
from net._node import Node

log = logging.getLogger(__name__)


@dataclass
class Link:
    """One coordinator as a participant sees it: its channels and its current round."""

    peer_id: str
    key: bytes
    frames_send: trio.MemorySendChannel[FlFrame]
    frames: trio.MemoryReceiveChannel[FlFrame]
    outbox_send: trio.MemorySendChannel[bytes]
    outbox: trio.MemoryReceiveChannel[bytes]
    wake: trio.Event = field(default_factory=trio.Event)
    participant: RoundParticipant | None = None
    round_id: int = -1
    last_start: RoundStart | None = None
    last_status: str = ""
    last_reason: str = ""
    adopt_tried: bool = False
    masked: list[bytes] = field(default_factory=list)


async def follow(
    node: Node, link: Link, stats: ParticipantStats, hello: Callable[[], FlHello]
) -> None:
    """Keep a session open to `link`'s coordinator, reconnecting with backoff.

    `hello` gives the `FlHello` to open each session with (the model held then).
    """
    backoff = 0.25
    while True:
        stream = None
        try:
            stream = await node.new_stream(link.peer_id, FL_PROTOCOL)
        except Exception as err:  # dial and negotiation failures come in many types
            log.debug("no fl session with %s yet: %r", link.peer_id, err)
        if stream is not None:
            stats.sessions_opened += 1
            framed = FlStream(stream, max_frame=MAX_FRAME_TO_PARTICIPANT)
            try:
                with trio.CancelScope() as scope:
                    await framed.send(hello())
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_guard, scope, _read, link, framed, stats)
                        nursery.start_soon(_guard, scope, _write, link, framed, stats)
            except GONE as err:
                log.debug("fl session with %s failed: %r", link.peer_id, err)
            finally:
                stats.sessions_lost += 1
                with trio.CancelScope(shield=True):
                    await reset_stream(stream)
            if framed.bytes_in:  # it worked for a while: reconnect quickly
                backoff = 0.25
        link.wake = trio.Event()
        with trio.move_on_after(backoff):  # reconnect pacing; an announcement wakes us
            await link.wake.wait()
        backoff = min(backoff * 2, 2.0)


async def _guard(
    scope: trio.CancelScope,
    body: Callable[[Link, FlStream, ParticipantStats], Any],
    link: Link,
    framed: FlStream,
    stats: ParticipantStats,
) -> None:
    try:
        await body(link, framed, stats)
    except FlFrameError as err:
        stats.bad_frames += 1
        log.info("fl session with %s dropped: %s", link.peer_id, err)
    except GONE as err:
        log.debug("fl session with %s ended: %r", link.peer_id, err)
    finally:
        scope.cancel()


async def _read(link: Link, framed: FlStream, stats: ParticipantStats) -> None:
    while True:
        before = framed.bytes_in
        frame = await framed.receive()
        if frame is None:
            return
        stats.bytes_received += framed.bytes_in - before
        await link.frames_send.send(frame)


async def _write(link: Link, framed: FlStream, stats: ParticipantStats) -> None:
    async for body in link.outbox:
        await framed.send_raw(body)
        stats.bytes_sent += len(body) + 4


async def reset_stream(stream: Any) -> None:
    """Reset an fl stream on the way out; one already closed or broken is fine."""
    try:
        await stream.reset()
    except Exception as err:  # already closed or broken: nothing left to do
        log.debug("resetting an fl stream failed: %r", err)
