"""The asyncio <-> trio bridge: a `Node` on its own trio thread, driven from asyncio.

Textual runs on asyncio and py-libp2p only on trio, so the node lives in one
dedicated thread running `trio.run`. Neither side ever blocks on the other:

- asyncio -> trio: a command (a coroutine function taking the node, plus an asyncio
  Future) is put on a trio memory channel with
  ``trio_token.run_sync_soon(send.send_nowait, cmd)``; a trio task runs it;
- trio -> asyncio: results settle the Future, and events (received messages) reach
  the ``on_event`` callback, both through ``loop.call_soon_threadsafe`` (never a
  blocking call into the UI thread);
- shutdown cancels the trio nursery and joins the thread with ``asyncio.to_thread``.

A Future the caller stopped waiting for (cancelled) is simply not settled. Commands
still pending when the node stops fail with `BridgeClosed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from net._node import Node, Received

T = TypeVar("T")
log = logging.getLogger(__name__)
_QUEUE = 256


class BridgeClosed(RuntimeError):
    """The bridge is not running (not started, stopped, or the node failed)."""


@dataclass(frozen=True, slots=True)
class _Command:
    run: Callable[[Node], Awaitable[Any]]
    future: asyncio.Future[Any]


class NetBridge:
    """Owns the trio thread of one `Node`; every method is called from asyncio."""

    def __init__(self, node: Node, *, on_event: Callable[[Received], None] | None = None) -> None:
        self.node = node
        self._on_event = on_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._send: trio.MemorySendChannel[_Command] | None = None
        self._nursery: trio.Nursery | None = None
        self._pending: set[asyncio.Future[Any]] = set()  # touched only by the trio thread

    # -- asyncio side ----------------------------------------------------------

    async def start(self) -> None:
        """Start the node's thread; returns once it listens (raises if it failed)."""
        if self._thread is not None:
            raise RuntimeError("the bridge was already started")
        self._loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._thread_main, args=(started,), name="p2pgo-net", daemon=True
        )
        self._thread.start()
        try:
            await started
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            raise

    async def call(self, fn: Callable[[Node], Awaitable[T]]) -> T:
        """Run ``await fn(node)`` on the trio thread and return its result (or raise)."""
        if self._loop is None or self._token is None:
            raise BridgeClosed("the bridge is not running")
        future: asyncio.Future[T] = self._loop.create_future()
        try:
            self._token.run_sync_soon(self._enqueue, _Command(fn, future))
        except trio.RunFinishedError:
            raise BridgeClosed("the network thread has stopped") from None
        return await future

    async def subscribe(self, topic: str) -> None:
        """Deliver verified messages on `topic` to ``on_event`` (on the asyncio loop)."""
        await self.call(lambda node: self._subscribe(node, topic))

    async def stop(self) -> None:
        """Cancel the node and wait for its thread to end. Safe to call twice."""
        thread = self._thread
        if thread is None:
            return
        nursery = self._nursery
        if self._token is not None and nursery is not None:
            with contextlib.suppress(trio.RunFinishedError):  # it may have stopped already
                self._token.run_sync_soon(nursery.cancel_scope.cancel)
        await asyncio.to_thread(thread.join)
        self._token = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- trio side -------------------------------------------------------------

    def _thread_main(self, started: asyncio.Future[None]) -> None:
        try:
            trio.run(self._main, started)
        except BaseException as err:  # the node failed: tell whoever is waiting
            log.exception("the network thread stopped with an error")
            while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
                err = err.exceptions[0]  # nurseries wrap the one real error
            self._settle(started, error=err)
        finally:
            for future in list(self._pending):
                self._settle(future, error=BridgeClosed("the network thread stopped"))
            self._pending.clear()

    async def _main(self, started: asyncio.Future[None]) -> None:
        self._token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[_Command](_QUEUE)
        self._send = send
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.node.run)
            self._settle(started, value=None)
            async with receive:
                async for command in receive:
                    nursery.start_soon(self._execute, command)

    def _enqueue(self, command: _Command) -> None:
        assert self._send is not None
        try:
            self._send.send_nowait(command)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._settle(command.future, error=BridgeClosed("the network is busy or closing"))
            return
        self._pending.add(command.future)

    async def _execute(self, command: _Command) -> None:
        try:
            value = await command.run(self.node)
        except Exception as err:  # the caller gets it, as if it ran locally
            self._settle(command.future, error=err)
        else:
            self._settle(command.future, value=value)
        finally:
            self._pending.discard(command.future)

    def _settle(
        self, future: asyncio.Future[Any], *, value: Any = None, error: BaseException | None = None
    ) -> None:
        def settle() -> None:
            if future.done():  # the caller gave up waiting
                return
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

        self._to_loop(settle)

    def _to_loop(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the asyncio loop is closed: nobody is listening
            log.debug("asyncio loop closed; dropping a result or event")

    async def _subscribe(self, node: Node, topic: str) -> None:
        inbox = await node.subscribe(topic)
        assert self._nursery is not None
        self._nursery.start_soon(self._pump, inbox)

    async def _pump(self, inbox: trio.MemoryReceiveChannel[Received]) -> None:
        on_event = self._on_event
        async for received in inbox:
            if on_event is not None:
                self._to_loop(functools.partial(on_event, received))
