"""The app's way to the model server: an MCP client session to ``p2pgo-mcp``.

:class:`McpModelClient` is one long-lived worker: a daemon thread running an asyncio
loop that owns the ``ClientSession`` over ``stdio_client`` to the server process
(``python -m net.mcp``), whose stderr goes to a log file in the data directory. The
app's worker threads call :meth:`McpModelClient.call` (blocking, with a timeout); the
call runs on the loop. If the server dies, the call that notices restarts it and is
retried once; a server that cannot be started ``max_start_failures`` times in a row,
or that has been restarted ``max_restarts`` times, is given up on (state ``FAILED``).

Once the handshake is done the client sends one ``predict_move`` on an empty 9x9 board
(with the long start-up timeout): the server loads torch and the model in the
background, so this is what "ready" waits for, and later calls get short timeouts.

Start-up stays light: this module does not import ``mcp``; the worker thread imports
it when it starts. The backends and the app's AI built on this client live in
:mod:`p2pgo_tui._model_ai`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.gtp import DEFAULT_MODEL

__all__ = [
    "ClientState",
    "McpModelClient",
    "ModelServiceError",
    "ModelToolError",
    "ServerCommand",
    "find_model",
    "server_command",
]

log = logging.getLogger(__name__)

_REPO_ROOT = Path(__file__).resolve().parent.parent
_PROBE_BOARD = "/".join(["........."] * 9) + ";b"


class ModelServiceError(Exception):
    """The model could not answer: server unavailable, timed out, or no model."""


class ModelToolError(ModelServiceError):
    """The server answered with a tool error (the message is the server's)."""


class ClientState(enum.Enum):
    IDLE = "idle"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ServerCommand:
    """How to start the server: argv, extra environment, working directory."""

    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None


# ``python -m net.mcp`` first runs net/__init__, which imports libp2p, fl and
# dp_accounting (scipy) that the model server never uses at start. Measured on the
# loaded 2-core machine: 9.7 s to import net.mcp that way, 3.8 s without net/__init__,
# and the difference is most of the wait for the AI's first move. So the app starts
# the server through this bootstrap: it registers ``net`` as a bare package (its
# submodules import as usual, ``net/__init__`` is not run) and runs ``net.mcp`` as
# ``__main__``, as ``-m`` would. The server's modules import only ``net._*`` modules,
# never names from ``net`` itself, which is what makes this safe.
_BOOTSTRAP = """\
import importlib.util, runpy, sys, types
spec = importlib.util.find_spec("net")
package = types.ModuleType("net")
package.__path__ = list(spec.submodule_search_locations)
package.__spec__ = spec
sys.modules["net"] = package
runpy.run_module("net.mcp", run_name="__main__", alter_sys=True)
"""


def server_command(data_dir: Path, *extra: str) -> ServerCommand:
    """``p2pgo-mcp --data-dir DATA_DIR`` (``net.mcp`` through :data:`_BOOTSTRAP`) with
    this checkout on ``PYTHONPATH``.

    The SDK starts servers with a minimal environment, so ``PYTHONPATH`` is passed on
    explicitly (an installed package does not need it; a checkout does).
    """
    paths = [str(_REPO_ROOT), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return ServerCommand(
        (sys.executable, "-c", _BOOTSTRAP, "--data-dir", str(data_dir), *extra),
        {"PYTHONPATH": os.pathsep.join(paths)},
    )


def find_model(data_dir: Path) -> Path | None:
    """The weight file the server would call "latest": the newest in DATA_DIR/models,
    else the shipped default; ``None`` if there is none."""
    try:
        files = [p for p in (data_dir / "models").glob("*.cbor") if p.is_file()]
    except OSError:
        files = []
    if files:
        return max(files, key=lambda p: p.stat().st_mtime_ns)
    return DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None


# ---- the client -------------------------------------------------------------------------


class McpModelClient:
    """The long-lived MCP client worker; see the module docstring."""

    def __init__(
        self,
        command: ServerCommand,
        *,
        errlog: Path,
        call_timeout: float = 10.0,
        start_timeout: float = 90.0,
        max_start_failures: int = 2,
        max_restarts: int = 5,
    ) -> None:
        self.command = command
        self.errlog = errlog
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.max_start_failures = max_start_failures
        self.max_restarts = max_restarts
        self.restarts = 0
        self.last_error = ""
        self._state = ClientState.IDLE
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._broken: asyncio.Event | None = None
        self._session: Any = None

    # ---- state, from any thread ---------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    def _set_state(self, state: ClientState, error: str = "") -> None:
        with self._changed:
            self._state = state
            if error:
                self.last_error = error
            self._changed.notify_all()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the server is ready (True) or given up on / closed (False)."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._state in (ClientState.READY, ClientState.FAILED, ClientState.CLOSED),
                timeout,
            )
            return self._state is ClientState.READY

    def start(self) -> None:
        """Start the worker thread (returns at once; the server starts in the background)."""
        if self._thread is not None:
            return
        self._set_state(ClientState.STARTING)
        self._thread = threading.Thread(target=self._run, name="p2pgo-mcp-client", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the server (closing its stdin) and the worker; safe to call twice."""
        # Set first: a worker that has not made its loop yet sees it and does not start.
        self._closing.set()
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(timeout)
        self._set_state(ClientState.CLOSED)

    def call(
        self, tool: str, arguments: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Call ``tool`` and return its structured result (blocking; from any thread but
        the worker's). Raises :class:`ModelToolError` for a tool error and
        :class:`ModelServiceError` for anything else that keeps an answer from coming."""
        limit = self.call_timeout if timeout is None else timeout
        for attempt in (1, 2):
            if self._state is ClientState.IDLE:
                raise ModelServiceError("the model client was never started")
            if not self.wait_ready(self.start_timeout):
                raise ModelServiceError(self._why_not_ready())
            loop = self._loop
            assert loop is not None
            try:
                future = asyncio.run_coroutine_threadsafe(
                    self._call(tool, dict(arguments), limit), loop
                )
            except RuntimeError:
                raise ModelServiceError("the model client has stopped") from None
            try:
                return future.result(limit + 5.0)
            except _Disconnected as exc:
                if attempt == 2:
                    raise ModelServiceError(f"the model server went away: {exc}") from None
                log.warning("the model server went away (%s); restarting it", exc)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise ModelServiceError(f"{tool} timed out after {limit:g} s") from None
        raise AssertionError("unreachable")

    def _why_not_ready(self) -> str:
        detail = f": {self.last_error}" if self.last_error else ""
        if self._state is ClientState.FAILED:
            return f"the model server could not be started{detail}"
        if self._state is ClientState.CLOSED:
            return "the model client is closed"
        return f"the model server did not start within {self.start_timeout:g} s{detail}"

    # ---- the worker thread --------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # the worker must end in a state callers can see
            log.exception("the model client failed")
            self._set_state(ClientState.FAILED, f"{type(exc).__name__}: {exc}")
            return
        if self._state is not ClientState.FAILED:
            self._set_state(ClientState.CLOSED)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        failures = 0
        while not (self._stop.is_set() or self._closing.is_set()):
            reached_ready = False
            try:
                reached_ready = await self._serve_once()
            except Exception as exc:
                # Whatever went wrong (spawn, handshake, the probe), the process is gone
                # now; the loop decides whether to try again.
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("model server: %s", self.last_error)
            if self._stop.is_set() or self._closing.is_set():
                break
            failures = 0 if reached_ready else failures + 1
            if failures >= self.max_start_failures or self.restarts >= self.max_restarts:
                self._set_state(ClientState.FAILED, self.last_error or "gave up restarting")
                log.error("giving up on the model server: %s", self.last_error)
                return
            self.restarts += 1
            self._set_state(ClientState.STARTING)
            log.info("restarting the model server (restart %d)", self.restarts)

    async def _until_stopped(self, work: Awaitable[object]) -> bool:
        """Run ``work`` unless close() comes first (then cancel it); True if it finished."""
        assert self._stop is not None
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            return False
        task.result()  # raises what the work raised
        return True

    async def _serve_once(self) -> bool:
        """One server process: start it, probe it, serve until broken or stopped."""
        from mcp import ClientSession, StdioServerParameters, stdio_client

        command = self.command
        params = StdioServerParameters(
            command=command.argv[0],
            args=list(command.argv[1:]),
            env=dict(command.env) if command.env is not None else None,
            cwd=command.cwd,
        )
        self.errlog.parent.mkdir(parents=True, exist_ok=True)
        with self.errlog.open("a", encoding="utf-8") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                self._session = session
                broken = self._broken = asyncio.Event()
                try:
                    if not await self._until_stopped(self._handshake(session)):
                        return False
                    self._set_state(ClientState.READY)
                    log.info("model server ready")
                    await self._until_stopped(broken.wait())
                    return True
                finally:
                    self._session = None
                    if self._state is ClientState.READY:
                        self._set_state(ClientState.STARTING)

    async def _handshake(self, session: Any) -> None:
        await asyncio.wait_for(session.initialize(), self.start_timeout)
        await self._probe()

    async def _probe(self) -> None:
        """Wait for the model to load; a server with no model is still a ready server."""
        try:
            await self._call("predict_move", {"board_state": _PROBE_BOARD}, self.start_timeout)
        except ModelToolError as exc:
            log.warning("the model server has no usable model: %s", exc)

    async def _call(self, tool: str, arguments: dict[str, Any], timeout: float) -> dict[str, Any]:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        session = self._session
        if session is None or self._broken is None or self._broken.is_set():
            raise _Disconnected("not connected")
        try:
            result = await session.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise ModelServiceError(f"{tool} timed out after {timeout:g} s") from None
            if exc.code == CONNECTION_CLOSED:
                self._mark_broken()
                raise _Disconnected(exc.message) from None
            raise ModelServiceError(f"{tool}: {exc.message}") from None
        except (OSError, EOFError) as exc:
            self._mark_broken()
            raise _Disconnected(f"{type(exc).__name__}: {exc}") from None
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content).strip()
            raise ModelToolError(text or f"{tool} failed")
        if not isinstance(result.structured_content, dict):
            raise ModelServiceError(f"{tool} returned no structured result")
        return result.structured_content

    def _mark_broken(self) -> None:
        # Not READY from this moment, so a retry waits for the restart instead of
        # finding the dead session again.
        assert self._broken is not None
        self._broken.set()
        self._set_state(ClientState.STARTING)


class _Disconnected(Exception):
    """The session broke; the worker restarts the server."""
