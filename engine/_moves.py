"""The vocabulary of the rules: colours, rule sets, moves, and why a move is illegal.

These small value types are shared by every layer that talks about Go (positions,
records, SGF, GTP, the network); :mod:`engine._rules` re-exports them next to
:class:`~engine._rules.Position`, which is where callers import them from.

Handicap: :func:`fixed_handicap_points` follows the GTP v2 specification table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from engine._coords import Point, check_size

__all__ = [
    "Color",
    "IllegalMove",
    "IllegalReason",
    "Move",
    "MoveKind",
    "Rules",
    "ScoringRule",
    "SuperkoRule",
    "fixed_handicap_points",
]

# Board cell values, shared with the padded boards of engine._rules and engine._playout.
_EMPTY, _BLACK, _WHITE, _BORDER = 0, 1, 2, 3


class Color(enum.IntEnum):
    EMPTY = _EMPTY
    BLACK = _BLACK
    WHITE = _WHITE

    @property
    def opponent(self) -> Color:
        if self is Color.EMPTY:
            raise ValueError("EMPTY has no opponent")
        return Color(3 - self.value)

    @property
    def letter(self) -> str:
        return "BW"[self.value - 1] if self is not Color.EMPTY else "."

    @classmethod
    def parse(cls, text: str) -> Color:
        """'b', 'black', 'W', 'white' -> Color."""
        t = text.strip().lower()
        if t in ("b", "black"):
            return cls.BLACK
        if t in ("w", "white"):
            return cls.WHITE
        raise ValueError(f"not a colour: {text!r}")


class SuperkoRule(enum.Enum):
    NONE = "simple-ko"  # only the immediate recapture of a single stone is forbidden
    POSITIONAL = "positional"  # no whole-board position may repeat
    SITUATIONAL = "situational"  # no position may repeat with the same player to move


class ScoringRule(enum.Enum):
    AREA = "area"
    TERRITORY = "territory"


@dataclass(frozen=True, slots=True)
class Rules:
    """A rule set. ``Rules.named("japanese")`` gives the common presets."""

    name: str = "chinese"
    komi: float = 7.5
    scoring: ScoringRule = ScoringRule.AREA
    superko: SuperkoRule = SuperkoRule.POSITIONAL
    suicide_allowed: bool = False

    @classmethod
    def named(cls, name: str, komi: float | None = None) -> Rules:
        key = name.strip().lower().replace("_", "-")
        presets: dict[str, Rules] = {
            "chinese": cls("chinese", 7.5, ScoringRule.AREA, SuperkoRule.POSITIONAL, False),
            "japanese": cls("japanese", 6.5, ScoringRule.TERRITORY, SuperkoRule.NONE, False),
            "tromp-taylor": cls(
                "tromp-taylor", 7.5, ScoringRule.AREA, SuperkoRule.POSITIONAL, True
            ),
            "aga": cls("aga", 7.5, ScoringRule.AREA, SuperkoRule.SITUATIONAL, False),
            "new-zealand": cls("new-zealand", 7.0, ScoringRule.AREA, SuperkoRule.SITUATIONAL, True),
        }
        if key not in presets:
            raise ValueError(f"unknown rules {name!r}; choose one of {', '.join(presets)}")
        preset = presets[key]
        return preset if komi is None else preset.with_komi(komi)

    def with_komi(self, komi: float) -> Rules:
        return Rules(self.name, float(komi), self.scoring, self.superko, self.suicide_allowed)


class MoveKind(enum.Enum):
    PLAY = "play"
    PASS = "pass"
    RESIGN = "resign"


@dataclass(frozen=True, slots=True)
class Move:
    """A move by ``color``: a stone at ``point``, a pass, or a resignation."""

    color: Color
    point: Point | None = None
    kind: MoveKind = MoveKind.PLAY

    def __post_init__(self) -> None:
        if self.color is Color.EMPTY:
            raise ValueError("a move needs a colour")
        if (self.kind is MoveKind.PLAY) != (self.point is not None):
            raise ValueError("a stone move needs a point; a pass or resignation has none")

    @classmethod
    def play(cls, color: Color, point: Point) -> Move:
        # Moves are values; interning them keeps playouts from paying for the frozen
        # dataclass constructor on every move.
        key = (color, point[0], point[1])
        move = _MOVE_CACHE.get(key)
        if move is None:
            move = cls(color, (int(point[0]), int(point[1])), MoveKind.PLAY)
            if len(_MOVE_CACHE) < 4096:
                _MOVE_CACHE[key] = move
        return move

    @classmethod
    def pass_(cls, color: Color) -> Move:
        return _PASSES[color] if color in _PASSES else cls(color, None, MoveKind.PASS)

    @classmethod
    def resign(cls, color: Color) -> Move:
        return cls(color, None, MoveKind.RESIGN)

    @property
    def is_pass(self) -> bool:
        return self.kind is MoveKind.PASS

    @property
    def is_resign(self) -> bool:
        return self.kind is MoveKind.RESIGN


_MOVE_CACHE: dict[tuple[Color, int, int], Move] = {}
_PASSES = {c: Move(c, None, MoveKind.PASS) for c in (Color.BLACK, Color.WHITE)}


class IllegalReason(enum.Enum):
    OCCUPIED = "point is occupied"
    SUICIDE = "suicide is not allowed"
    KO = "ko: the stone cannot be retaken immediately"
    SUPERKO = "superko: the position would repeat"
    WRONG_TURN = "it is the other player's turn"
    GAME_OVER = "the game is over"
    OFF_BOARD = "point is off the board"


class IllegalMove(ValueError):
    """A move the rules forbid; ``reason`` says which rule."""

    def __init__(self, reason: IllegalReason, move: Move | None = None) -> None:
        self.reason = reason
        self.move = move
        super().__init__(f"illegal move: {reason.value}")


def fixed_handicap_points(size: int, stones: int) -> list[Point]:
    """GTP ``fixed_handicap`` placement: star points in the specification's order."""
    check_size(size)
    if size < 7:
        raise ValueError("fixed handicap needs a board of at least 7x7")
    limit = 9 if size % 2 == 1 and size > 7 else 4
    if not 2 <= stones <= limit:
        raise ValueError(f"fixed handicap on {size}x{size} is 2 to {limit} stones")
    edge = 2 if size < 13 else 3  # third line below 13x13, fourth line above
    lo, hi, mid = edge, size - 1 - edge, size // 2
    # (row, col) with row 0 at the top: GTP's D4 on 19x19 is (15, 3).
    d4, q16, d16, q4 = (hi, lo), (lo, hi), (lo, lo), (hi, hi)
    d10, q10, k4, k16, k10 = (mid, lo), (mid, hi), (hi, mid), (lo, mid), (mid, mid)
    order: dict[int, list[Point]] = {
        2: [d4, q16],
        3: [d4, q16, d16],
        4: [d4, q16, d16, q4],
        5: [d4, q16, d16, q4, k10],
        6: [d4, q16, d16, q4, d10, q10],
        7: [d4, q16, d16, q4, d10, q10, k10],
        8: [d4, q16, d16, q4, d10, q10, k4, k16],
        9: [d4, q16, d16, q4, d10, q10, k4, k16, k10],
    }
    return order[stones]
