"""Where the app keeps things: the data directory, the identity key and the game store.

The data directory and the identity key file are the network layer's (``net``): one
Ed25519 seed, 32 raw bytes in ``DATA_DIR/identity.key`` with mode 0600, is the
libp2p host key and signs game records. ``net``'s loader imports libp2p, which
must not load at start-up, so this module reads and creates the same file itself,
with the same checks (private mode, exact length, atomic creation).

:class:`StoreStorage` adapts ``engine``'s signed :class:`GameStore` to the app's
:class:`~p2pgo_tui.GameStorage` protocol. It opens the store on first use, which the
app does from a worker thread, so start-up never waits on the disk; a lock keeps the
store (which is not thread-safe) to one caller at a time.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from nacl.signing import SigningKey

from engine._keyfile import KEY_FILE, KeyFileError, load_or_create_seed
from p2pgo_tui._engine import GameRecord, GameStore, StoreError
from p2pgo_tui._protocols import StorageError, StoredGame

__all__ = [
    "IDENTITY_FILE",
    "STORE_DIR",
    "StoreStorage",
    "default_data_dir",
    "load_or_create_identity",
]

log = logging.getLogger(__name__)

IDENTITY_FILE = KEY_FILE  # shared with net: one key signs games and messages
# The game store's root: DATA_DIR/store/games/<record id>.cbor and store/index.cbor.
STORE_DIR = "store"
T = TypeVar("T")


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/p2pgo`` (``~/.local/share/p2pgo``): the same rule as ``net``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "p2pgo"


def load_or_create_identity(data_dir: Path) -> bytes:
    """The 32-byte identity seed in ``data_dir``, created on first use.

    Raises :class:`StorageError` for a key that is damaged, readable by others, or
    cannot be written.
    """
    try:
        seed, created = load_or_create_seed(data_dir)
    except KeyFileError as exc:
        raise StorageError(str(exc)) from None
    if created:
        log.info("created identity key %s", data_dir / IDENTITY_FILE)
    return seed


class StoreStorage:
    """The signed game store under ``data_dir/store``, opened on first use."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._lock = threading.Lock()
        self._store: GameStore | None = None

    def _call(self, what: str, fn: Callable[[GameStore], T]) -> T:
        with self._lock:
            try:
                if self._store is None:
                    seed = load_or_create_identity(self.data_dir)
                    self._store = GameStore(self.data_dir / STORE_DIR, SigningKey(seed))
                    for problem in self._store.problems:
                        log.warning("game store problem: %s: %s", problem.path, problem.reason)
                return fn(self._store)
            except (StoreError, OSError, ValueError) as exc:
                log.warning("game store: cannot %s: %s", what, exc)
                raise StorageError(f"cannot {what}: {exc}") from exc

    def save(self, record: GameRecord) -> str:
        def save(store: GameStore) -> str:
            rid = store.save(record)
            store.flush()  # the index too: the app may be closed right after a game
            return rid

        return self._call("save the game", save)

    def games(self) -> list[StoredGame]:
        summaries = self._call("list the stored games", lambda store: store.games())
        rows = [
            StoredGame(s.record_id, s.date, s.size, s.black, s.white, s.result, s.moves)
            for s in summaries
        ]
        rows.reverse()  # the store lists oldest first; people look for their last game
        return rows

    def load(self, record_id: str) -> GameRecord:
        return self._call("open the game", lambda store: store.load(record_id))

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
