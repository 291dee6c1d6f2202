"""Settings, reports and saved state of the round coordinator (`net._fl_coordinator`).

`RoundSettings` is what an operator chooses (relay flags); `CoordinatorReport` is what
one round did, stage by stage (`StageTiming`: how long, why it closed, who it waited for
in vain); the coordinator's state (model blob and round counter) is saved in a folder so
a restarted relay resumes (`load_coordinator_state`).
"""

from __future__ import annotations

import enum
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fl import (
    FedAvg,
    FedProx,
    NamedTensors,
    RoundParams,
    Sampling,
    default_quant_range,
    participant_noise_std,
)
from net._errors import ConfigError
from net._fl_protocol import ModelCodec, ModelError, blob_version, load_model

STATE_FILE = "coordinator.json"
MODEL_FILE = "model.bin"


class StageClose(enum.Enum):
    """Why a stage closed: everyone it waited for answered, or its deadline passed."""

    COMPLETE = "complete"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class RoundSettings:
    """How the coordinator runs rounds (relay flags / ``[rounds]`` config).

    `per_round` is the target number of survivors K (over-selected for
    `expected_dropout`); a round aborts below `min_participants` (the DP noise assumes
    that many). Before the first round the coordinator waits for `wait_for_peers`
    sessions holding the current model (0: `min_participants`). `rounds` 0 runs until
    stopped. `sampling_rate` is the cap on the inclusion probability q: each round
    announces q = min(cap, over-selected K / peers in step), fixed before anyone says
    ready, and peers account with it. The default noise multiplier z = 2 fits about 250
    rounds in epsilon 1 at 300 peers and about 20 at 100; in a network of a handful of
    peers q is near 1 and a peer with the default budget refuses, saying why
    (docs/privacy.md has the table).
    """

    per_round: int = 8
    min_participants: int = 3
    wait_for_peers: int = 0
    ready_s: float = 5.0
    train_s: float = 120.0
    stage_s: float = 15.0
    rounds: int = 0
    interval_s: float = 5.0
    clip_norm: float = 1.0
    noise_multiplier: float = 2.0
    sampling: Sampling = Sampling.POISSON_SECRET
    sampling_rate: float = 1.0
    expected_dropout: float = 0.1
    modulus_bits: int = 16
    pow_difficulty: int = 8
    server_lr: float = 1.0
    proximal_mu: float = 0.0

    def __post_init__(self) -> None:
        if not 2 <= self.min_participants <= self.per_round:
            raise ConfigError("need 2 <= min_participants <= per_round")
        if self.wait_for_peers < 0 or self.rounds < 0:
            raise ConfigError("wait_for_peers and rounds must be >= 0")
        for name in ("ready_s", "train_s", "stage_s", "clip_norm", "noise_multiplier"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number")
        if not math.isfinite(self.interval_s) or self.interval_s < 0:
            raise ConfigError("interval_s must be >= 0")
        if not 0 < self.sampling_rate <= 1 or not 0 <= self.expected_dropout <= 0.9:
            raise ConfigError("need 0 < sampling_rate <= 1 and 0 <= expected_dropout <= 0.9")
        if self.server_lr <= 0 or self.proximal_mu < 0:
            raise ConfigError("need server_lr > 0 and proximal_mu >= 0")

    def params(self, vector_length: int) -> RoundParams:
        """The round parameters for a model of `vector_length` values."""
        noise_std = participant_noise_std(
            self.noise_multiplier, self.clip_norm, self.min_participants
        )
        return RoundParams.create(
            clip_norm=self.clip_norm,
            noise_multiplier=self.noise_multiplier,
            sampling=self.sampling,
            sampling_rate=self.sampling_rate,
            min_participants=self.min_participants,
            target_participants=self.per_round,
            expected_dropout=self.expected_dropout,
            modulus_bits=self.modulus_bits,
            quant_range=default_quant_range(self.clip_norm, noise_std, vector_length),
            pow_difficulty=self.pow_difficulty,
        )

    def strategy(self) -> FedAvg:
        if self.proximal_mu > 0:
            return FedProx(server_lr=self.server_lr, proximal_mu=self.proximal_mu)
        return FedAvg(server_lr=self.server_lr)


@dataclass(frozen=True, slots=True)
class StageTiming:
    """How long a stage took, why it closed, and the selected peers it waited for in
    vain (those that went silent during it)."""

    stage: str
    seconds: float
    closed: StageClose
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CoordinatorReport:
    """What one round did, as the relay prints it (peer ids, not keys)."""

    round_id: int
    completed: bool
    reason: str
    parent_version: str
    model_version: str
    ready: int
    selected: tuple[str, ...]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    stages: tuple[StageTiming, ...]
    rejections: int
    blob_failures: int
    seconds: float
    bytes_in: dict[str, int]
    bytes_out: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "round_id": self.round_id,
            "completed": self.completed,
            "reason": self.reason,
            "parent_version": self.parent_version,
            "model_version": self.model_version,
            "ready": self.ready,
            "selected": list(self.selected),
            "survivors": list(self.survivors),
            "dropped": list(self.dropped),
            "stages": [
                {
                    "stage": s.stage,
                    "seconds": round(s.seconds, 3),
                    "closed": s.closed.value,
                    "missing": list(s.missing),
                }
                for s in self.stages
            ],
            "rejections": self.rejections,
            "blob_failures": self.blob_failures,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class CoordinatorStats:
    sessions_opened: int = 0
    sessions_closed: Counter[str] = field(default_factory=Counter)  # by reason
    frames_in: int = 0
    frames_out: int = 0
    stale_messages: int = 0  # for a round that is over
    internal_errors: int = 0  # the state machine failed on an input (a bug in fl)
    inbox_overflow: int = 0
    undeliverable: int = 0  # a Send to a peer with no session


def load_coordinator_state(state_dir: Path) -> tuple[ModelCodec, NamedTensors, int, str] | None:
    """A saved coordinator's (codec, weights, next round id, parent version), or None.

    The model file is written before the record, so a crash between the two leaves a
    newer model than the record names: the model wins, its parent is then unknown ("").
    Raises `ConfigError` if the saved state is unreadable.
    """
    state_file, model_file = state_dir / STATE_FILE, state_dir / MODEL_FILE
    if not state_file.exists():
        return None
    try:
        record = json.loads(state_file.read_text())
        blob = model_file.read_bytes()
        codec, weights = load_model(blob)
        round_id, version, parent = (
            record["round_id"],
            record["model_version"],
            record["parent_version"],
        )
    except (OSError, ValueError, KeyError, TypeError, ModelError) as err:
        raise ConfigError(f"cannot resume from {state_dir}: {err}") from None
    if isinstance(round_id, bool) or not isinstance(round_id, int) or round_id < 0:
        raise ConfigError(f"cannot resume from {state_dir}: bad round id {round_id!r}")
    return codec, weights, round_id + 1, str(parent) if blob_version(blob) == version else ""
