"""Measure a model (``p2pgo-eval``): move-prediction accuracy, matches, SPRT gating.

``p2pgo-eval accuracy FILES...`` reads SGF files/directories and reports the network's
top-1/top-3 accuracy (against the move played, or the search's visits in self-play
records) and its policy and value loss, over every position of every finished game.

``p2pgo-eval match --opponent CMD`` plays the network through ``p2pgo-gtp`` (a child
process running ``python -m engine.gtp --model ...``) against any GTP engine with
:func:`engine.match.play_game`, alternating colours (ours is black in even games),
refereed and scored by our rules. It reports our wins and a 95% Wilson interval.
``--visits 0`` is policy-only play; ``--seconds-per-move`` bounds each search.

``--sprt`` stops the match as soon as the sequential test (:mod:`engine._sprt`) decides
whether the model is stronger than the opponent by ``--elo1`` (accept) or not
stronger than by ``--elo0`` (reject); ``--games`` is then the most games to play.
Exit status: 0, or with ``--sprt`` 0 for accept, 1 for reject, 3 for undecided.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine._sprt import Sprt, SprtConfig, SprtDecision
from engine.gtp import DEFAULT_MODEL
from engine.match import EngineSpec, GameResult, MatchResult, play_game

__all__ = ["main", "our_engine"]


def our_engine(
    model: Path,
    *,
    visits: int,
    seconds_per_move: float,
    name: str = "p2pgo",
    threads: int = 1,
    seed: int = 0,
    early_pass: bool = False,
    symmetries: str = "random",
) -> EngineSpec:
    """The command line that runs ``model`` through ``p2pgo-gtp`` in a child process.

    The seed picks the random board symmetry of each network evaluation, so games with
    different seeds differ even against a deterministic opponent.
    """
    argv = (
        sys.executable,
        "-m",
        "engine.gtp",
        "--player",
        "network",
        "--model",
        str(model),
        "--visits",
        str(visits),
        "--seconds-per-move",
        f"{seconds_per_move:g}",
        "--threads",
        str(threads),
        "--seed",
        str(seed),
        "--symmetries",
        symmetries,
    ) + (("--early-pass",) if early_pass else ())
    return EngineSpec(name, argv)


def _accuracy(args: argparse.Namespace) -> int:
    # Imported here: torch takes a second or two and the match command does not need it.
    from engine.nn import DatasetError, ModelFormatError, build_examples, evaluate, load_records
    from engine.nn import load_weights as load

    try:
        model = load(args.model.read_bytes())
        records = load_records(args.files)
    except (OSError, ModelFormatError, DatasetError) as exc:
        print(f"p2pgo-eval: error: {exc}", file=sys.stderr)
        return 2
    data = build_examples(records)
    if len(data) == 0:
        print("p2pgo-eval: error: the files hold no finished games", file=sys.stderr)
        return 2
    m = evaluate(model, data, device=args.device)
    report = {
        "model": str(args.model),
        "games": data.games,
        "skipped": len(data.skipped),
        "positions": len(data),
        "policy_positions": data.policy_examples,
        **m.to_dict(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{data.games} games ({len(data.skipped)} skipped), {len(data)} positions: "
            f"top-1 {m.top1:.1%}, top-3 {m.top3:.1%}, policy loss {m.policy_loss:.3f}, "
            f"value loss {m.value_loss:.3f}"
        )
    return 0


def _match(args: argparse.Namespace) -> int:
    try:
        opponent = EngineSpec.parse(args.opponent, args.opponent_name)
        sprt = Sprt(SprtConfig(args.elo0, args.elo1, args.alpha, args.beta)) if args.sprt else None
    except ValueError as exc:
        print(f"p2pgo-eval: error: {exc}", file=sys.stderr)
        return 2
    ours = our_engine(
        args.model,
        visits=args.visits,
        seconds_per_move=args.seconds_per_move,
        name=args.name,
        threads=args.threads,
        early_pass=args.early_pass,
        symmetries=args.symmetries,
    )
    if ours.name == opponent.name:
        opponent = EngineSpec(f"{opponent.name}-opponent", opponent.argv)
    if args.stderr_dir is not None:
        args.stderr_dir.mkdir(parents=True, exist_ok=True)
    # A search may overrun its budget a little; startup (torch import) takes seconds.
    timeout = max(60.0, 10 * args.seconds_per_move + 30)
    games: list[GameResult] = []
    started = time.monotonic()
    for i in range(args.games):
        me = our_engine(
            args.model,
            visits=args.visits,
            seconds_per_move=args.seconds_per_move,
            name=ours.name,
            threads=args.threads,
            seed=args.seed * 100_003 + i,
            early_pass=args.early_pass,
            symmetries=args.symmetries,
        )
        black, white = (me, opponent) if i % 2 == 0 else (opponent, me)
        game = play_game(
            black,
            white,
            index=i,
            size=args.size,
            komi=args.komi,
            timeout=timeout,
            sgf_dir=args.sgf_dir,
            stderr_dir=args.stderr_dir,
        )
        games.append(game)
        line = (
            f"game {i + 1}: {game.black} (B) vs {game.white} (W): {game.result} after "
            f"{game.moves} moves ({game.end.value}, {game.seconds:.0f} s)"
        )
        if game.message:
            line += f"; {game.message}"
        if sprt is not None:
            score = 0.5 if game.winner is None else float(game.winner == ours.name)
            sprt.update(score)
            line += f"; LLR {sprt.llr:.2f}"
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)
        if sprt is not None and sprt.decision is not SprtDecision.CONTINUE:
            break
    match = MatchResult(ours.name, opponent.name, tuple(games))
    elapsed = time.monotonic() - started
    if args.json:
        report: dict[str, Any] = {
            **match.to_json(),
            "model": str(args.model),
            "visits": args.visits,
            "seconds_per_move": args.seconds_per_move,
            "symmetries": args.symmetries,
            "size": args.size,
            "komi": args.komi,
            "seed": args.seed,
            "seconds": round(elapsed, 1),
        }
        if sprt is not None:
            report["sprt"] = {"decision": sprt.decision.value, "llr": sprt.llr}
        print(json.dumps(report, indent=2))
    else:
        print(match.summary())
        if sprt is not None:
            print(sprt.summary())
    if sprt is None:
        return 0
    return {SprtDecision.ACCEPT_H1: 0, SprtDecision.ACCEPT_H0: 1}.get(sprt.decision, 3)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pgo-eval", description="Measure a p2pgo model: accuracy on games, or matches."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    default_model = DEFAULT_MODEL

    acc = sub.add_parser("accuracy", help="top-1/top-3 accuracy and value loss on SGF games")
    acc.add_argument("files", nargs="+", type=Path, help="SGF files or directories")
    acc.add_argument("--model", type=Path, default=default_model, help="weight file")
    acc.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    acc.add_argument("--json", action="store_true", help="print the result as JSON")

    m = sub.add_parser("match", help="play the model through p2pgo-gtp against a GTP engine")
    m.add_argument("--opponent", required=True, help="the opponent's GTP command line")
    m.add_argument("--opponent-name", help="display name (default: its program name)")
    m.add_argument("--model", type=Path, default=default_model, help="weight file")
    m.add_argument("--name", default="p2pgo", help="our display name (default p2pgo)")
    m.add_argument("--games", type=int, default=10, help="games (with --sprt: at most)")
    m.add_argument("--size", type=int, default=9)
    m.add_argument("--komi", type=float, default=7.5)
    m.add_argument("--visits", type=int, default=200, help="search visits; 0 = policy only")
    m.add_argument("--seconds-per-move", type=float, default=1.0, help="search time cap per move")
    m.add_argument("--threads", type=int, default=1, help="torch threads for our engine")
    m.add_argument(
        "--early-pass",
        action="store_true",
        help="let our engine pass whenever the network prefers it (p2pgo-gtp --early-pass)",
    )
    m.add_argument(
        "--symmetries",
        choices=["random", "all"],
        default="random",
        help="board orientations per evaluation: one random one, or all 8 averaged "
        "(p2pgo-gtp --symmetries; default %(default)s)",
    )
    m.add_argument("--seed", type=int, default=0, help="base seed; game i adds i (default 0)")
    m.add_argument("--sgf-dir", type=Path, help="save every game as SGF here")
    m.add_argument("--stderr-dir", type=Path, help="append the engines' stderr here")
    m.add_argument("--json", action="store_true", help="print the result as JSON")
    m.add_argument("--sprt", action="store_true", help="stop when the SPRT decides")
    m.add_argument("--elo0", type=float, default=0.0, help="SPRT H0 (default 0)")
    m.add_argument("--elo1", type=float, default=35.0, help="SPRT H1 (default 35)")
    m.add_argument("--alpha", type=float, default=0.05, help="SPRT false accept rate")
    m.add_argument("--beta", type=float, default=0.05, help="SPRT false reject rate")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``p2pgo-eval`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "accuracy":
        return _accuracy(args)
    if args.games < 1 or not 2 <= args.size <= 25:
        parser.error("--games must be >= 1 and --size 2..25")
    if args.visits < 0 or args.threads < 1:
        parser.error("--visits must be >= 0 and --threads >= 1")
    if not (math.isfinite(args.komi) and math.isfinite(args.seconds_per_move)):
        parser.error("--komi and --seconds-per-move must be finite")
    if args.seconds_per_move <= 0:
        parser.error("--seconds-per-move must be > 0")
    if not args.model.is_file():
        parser.error(f"no model at {args.model}")
    return _match(args)


if __name__ == "__main__":
    sys.exit(main())
