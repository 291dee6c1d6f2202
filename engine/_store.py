"""The local game store: signed, content-addressed, crash-safe files plus a cache index.

Theory of operation
-------------------
Layout under ``root``::

    games/<record id>.cbor   one entry per game version (the file name is the BLAKE3
                             of the record's canonical bytes, see GameRecord.record_id)
    index.cbor               a cache of every entry's summary; never the truth
    **/.tmp-*                a write in progress (or one a crash interrupted)

An entry is canonical CBOR ``{v, kind: "signed-game", record: bytes, sigs: [[public
key, signature], ...]}``. Each signature is Ed25519 over ``SIGN_CONTEXT + record``,
the context binding it to "a p2pgo game record" so it cannot be replayed as some
other message. Several signers may sign one record (both players of a P2P game):
:meth:`GameStore.add_signature`. An entry loads only if every signature verifies, at
least one signer is trusted (our own key, plus ``trusted_keys``), its content matches
its name and the record decodes and replays legally. Anything else is reported in
:attr:`GameStore.problems`, logged, and skipped.

Writes are atomic: a temp file in the same directory, flushed and fsynced, renamed
over the target with ``os.replace``, then the directory fsynced. A crash therefore
leaves either the old file, the new one, or a stray temp file that the next open
deletes. The index is rewritten the same way, but lazily (every few saves and on
:meth:`GameStore.close`) and signed with our key. Opening reads every entry file and
compares its BLAKE3 with the index: an unchanged file keeps its cached summary, any
other file is verified in full. So a stale, lost or forged index costs time, never
games, and a tampered file is caught at open whatever its timestamps say.

A game keeps one ``game_id`` while it grows. Saving a new version (an in-progress
game, later the finished one) removes the previous version's file after the new one
is durable; if a crash leaves both, the next open keeps the finished one, else the
newer file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import blake3
import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from engine._record import GameRecord, RecordError
from engine._sgf import SgfError, dump_sgf, load_sgf

__all__ = [
    "SIGN_CONTEXT",
    "GameStore",
    "GameSummary",
    "ImportReport",
    "StoreError",
    "StoreProblem",
    "sign_record",
    "verify_signature",
]

log = logging.getLogger(__name__)

SIGN_CONTEXT = b"p2pgo/game-record/v1\x00"
_VERSION = 1
_ENTRY_KIND = "signed-game"
_INDEX_KIND = "store-index"
_INDEX_CONTEXT = b"p2pgo/store-index/v1\x00"
_TMP_PREFIX = ".tmp-"
_ENTRY_NAME = re.compile(r"^[0-9a-f]{64}\.cbor$")
_INDEX_NAME = "index.cbor"
# Saves between index rewrites: bounds the re-reading after a crash, keeps saves cheap.
_INDEX_EVERY = 32


class StoreError(Exception):
    """A game that is missing, corrupt, untrusted, or a request the store refuses."""


@dataclass(frozen=True, slots=True)
class StoreProblem:
    """A file the store could not use, and why."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class GameSummary:
    """What the index knows about one stored game (enough to list and filter)."""

    record_id: str
    game_id: str
    size: int
    date: str
    black: str
    white: str
    result: str
    moves: int
    finished: bool


@dataclass(frozen=True, slots=True)
class ImportReport:
    imported: tuple[str, ...]  # record ids, in file-name order
    failed: tuple[StoreProblem, ...]


@dataclass(frozen=True, slots=True)
class _Entry:
    summary: GameSummary
    digest: bytes  # BLAKE3 of the entry file as verified
    mtime_ns: int  # only to pick the newer of two versions left by a crash


def sign_record(record: GameRecord, key: SigningKey) -> tuple[bytes, bytes]:
    """``(public key, signature)`` of ``key`` over the record (for a co-signer)."""
    signed = key.sign(SIGN_CONTEXT + record.to_cbor())
    return bytes(key.verify_key), bytes(signed.signature)


def verify_signature(record_bytes: bytes, public_key: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(SIGN_CONTEXT + record_bytes, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(directory: Path, name: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _summary(record: GameRecord, record_id: str) -> GameSummary:
    return GameSummary(
        record_id=record_id,
        game_id=record.game_id or record_id,
        size=record.size,
        date=record.date,
        black=record.black.name,
        white=record.white.name,
        result=record.result,
        moves=len(record.moves),
        finished=record.is_finished,
    )


def _encode_entry(record_bytes: bytes, sigs: Iterable[tuple[bytes, bytes]]) -> bytes:
    by_key = dict(sigs)  # one signature per signer; sorted so equal entries are equal bytes
    return cbor2.dumps(
        {
            "v": _VERSION,
            "kind": _ENTRY_KIND,
            "record": record_bytes,
            "sigs": [[k, by_key[k]] for k in sorted(by_key)],
        },
        canonical=True,
    )


def _decode_entry(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    try:
        obj = cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False, max_depth=4)
    except Exception as exc:  # cbor2 raises many types on corrupt input: one error out
        raise StoreError(f"entry is not CBOR: {exc}") from exc
    if (
        not isinstance(obj, dict)
        or set(obj) != {"v", "kind", "record", "sigs"}
        or obj["v"] != _VERSION
        or obj["kind"] != _ENTRY_KIND
        or not isinstance(obj["record"], bytes)
        or not isinstance(obj["sigs"], list)
    ):
        raise StoreError("entry has the wrong shape")
    sigs: list[tuple[bytes, bytes]] = []
    for pair in obj["sigs"]:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], bytes)
            and isinstance(pair[1], bytes)
        ):
            raise StoreError("entry signatures have the wrong shape")
        sigs.append((pair[0], pair[1]))
    if _encode_entry(obj["record"], sigs) != data:
        raise StoreError("entry is not in canonical form")
    return obj["record"], sigs


class GameStore:
    """Finished and in-progress games under ``root``, signed with ``signing_key``.

    One process at a time: the store does no locking between processes.
    """

    def __init__(
        self,
        root: Path,
        signing_key: SigningKey,
        *,
        trusted_keys: Iterable[VerifyKey | bytes] = (),
    ) -> None:
        self.root = Path(root)
        self._games = self.root / "games"
        self._key = signing_key
        self._trusted = {bytes(signing_key.verify_key)} | {bytes(k) for k in trusted_keys}
        self._entries: dict[str, _Entry] = {}
        self._by_game: dict[str, str] = {}
        self._dirty = 0
        self.problems: list[StoreProblem] = []
        self._games.mkdir(parents=True, exist_ok=True)
        self._open()

    # ---- opening and the index ----------------------------------------------------

    def _problem(self, path: Path, reason: str) -> StoreProblem:
        problem = StoreProblem(path, reason)
        log.warning("game store: skipping %s: %s", path, reason)
        self.problems.append(problem)
        return problem

    def _open(self) -> None:
        for directory in (self.root, self._games):
            for stray in directory.glob(_TMP_PREFIX + "*"):
                # Only a crash mid-write leaves these; their content never counted.
                stray.unlink(missing_ok=True)
        cached = self._read_index()
        changed = cached is None
        entries: dict[str, _Entry] = {}
        for item in os.scandir(self._games):
            if not _ENTRY_NAME.match(item.name):
                self._problem(Path(item.path), "not a game file")
                continue
            rid = item.name[:-5]
            try:
                data = Path(item.path).read_bytes()
                mtime_ns = item.stat().st_mtime_ns
            except OSError as exc:
                self._problem(Path(item.path), f"unreadable: {exc}")
                continue
            digest = blake3.blake3(data).digest()
            old = cached.get(rid) if cached else None
            if old is not None and old.digest == digest:
                # Byte for byte what was verified when the index was written.
                entries[rid] = _Entry(old.summary, digest, mtime_ns)
                continue
            changed = True
            try:
                record, _ = self._verify(rid, data)
            except StoreError:
                continue  # already reported
            entries[rid] = _Entry(_summary(record, rid), digest, mtime_ns)
        if cached is not None and set(cached) - set(entries):
            changed = True
        self._entries = entries
        changed |= self._resolve_versions()
        if changed:
            self._write_index()

    def _resolve_versions(self) -> bool:
        """Keep one version per game id (a crash between writing a new version and
        removing the old one leaves two): the finished one, else the newer file."""
        self._by_game = {}
        losers: list[str] = []
        for rid, entry in sorted(self._entries.items()):
            gid = entry.summary.game_id
            other = self._by_game.get(gid)
            if other is None:
                self._by_game[gid] = rid
                continue
            # File times tick coarsely (a few ms), so the longer game breaks a tie.
            mine = (entry.summary.finished, entry.mtime_ns, entry.summary.moves, rid)
            theirs_e = self._entries[other]
            theirs = (theirs_e.summary.finished, theirs_e.mtime_ns, theirs_e.summary.moves, other)
            winner, loser = (rid, other) if mine > theirs else (other, rid)
            self._by_game[gid] = winner
            losers.append(loser)
        for rid in losers:
            del self._entries[rid]
            (self._games / f"{rid}.cbor").unlink(missing_ok=True)
        if losers:
            _fsync_dir(self._games)
        return bool(losers)

    def _read_index(self) -> dict[str, _Entry] | None:
        """The cached entries, or None when the index is missing, damaged or not ours."""
        path = self.root / _INDEX_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            outer = cbor2.loads(data, allow_indefinite=False, max_depth=2)
            if outer["v"] != _VERSION or outer["kind"] != _INDEX_KIND:
                raise ValueError("unknown index version")
            body = outer["body"]
            # Signed so that someone who can write files but lacks our key cannot make
            # the listing lie (loading a game verifies its own signatures anyway).
            self._key.verify_key.verify(_INDEX_CONTEXT + body, outer["sig"])
            out: dict[str, _Entry] = {}
            for row in cbor2.loads(body, allow_indefinite=False, max_depth=4):
                rid, digest, gid, size, date, black, white, result, moves, fin = row
                if not all(isinstance(x, str) for x in (rid, gid, date, black, white, result)):
                    raise ValueError("bad index row")
                if not (type(size) is int and type(moves) is int and type(fin) is bool):
                    raise ValueError("bad index row")
                if not isinstance(digest, bytes):
                    raise ValueError("bad index row")
                summary = GameSummary(rid, gid, size, date, black, white, result, moves, fin)
                out[rid] = _Entry(summary, digest, 0)
        except Exception as exc:  # a cache: any damage means rebuild it from the files
            log.info("game store: rebuilding index (%s)", exc)
            return None
        return out

    def _write_index(self) -> None:
        rows = [
            [
                rid,
                e.digest,
                e.summary.game_id,
                e.summary.size,
                e.summary.date,
                e.summary.black,
                e.summary.white,
                e.summary.result,
                e.summary.moves,
                e.summary.finished,
            ]
            for rid, e in sorted(self._entries.items())
        ]
        body = cbor2.dumps(rows, canonical=True)
        signature = bytes(self._key.sign(_INDEX_CONTEXT + body).signature)
        data = cbor2.dumps(
            {"v": _VERSION, "kind": _INDEX_KIND, "body": body, "sig": signature}, canonical=True
        )
        _atomic_write(self.root, _INDEX_NAME, data)
        self._dirty = 0

    def rebuild_index(self) -> list[StoreProblem]:
        """Forget the index, re-read and verify every file; returns the problems found."""
        (self.root / _INDEX_NAME).unlink(missing_ok=True)
        self.problems = []
        self._open()
        return list(self.problems)

    def flush(self) -> None:
        """Write the index now if saves have changed it."""
        if self._dirty:
            self._write_index()

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> GameStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading ------------------------------------------------------------------

    def _path(self, record_id: str) -> Path:
        if not _ENTRY_NAME.match(f"{record_id}.cbor"):
            raise StoreError(f"not a record id: {record_id!r}")
        return self._games / f"{record_id}.cbor"

    def _read(self, record_id: str) -> tuple[GameRecord, list[tuple[bytes, bytes]]]:
        """Read and verify one entry; a bad one is reported and raises StoreError."""
        path = self._path(record_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"no game {record_id}") from None
        return self._verify(record_id, data)

    def _verify(self, record_id: str, data: bytes) -> tuple[GameRecord, list[tuple[bytes, bytes]]]:
        path = self._games / f"{record_id}.cbor"
        try:
            record_bytes, sigs = _decode_entry(data)
            if blake3.blake3(record_bytes).hexdigest() != record_id:
                raise StoreError("content does not match its name")
            if not sigs:
                raise StoreError("entry is not signed")
            for public_key, signature in sigs:
                if not verify_signature(record_bytes, public_key, signature):
                    raise StoreError(f"bad signature by {public_key.hex()[:16]}")
            if not self._trusted & {k for k, _ in sigs}:
                raise StoreError("no signature by a trusted key")
            record = GameRecord.from_cbor(record_bytes)
        except (StoreError, RecordError) as exc:
            self._problem(path, str(exc))
            raise StoreError(f"game {record_id} is corrupt: {exc}") from exc
        return record, sigs

    def load(self, record_id: str) -> GameRecord:
        """The verified game stored under ``record_id``; raises :class:`StoreError`."""
        record, _ = self._read(record_id)
        return record

    def load_game(self, game_id: str) -> GameRecord:
        """The current version of the game ``game_id``."""
        rid = self._by_game.get(game_id)
        if rid is None:
            raise StoreError(f"no game with id {game_id!r}")
        return self.load(rid)

    def signatures(self, record_id: str) -> list[tuple[bytes, bytes]]:
        """The verified ``(public key, signature)`` pairs of an entry."""
        _, sigs = self._read(record_id)
        return sigs

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._entries

    def games(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        opponent: str | None = None,
        size: int | None = None,
        result: str | None = None,
        finished: bool | None = None,
    ) -> list[GameSummary]:
        """Stored games, oldest first, filtered by every argument given.

        ``since``/``until`` compare ISO dates (``"2024-05-01"``) inclusively against
        the start of the record's date; ``opponent`` matches either player's name
        (case-insensitive substring); ``result`` is a prefix (``"B+"``, ``"W+R"``).
        """
        out = []
        who = opponent.casefold() if opponent is not None else None
        for e in self._entries.values():
            s = e.summary
            day = s.date[:10]
            if since is not None and (not day or day < since[:10]):
                continue
            if until is not None and (not day or day > until[:10]):
                continue
            if who is not None and who not in s.black.casefold() and who not in s.white.casefold():
                continue
            if size is not None and s.size != size:
                continue
            if result is not None and not s.result.upper().startswith(result.upper()):
                continue
            if finished is not None and s.finished != finished:
                continue
            out.append(s)
        out.sort(key=lambda s: (s.date, s.game_id, s.record_id))
        return out

    # ---- writing ------------------------------------------------------------------

    def _write_entry(self, record_id: str, record: GameRecord, entry: bytes) -> None:
        _atomic_write(self._games, f"{record_id}.cbor", entry)
        summary = _summary(record, record_id)
        previous = self._by_game.get(summary.game_id)
        mtime_ns = os.stat(self._games / f"{record_id}.cbor").st_mtime_ns
        self._entries[record_id] = _Entry(summary, blake3.blake3(entry).digest(), mtime_ns)
        self._by_game[summary.game_id] = record_id
        if previous is not None and previous != record_id:
            # The new version is durable; only now may the old one go.
            self._entries.pop(previous, None)
            (self._games / f"{previous}.cbor").unlink(missing_ok=True)
            _fsync_dir(self._games)
        self._dirty += 1
        if self._dirty >= _INDEX_EVERY:
            self._write_index()

    def save(self, record: GameRecord) -> str:
        """Sign and store ``record`` (replacing earlier versions of the same game id);
        returns its record id. Raises :class:`StoreError` for an illegal game."""
        try:
            record.replay()
        except RecordError as exc:
            raise StoreError(f"refusing to store an illegal game: {exc}") from exc
        data = record.to_cbor()
        rid = blake3.blake3(data).hexdigest()
        sigs = [(bytes(self._key.verify_key), bytes(self._key.sign(SIGN_CONTEXT + data).signature))]
        if rid in self._entries:
            # Keep co-signatures already on the same record.
            with contextlib.suppress(StoreError):
                sigs += self._read(rid)[1]
        self._write_entry(rid, record, _encode_entry(data, sigs))
        return rid

    def save_in_progress(self, record: GameRecord) -> str:
        """Store a game that is still being played; a later :meth:`save` of the same
        ``game_id`` (the next move, the finished game) replaces it."""
        if not record.game_id:
            raise StoreError("an in-progress game needs a game_id (see GameRecord.new)")
        return self.save(record)

    def add_signature(
        self, record_id: str, public_key: VerifyKey | bytes, signature: bytes
    ) -> None:
        """Add a co-signer's signature to a stored entry (checked before it is kept)."""
        record, sigs = self._read(record_id)
        data = record.to_cbor()
        if not verify_signature(data, bytes(public_key), signature):
            raise StoreError("the signature does not verify for this record")
        self._write_entry(
            record_id, record, _encode_entry(data, [*sigs, (bytes(public_key), signature)])
        )

    def delete(self, record_id: str) -> None:
        path = self._path(record_id)
        entry = self._entries.pop(record_id, None)
        if entry is not None and self._by_game.get(entry.summary.game_id) == record_id:
            del self._by_game[entry.summary.game_id]
        path.unlink(missing_ok=True)
        _fsync_dir(self._games)
        self._dirty += 1

    # ---- SGF export and import ----------------------------------------------------

    def export_sgf(self, directory: Path) -> list[Path]:
        """Write every loadable game as ``<record id>.sgf``; returns the files written."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for rid in sorted(self._entries):
            try:
                data = dump_sgf(self.load(rid))
            except StoreError:
                continue  # already reported in self.problems
            except SgfError as exc:
                self._problem(self._games / f"{rid}.cbor", f"cannot export: {exc}")
                continue
            _atomic_write(directory, f"{rid}.sgf", data)
            written.append(directory / f"{rid}.sgf")
        return written

    def import_sgf(self, directory: Path) -> ImportReport:
        """Store every ``*.sgf`` under ``directory``; unreadable files are reported
        and skipped."""
        imported: list[str] = []
        failed: list[StoreProblem] = []
        for path in sorted(Path(directory).rglob("*.sgf")):
            try:
                imported.append(self.save(load_sgf(path.read_bytes())))
            except (OSError, SgfError, StoreError) as exc:
                log.warning("game store: cannot import %s: %s", path, exc)
                failed.append(StoreProblem(path, str(exc)))
        self.flush()
        return ImportReport(tuple(imported), tuple(failed))
