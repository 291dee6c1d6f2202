"""The privacy arithmetic behind the round defaults (docs/privacy.md), as a table.

For noise multipliers z and network sizes N (ready peers), with the coordinator's
announced rate q = `fl.announced_rate(K, dropout, N, cap)`: the epsilon one round costs
every ready peer (secret Poisson sampling, PLD accountant, delta 1e-5) and how many
such rounds fit in the default budget (epsilon 1). Prints a Markdown table, or JSON
lines with ``--json``. Takes a minute or two: each cell bisects on the accountant.

    python -m benchmarks.privacy_table
    python -m benchmarks.privacy_table --per-round 8 --peers 30 100 300 1000 --z 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from fl import (
    DEFAULT_DELTA,
    DEFAULT_EPSILON,
    PrivacyEvent,
    Sampling,
    announced_rate,
    compute_epsilon,
    rounds_within_budget,
)


def cell(z: float, q: float, budget: float, delta: float) -> dict[str, float | int]:
    """Epsilon of one round at (z, q) and the rounds that fit in `budget`."""
    sampling = Sampling.POISSON_SECRET if q < 1 else Sampling.NONE
    event = PrivacyEvent(z, sampling, q)
    return {
        "z": z,
        "q": round(q, 4),
        "epsilon_per_round": round(compute_epsilon([event], delta), 3),
        "rounds_in_budget": rounds_within_budget(event, budget, delta),
    }


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(prog="privacy_table", description=__doc__)
    parser.add_argument("--per-round", type=int, default=8, help="target survivors K")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--cap", type=float, default=1.0, help="the operator's cap on q")
    parser.add_argument("--peers", type=int, nargs="+", default=[10, 30, 100, 300, 1000, 3000])
    parser.add_argument("--z", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--budget", type=float, default=DEFAULT_EPSILON)
    parser.add_argument("--delta", type=float, default=DEFAULT_DELTA)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(list(argv))
    rows = []
    for peers in args.peers:
        q = announced_rate(args.per_round, args.dropout, peers, args.cap)
        row: dict[str, object] = {"bench": "privacy", "peers": peers, "q": round(q, 4)}
        for z in args.z:
            result = cell(z, q, args.budget, args.delta)
            row[f"z={z:g}"] = f"{result['epsilon_per_round']} / {result['rounds_in_budget']}"
            if args.json:
                print(json.dumps({"bench": "privacy", "peers": peers, **result}), flush=True)
        rows.append(row)
    if args.json:
        return
    head = ["ready peers N", "q"] + [f"z={z:g}" for z in args.z]
    print(
        f"K={args.per_round}, dropout {args.dropout}, cap {args.cap}, "
        f"budget {args.budget}, delta {args.delta}: epsilon per round / rounds in budget"
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [str(row["peers"]), f"{row['q']:g}"] + [str(row[f"z={z:g}"]) for z in args.z]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
