"""The ``p2pgo-gtp`` program around :class:`engine.gtp.GtpEngine`: flags, the network
player, and the stdin/stdout loop (with a reader thread so ``lz-analyze`` can stream
until the next command arrives)."""

from __future__ import annotations

import argparse
import math
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from engine._coords import CoordinateError, check_size
from engine._players import Player
from engine.gtp import DEFAULT_MODEL, GtpEngine, _preprocess


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pgo-gtp",
        description=(
            "p2pgo's Go engine speaking GTP v2 on stdin/stdout, for GUIs (Sabaki, GoGui), "
            "match tools (twogtp, python -m engine.match) and KGS clients. "
            "Moves come from the policy/value network with tree search (the shipped "
            "model unless --model says otherwise; lz-analyze for Sabaki), or from a "
            "simple heuristic player (captures, atari escapes, no self-atari, never "
            "fills its own eyes, otherwise random) with --player heuristic or when no "
            "model is available."
        ),
    )
    parser.add_argument(
        "--rules",
        choices=["chinese", "japanese", "tromp-taylor"],
        default="chinese",
        help="rule set: repetition, suicide and final_score (area for chinese and "
        "tromp-taylor, territory for japanese); default %(default)s",
    )
    parser.add_argument(
        "--komi",
        type=float,
        default=None,
        help="komi until the controller sends 'komi' (default: 7.5, or 6.5 for japanese)",
    )
    parser.add_argument(
        "--size", type=int, default=19, help="initial board size, 2..25 (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the move choice (default %(default)s)"
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="play with this p2pgo weight file and tree search (default: the shipped "
        f"model {DEFAULT_MODEL.name} if present, else the heuristic player)",
    )
    parser.add_argument(
        "--player",
        choices=["auto", "network", "heuristic"],
        default="auto",
        help="auto: the network when a model is available; heuristic: the simple "
        "player even if a model is there (fast, for tests and match baselines)",
    )
    parser.add_argument(
        "--visits",
        type=int,
        default=200,
        help="network: search visits per move, 0 = policy only (default %(default)s)",
    )
    parser.add_argument(
        "--early-pass",
        action="store_true",
        help="network: pass whenever the network prefers it (default: under area scoring "
        "not while an empty region touches both colours, so no neutral point or "
        "unanswered invasion is left to the opponent)",
    )
    parser.add_argument(
        "--symmetries",
        choices=["random", "all"],
        default="random",
        help="network: look at each evaluation in one random board orientation (seeded by "
        "--seed), or in all 8 with the results averaged (8 times the work, and "
        "deterministic: policy-only play then repeats its games against a deterministic "
        "opponent); default %(default)s",
    )
    parser.add_argument(
        "--seconds-per-move",
        type=float,
        default=1.0,
        help="network: at most this many seconds per move; time_settings may lower it "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="network: torch CPU threads (default 1)"
    )
    return parser


def _network_player(args: argparse.Namespace) -> Player | None:
    """The network player the flags ask for; ``None`` for the heuristic one."""
    if args.player == "heuristic":
        return None
    path = args.model if args.model is not None else DEFAULT_MODEL
    if args.model is None and not DEFAULT_MODEL.is_file():
        if args.player == "network":
            raise ValueError(f"no --model given and no shipped model at {DEFAULT_MODEL}")
        return None
    # Imported only here: torch takes a second or two to import.
    from engine.nn import ModelFormatError, Predictor, SearchPlayer, load_weights

    try:
        model = load_weights(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ModelFormatError as exc:
        raise ValueError(f"{path} is not a p2pgo model: {exc}") from None
    seconds = args.seconds_per_move if args.seconds_per_move > 0 else None
    return SearchPlayer(
        Predictor(model, threads=args.threads),
        visits=args.visits,
        seconds=seconds,
        seed=args.seed,
        pass_guard=not args.early_pass,  # it never acts under territory scoring
        all_symmetries=args.symmetries == "all",
    )


class _Input:
    """Lines of a file descriptor, read by a thread so a command can check for more.

    The thread uses ``os.read`` on the descriptor, not ``sys.stdin.buffer``: a daemon
    thread blocked inside a buffered reader holds its lock, and the interpreter then
    aborts at exit when it tries to flush that reader.
    """

    def __init__(self, fd: int) -> None:
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._pending: list[bytes | None] = []
        thread = threading.Thread(target=self._read, args=(fd,), daemon=True)
        thread.start()

    def _read(self, fd: int) -> None:
        rest = b""
        try:
            while chunk := os.read(fd, 65536):
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    self._lines.put(line + b"\n")
        except OSError:
            pass  # stdin closed under us: the same as its end
        if rest:
            self._lines.put(rest)
        self._lines.put(None)

    def next(self) -> bytes | None:
        """The next line (blocking); ``None`` at end of input."""
        if self._pending:
            return self._pending.pop()
        return self._lines.get()

    def waiting(self, timeout: float) -> bool:
        """Whether a line (or the end of input) is waiting, waiting up to ``timeout`` s."""
        if self._pending:
            return True
        try:
            self._pending.append(
                self._lines.get(timeout=timeout) if timeout > 0 else self._lines.get_nowait()
            )
        except queue.Empty:
            return False
        return True


def _streaming(engine: GtpEngine, line: str, write: Callable[[str], None], stdin: _Input) -> bool:
    """Run ``line`` if it is a streaming analysis command; whether it was one."""
    words = _preprocess(line).split()
    ident = ""
    if words and words[0].isdigit() and words[0].isascii():
        ident = words.pop(0)
    if not words or words[0] not in ("lz-analyze", "lz-genmove_analyze"):
        return False
    if words[0] not in engine._commands:
        return False  # answered as an unknown command by handle()
    try:
        if words[0] == "lz-analyze":
            engine.analyze_stream(words[1:], write, stdin.waiting, ident)
        else:
            engine.genmove_analyze_stream(words[1:], write, ident)
    except Exception:  # a bug must not end the session: end the reply and go on
        write("\n")
    return True


def run(argv: Sequence[str] | None = None) -> int:
    """GTP on stdin/stdout until ``quit`` or EOF (``engine.gtp.main``)."""
    args = _parser().parse_args(argv)
    try:
        check_size(args.size)
    except CoordinateError as exc:
        _parser().error(str(exc))
    if args.komi is not None and not math.isfinite(args.komi):
        _parser().error("--komi must be a finite number")
    if args.visits < 0 or args.threads < 1 or not math.isfinite(args.seconds_per_move):
        _parser().error("--visits must be >= 0, --threads >= 1, --seconds-per-move finite")
    try:
        player = _network_player(args)
    except ValueError as exc:
        _parser().error(str(exc))
    engine = GtpEngine(
        size=args.size, rules=args.rules, komi=args.komi, seed=args.seed, player=player
    )
    stdin, stdout = _Input(sys.stdin.fileno()), sys.stdout.buffer

    def write(text: str) -> None:
        stdout.write(text.encode("utf-8"))
        stdout.flush()

    try:
        while (raw := stdin.next()) is not None:
            line = raw.decode("utf-8", errors="replace")
            if not _streaming(engine, line, write, stdin):
                reply = engine.handle(line)
                if reply:
                    write(reply)
            if engine.quit_requested:
                break
    except (BrokenPipeError, KeyboardInterrupt):
        return 1  # the controller went away; nothing is left to answer
    return 0
