"""The identity key file and the game-store adapter."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine import Color, GameRecord, Move
from p2pgo_tui import StorageError, StoreStorage
from p2pgo_tui._storage import IDENTITY_FILE, load_or_create_identity


def test_the_identity_is_created_private_once_and_then_reused(tmp_path: Path) -> None:
    seed = load_or_create_identity(tmp_path / "data")
    path = tmp_path / "data" / IDENTITY_FILE
    assert len(seed) == 32 and path.read_bytes() == seed
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_identity(tmp_path / "data") == seed


def test_a_readable_or_damaged_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / IDENTITY_FILE
    load_or_create_identity(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(StorageError, match="chmod 600"):
        load_or_create_identity(tmp_path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(StorageError, match="holds 5 bytes"):
        load_or_create_identity(tmp_path)


def test_the_network_layer_reads_the_same_identity(tmp_path: Path) -> None:
    identity = pytest.importorskip("net").Identity  # imports libp2p
    seed = load_or_create_identity(tmp_path)
    assert identity.load_or_create(tmp_path).seed == seed


def test_games_are_saved_listed_newest_first_and_loaded(tmp_path: Path) -> None:
    storage = StoreStorage(tmp_path)
    first = GameRecord.new(9, date="2024-01-01").with_move(Move.pass_(Color.BLACK))
    second = GameRecord.new(5, date="2024-02-01").with_result("W+R")
    ids = [storage.save(first), storage.save(second)]
    games = storage.games()
    assert [g.record_id for g in games] == ids[::-1]
    assert (games[0].size, games[0].result, games[1].moves) == (5, "W+R", 1)
    assert storage.load(ids[0]) == first
    with pytest.raises(StorageError, match="cannot open the game"):
        storage.load("0" * 64)
    storage.close()


def test_a_store_that_cannot_be_opened_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("a file where the store's folder should be")
    with pytest.raises(StorageError, match="cannot list the stored games"):
        StoreStorage(tmp_path).games()
