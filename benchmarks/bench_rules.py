"""Rules throughput: random legal playouts replayed by our engine and by sgfmill.

Both replay the *same* move sequences; ours checks legality and positional superko on
every move and builds a new immutable position, sgfmill mutates one board and checks
nothing beyond occupancy. Prints moves/second of CPU time for each and the ratio
(target >= 3x).
"""

from __future__ import annotations

import json
import random
import time

from sgfmill import boards

from engine import IllegalMove, Move, Point, Position, Rules


def random_playout(size: int, rng: random.Random) -> list[Point | None]:
    """A random game that never fills its own eyes, played until both pass."""
    pos = Position(size, Rules.named("chinese"))
    moves: list[Point | None] = []
    while not pos.is_game_over and pos.move_number < 3 * size * size:
        points = pos.empty_points()
        rng.shuffle(points)
        for pt in points:
            if pos.is_eye_like(pt, pos.to_play):
                continue
            try:
                pos = pos.play(Move.play(pos.to_play, pt))
            except IllegalMove:
                continue
            moves.append(pt)
            break
        else:
            pos = pos.play(Move.pass_(pos.to_play))
            moves.append(None)
    return moves


def _ours(size: int, games: list[list[Point | None]]) -> float:
    rules = Rules.named("chinese")
    start = time.process_time()
    for game in games:
        pos = Position(size, rules)
        for pt in game:
            pos = pos.play_at(pt)
    return time.process_time() - start


def _sgfmill(size: int, games: list[list[Point | None]]) -> float:
    start = time.process_time()
    for game in games:
        board = boards.Board(size)
        colour = "b"
        for pt in game:
            if pt is not None:
                board.play(size - 1 - pt[0], pt[1], colour)
            colour = "w" if colour == "b" else "b"
    return time.process_time() - start


def main() -> None:
    rng = random.Random(2026)
    for size, count in ((9, 60), (19, 12)):
        games = [random_playout(size, rng) for _ in range(count)]
        moves = sum(len(g) for g in games)
        # CPU time (not wall time), best of five interleaved runs each: the machine is
        # shared, and other processes should not decide the ratio.
        ours_runs, theirs_runs = [], []
        for _ in range(5):
            ours_runs.append(_ours(size, games))
            theirs_runs.append(_sgfmill(size, games))
        ours, theirs = min(ours_runs), min(theirs_runs)
        print(
            json.dumps(
                {
                    "bench": "rules_playout",
                    "size": size,
                    "games": count,
                    "moves": moves,
                    "p2pgo_moves_per_s": round(moves / ours),
                    "sgfmill_moves_per_s": round(moves / theirs),
                    "ratio_vs_sgfmill": round(theirs / ours, 2),
                    "superko": "positional",
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
