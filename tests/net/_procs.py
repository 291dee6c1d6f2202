"""Child processes for network tests: ``python -m <module> --data-dir D
--exit-on-stdin-eof ...`` whose stdout JSON lines arrive on a queue."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


class Proc:
    """`python -m <module>` (optionally under a command prefix such as ``ip netns exec``);
    its stdout JSON lines arrive on a queue."""

    def __init__(self, module: str, data_dir: Path, *args: str, prefix: Sequence[str] = ()) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.log = data_dir.with_suffix(".stderr")
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    module,
                    "--data-dir",
                    str(data_dir),
                    "--exit-on-stdin-eof",
                    *args,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait_for(self, event: str, deadline: float) -> dict[str, Any]:
        for got in self.seen:
            if got["event"] == event:
                self.seen.remove(got)
                return got
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self.events.empty()):
                tail = self.log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"no {event!r} event before the deadline; stderr:\n{tail}")
            try:
                got = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if got["event"] == event:
                return got
            self.seen.append(got)

    def stop(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the clean way out
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._reader.join(timeout=5)
            assert self.proc.stdout is not None
            self.proc.stdout.close()


@contextmanager
def processes() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in started:
            if p.proc.poll() is None:
                with suppress(subprocess.TimeoutExpired):
                    p.stop()
