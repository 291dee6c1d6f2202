"""p2pgo's Go engine: rules, scoring, coordinates (pure; no I/O frameworks)."""

from engine._coords import (
    CoordinateError,
    Point,
    from_gtp,
    from_sgf,
    to_gtp,
    to_sgf,
)
from engine._rules import (
    Color,
    IllegalMove,
    IllegalReason,
    Move,
    MoveKind,
    Position,
    Rules,
    ScoringRule,
    SuperkoRule,
    fixed_handicap_points,
)

__all__ = [
    "Color",
    "CoordinateError",
    "IllegalMove",
    "IllegalReason",
    "Move",
    "MoveKind",
    "Point",
    "Position",
    "Rules",
    "ScoringRule",
    "SuperkoRule",
    "fixed_handicap_points",
    "from_gtp",
    "from_sgf",
    "to_gtp",
    "to_sgf",
]
