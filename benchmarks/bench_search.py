"""Search speed with the default network, as JSON lines: nodes/second and seconds per move.

Target (issue 3): <= 1 s per move at the default setting (``p2pgo-gtp``'s 200 visits,
capped at 1 s). For 9x9 and 19x19 mid-game positions (seeded random play) it reports:

* ``search_nps_{size}``: network evaluations per second of a fixed-visit search;
* ``genmove_{size}``: seconds per move at the default setting, over a few moves of a game
  (the tree is reused between moves, as in ``p2pgo-gtp``).

The model is the shipped ``engine/models/default-9x9.cbor`` when present (else a fresh
default-config network: same speed, random play). One torch thread (the setting for a
machine shared with other work). ``--budget`` caps the seconds per measurement.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_search
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence

import torch

from engine import Position, Search, SearchConfig
from engine.gtp import DEFAULT_MODEL
from engine.nn import NetworkEvaluator, PolicyValueNet, Predictor, SearchPlayer, load_weights

DEFAULT_VISITS = 200
DEFAULT_SECONDS = 1.0


def _midgame(size: int, moves: int, seed: int) -> Position:
    rng = random.Random(seed)
    pos = Position(size)
    for _ in range(moves):
        legal = pos.legal_points()
        pos = pos.play_at(rng.choice(legal) if legal else None)
    return pos


def _model() -> tuple[PolicyValueNet, str]:
    if DEFAULT_MODEL.is_file():
        return load_weights(DEFAULT_MODEL.read_bytes()), DEFAULT_MODEL.name
    torch.manual_seed(0)
    return PolicyValueNet(), "fresh default config"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[9, 19])
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    model, name = _model()
    predictor = Predictor(model, threads=1)
    for size in args.sizes:
        pos = _midgame(size, size * size // 4, seed=size)
        # Nodes per second: one search with a fixed number of visits (time-capped).
        search = Search(NetworkEvaluator(predictor), SearchConfig(visits=100_000))
        started = time.perf_counter()
        result = search.run(pos, seconds=args.budget / 2)
        elapsed = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "bench": f"search_nps_{size}",
                    "model": name,
                    "nodes": search.nodes_evaluated,
                    "visits": result.visits,
                    "seconds": round(elapsed, 3),
                    "nodes_per_s": round(search.nodes_evaluated / elapsed, 1),
                }
            ),
            flush=True,
        )
        # Seconds per move at the default setting, over consecutive moves of one game.
        player = SearchPlayer(predictor, visits=DEFAULT_VISITS, seconds=DEFAULT_SECONDS)
        times: list[float] = []
        game = pos
        deadline = time.perf_counter() + args.budget / 2
        while time.perf_counter() < deadline and not game.is_game_over and len(times) < 10:
            t = time.perf_counter()
            move = player.choose(game)
            times.append(time.perf_counter() - t)
            game = game.play(move)
        visits = player.last_result.visits if player.last_result else 0
        print(
            json.dumps(
                {
                    "bench": f"genmove_{size}",
                    "model": name,
                    "visits_setting": DEFAULT_VISITS,
                    "seconds_cap": DEFAULT_SECONDS,
                    "moves": len(times),
                    "mean_s": round(sum(times) / len(times), 3),
                    "max_s": round(max(times), 3),
                    "last_root_visits": visits,
                    "target_s": 1.0,
                    "ok": max(times) <= DEFAULT_SECONDS * 1.1,
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
