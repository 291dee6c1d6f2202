"""The part of the engine the terminal app uses, imported in one place.

Everything comes from ``engine``'s public surface except the coordinate constants
(``GTP_COLUMNS``, the size limits), which it does not export yet.
"""

from __future__ import annotations

from engine import (
    Color,
    CoordinateError,
    GameRecord,
    GameStore,
    GameSummary,
    IllegalMove,
    IllegalReason,
    Move,
    MoveKind,
    Point,
    Position,
    RecordError,
    Rules,
    Score,
    SgfError,
    StoreError,
    dump_sgf,
    estimate_dead,
    fixed_handicap_points,
    game_result,
    load_sgf,
    score,
    to_gtp,
)
from engine import Player as RecordPlayer
from engine._coords import GTP_COLUMNS, MAX_SIZE, MIN_SIZE

__all__ = [
    "GTP_COLUMNS",
    "MAX_SIZE",
    "MIN_SIZE",
    "Color",
    "CoordinateError",
    "GameRecord",
    "GameStore",
    "GameSummary",
    "IllegalMove",
    "IllegalReason",
    "Move",
    "MoveKind",
    "Point",
    "Position",
    "RecordError",
    "RecordPlayer",
    "Rules",
    "Score",
    "SgfError",
    "StoreError",
    "dump_sgf",
    "estimate_dead",
    "fixed_handicap_points",
    "game_result",
    "load_sgf",
    "score",
    "to_gtp",
]
