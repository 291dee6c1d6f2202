"""SGF files: written atomically, read with a size limit and checked by replaying."""

from __future__ import annotations

import os
from pathlib import Path

from p2pgo_tui._engine import GameRecord, SgfError, dump_sgf, load_sgf

__all__ = ["MAX_SGF_BYTES", "read_sgf", "write_sgf"]

# Far beyond any real game record; refuses to read a wrong file of gigabytes.
MAX_SGF_BYTES = 8 * 1024 * 1024


def write_sgf(record: GameRecord, path: Path) -> None:
    """Write ``record`` as SGF, atomically (a temp file renamed into place)."""
    data = dump_sgf(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_sgf(path: Path) -> GameRecord:
    """Read an SGF file (``OSError``/``SgfError``/``RecordError`` for a bad one)."""
    with path.open("rb") as f:
        data = f.read(MAX_SGF_BYTES + 1)
    if len(data) > MAX_SGF_BYTES:
        raise SgfError(f"the file is over {MAX_SGF_BYTES // (1024 * 1024)} MiB: not a game record")
    record = load_sgf(data)
    record.replay()
    return record
