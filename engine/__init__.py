"""p2pgo's Go engine: rules, scoring, SGF, game records and store, search (pure: no I/O
frameworks; the store and GTP do plain file and stdio I/O)."""

from engine._coords import (
    CoordinateError,
    Point,
    from_gtp,
    from_sgf,
    to_gtp,
    to_sgf,
)
from engine._gtp_client import (
    GtpClient,
    GtpClientError,
    GtpCommandFailed,
    GtpEngineDied,
    GtpTimeout,
)
from engine._pass_guard import pass_alternative
from engine._players import HeuristicPlayer
from engine._players import Player as MovePlayer
from engine._record import GameRecord, Player, RecordError
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
from engine._scoring import Score, estimate_dead, game_result, score, unconditionally_alive
from engine._search import Evaluator, MoveStats, Search, SearchConfig, SearchResult
from engine._sgf import SgfError, dump_sgf, load_sgf
from engine._store import GameStore, GameSummary, ImportReport, StoreError, StoreProblem

__all__ = [
    "Color",
    "CoordinateError",
    "Evaluator",
    "GameRecord",
    "GameStore",
    "GameSummary",
    "GtpClient",
    "GtpClientError",
    "GtpCommandFailed",
    "GtpEngineDied",
    "GtpTimeout",
    "HeuristicPlayer",
    "IllegalMove",
    "IllegalReason",
    "ImportReport",
    "Move",
    "MoveKind",
    "MovePlayer",
    "MoveStats",
    "Player",
    "Point",
    "Position",
    "RecordError",
    "Rules",
    "Score",
    "ScoringRule",
    "Search",
    "SearchConfig",
    "SearchResult",
    "SgfError",
    "StoreError",
    "StoreProblem",
    "SuperkoRule",
    "dump_sgf",
    "estimate_dead",
    "fixed_handicap_points",
    "from_gtp",
    "from_sgf",
    "game_result",
    "load_sgf",
    "pass_alternative",
    "score",
    "to_gtp",
    "to_sgf",
    "unconditionally_alive",
]
