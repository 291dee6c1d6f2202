"""A small GTP client: drives an external Go engine process over its stdin/stdout.

Used by the match runner (:mod:`engine.match`) and by the tests that play against
GnuGo. One :class:`GtpClient` owns one child process; :meth:`GtpClient.close` (or
leaving a ``with`` block) always ends it, killing it if it does not quit politely.

Replies are read by a daemon thread that feeds a queue, so every command can wait
with a timeout on any platform (``select`` on pipes is POSIX-only). Everything that
can go wrong with the engine is a :class:`GtpClientError`:

* :class:`GtpCommandFailed`: the engine answered ``? message`` (the engine is fine);
* :class:`GtpEngineDied`: the process exited, closed its output or broke the protocol;
* :class:`GtpTimeout`: no reply within the timeout (the process is killed).
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = [
    "GtpClient",
    "GtpClientError",
    "GtpCommandFailed",
    "GtpEngineDied",
    "GtpTimeout",
]

# A reply longer than this is not GTP but a runaway engine; stop reading it.
_MAX_REPLY_BYTES = 4 * 1024 * 1024
_EOF = None


class GtpClientError(Exception):
    """Anything that went wrong talking to a GTP engine."""


class GtpCommandFailed(GtpClientError):
    """The engine answered the command with a GTP failure (``? message``)."""

    def __init__(self, command: str, message: str) -> None:
        self.command = command
        self.message = message
        super().__init__(f"{command!r} failed: {message}")


class GtpEngineDied(GtpClientError):
    """The engine process exited, closed its output, or sent something that is not GTP."""


class GtpTimeout(GtpEngineDied):
    """The engine did not answer in time (it has been killed)."""


def _reader(stream: IO[bytes], out: queue.Queue[bytes | None]) -> None:
    """Forward raw lines from the engine's stdout until end of file."""
    try:
        for line in iter(stream.readline, b""):
            out.put(line)
    except (OSError, ValueError):
        pass  # the pipe was closed under us by close(); the EOF marker below says so
    out.put(_EOF)


class GtpClient:
    """One external GTP engine process.

    ``argv`` is the command line (no shell). ``stderr`` is a path to append the
    engine's stderr to, or ``None`` to discard it (an engine writing to our terminal
    would corrupt a UI or test output). ``timeout`` is the default seconds per command.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        stderr: Path | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        if not argv:
            raise ValueError("an engine command line needs at least the program")
        self.argv = list(argv)
        self.name = name or Path(self.argv[0]).name
        self.timeout = timeout
        self._err_file: IO[bytes] | None = open(stderr, "ab") if stderr is not None else None  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._err_file if self._err_file is not None else subprocess.DEVNULL,
                cwd=cwd,
                env=env,
            )
        except OSError as exc:
            self._close_err_file()
            raise GtpEngineDied(f"cannot start {self.argv[0]!r}: {exc}") from exc
        assert self._proc.stdout is not None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._eof = False
        self._thread = threading.Thread(
            target=_reader, args=(self._proc.stdout, self._lines), daemon=True
        )
        self._thread.start()
        self._closed = False

    # ---- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> GtpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return not self._closed and self._proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit (after ``quit``); its exit status.

        Raises :class:`GtpTimeout` (and kills it) if it is still running after ``timeout``.
        """
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise GtpTimeout(f"{self.name} did not exit within {timeout:g} s") from None

    def close(self, grace: float = 2.0) -> None:
        """Ask the engine to quit, then kill it if it has not exited within ``grace`` s."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc.poll() is None and not self._eof:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b"quit\n")
                proc.stdin.flush()
            except OSError:
                pass  # already gone: the wait/kill below handles it
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                # A broken pipe on close is expected for a killed engine.
                with contextlib.suppress(OSError):
                    stream.close()
        self._thread.join(timeout=grace)
        self._close_err_file()

    def kill(self) -> None:
        """End the process at once (after a timeout or protocol error)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self.close(grace=5.0)

    def _close_err_file(self) -> None:
        if self._err_file is not None:
            self._err_file.close()
            self._err_file = None

    # ---- commands -------------------------------------------------------------------

    def send(self, command: str, timeout: float | None = None) -> str:
        """Send one command; return the reply text (without ``=``) or raise.

        Raises :class:`GtpCommandFailed` for a ``?`` reply and
        :class:`GtpEngineDied`/:class:`GtpTimeout` when the engine is unusable.
        """
        if "\n" in command or "\r" in command:
            raise ValueError("a GTP command is one line")
        if self._closed:
            raise GtpEngineDied(f"{self.name}: the engine has been closed")
        proc = self._proc
        assert proc.stdin is not None
        try:
            proc.stdin.write(command.encode("utf-8") + b"\n")
            proc.stdin.flush()
        except OSError as exc:
            self.kill()
            raise GtpEngineDied(f"{self.name} died before {command!r}: {exc}") from exc
        ok, text = self._read_reply(command, self.timeout if timeout is None else timeout)
        if ok:
            return text
        raise GtpCommandFailed(command, text)

    def try_send(self, command: str, timeout: float | None = None) -> str | None:
        """Like :meth:`send` but a GTP failure gives ``None`` (death still raises)."""
        try:
            return self.send(command, timeout)
        except GtpCommandFailed:
            return None

    def _next_line(self, command: str, timeout: float) -> str:
        if self._eof:
            raise GtpEngineDied(f"{self.name} closed its output")
        try:
            raw = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise GtpTimeout(
                f"{self.name} did not answer {command!r} within {timeout:g} s"
            ) from None
        if raw is _EOF:
            self._eof = True
            code = self._proc.poll()
            detail = f" (exit status {code})" if code is not None else ""
            self.kill()
            raise GtpEngineDied(f"{self.name} exited during {command!r}{detail}")
        return raw.decode("utf-8", errors="replace").replace("\r", "").rstrip("\n")

    def _read_reply(self, command: str, timeout: float) -> tuple[bool, str]:
        # Skip anything before the status line (some engines echo banners), then
        # collect lines up to the blank line that ends every GTP reply.
        first = self._next_line(command, timeout)
        while not first.strip():
            first = self._next_line(command, timeout)
        status = first[:1]
        if status not in ("=", "?"):
            self.kill()
            raise GtpEngineDied(f"{self.name} sent {first[:80]!r}, not a GTP reply")
        # Drop the optional command id that follows the status character.
        body = first[1:]
        stripped = body.lstrip("0123456789")
        lines = [stripped.strip()] if stripped.strip() else []
        size = len(first)
        while True:
            line = self._next_line(command, timeout)
            if not line.strip():
                break
            size += len(line)
            if size > _MAX_REPLY_BYTES:
                self.kill()
                raise GtpEngineDied(f"{self.name} sent a reply of over {_MAX_REPLY_BYTES} bytes")
            lines.append(line)
        text = "\n".join(lines).rstrip()
        return status == "=", text
