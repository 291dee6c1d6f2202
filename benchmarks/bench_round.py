"""Benchmark: whole federated rounds through the round state machines, in process.

Unlike `bench_secagg` (the SecAgg+ core alone) this runs everything a round does: signed
CBOR messages encoded by the sender and decoded by the receiver, Poisson selection,
synthetic local training, clipping, DP noise, quantisation, SecAgg+, blob framing and
hashing, proof of work, unmasking, FedAvg, the Merkle root and the signed ModelUpdate,
and every peer's verification of it. One JSON line per size: coordinator seconds, mean
and total participant seconds (with the synthetic training's share), bytes per
participant, completion and the secure-vs-plaintext error. Dropouts go silent after
sharing keys, the costly case for the coordinator.

Flower's SecAgg+ runs side by side in `benchmarks.bench_secagg` (SecAgg+ against
SecAgg+: Flower's code has no DP, selection or signed-update stages to compare these with).

    python -m benchmarks.bench_round                      # 1,000 x 100k and 100 x 1M
    python -m benchmarks.bench_round --peers 50 --params 10000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence

from fl import RoundStage, SimConfig, Simulation

DEFAULT_SIZES = ((1000, 100_000), (100, 1_000_000))


def bench_round(peers: int, params: int, dropout: float = 0.1) -> dict[str, object]:
    """One round with every peer selected and `dropout` of them silent after key sharing."""
    # Target survivors so that over-selection picks every peer (rate 1).
    per_round = max(2, math.ceil(peers * (1 - dropout) - 1e-9))
    config = SimConfig(
        peers=peers,
        per_round=per_round,
        params=params,
        dropout=dropout,
        dropout_stage=RoundStage.MASKED_INPUT,
        seed=0,
    )
    simulation = Simulation(config)
    start = time.perf_counter()
    report = simulation.run_round(0)
    wall = time.perf_counter() - start
    selected = max(report.selected, 1)
    total = report.participant_mean_seconds * selected
    return {
        "bench": "fl_round",
        "peers": peers,
        "params": params,
        "dropout": dropout,
        "selected": report.selected,
        "survivors": report.survivors,
        "completed": report.completed,
        "coordinator_s": round(report.coordinator_seconds, 3),
        "participant_mean_s": round(report.participant_mean_seconds, 4),
        "participant_total_s": round(total, 3),
        "train_mean_s": round(report.train_mean_seconds, 4),
        "round_compute_s": round(report.coordinator_seconds + total, 3),
        "round_compute_without_training_s": round(
            report.coordinator_seconds + total - report.train_mean_seconds * selected, 3
        ),
        "upload_bytes_per_participant": round(report.upload_bytes_mean),
        "download_bytes_per_participant": round(report.download_bytes_mean),
        "max_abs_error": report.max_abs_error,
        "epsilon": round(report.epsilon_max, 3),
        "wall_s": round(wall, 3),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
    }


def main(argv: Sequence[str] = ()) -> None:
    """Run the requested size (all defaults without arguments) and print JSON lines."""
    parser = argparse.ArgumentParser(prog="bench_round")
    parser.add_argument("--peers", type=int)
    parser.add_argument("--params", type=int)
    parser.add_argument("--dropout", type=float, default=0.1)
    args = parser.parse_args(list(argv))
    if args.peers is not None or args.params is not None:
        sizes: Sequence[tuple[int, int]] = ((args.peers or 100, args.params or 10_000),)
    else:
        sizes = DEFAULT_SIZES
    for peers, params in sizes:
        print(json.dumps(bench_round(peers, params, args.dropout)), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
