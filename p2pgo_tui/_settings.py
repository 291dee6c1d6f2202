"""The settings of a new game (size, komi, handicap, colour, rules), validated once."""

from __future__ import annotations

import math
from dataclasses import dataclass

from p2pgo_tui._engine import MAX_SIZE, MIN_SIZE, Color, Point, Rules, fixed_handicap_points

__all__ = ["BOARD_SIZES", "DEFAULT_KOMI", "HANDICAP_KOMI", "GameSettings", "SettingsError"]

# The sizes the new-game dialog offers; the command line accepts any size the engine does.
BOARD_SIZES = (9, 13, 19, 7, 5)
DEFAULT_KOMI = 7.5
# With handicap stones Black already has the advantage: the customary komi is half a point.
HANDICAP_KOMI = 0.5


class SettingsError(ValueError):
    """Settings that do not make a game; the message says which and why."""


@dataclass(frozen=True, slots=True)
class GameSettings:
    """A new game against the AI: ``human`` is the colour the player takes."""

    size: int = 9
    komi: float = DEFAULT_KOMI
    handicap: int = 0
    human: Color = Color.BLACK
    rules: str = "chinese"

    def __post_init__(self) -> None:
        if type(self.size) is not int or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise SettingsError(f"board size must be a whole number from {MIN_SIZE} to {MAX_SIZE}")
        if not isinstance(self.komi, int | float) or not math.isfinite(self.komi):
            raise SettingsError("komi must be a number such as 7.5")
        if abs(self.komi) > self.size * self.size:
            raise SettingsError(f"komi {self.komi:g} is larger than the board")
        if self.human not in (Color.BLACK, Color.WHITE):
            raise SettingsError("your colour must be black or white")
        try:
            Rules.named(self.rules)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        if type(self.handicap) is not int or self.handicap < 0:
            raise SettingsError("handicap must be a number of stones")
        if self.handicap == 1:
            raise SettingsError("a handicap is 2 stones or more (0 for none)")
        if self.handicap:
            try:
                fixed_handicap_points(self.size, self.handicap)
            except ValueError as exc:
                raise SettingsError(f"handicap: {exc}") from None

    @property
    def rule_set(self) -> Rules:
        return Rules.named(self.rules, self.komi)

    def handicap_points(self) -> list[Point]:
        return fixed_handicap_points(self.size, self.handicap) if self.handicap else []

    def describe(self) -> str:
        """One line for the side panel: ``9x9 · chinese · komi 7.5 · handicap 2``."""
        text = f"{self.size}x{self.size} · {self.rules} · komi {self.komi:g}"
        return text + (f" · handicap {self.handicap}" if self.handicap else "")
