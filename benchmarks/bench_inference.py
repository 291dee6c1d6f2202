"""Inference latency and throughput of the default network, as JSON lines.

Targets (issue 3): one position p50 <= 5 ms on 9x9 and <= 15 ms on 19x19 on 2 cores.
Each line is one measurement, named ``{what}_{size}_t{threads}``; the split (features,
legality, forward) shows where a slow end-to-end number comes from. Mid-game positions
come from seeded random play. ``--budget`` caps the seconds per measurement (about 30 s
in all with the defaults on an idle 2-core machine).

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_inference
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from engine import Position
from engine.nn import (
    ALL_SYMMETRIES,
    ModelConfig,
    PolicyValueNet,
    Predictor,
    Symmetry,
    encode_batch,
    encode_position,
    legal_mask,
    save_weights,
)

TARGET_P50_MS = {9: 5.0, 19: 15.0}


def _midgame(size: int, moves: int, seed: int) -> Position:
    rng = random.Random(seed)
    pos = Position(size)
    for _ in range(moves):
        legal = pos.legal_points()
        pos = pos.play_at(rng.choice(legal) if legal else None)
    return pos


def _timings(fn: Callable[[], object], reps: int, budget_s: float, warmup: int = 3) -> list[float]:
    """Seconds per call: warm-up calls, then up to ``reps`` calls or ``budget_s``."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(out) < reps and time.perf_counter() < deadline:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _summary(times: list[float]) -> dict[str, Any]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "min_ms": round(ordered[0] * 1e3, 3),  # the floor: least disturbed by other load
        "p50_ms": round(statistics.median(ordered) * 1e3, 3),
        "p95_ms": round(p95 * 1e3, 3),
        "n": len(ordered),
    }


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps({"bench": "inference", **record}), flush=True)


def _bench_model(model: PolicyValueNet) -> None:
    data = save_weights(model)
    _emit(
        {
            "name": "model",
            "config": model.config.to_dict(),
            "params": model.num_parameters(),
            "weights_bytes_float32": len(data),
            "weights_bytes_float16": len(save_weights(model, dtype="float16")),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            # Other work on the machine distorts every number below; record how much.
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
    )


def _bench_size(
    predictor: Predictor, size: int, moves: int, reps: int, budget_s: float, batch: int
) -> None:
    threads = torch.get_num_threads()
    tag = f"{size}x{size}_t{threads}"
    pos = _midgame(size, moves, seed=size)
    x = torch.from_numpy(encode_batch([pos]))

    def features() -> object:
        return encode_position(pos)

    def legality() -> object:
        return legal_mask(pos)

    def forward() -> object:
        with torch.inference_mode():
            return predictor.model(x)

    for part, fn in (("features", features), ("legal_mask", legality), ("forward", forward)):
        _emit({"name": f"{part}_{tag}", **_summary(_timings(fn, reps, budget_s))})
    for label, syms in (("1sym", (Symmetry.IDENTITY,)), ("8sym", ALL_SYMMETRIES)):

        def predict(syms: tuple[Symmetry, ...] = syms) -> object:
            return predictor.predict(pos, syms)

        n = reps if label == "1sym" else max(10, reps // 4)
        record: dict[str, Any] = {
            "name": f"predict_{label}_{tag}",
            **_summary(_timings(predict, n, budget_s)),
        }
        if label == "1sym":
            record["target_p50_ms"] = TARGET_P50_MS[size]
            record["meets_target"] = record["p50_ms"] <= TARGET_P50_MS[size]
        _emit(record)
    # The batch: consecutive positions of one longer game (cheap to make, all different).
    positions = list(_midgame(size, moves + batch, seed=100 + size).ancestors())[:batch]

    def predict_batch() -> object:
        return predictor.predict_batch(positions)

    times = _timings(predict_batch, 5, budget_s, warmup=1)
    _emit(
        {
            "name": f"predict_batch_{tag}",
            "batch": batch,
            **_summary(times),
            "positions_per_s": round(batch / statistics.median(times), 1),
        }
    )


def run(threads: Sequence[int], reps: int, budget_s: float, batch: int) -> None:
    torch.manual_seed(0)
    model = PolicyValueNet(ModelConfig())
    _bench_model(model)
    for n in threads:
        predictor = Predictor(model, threads=n)
        for size, moves in ((9, 40), (19, 150)):
            _bench_size(predictor, size, moves, reps, budget_s, batch)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts to try, e.g. 1,2")
    parser.add_argument("--reps", type=int, default=100, help="calls per latency measurement")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    run(threads, args.reps, args.budget, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
