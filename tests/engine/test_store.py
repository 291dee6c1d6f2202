"""The game store: signing, tamper detection, index, versions, SGF export/import, crashes."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cbor2
import pytest
from nacl.signing import SigningKey

from engine._record import GameRecord
from engine._rules import Color, Move
from engine._sgf import dump_sgf
from engine._store import (
    SIGN_CONTEXT,
    GameStore,
    StoreError,
    sign_record,
    verify_signature,
)
from tests.engine._store_writer import in_progress, make_game

KEY = SigningKey(bytes(range(32)))
OTHER = SigningKey(bytes(range(1, 33)))
REPO = Path(__file__).resolve().parents[2]


def game_files(root: Path) -> list[Path]:
    return sorted((root / "games").iterdir())


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.fixture
def store(tmp_path: Path) -> GameStore:
    return GameStore(tmp_path / "store", KEY)


# ---- save, load, sign ------------------------------------------------------------------


def test_save_and_load_round_trip(store: GameStore) -> None:
    record = make_game(1)
    rid = store.save(record)
    assert rid == record.record_id
    assert store.load(rid) == record
    assert store.load_game("game-1") == record
    assert [p.name for p in game_files(store.root)] == [f"{rid}.cbor"]
    assert rid in store and len(store) == 1
    reopened = GameStore(store.root, KEY)
    assert reopened.load(rid) == record and reopened.problems == []


def test_entries_are_signed_over_the_canonical_bytes(store: GameStore) -> None:
    record = make_game(2)
    rid = store.save(record)
    entry = cbor2.loads((store.root / "games" / f"{rid}.cbor").read_bytes())
    assert entry["v"] == 1 and entry["kind"] == "signed-game"
    assert entry["record"] == record.to_cbor()
    [(public_key, signature)] = store.signatures(rid)
    assert public_key == bytes(KEY.verify_key)
    assert verify_signature(record.to_cbor(), public_key, signature)
    KEY.verify_key.verify(SIGN_CONTEXT + record.to_cbor(), signature)
    # The context binds the signature to game records: the bare bytes do not verify.
    assert not verify_signature(b"", public_key, signature)


@pytest.mark.parametrize("offset", [5, 60, 200, -70, -3])
def test_a_flipped_byte_is_reported_and_skipped(
    store: GameStore, offset: int, caplog: pytest.LogCaptureFixture
) -> None:
    good = store.save(make_game(3))
    bad = store.save(make_game(4))
    store.close()
    flip_byte(store.root / "games" / f"{bad}.cbor", offset)
    with caplog.at_level(logging.WARNING, logger="engine._store"):
        reopened = GameStore(store.root, KEY)
    assert [p.path.name for p in reopened.problems] == [f"{bad}.cbor"]
    assert bad in caplog.text
    assert [s.record_id for s in reopened.games()] == [good]
    with pytest.raises(StoreError, match="corrupt"):
        reopened.load(bad)
    assert reopened.load(good) == make_game(3)


def test_tampering_that_keeps_size_and_times_is_still_caught_at_open(store: GameStore) -> None:
    rid = store.save(make_game(15))
    store.close()
    path = store.root / "games" / f"{rid}.cbor"
    st = path.stat()
    flip_byte(path, 300)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    reopened = GameStore(store.root, KEY)
    assert [p.path.name for p in reopened.problems] == [path.name]
    assert reopened.games() == []


def test_tampering_after_open_is_caught_on_load(store: GameStore) -> None:
    rid = store.save(make_game(5))
    path = store.root / "games" / f"{rid}.cbor"
    entry = cbor2.loads(path.read_bytes())
    forged = dataclasses.replace(make_game(5), result="W+R").to_cbor()
    entry["record"] = forged  # same signature, different record
    path.write_bytes(cbor2.dumps(entry, canonical=True))
    with pytest.raises(StoreError, match="content does not match"):
        store.load(rid)
    # Renaming the forged entry to its own content id still fails the signature.
    os.replace(path, path.with_name(f"{GameRecord.from_cbor(forged).record_id}.cbor"))
    with pytest.raises(StoreError, match="bad signature"):
        store.load(GameRecord.from_cbor(forged).record_id)
    assert len(store.problems) == 2


def test_only_trusted_signers_load(store: GameStore) -> None:
    rid = store.save(make_game(6))
    stranger = GameStore(store.root, OTHER)
    assert [p.reason for p in stranger.problems] == ["no signature by a trusted key"]
    assert stranger.games() == []
    friend = GameStore(store.root, OTHER, trusted_keys=[KEY.verify_key])
    assert friend.load(rid) == make_game(6) and friend.problems == []


def test_co_signatures(store: GameStore) -> None:
    record = make_game(7)
    rid = store.save(record)
    public_key, signature = sign_record(record, OTHER)
    with pytest.raises(StoreError, match="does not verify"):
        store.add_signature(rid, public_key, signature[:-1] + bytes([signature[-1] ^ 1]))
    store.add_signature(rid, OTHER.verify_key, signature)
    signers = {k for k, _ in store.signatures(rid)}
    assert signers == {bytes(KEY.verify_key), bytes(OTHER.verify_key)}
    store.save(record)  # saving the same record again keeps the co-signature
    assert len(store.signatures(rid)) == 2
    # The opponent's store trusts its own key and sees both signatures verify.
    theirs = GameStore(store.root, OTHER)
    assert theirs.load(rid) == record and theirs.problems == []


def test_illegal_games_and_bad_ids_are_refused(store: GameStore) -> None:
    record = make_game(8).with_move(Move.play(Color.BLACK, (0, 0)))
    with pytest.raises(StoreError, match="illegal"):
        store.save(record)
    with pytest.raises(StoreError, match="not a record id"):
        store.load("../../etc/passwd")
    with pytest.raises(StoreError, match="no game"):
        store.load("0" * 64)
    with pytest.raises(StoreError, match="no game with id"):
        store.load_game("nope")
    with pytest.raises(StoreError, match="game_id"):
        store.save_in_progress(dataclasses.replace(make_game(8), game_id=""))


# ---- versions of one game --------------------------------------------------------------


def test_in_progress_game_is_replaced_by_the_finished_one(store: GameStore) -> None:
    full = make_game(9)
    partial = in_progress(full)
    first = store.save_in_progress(partial)
    assert store.load_game("game-9") == partial
    assert [s.finished for s in store.games()] == [False]
    second = store.save(full)
    assert second != first
    assert [p.name for p in game_files(store.root)] == [f"{second}.cbor"]
    assert store.load_game("game-9") == full
    assert [(s.record_id, s.finished) for s in store.games()] == [(second, True)]
    assert full.extends(partial.chain())


def test_a_crash_between_versions_keeps_the_finished_one(store: GameStore) -> None:
    full = make_game(10)
    first = store.save_in_progress(in_progress(full))
    saved = (store.root / "games" / f"{first}.cbor").read_bytes()
    second = store.save(full)
    store.close()
    # As if the process died after writing the new version but before removing the old.
    (store.root / "games" / f"{first}.cbor").write_bytes(saved)
    reopened = GameStore(store.root, KEY)
    assert [s.record_id for s in reopened.games()] == [second]
    assert [p.name for p in game_files(store.root)] == [f"{second}.cbor"]
    assert reopened.problems == []


def test_games_without_a_game_id_are_identified_by_content(store: GameStore) -> None:
    a = dataclasses.replace(make_game(11), game_id="")
    b = dataclasses.replace(make_game(12), game_id="")
    ra, rb = store.save(a), store.save(b)
    assert {s.game_id for s in store.games()} == {ra, rb}
    store.delete(ra)
    assert [s.record_id for s in store.games()] == [rb]
    assert not (store.root / "games" / f"{ra}.cbor").exists()


# ---- the index -------------------------------------------------------------------------


def filled(store: GameStore, count: int = 12) -> list[GameRecord]:
    games = [make_game(n) for n in range(count)]
    games.append(dataclasses.replace(make_game(99, size=13), game_id="big"))
    for g in games:
        store.save(g)
    return games


def test_index_filters(store: GameStore) -> None:
    games = filled(store)
    every = store.games()
    assert len(every) == len(games)
    assert [s.date for s in every] == sorted(s.date for s in every)
    assert {s.game_id for s in store.games(opponent="chen")} == {
        g.game_id for g in games if "Chen" in (g.white.name, g.black.name)
    }
    assert [s.game_id for s in store.games(size=13)] == ["big"]
    assert {s.game_id for s in store.games(result="B+")} == {
        g.game_id for g in games if g.result.startswith("B+")
    }
    assert all(s.result == "W+1.5" for s in store.games(result="w+1.5"))
    june = store.games(since="2024-06-01", until="2024-06-30")
    assert june and all(s.date.startswith("2024-06") for s in june)
    assert store.games(since="2025-01-01") == []
    assert store.games(finished=False) == []
    assert store.games(opponent="chen", size=13) == [
        s for s in every if s.size == 13 and "chen" in (s.white + s.black).lower()
    ]


def test_index_is_rebuilt_when_missing_corrupt_or_stale(store: GameStore) -> None:
    filled(store)
    store.close()
    expected = store.games()
    index = store.root / "index.cbor"
    assert index.exists()
    index.unlink()
    assert GameStore(store.root, KEY).games() == expected
    index.write_bytes(b"\x00garbage")
    assert GameStore(store.root, KEY).games() == expected
    index.write_bytes(cbor2.dumps({"v": 1, "kind": "store-index", "entries": [[1, 2]]}))
    assert GameStore(store.root, KEY).games() == expected
    # An index that lies about a game, signed by someone else, is not believed.
    GameStore(store.root, OTHER, trusted_keys=[KEY.verify_key]).close()
    outer = cbor2.loads(index.read_bytes())
    rows = cbor2.loads(outer["body"])
    rows[0][7] = "forged result"
    outer["body"] = cbor2.dumps(rows, canonical=True)
    outer["sig"] = OTHER.sign(b"p2pgo/store-index/v1\x00" + outer["body"]).signature
    index.write_bytes(cbor2.dumps(outer, canonical=True))
    assert GameStore(store.root, KEY).games() == expected
    # Stale: another writer added a game and died before rewriting the index.
    writer = GameStore(store.root, KEY)
    extra = writer.save(make_game(50))
    assert extra in GameStore(store.root, KEY)
    assert store.rebuild_index() == []
    assert extra in store and len(store.games()) == len(expected) + 1


def test_index_never_lists_a_deleted_file(store: GameStore) -> None:
    filled(store)
    store.close()
    victim = game_files(store.root)[0]
    victim.unlink()
    reopened = GameStore(store.root, KEY)
    assert victim.stem not in {s.record_id for s in reopened.games()}
    assert len(reopened) == len(store) - 1


def test_temp_files_are_never_games(store: GameStore) -> None:
    rid = store.save(make_game(13))
    store.close()
    (store.root / "games" / ".tmp-abc123").write_bytes(
        (store.root / "games" / f"{rid}.cbor").read_bytes()[:50]
    )
    (store.root / ".tmp-index").write_bytes(b"half an index")
    reopened = GameStore(store.root, KEY)
    assert [s.record_id for s in reopened.games()] == [rid]
    assert reopened.problems == []
    assert not list(store.root.rglob(".tmp-*"))


def test_unknown_files_are_reported(store: GameStore) -> None:
    store.save(make_game(14))
    (store.root / "games" / "notes.txt").write_text("hello")
    reopened = GameStore(store.root, KEY)
    assert [(p.path.name, p.reason) for p in reopened.problems] == [
        ("notes.txt", "not a game file")
    ]
    assert len(reopened) == 1


# ---- SGF export and import -------------------------------------------------------------


def test_export_import_round_trip(store: GameStore, tmp_path: Path) -> None:
    games = filled(store, count=6)
    out = tmp_path / "sgf"
    files = store.export_sgf(out)
    assert len(files) == len(games) and all(f.suffix == ".sgf" for f in files)
    other = GameStore(tmp_path / "other", OTHER)
    report = other.import_sgf(out)
    assert report.failed == ()
    assert sorted(report.imported) == sorted(g.record_id for g in games)
    for g in games:
        assert other.load(g.record_id) == g
    assert other.games() == store.games()


def test_import_reports_unreadable_files_and_keeps_going(store: GameStore, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a.sgf").write_bytes(dump_sgf(make_game(20)))
    (src / "b.sgf").write_bytes(b"this is not sgf")
    (src / "c.sgf").write_bytes(b"(;SZ[9];B[aa];W[aa])")
    (src / "sub" / "d.sgf").write_bytes(dump_sgf(make_game(21)))
    (src / "e.txt").write_bytes(b"ignored")
    report = store.import_sgf(src)
    assert sorted(report.imported) == sorted([make_game(20).record_id, make_game(21).record_id])
    assert {p.path.name: p.reason.split(":")[0] for p in report.failed} == {
        "b.sgf": "not readable as SGF",
        "c.sgf": "move 2 (W A9) is illegal",
    }
    again = store.import_sgf(src)  # importing twice changes nothing
    assert sorted(again.imported) == sorted(report.imported) and len(store) == 2


def test_export_skips_corrupt_entries(store: GameStore, tmp_path: Path) -> None:
    good = store.save(make_game(22))
    bad = store.save(make_game(23))
    flip_byte(store.root / "games" / f"{bad}.cbor", 100)
    files = store.export_sgf(tmp_path / "x")
    assert [f.name for f in files] == [f"{good}.sgf"]
    assert [p.path.name for p in store.problems] == [f"{bad}.cbor"]


# ---- durability under SIGKILL ----------------------------------------------------------


@pytest.mark.slow
def test_games_survive_sigkill_of_the_writer(tmp_path: Path) -> None:
    root = tmp_path / "store"
    rng = random.Random(1234)
    reported: dict[int, str] = {}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    deadline = time.monotonic() + 10
    n = 0
    rounds = 0
    # At least three kills; more while time allows (the machine may be loaded).
    while rounds < 3 or (rounds < 8 and time.monotonic() < deadline):
        rounds += 1
        proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "engine" / "_store_writer.py"),
                str(root),
                bytes(KEY).hex(),
                str(n),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None and proc.stderr is not None
        wanted = rng.randint(1, 6)
        for _line in range(wanted):
            line = proc.stdout.readline()
            if not line.endswith(b"\n"):
                break  # the writer died on its own; reported below
            number, record_id = line.decode().split()
            reported[int(number)] = record_id
            n = int(number) + 1
        # Jitter so that the kill lands at a different point of the next save each time.
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        err = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, err
    assert len(reported) >= rounds
    store = GameStore(root, KEY)
    assert store.problems == []
    assert not list(root.rglob(".tmp-*"))
    for index, rid in reported.items():
        expected = make_game(index)
        assert rid == expected.record_id
        assert store.load(rid) == expected
        assert store.load_game(expected.game_id) == expected
    listed = store.games()
    assert len({s.game_id for s in listed}) == len(listed)
    assert {s.record_id for s in listed} >= set(reported.values())
    assert GameStore(root, KEY).rebuild_index() == []


def test_copying_a_store_keeps_it_readable(store: GameStore, tmp_path: Path) -> None:
    games = filled(store, count=3)
    store.close()
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    reopened = GameStore(copy, KEY)
    assert {s.record_id for s in reopened.games()} == {g.record_id for g in games}
