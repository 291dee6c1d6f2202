"""Sequential probability ratio test for gating models, as Leela Zero gated its networks.

A candidate plays a reference engine game after game; after each game the test says
whether the evidence suffices to accept H1 ("the candidate is at least ``elo1`` Elo
stronger"), to accept H0 ("it is at most ``elo0`` stronger"), or to play on. Wald's
SPRT stops with error rates at most ``alpha`` (accepting H1 when H0 holds) and
``beta`` (accepting H0 when H1 holds), usually after far fewer games than a
fixed-size match needs for the same confidence.

Model: each game is a Bernoulli trial whose success probability is the expected score
of an Elo difference, ``p = 1 / (1 + 10^(-elo/400))``. The log-likelihood ratio after
``w`` wins and ``l`` losses is::

    LLR = w * ln(p1/p0) + l * ln((1-p1)/(1-p0))

and a draw (rare in Go with half-point komi) counts as half a win and half a loss.
Stop for H1 when ``LLR >= ln((1-beta)/alpha)``, for H0 when ``LLR <= ln(beta/(1-alpha))``.
This is the exact binomial SPRT (no normal approximation), so it is valid from the
first game; Leela Zero's gating used elo0 = 0, elo1 = 35, alpha = beta = 0.05.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = ["Sprt", "SprtConfig", "SprtDecision", "elo_to_score", "sprt_llr"]


class SprtDecision(enum.Enum):
    CONTINUE = "continue"
    ACCEPT_H1 = "H1: stronger"  # the candidate is at least elo1 stronger: accept it
    ACCEPT_H0 = "H0: not stronger"  # at most elo0 stronger: reject it


def elo_to_score(elo: float) -> float:
    """The expected score per game of a player ``elo`` points stronger."""
    return 1.0 / (1.0 + math.pow(10.0, -elo / 400.0))


@dataclass(frozen=True, slots=True)
class SprtConfig:
    """Hypotheses (Elo) and error rates; every value is checked (ValueError)."""

    elo0: float = 0.0
    elo1: float = 35.0
    alpha: float = 0.05
    beta: float = 0.05

    def __post_init__(self) -> None:
        for name in ("elo0", "elo1", "alpha", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite")
        if not self.elo1 > self.elo0:
            raise ValueError("elo1 must be greater than elo0")
        if abs(self.elo0) > 2000 or abs(self.elo1) > 2000:
            raise ValueError("Elo hypotheses must be within +-2000")
        if not (0 < self.alpha < 0.5 and 0 < self.beta < 0.5):
            raise ValueError("alpha and beta must be between 0 and 0.5")

    @property
    def lower(self) -> float:
        """Accept H0 at or below this log-likelihood ratio."""
        return math.log(self.beta / (1 - self.alpha))

    @property
    def upper(self) -> float:
        """Accept H1 at or above this log-likelihood ratio."""
        return math.log((1 - self.beta) / self.alpha)


def sprt_llr(wins: float, draws: float, losses: float, elo0: float, elo1: float) -> float:
    """The log-likelihood ratio of H1 against H0 for these results (see the module)."""
    if min(wins, draws, losses) < 0:
        raise ValueError("game counts must not be negative")
    p0, p1 = elo_to_score(elo0), elo_to_score(elo1)
    w = wins + draws / 2
    lo = losses + draws / 2
    return w * math.log(p1 / p0) + lo * math.log((1 - p1) / (1 - p0))


class Sprt:
    """The running test: feed it each game's score with :meth:`update`."""

    def __init__(self, config: SprtConfig | None = None) -> None:
        self.config = config or SprtConfig()
        self.wins = 0
        self.draws = 0
        self.losses = 0
        self.decision = SprtDecision.CONTINUE

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    @property
    def llr(self) -> float:
        c = self.config
        return sprt_llr(self.wins, self.draws, self.losses, c.elo0, c.elo1)

    def update(self, score: float) -> SprtDecision:
        """Record one game (1 win, 0.5 draw, 0 loss for the candidate); the decision.

        Games after a decision are still counted, but the decision does not change.
        """
        if score == 1:
            self.wins += 1
        elif score == 0:
            self.losses += 1
        elif score == 0.5:
            self.draws += 1
        else:
            raise ValueError(f"a game scores 1, 0.5 or 0, not {score!r}")
        if self.decision is SprtDecision.CONTINUE:
            llr = self.llr
            if llr >= self.config.upper:
                self.decision = SprtDecision.ACCEPT_H1
            elif llr <= self.config.lower:
                self.decision = SprtDecision.ACCEPT_H0
        return self.decision

    def summary(self) -> str:
        c = self.config
        return (
            f"SPRT elo0={c.elo0:g} elo1={c.elo1:g} alpha={c.alpha:g} beta={c.beta:g}: "
            f"+{self.wins} ={self.draws} -{self.losses}, LLR {self.llr:.2f} "
            f"(bounds {c.lower:.2f}, {c.upper:.2f}): {self.decision.value}"
        )
