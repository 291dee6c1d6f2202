"""Game store and SGF throughput: prints one JSON line per measurement.

Writes 200 signed games of about 100 moves on 9x9 into a temporary store (each save
fsyncs the file and the directory), reads them back with full verification, reopens
the store with and without its index, and times SGF save/load of the same games.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

from nacl.signing import SigningKey

from engine._record import GameRecord, Player
from engine._rules import IllegalMove, Move, Position, Rules
from engine._sgf import dump_sgf, load_sgf
from engine._store import GameStore

GAMES = 200
MOVES = 100
SIZE = 9


def _game(rng: random.Random, n: int) -> GameRecord:
    pos = Position(SIZE, Rules.named("chinese"))
    moves: list[Move] = []
    while len(moves) < MOVES:
        for _attempt in range(30):
            move = Move.play(pos.to_play, (rng.randrange(SIZE), rng.randrange(SIZE)))
            try:
                pos = pos.play(move)
            except IllegalMove:
                continue
            moves.append(move)
            break
        else:  # the board is nearly full: pass instead
            move = Move.pass_(pos.to_play)
            if pos.passes:
                break
            pos = pos.play(move)
            moves.append(move)
    return GameRecord(
        size=SIZE,
        rules=pos.rules,
        black=Player("bench", "1d"),
        white=Player(f"opponent {n % 10}", ""),
        date=f"2024-01-{1 + n % 28:02d}",
        result="B+R",
        moves=tuple(moves),
        game_id=f"bench-{n}",
    )


def _emit(name: str, count: int, seconds: float, **extra: object) -> None:
    line = {"bench": name, "count": count, "seconds": round(seconds, 4)}
    line["per_second"] = round(count / seconds, 1) if seconds > 0 else None
    print(json.dumps({**line, **extra}), flush=True)


def main() -> None:
    rng = random.Random(0)
    games = [_game(rng, n) for n in range(GAMES)]
    mean_moves = sum(len(g.moves) for g in games) / len(games)
    key = SigningKey(bytes(32))
    shape = {"size": SIZE, "mean_moves": round(mean_moves, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = GameStore(root, key)
        start = time.perf_counter()
        ids = [store.save(g) for g in games]
        store.close()
        _emit("store_write_games", GAMES, time.perf_counter() - start, **shape)

        start = time.perf_counter()
        for rid in ids:
            store.load(rid)
        _emit("store_read_games", GAMES, time.perf_counter() - start, **shape)

        start = time.perf_counter()
        GameStore(root, key)
        _emit("store_open_with_index", GAMES, time.perf_counter() - start)

        (root / "index.cbor").unlink()
        start = time.perf_counter()
        GameStore(root, key)
        _emit("store_open_rebuild_index", GAMES, time.perf_counter() - start)

    start = time.perf_counter()
    blobs = [dump_sgf(g) for g in games]
    _emit("sgf_save", GAMES, time.perf_counter() - start, **shape)
    start = time.perf_counter()
    for blob in blobs:
        load_sgf(blob)
    _emit("sgf_load", GAMES, time.perf_counter() - start, **shape)

    start = time.perf_counter()
    encoded = [g.to_cbor() for g in games]
    _emit("record_encode", GAMES, time.perf_counter() - start, **shape)
    start = time.perf_counter()
    for data in encoded:
        GameRecord.from_cbor(data)
    _emit("record_decode_verified", GAMES, time.perf_counter() - start, **shape)


if __name__ == "__main__":
    main()
