"""What the Rounds screen shows: frozen records read on the network thread.

Nothing here imports trio, libp2p, torch or ``fl``: the records are built by
``p2pgo_tui._fl_runtime`` on the network thread and handed to the UI as values.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

__all__ = ["JoinQuote", "MyStatus", "RoundSummary", "RoundsView"]


class MyStatus(enum.Enum):
    """The player's part in the current (or last) round."""

    IDLE = "idle"  # not taking part
    JOINING = "joining"  # confirmed: takes part in the next round that starts
    READY = "ready"
    TRAINING = "training"
    SUBMITTED = "submitted"
    VERIFIED = "verified"
    REFUSED = "refused"
    FAILED = "failed"
    LEFT = "left"

    @classmethod
    def of(cls, value: str) -> MyStatus:
        """The status named by a participant's status value (unknown ones are idle)."""
        try:
            return cls(value)
        except ValueError:
            return cls.IDLE


@dataclass(frozen=True, slots=True)
class RoundSummary:
    """One round that ended (or the one running), for the history, charts and lineage.

    ``loss`` and ``top1`` are the mean local-training metrics of the participants this
    app runs (the player and, on the embedded network, its bots); None if none trained.
    """

    round_id: int
    outcome: str  # "completed", "aborted", "running"
    reason: str
    participants: int
    parent_version: str
    model_version: str  # "" unless the round made a new model
    seconds: float
    loss: float | None = None
    top1: float | None = None
    mine: str = ""  # the player's status in that round ("" if not in it)


@dataclass(frozen=True, slots=True)
class RoundsView:
    """The rounds as the player sees them now."""

    coordinator: str  # "embedded coordinator" or the coordinator's peer id
    round_id: int | None  # the round running now, else the last one seen
    stage: str  # the coordinator's stage, or what it waits for between rounds
    participants: int  # peers ready (or selected) in the round running now
    sessions: int  # peers connected to the coordinator (-1: unknown)
    next_round_at: float | None  # wall clock of the next paced round, if known
    my_status: MyStatus
    my_reason: str
    training: tuple[int, int]  # (steps done, steps planned) of my local training
    epsilon_spent: float | None  # None until the ledger was read
    epsilon_budget: float
    delta: float
    model_version: str  # the model I hold
    games: int  # my finished games to train on
    min_games: int
    history: tuple[RoundSummary, ...] = ()
    taken_at: float = field(default_factory=time.time)

    @property
    def epsilon_left(self) -> float | None:
        if self.epsilon_spent is None:
            return None
        return max(0.0, self.epsilon_budget - self.epsilon_spent)

    @property
    def in_round(self) -> bool:
        return self.my_status in (
            MyStatus.READY,
            MyStatus.TRAINING,
            MyStatus.SUBMITTED,
        )


@dataclass(frozen=True, slots=True)
class JoinQuote:
    """What joining the next round costs, from the player's privacy ledger.

    ``epsilon_after`` is the ledger's total after the round (``PrivacyLedger.
    epsilon_after`` of the round's privacy event); ``allowed`` is False when that
    exceeds the budget or the player cannot take part, and ``reason`` says why.
    """

    epsilon_spent: float
    epsilon_after: float
    epsilon_budget: float
    delta: float
    noise_multiplier: float
    amplified: bool  # privacy amplification by sampling is claimed for the round
    allowed: bool
    reason: str = ""

    @property
    def cost(self) -> float:
        return max(0.0, self.epsilon_after - self.epsilon_spent)

    @property
    def left_after(self) -> float:
        return max(0.0, self.epsilon_budget - self.epsilon_after)
