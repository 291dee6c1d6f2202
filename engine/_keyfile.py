"""The player's identity key file: 32 raw bytes (an Ed25519 seed), mode 0600.

One key signs the player's game records (engine's store), their network messages and
their libp2p identity (net), so the app and the network read the same file. Both go
through here: created atomically (private temp file, fsync, hard link — which fails
rather than overwrites if another process won the race), and refused when it is
readable by others, a symlink, or the wrong length.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["KEY_FILE", "SEED_BYTES", "KeyFileError", "load_or_create_seed", "read_seed"]

KEY_FILE = "identity.key"
SEED_BYTES = 32


class KeyFileError(ValueError):
    """The key file cannot be read, is not private, is damaged, or cannot be written."""


def read_seed(path: Path) -> bytes:
    """The seed in ``path``; :class:`KeyFileError` if it is not a private 32-byte file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        raise KeyFileError(f"cannot open identity key {path}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"identity key {path} has mode {mode:04o}; it must be private "
                f"(run: chmod 600 {path})"
            )
        seed = f.read(SEED_BYTES + 1)
    if len(seed) != SEED_BYTES:
        raise KeyFileError(
            f"identity key {path} holds {len(seed)} bytes, expected {SEED_BYTES}; "
            "it is damaged or not ours (move it away to create a new identity)"
        )
    return seed


def load_or_create_seed(data_dir: Path) -> tuple[bytes, bool]:
    """The seed in ``data_dir/identity.key``, created on first use; and whether it was."""
    path = data_dir / KEY_FILE
    if path.exists() or path.is_symlink():
        return read_seed(path), False
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise KeyFileError(f"cannot create data directory {data_dir}: {err}") from None
    seed = os.urandom(SEED_BYTES)
    tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(seed)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return read_seed(path), False  # another process created it first: use theirs
    except OSError as err:
        raise KeyFileError(f"cannot write identity key {path}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return seed, True
