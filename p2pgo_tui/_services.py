"""The collaborators the screens share, gathered once by :func:`p2pgo_tui.make_app`."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from p2pgo_tui._model_choice import ModelChoice
from p2pgo_tui._protocols import Advisor, AiOpponent, GameStorage
from p2pgo_tui._settings import GameSettings

__all__ = ["AppServices", "BackgroundAi"]


class BackgroundAi(Protocol):
    """What answers the AI's requests in the background (the MCP client)."""

    def start(self) -> None:
        """Start it (returns at once)."""
        ...

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until it is ready (True) or has given up (False)."""
        ...

    def close(self, timeout: float = 10.0) -> None:
        """Stop it (blocking; safe to call twice)."""
        ...


def _today() -> str:
    return datetime.date.today().isoformat()


@dataclass(frozen=True, slots=True)
class AppServices:
    """What the screens use; tests build one with fakes."""

    ai: AiOpponent
    ai_name: str
    advisor: Advisor | None
    storage: GameStorage | None
    settings: GameSettings
    player_name: str
    sgf_dir: Path  # where the save/open dialogs start
    today: Callable[[], str] = field(default=_today)
    # The AI's model (None: the AI has none, e.g. the heuristic player or a fake);
    # the federated model is installed into it (see P2PGoApp).
    models: ModelChoice | None = None
    # Started after the first frame; the network waits for it (see P2PGoApp).
    background_ai: BackgroundAi | None = None
