"""Play two GTP engines against each other: ``python -m engine.match`` or :func:`run_match`.

Each game starts both engines afresh (a crash cannot leak into the next game) and
alternates colours: engine A is black in even-numbered games (0, 2, ...). Our own
engine (:class:`engine.gtp.GtpEngine`, in-process) referees every move:

* a move the referee finds illegal, or a reply that is not a move, forfeits the game
  for the engine that sent it (result ``B+F``/``W+F``), and the reason is reported;
* an engine that crashes, times out or fails a command forfeits too; an engine that
  rejects its opponent's legal move forfeits (it cannot go on with the game);
* a game ends at two passes, a resignation (``B+R``/``W+R``) or the move cap; games
  that end by passes or the cap are scored by the referee's ``final_score`` (area
  scoring under Chinese rules by default). With ``check_scores`` each engine is asked
  for its own ``final_score`` as well, and disagreements are reported.

The summary gives each engine's wins and a 95% Wilson interval for engine A's
score (a draw counts half). Child processes are always ended, whatever happens.
"""

from __future__ import annotations

import argparse
import datetime
import enum
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine._coords import CoordinateError, from_gtp, to_gtp
from engine._gtp_client import (
    GtpClient,
    GtpClientError,
    GtpCommandFailed,
    GtpEngineDied,
    GtpTimeout,
)
from engine._record import Player
from engine._rules import Color, IllegalMove, Move
from engine._sgf import dump_sgf
from engine.gtp import GtpEngine

__all__ = [
    "EngineSpec",
    "GameEnd",
    "GameResult",
    "MatchResult",
    "parse_result",
    "play_game",
    "run_match",
    "wilson_interval",
]


class GameEnd(enum.Enum):
    PASSES = "two passes"
    RESIGNATION = "resignation"
    MOVE_CAP = "move cap"
    ILLEGAL_MOVE = "illegal move"
    ENGINE_FAILURE = "engine failure"  # crash, timeout, failed command, garbage reply


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """An engine to run: a display name and its command line."""

    name: str
    argv: tuple[str, ...]

    @classmethod
    def parse(cls, command: str, name: str | None = None) -> EngineSpec:
        argv = tuple(shlex.split(command))
        if not argv:
            raise ValueError("an engine command line is empty")
        return cls(name or Path(argv[0]).name, argv)


@dataclass(frozen=True, slots=True)
class GameResult:
    """One game: who played which colour, how it ended and who won."""

    index: int
    black: str
    white: str
    result: str  # SGF style: "B+3.5", "W+R", "B+F" (forfeit), "0" (draw)
    end: GameEnd
    moves: int
    seconds: float
    message: str = ""  # why a forfeit happened, in words
    score_disagreements: tuple[str, ...] = ()
    sgf_path: str | None = None

    @property
    def winner_color(self) -> Color | None:
        if self.result.startswith("B+"):
            return Color.BLACK
        if self.result.startswith("W+"):
            return Color.WHITE
        return None

    @property
    def winner(self) -> str | None:
        """The winning engine's name; ``None`` for a draw."""
        color = self.winner_color
        if color is None:
            return None
        return self.black if color is Color.BLACK else self.white

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "black": self.black,
            "white": self.white,
            "result": self.result,
            "winner": self.winner,
            "end": self.end.value,
            "moves": self.moves,
            "seconds": round(self.seconds, 3),
            "message": self.message,
            "score_disagreements": list(self.score_disagreements),
            "sgf": self.sgf_path,
        }


def wilson_interval(successes: float, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95% for the default ``z``)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True, slots=True)
class MatchResult:
    """All games of a match between engine ``a`` and engine ``b``."""

    a: str
    b: str
    games: tuple[GameResult, ...] = field(default_factory=tuple)

    def wins(self, name: str) -> int:
        return sum(1 for g in self.games if g.winner == name)

    @property
    def draws(self) -> int:
        return sum(1 for g in self.games if g.winner is None)

    def score_of_a(self) -> float:
        return self.wins(self.a) + 0.5 * self.draws

    def interval_of_a(self) -> tuple[float, float]:
        """95% Wilson interval of engine A's expected score per game."""
        return wilson_interval(self.score_of_a(), len(self.games))

    def to_json(self) -> dict[str, Any]:
        lo, hi = self.interval_of_a()
        return {
            "engines": [self.a, self.b],
            "games": len(self.games),
            "wins": {self.a: self.wins(self.a), self.b: self.wins(self.b)},
            "draws": self.draws,
            "score_a": self.score_of_a() / len(self.games) if self.games else None,
            "ci95_a": [lo, hi],
            "forfeits": sum(
                1 for g in self.games if g.end in (GameEnd.ILLEGAL_MOVE, GameEnd.ENGINE_FAILURE)
            ),
            "score_disagreements": sum(1 for g in self.games if g.score_disagreements),
            "results": [g.to_json() for g in self.games],
        }

    def summary(self) -> str:
        n = len(self.games)
        lo, hi = self.interval_of_a()
        rate = self.score_of_a() / n if n else 0.0
        return (
            f"{n} games: {self.a} {self.wins(self.a)} wins, {self.b} {self.wins(self.b)} wins, "
            f"{self.draws} draws; {self.a} scores {rate:.1%} "
            f"(95% CI {lo:.1%}..{hi:.1%})"
        )


def parse_result(text: str) -> float | None:
    """Black's margin from a GTP/SGF result (``B+3.5`` -> 3.5, ``W+2`` -> -2, ``0`` -> 0);
    ``None`` for results without a number (``B+R``) or text that is not a result."""
    t = text.strip().upper()
    if t in ("0", "DRAW", "JIGO"):
        return 0.0
    if len(t) < 3 or t[0] not in "BW" or t[1] != "+":
        return None
    try:
        value = float(t[2:])
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return value if t[0] == "B" else -value


class _Forfeit(Exception):
    """Ends a game: ``color`` loses for ``reason``."""

    def __init__(self, color: Color, end: GameEnd, reason: str) -> None:
        self.color = color
        self.end = end
        self.reason = reason
        super().__init__(reason)


def _command(client: GtpClient, color: Color, command: str, timeout: float | None = None) -> str:
    """Send ``command``; any failure forfeits the game for ``color``'s engine."""
    try:
        return client.send(command, timeout)
    except GtpCommandFailed as exc:
        raise _Forfeit(
            color, GameEnd.ENGINE_FAILURE, f"{client.name} failed {command!r}: {exc.message}"
        ) from exc
    except GtpTimeout as exc:
        raise _Forfeit(color, GameEnd.ENGINE_FAILURE, f"timeout: {exc}") from exc
    except GtpEngineDied as exc:
        raise _Forfeit(color, GameEnd.ENGINE_FAILURE, f"crash: {exc}") from exc


def play_game(
    black: EngineSpec,
    white: EngineSpec,
    *,
    index: int = 0,
    size: int = 9,
    komi: float = 7.5,
    rules: str = "chinese",
    max_moves: int | None = None,
    timeout: float = 60.0,
    check_scores: bool = False,
    sgf_dir: Path | None = None,
    stderr_dir: Path | None = None,
    dead_playouts: int = 48,
) -> GameResult:
    """One refereed game between two engines (see the module docstring)."""
    cap = max_moves if max_moves is not None else 4 * size * size
    referee = GtpEngine(size=size, rules=rules, komi=komi, dead_playouts=dead_playouts)
    specs = {Color.BLACK: black, Color.WHITE: white}
    clients: dict[Color, GtpClient] = {}
    started = time.monotonic()
    end = GameEnd.PASSES
    result = ""
    message = ""
    disagreements: list[str] = []
    try:
        for color, spec in specs.items():
            err = stderr_dir / f"{spec.name}.stderr" if stderr_dir is not None else None
            try:
                clients[color] = GtpClient(spec.argv, timeout=timeout, stderr=err, name=spec.name)
            except GtpClientError as exc:
                raise _Forfeit(color, GameEnd.ENGINE_FAILURE, str(exc)) from exc
        for color, client in clients.items():
            for command in (f"boardsize {size}", "clear_board", f"komi {komi:g}"):
                _command(client, color, command)
        color = Color.BLACK
        while True:
            if referee.position.move_number >= cap:
                end = GameEnd.MOVE_CAP
                break
            mover, other = clients[color], clients[color.opponent]
            letter = color.letter.lower()
            reply = _command(mover, color, f"genmove {letter}").strip()
            if reply.lower() == "resign":
                end = GameEnd.RESIGNATION
                result = f"{color.opponent.letter}+R"
                break
            try:
                point = from_gtp(reply, size)
            except CoordinateError:
                raise _Forfeit(
                    color, GameEnd.ILLEGAL_MOVE, f"{mover.name} answered {reply[:40]!r}, not a move"
                ) from None
            move = Move.pass_(color) if point is None else Move.play(color, point)
            vertex = to_gtp(point, size)
            try:
                position = referee.play(move)
            except IllegalMove as exc:
                raise _Forfeit(
                    color,
                    GameEnd.ILLEGAL_MOVE,
                    f"{mover.name} ({color.name.lower()}) played illegal move {vertex} "
                    f"at move {referee.position.move_number + 1}: {exc.reason.value}",
                ) from None
            try:
                other.send(f"play {letter} {vertex}")
            except GtpCommandFailed as exc:
                raise _Forfeit(
                    color.opponent,
                    GameEnd.ENGINE_FAILURE,
                    f"{other.name} rejected the legal move {letter} {vertex}: {exc.message}",
                ) from exc
            except GtpClientError as exc:
                raise _Forfeit(color.opponent, GameEnd.ENGINE_FAILURE, f"crash: {exc}") from exc
            if position.passes >= 2:
                break
            color = color.opponent
        ours = referee.final_score()
        result = result or ours.result()
        if check_scores and end is not GameEnd.RESIGNATION:
            for c, client in clients.items():
                theirs = client.try_send("final_score")
                if theirs is None or parse_result(theirs) != ours.margin:
                    disagreements.append(
                        f"{client.name} ({c.name.lower()}) says {theirs or 'nothing'}, "
                        f"referee says {ours.result()}"
                    )
    except _Forfeit as forfeit:
        end = forfeit.end
        result = f"{forfeit.color.opponent.letter}+F"
        message = forfeit.reason
    finally:
        for client in clients.values():
            client.close()
    sgf_path = None
    if sgf_dir is not None:
        sgf_path = str(_save_sgf(referee, black.name, white.name, result, sgf_dir, index))
    return GameResult(
        index=index,
        black=black.name,
        white=white.name,
        result=result,
        end=end,
        moves=referee.position.move_number,
        seconds=time.monotonic() - started,
        message=message,
        score_disagreements=tuple(disagreements),
        sgf_path=sgf_path,
    )


def _save_sgf(
    referee: GtpEngine, black: str, white: str, result: str, directory: Path, index: int
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    record = replace(
        referee.record(),
        black=Player(black),
        white=Player(white),
        date=datetime.date.today().isoformat(),
        result=result,
    )
    path = directory / f"game-{index:03d}.sgf"
    path.write_bytes(dump_sgf(record))
    return path


def run_match(
    a: EngineSpec,
    b: EngineSpec,
    games: int,
    *,
    size: int = 9,
    komi: float = 7.5,
    rules: str = "chinese",
    max_moves: int | None = None,
    timeout: float = 60.0,
    check_scores: bool = False,
    sgf_dir: Path | None = None,
    stderr_dir: Path | None = None,
    dead_playouts: int = 48,
    on_game: Callable[[GameResult], None] | None = None,
) -> MatchResult:
    """Play ``games`` games, alternating colours (A is black first)."""
    if games < 1:
        raise ValueError("a match needs at least one game")
    if a.name == b.name:
        raise ValueError("the two engines need different names")
    results: list[GameResult] = []
    for i in range(games):
        black, white = (a, b) if i % 2 == 0 else (b, a)
        game = play_game(
            black,
            white,
            index=i,
            size=size,
            komi=komi,
            rules=rules,
            max_moves=max_moves,
            timeout=timeout,
            check_scores=check_scores,
            sgf_dir=sgf_dir,
            stderr_dir=stderr_dir,
            dead_playouts=dead_playouts,
        )
        results.append(game)
        if on_game is not None:
            on_game(game)
    return MatchResult(a.name, b.name, tuple(results))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine.match",
        description=(
            "Play two GTP engines against each other, refereed by p2pgo's rules engine. "
            "Colours alternate; games end at two passes, resignation or the move cap and "
            "are scored by the referee (area scoring by default)."
        ),
        epilog=(
            "example: python -m engine.match "
            "'/usr/games/gnugo --mode gtp --level 0 --chinese-rules' "
            "'p2pgo-gtp --seed 1' --games 10 --size 9 --sgf-dir games/"
        ),
    )
    parser.add_argument("engine_a", help="command line of engine A (black in the first game)")
    parser.add_argument("engine_b", help="command line of engine B")
    parser.add_argument("--name-a", help="display name of engine A (default: program name)")
    parser.add_argument("--name-b", help="display name of engine B (default: program name)")
    parser.add_argument("--games", type=int, default=2, help="number of games (default 2)")
    parser.add_argument("--size", type=int, default=9, help="board size (default 9)")
    parser.add_argument("--komi", type=float, default=7.5, help="komi (default 7.5)")
    parser.add_argument(
        "--rules",
        choices=["chinese", "japanese", "tromp-taylor"],
        default="chinese",
        help="the referee's rules (default chinese: area scoring, positional superko)",
    )
    parser.add_argument(
        "--max-moves", type=int, help="move cap per game (default 4 x board points)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per engine command (default 60)"
    )
    parser.add_argument(
        "--check-scores",
        action="store_true",
        help="also ask each engine for final_score and report disagreements",
    )
    parser.add_argument("--sgf-dir", type=Path, help="save each game as SGF here")
    parser.add_argument(
        "--stderr-dir", type=Path, help="append each engine's stderr to a file here"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON (progress goes to stderr)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        a = EngineSpec.parse(args.engine_a, args.name_a)
        b = EngineSpec.parse(args.engine_b, args.name_b)
    except ValueError as exc:
        parser.error(str(exc))
    if a.name == b.name:
        a = EngineSpec(f"{a.name}-a", a.argv)
        b = EngineSpec(f"{b.name}-b", b.argv)
    if args.games < 1:
        parser.error("--games must be at least 1")
    if not 2 <= args.size <= 25:
        parser.error("--size must be 2..25")
    if not math.isfinite(args.komi):
        parser.error("--komi must be a finite number")
    if args.stderr_dir is not None:
        args.stderr_dir.mkdir(parents=True, exist_ok=True)
    progress = sys.stderr if args.json else sys.stdout

    def report(game: GameResult) -> None:
        line = (
            f"game {game.index + 1}/{args.games}: {game.black} (B) vs {game.white} (W): "
            f"{game.result} after {game.moves} moves ({game.end.value}, {game.seconds:.1f} s)"
        )
        if game.message:
            line += f"; {game.message}"
        for note in game.score_disagreements:
            line += f"; score disagreement: {note}"
        print(line, file=progress, flush=True)

    match = run_match(
        a,
        b,
        args.games,
        size=args.size,
        komi=args.komi,
        rules=args.rules,
        max_moves=args.max_moves,
        timeout=args.timeout,
        check_scores=args.check_scores,
        sgf_dir=args.sgf_dir,
        stderr_dir=args.stderr_dir,
        on_game=report,
    )
    if args.json:
        print(json.dumps(match.to_json(), indent=2))
    else:
        print(match.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
