"""The engine as a GTP v2 program (``p2pgo-gtp``), for Sabaki, GoGui, twogtp and KGS clients.

Theory of operation
-------------------
:class:`GtpEngine` is the whole protocol without I/O: ``handle(line)`` takes one line
of input and returns the text to write back (``""`` for blank and comment lines).
:func:`main` is a thin loop that feeds it stdin and flushes each reply to stdout.

Input is cleaned as the GTP v2 specification says (control characters dropped, tabs
made spaces, ``#`` comments cut), an optional numeric command id is echoed in the
reply (``12 genmove b`` -> ``=12 D4``), and every failure is a ``? message`` reply:
a command can never stop the engine, whatever bytes it is made of.

Game state is a stack of immutable :class:`Position` values, so ``undo`` is a pop.
``play`` accepts either colour at any time (GTP semantics, ``strict_turn=False``).
Play may continue after two passes (as in a KGS clean-up phase): the game goes on
from the position after the first of those passes, which has the same stones, no
ko, and the whole repetition history.

Scoring (``final_score``, ``final_status_list``) uses the rule set chosen with
``--rules``: area scoring for ``chinese`` and ``tromp-taylor``, territory scoring for
``japanese``, with the dead stones proposed by :func:`engine._scoring.estimate_dead`.
Moves come from a :class:`Player` (by default :class:`HeuristicPlayer`).

A :class:`SearchingPlayer` (the network with search, :class:`engine.nn.SearchPlayer`)
also gets a time budget per move from ``time_settings``/``time_left``: the remaining
main time divided by the moves we still expect to play, or the byo-yomi period per
stone, less a safety margin (see :meth:`GtpEngine.move_time`). It also answers
``lz-analyze`` and ``lz-genmove_analyze`` in Leela Zero's format, which Sabaki reads::

    info move D4 visits 120 winrate 5312 prior 1834 order 0 pv D4 E6 info move ...

winrate and prior are in 1/10000 for the side to move; the interval is in
centiseconds. GTP has no way to interrupt a command, so streaming works like this in
:func:`main`: a reader thread queues input lines; ``lz-analyze`` replies ``=``, then
searches for one interval at a time and writes one ``info`` line after each, until a
line of input is waiting; then it ends the reply with a blank line and the waiting
command runs. (The next command is answered within one interval.) Called through
the pure :meth:`GtpEngine.handle`, ``lz-analyze`` runs a single interval and returns
one ``info`` line.

The analysis commands live in :mod:`engine._gtp_analysis` (a mixin of
:class:`GtpEngine`), and the error type and argument parsing in
:mod:`engine._gtp_parse`; this module re-exports their public names.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from engine._coords import CoordinateError, Point, check_size, from_gtp, to_gtp
from engine._gtp_analysis import AnalysisCommands, SearchingPlayer, format_analysis
from engine._gtp_parse import GtpError, _args, _color, _int, _one_line
from engine._gtp_parse import _preprocess as _preprocess  # engine._gtp_main imports it here
from engine._players import HeuristicPlayer, Player
from engine._record import GameRecord, RecordError
from engine._rules import (
    Color,
    IllegalMove,
    Move,
    Position,
    Rules,
    fixed_handicap_points,
)
from engine._scoring import Score, estimate_dead, score
from engine._sgf import SgfError, dump_sgf, load_sgf

__all__ = [
    "DEFAULT_MODEL",
    "ENGINE_NAME",
    "ENGINE_VERSION",
    "GtpEngine",
    "GtpError",
    "SearchingPlayer",
    "format_analysis",
    "main",
]

# The model shipped with the repository; p2pgo-gtp plays with it unless told otherwise.
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default-9x9.cbor"
ENGINE_NAME = "p2pgo"
ENGINE_VERSION = "0.1.0"
# An SGF file larger than this is not a game record; refuse rather than read it all.
_MAX_SGF_BYTES = 8 * 1024 * 1024


class GtpEngine(AnalysisCommands):
    """GTP v2 as a pure function of lines; see the module docstring.

    ``rules`` is a preset name for :meth:`Rules.named` (``chinese``, ``japanese``,
    ``tromp-taylor``); ``komi`` defaults to the preset's. ``player`` chooses moves for
    ``genmove``/``reg_genmove`` and ``cleanup_player`` for ``kgs-genmove_cleanup``
    (both default to a :class:`HeuristicPlayer` seeded with ``seed``).
    """

    def __init__(
        self,
        *,
        size: int = 19,
        rules: str = "chinese",
        komi: float | None = None,
        seed: int = 0,
        player: Player | None = None,
        cleanup_player: Player | None = None,
        dead_playouts: int = 48,
    ) -> None:
        check_size(size)
        self._rules = Rules.named(rules, komi)
        self._seed = seed
        self._rng = random.Random(seed)
        self._player: Player = player or HeuristicPlayer(seed)
        self._cleanup: Player = cleanup_player or HeuristicPlayer(seed, cleanup=True)
        self._dead_playouts = dead_playouts
        self._dead_cache: tuple[Position, frozenset[Point]] | None = None
        self.time_settings: tuple[int, int, int] | None = None
        self.time_left: dict[Color, tuple[int, int]] = {}
        self.quit_requested = False
        self._handicap = 0
        self._stack: list[Position] = []
        self._reset(size)
        self._commands: dict[str, Callable[[list[str]], str]] = {
            "protocol_version": lambda a: "2",
            "name": lambda a: ENGINE_NAME,
            "version": lambda a: ENGINE_VERSION,
            "known_command": self._known_command,
            "list_commands": lambda a: "\n".join(self._commands),
            "quit": self._quit,
            "boardsize": self._boardsize,
            "clear_board": self._clear_board,
            "komi": self._komi,
            "play": self._play,
            "genmove": self._genmove,
            "kgs-genmove_cleanup": self._genmove_cleanup,
            "reg_genmove": self._reg_genmove,
            "undo": self._undo,
            "showboard": self._showboard,
            "final_score": self._final_score,
            "final_status_list": self._final_status_list,
            "fixed_handicap": self._fixed_handicap,
            "place_free_handicap": self._place_free_handicap,
            "set_free_handicap": self._set_free_handicap,
            "time_settings": self._time_settings,
            "time_left": self._time_left,
            "loadsgf": self._loadsgf,
            "printsgf": self._printsgf,
        }
        if isinstance(self._player, SearchingPlayer):
            self._commands["lz-analyze"] = self._lz_analyze
            self._commands["lz-genmove_analyze"] = self._lz_genmove_analyze

    # ---- state ----------------------------------------------------------------------

    @property
    def position(self) -> Position:
        """The current position."""
        return self._stack[-1]

    @property
    def rules(self) -> Rules:
        """The rule set used for scoring (komi included)."""
        return self._rules

    @property
    def size(self) -> int:
        return self.position.size

    def _reset(self, size: int, root: Position | None = None, handicap: int = 0) -> None:
        self._stack = [root or Position(size, self._rules)]
        self._handicap = handicap
        self._dead_cache = None

    def _playable(self) -> Position:
        """The position a new move is played on (see "after two passes" above)."""
        pos = self.position
        if pos.passes >= 2 and pos.parent is not None:
            return pos.parent
        return pos

    def play(self, move: Move) -> Position:
        """Play ``move`` (either colour) and return the new position.

        Raises :class:`IllegalMove` for a move the rules forbid; a resignation is not
        a board move and raises ``ValueError``.
        """
        if move.is_resign:
            raise ValueError("a resignation is not played on the board")
        new = self._playable().play(move, strict_turn=False)
        self._stack.append(new)
        return new

    def record(self) -> GameRecord:
        """The game so far as a :class:`GameRecord` (what ``printsgf`` writes)."""
        pos = self.position
        record = GameRecord.from_position(pos, handicap=self._handicap)
        return replace(record, rules=pos.rules.with_komi(self._rules.komi))

    # ---- the protocol ---------------------------------------------------------------

    def handle(self, line: str) -> str:
        """Answer one line of GTP input; ``""`` when the line holds no command."""
        text = _preprocess(line)
        if not text:
            return ""
        words = text.split()
        ident = ""
        if words[0].isdigit() and words[0].isascii():
            ident = words.pop(0)
            if not words:
                return f"?{ident} syntax error: a command id needs a command\n\n"
        name, args = words[0], words[1:]
        command = self._commands.get(name)
        try:
            if command is None:
                raise GtpError("unknown command")
            body = command(args)
        except GtpError as exc:
            return f"?{ident} {_one_line(str(exc)).strip()}\n\n"
        except Exception as exc:  # a bug must not end the session: report it instead
            return (
                f"?{ident} internal error: {type(exc).__name__}: {_one_line(str(exc)).strip()}\n\n"
            )
        body = _one_line(body)
        return f"={ident} {body}\n\n" if body else f"={ident}\n\n"

    def _known_command(self, args: list[str]) -> str:
        _args(args, 1, "known_command COMMAND")
        return "true" if args[0] in self._commands else "false"

    def _quit(self, args: list[str]) -> str:
        self.quit_requested = True
        return ""

    # ---- setup ----------------------------------------------------------------------

    def _boardsize(self, args: list[str]) -> str:
        _args(args, 1, "boardsize SIZE")
        size = _int(args[0], "size")
        try:
            check_size(size)
        except CoordinateError:
            raise GtpError("unacceptable size") from None
        self._reset(size)
        return ""

    def _clear_board(self, args: list[str]) -> str:
        self._reset(self.size)
        return ""

    def _komi(self, args: list[str]) -> str:
        _args(args, 1, "komi FLOAT")
        try:
            komi = float(args[0])
        except ValueError:
            raise GtpError("syntax error: komi is not a float") from None
        if not math.isfinite(komi) or abs(komi) > 10_000:
            raise GtpError("syntax error: komi must be a finite number of points")
        # Komi only matters when scoring, so the game's positions keep their rules.
        self._rules = self._rules.with_komi(komi)
        self._dead_cache = None
        return ""

    def _require_empty(self) -> None:
        pos = self.position
        if pos.stones(Color.BLACK) or pos.stones(Color.WHITE) or len(self._stack) > 1:
            raise GtpError("board not empty")

    def _set_handicap(self, points: Sequence[Point]) -> str:
        root = Position(self.size, self._rules).with_setup(black=points, to_play=Color.WHITE)
        self._reset(self.size, root, handicap=len(points))
        return " ".join(to_gtp(p, self.size) for p in points)

    def _handicap_count(self, args: list[str], usage: str) -> int:
        _args(args, 1, usage)
        n = _int(args[0], "number of stones")
        if not 2 <= n < self.size * self.size:
            raise GtpError("invalid number of stones")
        return n

    def _fixed_handicap(self, args: list[str]) -> str:
        n = self._handicap_count(args, "fixed_handicap NUMBER")
        self._require_empty()
        try:
            points = fixed_handicap_points(self.size, n)
        except ValueError:
            raise GtpError("invalid number of stones") from None
        return self._set_handicap(points)

    def _place_free_handicap(self, args: list[str]) -> str:
        n = self._handicap_count(args, "place_free_handicap NUMBER")
        self._require_empty()
        size = self.size
        # The fixed star points are good handicap stones; beyond them, random points.
        points: list[Point] = []
        for k in range(min(n, 9), 1, -1):
            try:
                points = fixed_handicap_points(size, k)
                break
            except ValueError:
                continue
        rest = [(r, c) for r in range(size) for c in range(size) if (r, c) not in points]
        self._rng.shuffle(rest)
        points += rest[: n - len(points)]
        return self._set_handicap(points)

    def _set_free_handicap(self, args: list[str]) -> str:
        self._require_empty()
        if not 2 <= len(args) < self.size * self.size:
            raise GtpError("bad vertex list")
        points: list[Point] = []
        for vertex in args:
            try:
                point = from_gtp(vertex, self.size)
            except CoordinateError:
                raise GtpError("bad vertex list") from None
            if point is None or point in points:
                raise GtpError("bad vertex list")
            points.append(point)
        self._set_handicap(points)
        return ""

    def _time_settings(self, args: list[str]) -> str:
        _args(args, 3, "time_settings MAIN_TIME BYO_YOMI_TIME BYO_YOMI_STONES")
        values = [_int(a, "time") for a in args]
        if any(v < 0 for v in values):
            raise GtpError("syntax error: times must not be negative")
        self.time_settings = (values[0], values[1], values[2])
        self.time_left = {}  # a new clock: reports about the old one no longer hold
        return ""

    def _time_left(self, args: list[str]) -> str:
        _args(args, 3, "time_left COLOR TIME STONES")
        color = _color(args[0])
        seconds, stones = _int(args[1], "time"), _int(args[2], "stones")
        if seconds < 0 or stones < 0:
            raise GtpError("syntax error: time and stones must not be negative")
        self.time_left[color] = (seconds, stones)
        return ""

    # ---- moves ----------------------------------------------------------------------

    def _play(self, args: list[str]) -> str:
        _args(args, 2, "play COLOR VERTEX")
        color = _color(args[0])
        try:
            point = from_gtp(args[1], self.size)
        except CoordinateError:
            raise GtpError("invalid coordinate") from None
        move = Move.pass_(color) if point is None else Move.play(color, point)
        try:
            self.play(move)
        except IllegalMove:
            raise GtpError("illegal move") from None
        return ""

    def _position_for(self, color: Color) -> Position:
        pos = self._playable()
        if pos.to_play is not color:
            # Asked for the other colour: let the player see that colour to move. The
            # move is still checked against the real game below (repetition included).
            pos = pos.with_setup(to_play=color)
        return pos

    def move_time(self, color: Color) -> float | None:
        """Seconds to spend on ``color``'s next move under the clock, ``None`` if untimed.

        From ``time_settings`` (main, byo-yomi time, byo-yomi stones) and the latest
        ``time_left``: in byo-yomi, the period's time over its stones; in main time, the
        remaining time over the moves we expect still to play (half of 90% of the
        board's points less the moves played, at least 15% of the points), but not less
        than a byo-yomi stone's share. 90% of that, less 0.1 s for overheads.
        """
        if self.time_settings is None:
            return None
        main_time, byo_time, byo_stones = self.time_settings
        if byo_time > 0 and byo_stones == 0:
            return None  # GTP: byo-yomi time without stones means no time limit
        remaining, stones = self.time_left.get(color, (main_time, 0))
        per_stone = byo_time / byo_stones if byo_stones > 0 else 0.0
        if stones > 0:
            budget = remaining / stones
        else:
            points = self.size * self.size
            moves_left = max(0.15 * points, (0.9 * points - self.position.move_number) / 2)
            budget = max(remaining / moves_left, per_stone)
        return max(0.05, 0.9 * budget - 0.1)

    def _choose(self, player: Player, color: Color) -> Move:
        pos = self._position_for(color)
        if isinstance(player, SearchingPlayer):
            move = player.choose_with_budget(pos, self.move_time(color))
        else:
            move = player.choose(pos)
        if move.color is not color:
            raise GtpError(f"the player answered for {move.color.name.lower()}")
        return move

    def _generate(self, args: list[str], player: Player, commit: bool) -> str:
        _args(args, 1, "COLOR")
        color = _color(args[0])
        move = self._choose(player, color)
        if move.is_resign:
            return "resign"
        if commit:
            move = self._play_or_pass(move)
        return to_gtp(move.point, self.size)

    def _genmove(self, args: list[str]) -> str:
        return self._generate(args, self._player, commit=True)

    def _genmove_cleanup(self, args: list[str]) -> str:
        return self._generate(args, self._cleanup, commit=True)

    def _reg_genmove(self, args: list[str]) -> str:
        return self._generate(args, self._player, commit=False)

    def _undo(self, args: list[str]) -> str:
        if len(self._stack) < 2:
            raise GtpError("cannot undo")
        self._stack.pop()
        return ""

    # ---- display and scoring --------------------------------------------------------

    def _showboard(self, args: list[str]) -> str:
        pos = self.position
        size = pos.size
        letters = "   " + " ".join(to_gtp((0, c), size)[0] for c in range(size))
        cells = pos.cells()
        lines = [letters]
        for r in range(size):
            row = " ".join(".XO"[cells[r * size + c]] for c in range(size))
            lines.append(f"{size - r:>2} {row} {size - r}")
        lines.append(letters)
        black, white = pos.captures
        lines.append(
            f"X black captured {black}, O white captured {white}; "
            f"{pos.to_play.name.lower()} to play, move {len(self._stack) - 1}"
        )
        return "\n" + "\n".join(lines)

    def dead_stones(self) -> frozenset[Point]:
        """The engine's dead-stone estimate for the current position (cached)."""
        pos = self.position
        if self._dead_cache is None or self._dead_cache[0] is not pos:
            dead = estimate_dead(pos, playouts=self._dead_playouts, seed=self._seed)
            self._dead_cache = (pos, dead)
        return self._dead_cache[1]

    def final_score(self) -> Score:
        """The current position scored with the engine's dead-stone estimate."""
        return score(self.position, self.dead_stones(), self._rules)

    def _final_score(self, args: list[str]) -> str:
        return self.final_score().result()

    def _final_status_list(self, args: list[str]) -> str:
        _args(args, 1, "final_status_list alive|dead|seki")
        status = args[0].lower()
        if status not in ("alive", "dead", "seki"):
            raise GtpError("syntax error: status is alive, dead or seki")
        if status == "seki":
            return ""  # the estimator does not recognise seki; see engine._scoring
        pos = self.position
        dead = self.dead_stones()
        stones = pos.stones(Color.BLACK) + pos.stones(Color.WHITE)
        chosen = sorted(p for p in stones if (p in dead) == (status == "dead"))
        return " ".join(to_gtp(p, pos.size) for p in chosen)

    # ---- SGF ------------------------------------------------------------------------

    def _loadsgf(self, args: list[str]) -> str:
        if not 1 <= len(args) <= 2:
            raise GtpError("syntax error: expected loadsgf FILENAME [MOVE_NUMBER]")
        until = _int(args[1], "move number") if len(args) == 2 else None
        if until is not None and until < 1:
            raise GtpError("syntax error: move number starts at 1")
        path = Path(args[0])
        try:
            with path.open("rb") as f:
                data = f.read(_MAX_SGF_BYTES + 1)
        except OSError as exc:
            raise GtpError(f"cannot load file: {exc.strerror or exc}") from None
        if len(data) > _MAX_SGF_BYTES:
            raise GtpError("cannot load file: larger than a game record can be")
        try:
            record = load_sgf(data)
            positions = []
            # "loadsgf FILE n" is the position before move n, that is after n-1 moves.
            for i, pos in enumerate(record.positions()):
                if until is not None and i >= until:
                    break
                positions.append(pos)
        except (SgfError, RecordError) as exc:
            raise GtpError(f"cannot load file: {exc}") from None
        self._rules = self._rules.with_komi(record.rules.komi)
        self._reset(record.size, positions[0], handicap=record.handicap)
        self._stack.extend(positions[1:])
        return ""

    def _printsgf(self, args: list[str]) -> str:
        if len(args) > 1:
            raise GtpError("syntax error: expected printsgf [FILENAME]")
        data = dump_sgf(self.record())
        if not args:
            return data.decode("utf-8", errors="replace")
        try:
            Path(args[0]).write_bytes(data)
        except OSError as exc:
            raise GtpError(f"cannot write file: {exc.strerror or exc}") from None
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``p2pgo-gtp`` console script: GTP on stdin/stdout until ``quit`` or EOF."""
    from engine._gtp_main import run  # the program lives apart from the protocol

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
