"""Benchmark: one SecAgg+ round's compute, in process, with real cryptography.

Prints one JSON line per size: coordinator seconds, mean and total participant seconds,
mean upload bytes per participant, and whether the unmasked sum matched the plaintext sum.
Dropouts happen after key sharing (the costly case: the coordinator must rebuild the
dropped participants' keys and strip their pairwise masks).

It then runs Flower's SecAgg+ (its own workflow and client mod, `flwr` 1.42) on the same
size, degree and threshold in a subprocess of the separate bench venv ``.venv-flower``
(``make bench-flower-venv``; installing flwr into the project venv would downgrade rich,
packaging and pycryptodome) and prints both and the ratio (`flower_side_by_side`). The
comparison runs at 250 x 100k by default: Flower's code takes ~5-6 minutes of compute at
1,000 x 100k on 2 cores, too long for `make bench`; ours is measured at the same size.
Without ``.venv-flower`` that line says how to create it.

    python -m benchmarks.bench_secagg                       # the default sizes
    python -m benchmarks.bench_secagg --peers 100 --params 10000 --dropout 0.1
    python -m benchmarks.bench_secagg --flower-only --peers 100 --params 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from nacl.signing import SigningKey
from numpy.typing import NDArray

from fl import SecAggConfig, Stage, choose_quant, run_secagg_round

DEFAULT_SIZES = ((1000, 100_000), (100, 1_000_000))
FLOWER_SIZE = (250, 100_000)
"""Side-by-side size: the peers scaled down from 1,000 (both sides alike), same vector."""
_ROOT = Path(__file__).resolve().parent.parent
FLOWER_PYTHON = _ROOT / ".venv-flower" / "bin" / "python"
_FLOWER_DRIVER = Path(__file__).resolve().parent / "_flower_secagg.py"
_FLOWER_TIMEOUT_S = 1800


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


def flower_side_by_side(
    peers: int, params: int, dropout: float, python: Path = FLOWER_PYTHON
) -> dict[str, object]:
    """Ours and Flower's SecAgg+ at one size, same degree and threshold, and the ratio.

    Flower's neighbourhood counts the node itself, so its `num_shares` is our degree + 1
    and its reconstruction threshold our t. Dropouts: after key sharing on both sides.
    """
    line: dict[str, object] = {"bench": "secagg_vs_flower", "peers": peers, "params": params}
    if not python.exists():
        line |= {
            "skipped": True,
            "reason": (
                f"no Flower bench venv at {python.parent.parent.name}/: create it with "
                "`make bench-flower-venv` (a separate venv with flwr pinned, so the "
                "project venv keeps its versions), then rerun"
            ),
        }
        return line
    ours = bench_round(peers, params, dropout)
    command = [
        str(python),
        str(_FLOWER_DRIVER),
        f"--peers={peers}",
        f"--params={params}",
        f"--dropout={dropout}",
        f"--num-shares={int(str(ours['degree'])) + 1}",
        f"--threshold={ours['threshold']}",
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_FLOWER_TIMEOUT_S,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return line | {"skipped": True, "reason": f"Flower ran over {_FLOWER_TIMEOUT_S} s"}
    results = [row for row in done.stdout.splitlines() if row.startswith("{")]
    if done.returncode != 0 or not results:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return line | {"skipped": True, "reason": f"Flower run failed: {' | '.join(tail)}"}
    flower: dict[str, object] = json.loads(results[-1])
    ours_s = float(str(ours["round_compute_s"]))
    flower_s = float(str(flower["flwr_round_compute_s"]))
    line |= {f"ours_{k}": v for k, v in ours.items() if k not in ("bench", "peers", "params")}
    line |= flower
    line["flower_over_ours_compute"] = round(flower_s / ours_s, 1) if ours_s > 0 else None
    line["flower_over_ours_coordinator"] = round(
        float(str(flower["flwr_coordinator_s"])) / max(float(str(ours["coordinator_s"])), 1e-9),
        1,
    )
    line["flower_over_ours_upload"] = round(
        float(str(flower["flwr_upload_bytes_per_participant"]))
        / float(str(ours["upload_bytes_per_participant"])),
        1,
    )
    return line


def main(argv: Sequence[str] = ()) -> None:
    """Run the requested sizes (all defaults without arguments) and print JSON lines.

    `benchmarks/__main__.py` calls `main()` with no arguments: the default sizes.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int)
    parser.add_argument("--params", type=int)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--modulus-bits", type=int, default=16)
    parser.add_argument(
        "--flower-only", action="store_true", help="only the side-by-side with Flower"
    )
    args = parser.parse_args(argv)
    if args.peers is None and args.params is None:
        sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES
        flower_size = FLOWER_SIZE
    else:
        sizes = ((args.peers or 100, args.params or 10_000),)
        flower_size = sizes[0]
    if not args.flower_only:
        for peers, params in sizes:
            row = bench_round(peers, params, args.dropout, args.modulus_bits)
            print(json.dumps(row), flush=True)
    print(json.dumps(flower_side_by_side(*flower_size, args.dropout)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
