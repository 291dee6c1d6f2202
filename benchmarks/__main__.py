"""Run every benchmark, or those named: ``python -m benchmarks [rules store ...]``."""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time

NAMES = [
    "rules",
    "store",
    "inference",
    "search",
    "secagg",
    "round",
    "net",
    "relay",
    "fl_net",
    "mcp",
    "tui",
]


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or NAMES
    print(
        json.dumps(
            {
                "bench": "machine",
                "date": time.strftime("%Y-%m-%d"),
                "python": platform.python_version(),
                "cpu": platform.processor() or platform.machine(),
            }
        ),
        flush=True,
    )
    failed = 0
    for name in names:
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
        except ModuleNotFoundError as err:
            print(json.dumps({"bench": name, "error": f"not available: {err}"}), flush=True)
            failed += 1
            continue
        # Benchmarks with their own flags parse sys.argv: give them none of ours.
        saved, sys.argv = sys.argv, [f"bench_{name}"]
        try:
            module.main()
        finally:
            sys.argv = saved
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
