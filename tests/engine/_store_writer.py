"""Games for the store tests, and a writer process for the crash (SIGKILL) test.

Run as ``python tests/engine/_store_writer.py ROOT KEY_HEX FIRST`` (with the
repository root on ``PYTHONPATH``): it saves game
``FIRST``, ``FIRST + 1``, ... forever (each first as an in-progress game, then
finished) and prints ``<n> <record id>`` after each finished save has returned.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

from nacl.signing import SigningKey

from engine._record import GameRecord, Player
from engine._rules import IllegalMove, Move, Rules
from engine._store import GameStore

OPPONENTS = ("Ana", "Bo", "Chen", "Dee")


def make_game(n: int, size: int = 9, moves: int = 60) -> GameRecord:
    """Game ``n``: a deterministic random legal game with players, date and result."""
    rng = random.Random(n)
    record = GameRecord(
        size=size,
        rules=Rules.named("chinese", komi=7.5),
        black=Player("me", "5k"),
        white=Player(OPPONENTS[n % len(OPPONENTS)], ""),
        date=f"2024-0{1 + n % 9}-1{n % 10}",
        game_id=f"game-{n}",
    )
    pos = record.root_position()
    played: list[Move] = []
    for _ in range(moves):
        for _attempt in range(30):
            move = Move.play(pos.to_play, (rng.randrange(size), rng.randrange(size)))
            try:
                pos = pos.play(move)
            except IllegalMove:
                continue
            played.append(move)
            break
        else:
            break
    played += [Move.pass_(pos.to_play), Move.pass_(pos.to_play.opponent)]
    result = "B+R" if n % 3 == 0 else f"W+{n % 7}.5"
    return dataclasses.replace(
        record,
        moves=tuple(played),
        result=result,
        comments={0: f"game {n}", 1: "first move"},
    )


def in_progress(record: GameRecord) -> GameRecord:
    """The same game halfway through (same game id, no result)."""
    half = record.moves[: len(record.moves) // 2]
    return dataclasses.replace(record, moves=half, result="", comments={})


def main() -> None:
    root, key_hex, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = GameStore(Path(root), SigningKey(bytes.fromhex(key_hex)))
    n = first
    while True:
        full = make_game(n)
        store.save_in_progress(in_progress(full))
        rid = store.save(full)
        print(n, rid, flush=True)
        n += 1


if __name__ == "__main__":
    main()
