"""Benchmark: one SecAgg+ round's compute, in process, with real cryptography.

Prints one JSON line per size: coordinator seconds, mean and total participant seconds,
mean upload bytes per participant, and whether the unmasked sum matched the plaintext sum.
Dropouts happen after key sharing (the costly case: the coordinator must rebuild the
dropped participants' keys and strip their pairwise masks).

    python -m benchmarks.bench_secagg                       # the default sizes
    python -m benchmarks.bench_secagg --peers 100 --params 10000 --dropout 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
from nacl.signing import SigningKey
from numpy.typing import NDArray

from fl import SecAggConfig, Stage, choose_quant, run_secagg_round

DEFAULT_SIZES = ((1000, 100_000), (100, 1_000_000))


def bench_round(
    peers: int, params: int, dropout: float, modulus_bits: int = 16
) -> dict[str, object]:
    """Run one round and return its measurements."""
    keys = [SigningKey.generate() for _ in range(peers)]
    config = SecAggConfig.create(
        b"bench-round",
        tuple(bytes(k.verify_key) for k in keys),
        params,
        os.urandom(32),
        modulus_bits=modulus_bits,
    )
    spec = choose_quant(peers, clip=1.0, target_bits=modulus_bits)
    rng = np.random.default_rng(0)
    dropped = rng.choice(peers, size=round(dropout * peers), replace=False)
    dropouts = {int(i): Stage.MASKED_INPUT for i in dropped}
    plain = np.zeros(params, dtype=np.uint32)

    def inputs(i: int) -> NDArray[np.uint32]:
        nonlocal plain
        vector = np.random.default_rng(i).integers(0, spec.levels + 1, params, dtype=np.uint32)
        plain += vector
        return vector

    start = time.perf_counter()
    result, stats = run_secagg_round(config, keys, inputs, dropouts)
    wall = time.perf_counter() - start
    expected = plain & np.uint32(config.modulus_mask)
    return {
        "bench": "secagg_round",
        "peers": peers,
        "params": params,
        "dropout": dropout,
        "degree": config.degree,
        "threshold": config.threshold,
        "modulus_bits": modulus_bits,
        "coordinator_s": round(stats.coordinator_seconds, 3),
        "participant_mean_s": round(stats.mean_participant_seconds, 4),
        "participant_total_s": round(sum(stats.participant_seconds.values()), 3),
        "round_compute_s": round(
            stats.coordinator_seconds + sum(stats.participant_seconds.values()), 3
        ),
        "wall_s": round(wall, 3),
        "upload_bytes_per_participant": round(stats.mean_upload_bytes),
        "survivors": len(result.survivors),
        "correct": bool(np.array_equal(result.total, expected)),
    }


def main(argv: Sequence[str] = ()) -> None:
    """Run the requested sizes (all defaults without arguments) and print JSON lines.

    `benchmarks/__main__.py` calls `main()` with no arguments: the default sizes.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int)
    parser.add_argument("--params", type=int)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--modulus-bits", type=int, default=16)
    args = parser.parse_args(argv)
    if args.peers is None and args.params is None:
        sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES
    else:
        sizes = ((args.peers or 100, args.params or 10_000),)
    for peers, params in sizes:
        print(json.dumps(bench_round(peers, params, args.dropout, args.modulus_bits)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
