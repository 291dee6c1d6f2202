"""SGF (FF[4]) load and save for :class:`GameRecord`, through sgfmill.

sgfmill parses and serialises; this module maps its tree onto a record and checks
every move with the engine. Two things to know:

* sgfmill's ``(row, col)`` has row 0 at the **bottom**; the engine's row 0 is the
  **top** (see ``_coords``). :func:`_to_engine` / :func:`_to_sgfmill` are the only
  places that convert.
* Only the main line is read (variations are ignored). Setup stones (AB/AW/AE) are
  accepted before the first move; later setup is an :class:`SgfError`, as is a move
  the rules forbid (named by move number) or anything sgfmill cannot parse.

Not representable in SGF, so :func:`dump_sgf` leaves out: a final resignation move
(RE says ``B+R``), comments on such a move, and rules that differ from a named preset
in more than komi (RU carries only the name). Text goes through SGF's text rules:
tabs become spaces and line breaks in one-line fields (names, result, date) become
spaces. The record's ``game_id`` travels in the private property ``GAMEID``.
"""

from __future__ import annotations

import math
from typing import Any

from sgfmill import sgf

from engine._coords import MAX_SIZE, MIN_SIZE, Point, to_gtp
from engine._record import GameRecord, Player, RecordError
from engine._rules import Color, IllegalMove, Move, Position, Rules

__all__ = ["SgfError", "dump_sgf", "load_sgf"]

# SGF RU values (lower-cased) -> engine preset names.
_RULE_ALIASES = {
    "chinese": "chinese",
    "cn": "chinese",
    "japanese": "japanese",
    "jp": "japanese",
    "aga": "aga",
    "nz": "new-zealand",
    "new zealand": "new-zealand",
    "new-zealand": "new-zealand",
    "tromp-taylor": "tromp-taylor",
    "tromp taylor": "tromp-taylor",
}
# Engine preset names -> what other SGF programs write in RU.
_RULE_NAMES = {
    "chinese": "Chinese",
    "japanese": "Japanese",
    "aga": "AGA",
    "new-zealand": "NZ",
    "tromp-taylor": "Tromp-Taylor",
}
_GAME_ID = "GAMEID"
_SGF_COLOR = {"b": Color.BLACK, "w": Color.WHITE}


class SgfError(ValueError):
    """SGF that cannot be read as a legal game; the message says what and where."""


def _to_engine(point: tuple[int, int], size: int) -> Point:
    """sgfmill (row from the bottom, col) -> engine (row from the top, col)."""
    return (size - 1 - point[0], point[1])


def _to_sgfmill(point: Point, size: int) -> tuple[int, int]:
    return (size - 1 - point[0], point[1])


def _rules(name: str | None, komi: float) -> Rules:
    if name is None or not name.strip():
        return Rules.named("chinese", komi)
    preset = _RULE_ALIASES.get(" ".join(name.lower().split()))
    if preset is not None:
        return Rules.named(preset, komi)
    # An unknown rule set keeps its name; play follows the engine's defaults.
    return Rules(name=name.strip(), komi=komi)


def _default_first(handicap: int, moves: tuple[Move, ...] | list[Move]) -> Color:
    """Who moves first when PL is absent: the first mover, else White after handicap."""
    if moves:
        return moves[0].color
    return Color.WHITE if handicap >= 2 else Color.BLACK


def _get(node: Any, ident: str) -> Any:
    return node.get(ident) if node.has_property(ident) else None


def load_sgf(data: bytes) -> GameRecord:
    """Parse SGF bytes into a record, validating every move with the engine.

    Raises :class:`SgfError` (only) for anything unreadable, unsupported or illegal.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SgfError("SGF data must be bytes")
    try:
        game = sgf.Sgf_game.from_bytes(bytes(data))
    except Exception as exc:  # sgfmill signals bad input with several types: one error out
        raise SgfError(f"not readable as SGF: {exc or type(exc).__name__}") from exc
    try:
        return _read_game(game)
    except SgfError:
        raise
    except Exception as exc:  # a property sgfmill cannot interpret, bad text encoding
        raise SgfError(f"bad SGF property: {exc or type(exc).__name__}") from exc


def _read_game(game: Any) -> GameRecord:
    root = game.get_root()
    gm = _get(root, "GM")
    if gm is not None and gm != 1:
        raise SgfError(f"not a game of Go (GM[{gm}])")
    size = game.get_size()
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise SgfError(f"board size {size} is not supported ({MIN_SIZE} to {MAX_SIZE})")
    try:
        komi = float(game.get_komi())
    except ValueError as exc:
        raise SgfError(f"bad komi: {exc}") from exc
    if not math.isfinite(komi):
        raise SgfError(f"bad komi: {komi}")
    handicap = _get(root, "HA") or 0
    if not 0 <= handicap <= size * size:
        raise SgfError(f"bad handicap: {handicap}")
    rules = _rules(_get(root, "RU"), komi)

    black: set[Point] = set()
    white: set[Point] = set()
    moves: list[Move] = []
    comments: dict[int, str] = {}
    pos: Position | None = None
    first: Color | None = _SGF_COLOR[root.get("PL")] if root.has_property("PL") else None
    for node in game.get_main_sequence():
        if node.has_setup_stones():
            if moves:
                raise SgfError(f"setup stones after move {len(moves)} are not supported")
            add_b, add_w, clear = node.get_setup_stones()
            for pts, here, other in ((add_b, black, white), (add_w, white, black)):
                for p in pts:
                    point = _to_engine(p, size)
                    here.add(point)
                    other.discard(point)
            for p in clear:
                black.discard(_to_engine(p, size))
                white.discard(_to_engine(p, size))
        number = len(moves) + 1
        try:
            colour, where = node.get_move()
        except ValueError:
            raise SgfError(f"move {number} is not a point on the {size}x{size} board") from None
        if colour is not None:
            color = _SGF_COLOR[colour]
            move = Move.pass_(color) if where is None else Move.play(color, _to_engine(where, size))
            if pos is None:
                start = first or color
                pos = Position(size, rules).with_setup(black, white, start)
            try:
                pos = pos.play(move, strict_turn=False)
            except IllegalMove as exc:
                vertex = to_gtp(move.point, size) if move.point else "pass"
                raise SgfError(
                    f"move {number} ({color.letter} {vertex}) is illegal: {exc.reason.value}"
                ) from exc
            moves.append(move)
        if node.has_property("C"):
            text = node.get("C")
            index = len(moves)
            comments[index] = f"{comments[index]}\n{text}" if index in comments else text
    try:
        return GameRecord(
            size=size,
            rules=rules,
            handicap=handicap,
            setup_black=tuple(black),
            setup_white=tuple(white),
            first_player=first or _default_first(handicap, moves),
            black=Player(_get(root, "PB") or "", _get(root, "BR") or ""),
            white=Player(_get(root, "PW") or "", _get(root, "WR") or ""),
            date=_get(root, "DT") or "",
            result=_get(root, "RE") or "",
            moves=tuple(moves),
            comments=comments,
            game_id=_get(root, _GAME_ID) or "",
        )
    except RecordError as exc:
        raise SgfError(str(exc)) from exc


def dump_sgf(record: GameRecord) -> bytes:
    """The record as UTF-8 SGF bytes (``load_sgf(dump_sgf(r))`` gives ``r`` back)."""
    size = record.size
    game = sgf.Sgf_game(size, encoding="UTF-8")
    root = game.get_root()
    rules = record.rules
    root.set("RU", _RULE_NAMES.get(rules.name, rules.name))
    root.set("KM", rules.komi)
    if record.handicap:
        root.set("HA", record.handicap)
    for ident, value in (
        ("PB", record.black.name),
        ("BR", record.black.rank),
        ("PW", record.white.name),
        ("WR", record.white.rank),
        ("DT", record.date),
        ("RE", record.result),
        (_GAME_ID, record.game_id),
    ):
        if value:
            root.set(ident, value)
    moves = record.moves[:-1] if record.moves and record.moves[-1].is_resign else record.moves
    if record.first_player is not _default_first(record.handicap, moves):
        root.set("PL", record.first_player.letter.lower())
    if record.setup_black or record.setup_white:
        root.set_setup_stones(
            [_to_sgfmill(p, size) for p in record.setup_black],
            [_to_sgfmill(p, size) for p in record.setup_white],
        )
    if 0 in record.comments:
        root.set("C", record.comments[0])
    for i, move in enumerate(moves, 1):
        if move.is_resign:
            raise SgfError(f"move {i} is a resignation before the end of the game")
        node = game.extend_main_sequence()
        where = None if move.point is None else _to_sgfmill(move.point, size)
        node.set_move(move.color.letter.lower(), where)
        if i in record.comments:
            node.set("C", record.comments[i])
    data: bytes = game.serialise()
    return data
