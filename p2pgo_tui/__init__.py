"""p2pgo's terminal app (Textual): play Go against the local AI.

Build the app with :func:`make_app` from collaborators that satisfy the protocols
below; ``python -m p2pgo_tui`` (the ``p2pgo-tui`` command) wires the real ones.
"""

from p2pgo_tui._advice import ExplainingAdvisor, explain_move
from p2pgo_tui._app import CommandSource, P2PGoApp, make_app
from p2pgo_tui._board import BoardMode, GoBoard
from p2pgo_tui._board_screen import BoardScreen
from p2pgo_tui._games_screen import GamesScreen, ReviewScreen
from p2pgo_tui._panel import GamePanel, PanelView
from p2pgo_tui._protocols import (
    Advisor,
    AiOpponent,
    GameStorage,
    StorageError,
    StoredGame,
    Suggestion,
)
from p2pgo_tui._session import GameSession, Phase, SessionError, describe_result
from p2pgo_tui._settings import GameSettings, SettingsError
from p2pgo_tui._storage import StoreStorage, default_data_dir

__all__ = [
    "Advisor",
    "AiOpponent",
    "BoardMode",
    "BoardScreen",
    "CommandSource",
    "ExplainingAdvisor",
    "GamePanel",
    "GameSession",
    "GameSettings",
    "GameStorage",
    "GamesScreen",
    "GoBoard",
    "P2PGoApp",
    "PanelView",
    "Phase",
    "ReviewScreen",
    "SessionError",
    "SettingsError",
    "StorageError",
    "StoreStorage",
    "StoredGame",
    "Suggestion",
    "default_data_dir",
    "describe_result",
    "explain_move",
    "make_app",
]
