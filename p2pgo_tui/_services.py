"""The collaborators the screens share, gathered once by :func:`p2pgo_tui.make_app`."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from p2pgo_tui._protocols import Advisor, AiOpponent, GameStorage
from p2pgo_tui._settings import GameSettings

__all__ = ["AppServices"]


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
