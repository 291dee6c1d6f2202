"""Generate training games (``p2pgo-selfplay``): any GTP engine against itself, or our network.

Two sources of games, both saved as SGF files with their results:

* ``--engine "gnugo --mode gtp --level 10 ..."``: **one** engine process plays both
  colours (``genmove b``, ``genmove w``, ...), which halves the processes a game needs.
  The first few plies of every game are random legal moves (on the third line or
  further in, on boards of 7x7 and up) so that a deterministic engine still yields
  diverse games; the root comment records how many (see
  :mod:`engine.nn._dataset`: random moves get no policy target). Every engine move is
  checked by our rules; an engine that plays an illegal move, fails or dies loses the
  game from the data set (it is reported, not saved). Games end at two passes (scored
  by area with our dead-stone estimate, as the match referee does), a resignation
  (``B+R``/``W+R``) or the move cap (scored as they stand).
* ``--model FILE``: our network with PUCT search (:class:`engine.Search`) plays itself,
  with Dirichlet noise at the root and moves sampled in proportion to visits for the
  first ``--temperature-moves`` plies; every move's visit counts go into its SGF
  comment for training (the data a Leela-Zero-style loop needs).

``--jobs N`` runs games concurrently: threads for engine games (the work is in the
engine processes), processes for model games (the search is Python). Games are
numbered, and game ``i`` is seeded from ``--seed`` and ``i``, so a run is reproducible
with a deterministic engine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import math
import random
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from engine._coords import CoordinateError, from_gtp, to_gtp
from engine._gtp_client import GtpClient, GtpClientError
from engine._record import GameRecord, Player
from engine._rules import Color, IllegalMove, Move, Position, Rules
from engine._scoring import estimate_dead, score
from engine._sgf import dump_sgf

__all__ = [
    "SelfplayError",
    "SelfplayGame",
    "main",
    "play_engine_game",
    "play_model_game",
    "random_opening_move",
]

_SELFPLAY_MARKER = "p2pgo-selfplay:"  # engine.nn._dataset reads this (kept in step there)


class SelfplayError(Exception):
    """A game could not be completed (engine failure or an illegal engine move)."""


@dataclass(frozen=True, slots=True)
class SelfplayGame:
    """A finished game and how long it took."""

    record: GameRecord
    seconds: float
    random_plies: int


def random_opening_move(position: Position, rng: random.Random) -> Move:
    """A random legal move away from the edge (third line or further in when the board is
    7x7 or larger), not filling an own eye; a pass only when nothing else is legal."""
    color = position.to_play
    n = position.size
    margin = 2 if n >= 7 else 0
    points = [
        p
        for p in position.legal_points()
        if margin <= p[0] < n - margin
        and margin <= p[1] < n - margin
        and not position.is_eye_like(p, color)
    ]
    if not points:
        points = [p for p in position.legal_points() if not position.is_eye_like(p, color)]
    if not points:
        return Move.pass_(color)
    return Move.play(color, rng.choice(points))


def _finish(position: Position, seed: int) -> str:
    """The SGF result of a game that ended on the board (passes or the move cap)."""
    if position.resigned is not None:
        return f"{position.resigned.opponent.letter}+R"
    dead = estimate_dead(position, playouts=48, seed=seed)
    return score(position, dead).result()


def _record(
    position: Position,
    *,
    black: str,
    white: str,
    result: str,
    comments: dict[int, str],
    seed: int,
) -> GameRecord:
    record = GameRecord.from_position(
        position,
        black=Player(black),
        white=Player(white),
        date=datetime.date.today().isoformat(),
        result=result,
        # Unique, so that a game store never takes two runs' games for versions of one.
        game_id=f"selfplay-{seed}-{uuid.uuid4().hex[:12]}",
    )
    return replace(record, comments=comments)


def play_engine_game(
    argv: Sequence[str],
    *,
    size: int = 9,
    komi: float = 7.5,
    random_plies: int = 6,
    seed: int = 0,
    max_moves: int | None = None,
    timeout: float = 120.0,
    name: str | None = None,
) -> SelfplayGame:
    """One game of the GTP engine ``argv`` against itself (see the module docstring).

    The number of random opening plies is drawn from ``random_plies // 2 ..
    random_plies``. Raises :class:`SelfplayError` if the engine fails.
    """
    rng = random.Random(seed)
    started = time.monotonic()
    rules = Rules.named("chinese", komi)
    position = Position(size, rules)
    cap = max_moves if max_moves is not None else 3 * size * size
    plies = rng.randint(random_plies // 2, random_plies) if random_plies > 0 else 0
    engine_name = name or Path(argv[0]).name
    try:
        with GtpClient(argv, timeout=timeout, name=engine_name) as client:
            for command in (f"boardsize {size}", "clear_board", f"komi {komi:g}"):
                client.send(command)
            while not position.is_game_over and position.move_number < cap:
                color = position.to_play
                letter = color.letter.lower()
                if position.move_number < plies:
                    move = random_opening_move(position, rng)
                    client.send(f"play {letter} {to_gtp(move.point, size)}")
                else:
                    move = _parse_move(client.send(f"genmove {letter}").strip(), color, size)
                try:
                    position = position.play(move)
                except IllegalMove as exc:
                    raise SelfplayError(
                        f"{engine_name} played an illegal move {move} at move "
                        f"{position.move_number + 1}: {exc.reason.value}"
                    ) from None
    except GtpClientError as exc:
        raise SelfplayError(f"{engine_name} failed: {exc}") from exc
    result = _finish(position, seed)
    record = _record(
        position,
        black=engine_name,
        white=engine_name,
        result=result,
        comments={0: f"{_SELFPLAY_MARKER} random-plies={plies}"},
        seed=seed,
    )
    return SelfplayGame(record, time.monotonic() - started, plies)


def _parse_move(reply: str, color: Color, size: int) -> Move:
    if reply.lower() == "resign":
        return Move.resign(color)
    try:
        point = from_gtp(reply, size)
    except CoordinateError:
        raise SelfplayError(f"the engine answered {reply[:40]!r}, not a move") from None
    return Move.pass_(color) if point is None else Move.play(color, point)


def play_model_game(
    weights: bytes,
    *,
    size: int = 9,
    komi: float = 7.5,
    visits: int = 64,
    temperature_moves: int = 8,
    dirichlet_alpha: float | None = None,
    seed: int = 0,
    max_moves: int | None = None,
    threads: int = 1,
) -> SelfplayGame:
    """One self-play game of the network in ``weights`` with search; every move's
    comment holds the search's visit counts (see :mod:`engine.nn._dataset`)."""
    # Imported here: torch takes a second or two, and engine games do not need it.
    from engine._search import Search, SearchConfig, sample_move
    from engine.nn import Predictor, load_weights
    from engine.nn._dataset import format_visits
    from engine.nn._evaluator import NetworkEvaluator

    rng = random.Random(seed)
    started = time.monotonic()
    predictor = Predictor(load_weights(weights), threads=threads)
    # AlphaZero's alpha 0.03 for 19x19 scaled to the number of moves: ~0.13 on 9x9.
    alpha = dirichlet_alpha if dirichlet_alpha is not None else 0.03 * 361 / (size * size)
    search = Search(
        NetworkEvaluator(predictor),
        SearchConfig(visits=visits, dirichlet_alpha=alpha, seed=seed),
    )
    position = Position(size, Rules.named("chinese", komi))
    cap = max_moves if max_moves is not None else 3 * size * size
    comments: dict[int, str] = {0: f"{_SELFPLAY_MARKER} random-plies=0 source=model"}
    while not position.is_game_over and position.move_number < cap:
        result = search.run(position)
        counts = result.visit_counts()
        temperature = 1.0 if position.move_number < temperature_moves else 0.0
        point = sample_move(result, temperature, rng)
        move = Move.pass_(position.to_play) if point is None else Move.play(position.to_play, point)
        position = position.play(move)
        if counts:
            comments[position.move_number] = format_visits(counts, size)
        search.advance(move)
    record = _record(
        position,
        black="p2pgo-selfplay",
        white="p2pgo-selfplay",
        result=_finish(position, seed),
        comments=comments,
        seed=seed,
    )
    return SelfplayGame(record, time.monotonic() - started, 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pgo-selfplay",
        description="Generate training games as SGF: a GTP engine against itself "
        "(with random openings), or p2pgo's network with search against itself "
        "(with visit counts in the move comments).",
        epilog='example: p2pgo-selfplay --engine "/usr/games/gnugo --mode gtp --level 1 '
        '--chinese-rules --capture-all-dead --positional-superko" --games 200 --size 9 '
        "--out games/ --jobs 2",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--engine", help="command line of a GTP engine that plays both sides")
    source.add_argument("--model", type=Path, help="a p2pgo weight file to play itself")
    parser.add_argument("--games", type=int, default=10, help="games to play (default 10)")
    parser.add_argument("--size", type=int, default=9, help="board size (default 9)")
    parser.add_argument("--komi", type=float, default=7.5, help="komi (default 7.5)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the SGF files")
    parser.add_argument("--jobs", type=int, default=1, help="games played at once (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument(
        "--random-plies",
        type=int,
        default=6,
        help="engine games: up to this many random opening plies, at least half as many "
        "(default 6)",
    )
    parser.add_argument("--max-moves", type=int, help="move cap (default 3 x board points)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per engine command (default 120)"
    )
    parser.add_argument("--visits", type=int, default=64, help="model games: visits per move")
    parser.add_argument(
        "--temperature-moves",
        type=int,
        default=8,
        help="model games: plies sampled in proportion to visits (default 8)",
    )
    parser.add_argument(
        "--dirichlet-alpha",
        type=float,
        help="model games: root noise (default 0.03 x 361 / board points)",
    )
    return parser


def _play_one(args: argparse.Namespace, index: int, weights: bytes | None) -> SelfplayGame:
    seed = args.seed * 1_000_003 + index
    if weights is not None:
        return play_model_game(
            weights,
            size=args.size,
            komi=args.komi,
            visits=args.visits,
            temperature_moves=args.temperature_moves,
            dirichlet_alpha=args.dirichlet_alpha,
            seed=seed,
            max_moves=args.max_moves,
        )
    argv = shlex.split(args.engine)
    return play_engine_game(
        argv,
        size=args.size,
        komi=args.komi,
        random_plies=args.random_plies,
        seed=seed,
        max_moves=args.max_moves,
        timeout=args.timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``p2pgo-selfplay`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.games < 1 or args.jobs < 1:
        parser.error("--games and --jobs must be at least 1")
    if not 2 <= args.size <= 25:
        parser.error("--size must be 2..25")
    if not math.isfinite(args.komi):
        parser.error("--komi must be a finite number")
    if args.random_plies < 0 or args.visits < 0:
        parser.error("--random-plies and --visits must not be negative")
    weights: bytes | None = None
    if args.model is not None:
        try:
            weights = args.model.read_bytes()
        except OSError as exc:
            parser.error(f"cannot read {args.model}: {exc}")
    elif not shlex.split(args.engine):
        parser.error("--engine is empty")
    args.out.mkdir(parents=True, exist_ok=True)
    pool: concurrent.futures.Executor
    if weights is not None and args.jobs > 1:
        pool = concurrent.futures.ProcessPoolExecutor(args.jobs)
    else:
        pool = concurrent.futures.ThreadPoolExecutor(args.jobs)
    started = time.monotonic()
    saved = failed = 0
    wins = {"B": 0, "W": 0}
    with pool:
        futures = {pool.submit(_play_one, args, i, weights): i for i in range(args.games)}
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            try:
                game = future.result()
            except SelfplayError as exc:
                failed += 1
                print(f"game {index}: failed: {exc}", file=sys.stderr, flush=True)
                continue
            path = args.out / f"selfplay-{args.seed}-{index:05d}.sgf"
            path.write_bytes(dump_sgf(game.record))
            saved += 1
            winner = game.record.result[:1]
            if winner in wins:
                wins[winner] += 1
            print(
                f"game {index}: {game.record.result} after {len(game.record.moves)} moves "
                f"({game.random_plies} random) in {game.seconds:.1f} s -> {path}",
                flush=True,
            )
    elapsed = time.monotonic() - started
    print(
        f"{saved} games saved to {args.out} ({failed} failed) in {elapsed:.0f} s; "
        f"black won {wins['B']}, white won {wins['W']}",
        flush=True,
    )
    return 0 if saved else 1


if __name__ == "__main__":
    sys.exit(main())
