"""Board states as the MCP model server reads them: SGF text or a compact board string.

``predict_move`` takes a ``board_state`` in one of two forms:

* **SGF** (text starting with ``(``): the position at the end of the main line, with
  the game's rules and komi. The whole game is replayed, so the history the network
  sees (its last-moves planes) and repetition checks are exact. This is what the app
  sends.
* **Compact board string**: fields separated by ``;``::

      ROWS;TO_PLAY[;ko=VERTEX][;komi=NUMBER][;rules=NAME]

  ``ROWS`` are the board's rows from the top (row ``size`` in GTP terms) down,
  separated by ``/``; ``X`` is black, ``O`` white, ``.`` empty (``x``/``o``/``+`` are
  accepted too); there are as many rows as columns (2 to 25). ``TO_PLAY`` is ``b`` or
  ``w`` (or ``black``/``white``). ``ko`` is the GTP vertex the side to move may not
  retake at (simple ko) and must be a real ko shape: the side to move's stone was
  just captured there by a lone stone in atari; the server then takes that capture
  as the last move. ``komi`` defaults to the rules' own (7.5 for ``chinese``, the
  default ``rules``). Example (9x9, black to move; white has just captured a black
  stone at D5 by playing C5, so black may not retake at D5 at once)::

      ........./........./........./..XO...../.XO.O..../..XO...../........./........./.........;b;ko=D5;komi=7.5

  A compact string carries no history, so the network sees no previous moves.

Anything else raises :class:`BoardStateError` with a message that says what is wrong.
"""

from __future__ import annotations

import math

from engine import (
    Color,
    CoordinateError,
    IllegalMove,
    Move,
    Point,
    Position,
    RecordError,
    Rules,
    SgfError,
    from_gtp,
    load_sgf,
    to_gtp,
)

__all__ = [
    "MAX_BOARD_STATE_CHARS",
    "BoardStateError",
    "format_board_state",
    "parse_board_state",
]

# An SGF of a long 19x19 game with comments is tens of kilobytes; this bounds parse work.
MAX_BOARD_STATE_CHARS = 1_000_000
_MAX_KOMI = 1000.0
_BLACK_CHARS = "Xx"
_WHITE_CHARS = "Oo"
_EMPTY_CHARS = ".+"


class BoardStateError(ValueError):
    """A ``board_state`` that is neither a readable SGF nor a valid compact board string."""


def parse_board_state(text: str) -> Position:
    """The position ``text`` describes (see the module docstring)."""
    if not isinstance(text, str):
        raise BoardStateError("board_state must be a string")
    if len(text) > MAX_BOARD_STATE_CHARS:
        raise BoardStateError(
            f"board_state is {len(text)} characters; the limit is {MAX_BOARD_STATE_CHARS}"
        )
    stripped = text.strip()
    if not stripped:
        raise BoardStateError("board_state is empty")
    if stripped.startswith("("):
        return _parse_sgf(stripped)
    return _parse_compact(stripped)


def _parse_sgf(text: str) -> Position:
    try:
        record = load_sgf(text.encode("utf-8"))
        return record.replay()
    except (SgfError, RecordError) as exc:
        raise BoardStateError(f"board_state is not a usable SGF game: {exc}") from None


def _parse_compact(text: str) -> Position:
    fields = [f.strip() for f in text.split(";")]
    if len(fields) < 2:
        raise BoardStateError(
            "a compact board_state is ROWS;TO_PLAY[;ko=VERTEX][;komi=N][;rules=NAME] "
            "(or SGF text starting with '(')"
        )
    rows_text, side = fields[0], fields[1]
    try:
        to_play = Color.parse(side)
    except ValueError:
        raise BoardStateError(f"side to move must be 'b' or 'w', not {side[:20]!r}") from None
    options = _options(fields[2:])
    black, white, size = _rows(rows_text)
    rules = _rules(options.get("rules"), options.get("komi"))
    position = Position(size, rules).with_setup(black, white, to_play)
    for color, stones, libs in position.groups():
        if color is not Color.EMPTY and not libs:
            where = to_gtp(min(stones), size)
            raise BoardStateError(f"the {color.name.lower()} group at {where} has no liberties")
    ko = options.get("ko")
    if ko is not None:
        position = _with_ko(position, ko)
    return position


def _options(fields: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for field in fields:
        if not field:
            continue
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("ko", "komi", "rules"):
            raise BoardStateError(
                f"unknown board_state field {field[:20]!r}; expected ko=, komi= or rules="
            )
        if key in options:
            raise BoardStateError(f"board_state gives {key}= twice")
        options[key] = value.strip()
    return options


def _rows(text: str) -> tuple[list[Point], list[Point], int]:
    rows = [r.strip() for r in text.split("/")]
    size = len(rows)
    if not 2 <= size <= 25:
        raise BoardStateError(f"the board has {size} rows; a board is 2 to 25 rows")
    black: list[Point] = []
    white: list[Point] = []
    for r, row in enumerate(rows):
        if len(row) != size:
            raise BoardStateError(
                f"row {r + 1} has {len(row)} points; a {size}-row board needs {size} per row"
            )
        for c, ch in enumerate(row):
            if ch in _BLACK_CHARS:
                black.append((r, c))
            elif ch in _WHITE_CHARS:
                white.append((r, c))
            elif ch not in _EMPTY_CHARS:
                raise BoardStateError(
                    f"row {r + 1} has {ch!r}; points are X (black), O (white) or . (empty)"
                )
    return black, white, size


def _rules(name: str | None, komi_text: str | None) -> Rules:
    komi: float | None = None
    if komi_text is not None:
        try:
            komi = float(komi_text)
        except ValueError:
            raise BoardStateError(f"komi must be a number, not {komi_text[:20]!r}") from None
        if not math.isfinite(komi) or abs(komi) > _MAX_KOMI:
            raise BoardStateError(f"komi must be a finite number within ±{_MAX_KOMI:g}")
    try:
        return Rules.named(name or "chinese", komi)
    except ValueError as exc:
        raise BoardStateError(str(exc)) from None


def _with_ko(position: Position, vertex: str) -> Position:
    """``position`` with a ko at ``vertex``, made by replaying the capture that made it.

    The engine keeps the ko point as the result of a capture, so the only honest way to
    say "ko here" is to play the capture: put the side to move's stone back at the ko
    point, take away the capturing stone, and let the opponent play it again.
    """
    size = position.size
    try:
        point = from_gtp(vertex, size)
    except CoordinateError as exc:
        raise BoardStateError(f"ko: {exc}") from None
    if point is None:
        raise BoardStateError("ko must be a point, not pass")
    if position[point] is not Color.EMPTY:
        raise BoardStateError(f"ko={vertex}: the ko point must be empty")
    me = position.to_play
    them = me.opponent
    for stone in position.neighbours(point):
        if position[stone] is not them or position.group(stone) != {stone}:
            continue
        if position.liberties(stone) != {point}:
            continue
        mine = [point]
        before = position.with_setup(
            black=mine if me is Color.BLACK else (),
            white=mine if me is Color.WHITE else (),
            to_play=them,
            empty=[stone],
        )
        try:
            after = before.play(Move.play(them, stone))
        except IllegalMove:
            continue
        if after.ko == point and after.same_board(position):
            return after
    raise BoardStateError(
        f"ko={vertex} is not a ko: no lone {them.name.lower()} stone next to it is in "
        "atari with that point as its only liberty, as a stone that just took a ko is"
    )


def format_board_state(position: Position) -> str:
    """The compact board string of ``position`` (no history: see the module docstring)."""
    chars = ".XO"
    cells = position.cells()
    n = position.size
    rows = "/".join("".join(chars[cells[r * n + c]] for c in range(n)) for r in range(n))
    fields = [rows, position.to_play.letter.lower()]
    if position.ko is not None:
        fields.append(f"ko={to_gtp(position.ko, n)}")
    fields.append(f"komi={position.rules.komi:g}")
    if position.rules.name != "chinese":
        fields.append(f"rules={position.rules.name}")
    return ";".join(fields)
