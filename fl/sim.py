"""`p2pgo-sim`: many peers running the real round protocol and cryptography in one process.

    p2pgo-sim --peers 50 --per-round 20 --rounds 3 --dropout 0.1 --params 100000 [--json]
    python -m fl.sim ...

Each round prints the coordinator's compute seconds, the mean compute seconds of a
selected participant, bytes uploaded and downloaded per selected participant (CBOR
messages plus the masked-vector blob), completion (survivors / selected), the largest
epsilon any peer has spent (PLD accountant, delta 1e-5), and the largest absolute gap
between the securely aggregated mean update and the plaintext mean of the same clipped,
noised inputs. Local training is a synthetic objective per peer (each pulls the model
toward its own random target).

With `--train --games DIR` the peers instead hold non-IID slices of the SGF games in
DIR and really train a small Go network (`--blocks`, `--channels`) on them, one epoch
or `--local-steps` steps per round; each round also reports the federated model's
held-out top-1/top-3 accuracy and value loss next to a centralised baseline trained
on the union of the same slices for the same number of steps (see fl/_sim_train.py
for the split). Torch runs on one thread.

    p2pgo-sim --peers 3 --per-round 3 --rounds 5 --train --games games/ [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fl._dp import Sampling
from fl._errors import FlInputError
from fl._round_coordinator import RoundStage
from fl._round_sim import DROP_STAGES, RoundReport, SimConfig, Simulation

if TYPE_CHECKING:
    from fl._sim_train import TrainRoundReport

_STAGES = {stage.value: stage for stage in DROP_STAGES}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pgo-sim",
        description="Simulate federated rounds in one process with the real protocol and crypto.",
    )
    parser.add_argument("--peers", type=int, required=True, help="peers in the federation")
    parser.add_argument("--per-round", type=int, required=True, help="target survivors per round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--dropout", type=float, default=0.1, help="fraction of selected peers that drop"
    )
    parser.add_argument("--params", type=int, default=10_000, help="model parameters")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dropout-stage",
        choices=[*sorted(_STAGES), "random"],
        default="random",
        help="stage at which dropouts go silent (default: a random stage per peer)",
    )
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--epsilon-budget", type=float, default=100.0)
    parser.add_argument("--modulus-bits", type=int, default=16)
    parser.add_argument("--pow-difficulty", type=int, default=8)
    parser.add_argument(
        "--sampling",
        choices=[s.value for s in Sampling],
        default=Sampling.POISSON_SECRET.value,
        help="poisson_secret: coordinator's secret draw (amplified, trusts it); "
        "none: commit-reveal public draw (no amplification)",
    )
    parser.add_argument("--strategy", choices=["fedavg", "fedadam"], default="fedavg")
    parser.add_argument("--json", action="store_true", help="one JSON object per round")
    parser.add_argument(
        "--train", action="store_true", help="train the Go model on the games in --games"
    )
    train = parser.add_argument_group("--train")
    train.add_argument("--games", type=Path, help="directory of SGF games (required by --train)")
    train.add_argument("--blocks", type=int, default=2, help="residual blocks of the network")
    train.add_argument("--channels", type=int, default=16, help="channels of the network")
    train.add_argument(
        "--local-steps", type=int, default=None, help="optimizer steps per round (default: 1 epoch)"
    )
    train.add_argument("--lr", type=float, default=1e-3, help="local learning rate (AdamW)")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument(
        "--held-out", type=float, default=0.2, help="fraction of games held out for evaluation"
    )
    return parser


def _line(report: RoundReport, wall: float, training: str = "synthetic") -> str:
    error = "n/a" if report.max_abs_error is None else f"{report.max_abs_error:.2e}"
    status = "ok" if report.completed else f"aborted ({report.abort_reason})"
    return (
        f"round {report.round}: {status}; {report.survivors}/{report.selected} survived "
        f"({report.ready} ready); coordinator {report.coordinator_seconds:.3f} s, "
        f"participant {report.participant_mean_seconds:.3f} s mean "
        f"({report.train_mean_seconds:.3f} s of it {training} training); "
        f"up {report.upload_bytes_mean / 1024:.1f} KiB, down {report.download_bytes_mean / 1024:.1f} KiB "
        f"per participant; epsilon {report.epsilon_max:.3f}; max |secure - plain| {error}; "
        f"wall {wall:.2f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulation; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.train and args.games is None:
        print(
            "p2pgo-sim: error: --train needs --games DIR, a directory of SGF games to deal "
            "to the peers",
            file=sys.stderr,
        )
        return 2
    stage: RoundStage | None = (
        None if args.dropout_stage == "random" else _STAGES[args.dropout_stage]
    )
    try:
        config = SimConfig(
            peers=args.peers,
            per_round=args.per_round,
            rounds=args.rounds,
            dropout=args.dropout,
            params=args.params,
            seed=args.seed,
            dropout_stage=stage,
            clip_norm=args.clip_norm,
            noise_multiplier=args.noise_multiplier,
            epsilon_budget=args.epsilon_budget,
            modulus_bits=args.modulus_bits,
            pow_difficulty=args.pow_difficulty,
            sampling=Sampling(args.sampling),
            strategy=args.strategy,
        )
        if args.train:
            return _run_training(args, config)
        simulation = Simulation(config)
        for round_id in range(config.rounds):
            start = time.perf_counter()
            report = simulation.run_round(round_id)
            wall = time.perf_counter() - start
            if args.json:
                print(json.dumps({**report.to_json(), "wall_s": round(wall, 3)}), flush=True)
            else:
                print(_line(report, wall), flush=True)
    except FlInputError as exc:
        print(f"p2pgo-sim: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _train_line(report: TrainRoundReport, wall: float) -> str:
    fed, cen = report.federated, report.central
    return (
        f"{_line(report.protocol, wall, 'Go model')}; "
        f"federated top1 {fed.top1:.3f} top3 {fed.top3:.3f} value loss {fed.value_loss:.4f}; "
        f"centralised top1 {cen.top1:.3f} top3 {cen.top3:.3f} value loss {cen.value_loss:.4f} "
        f"({report.train_steps} steps)"
    )


def _run_training(args: argparse.Namespace, config: SimConfig) -> int:
    # Imported here: torch costs seconds to import, and the synthetic mode needs none of it.
    import torch

    from fl._sim_train import TrainingSimulation, TrainSetup

    setup = TrainSetup(
        games=args.games,
        blocks=args.blocks,
        channels=args.channels,
        local_steps=args.local_steps,
        lr=args.lr,
        batch_size=args.batch_size,
        held_out_fraction=args.held_out,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many simulated peers share the machine's cores
    try:
        simulation = TrainingSimulation(config, setup)
        slices = simulation.slices
        if not args.json:
            sizes = ", ".join(str(len(s)) for s in slices.peers)
            print(
                f"training: {simulation.params} parameters; games per peer {sizes} "
                f"({len(simulation.union)} positions); {len(slices.held_out)} held-out games "
                f"({len(simulation.held_out)} positions); {slices.skipped} files skipped",
                flush=True,
            )
        for round_id in range(config.rounds):
            start = time.perf_counter()
            report = simulation.run_train_round(round_id)
            wall = time.perf_counter() - start
            if args.json:
                print(json.dumps({**report.to_json(), "wall_s": round(wall, 3)}), flush=True)
            else:
                print(_train_line(report, wall), flush=True)
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
