"""The participant's local side: its data and training, its ledger file, what it shows.

`net._fl_participant.FlParticipantService` drives the round protocol; this module holds
what it works on and reports: the `LocalTrainer` protocol and `GoTrainer` (the Go
network trained on the peer's own games), the privacy ledger on disk (`load_ledger`),
the counters (`ParticipantStats`) and the read-only view a screen shows
(`ParticipantView`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import blake3
import cbor2

from fl import NamedTensors, PrivacyEvent, PrivacyLedger
from net._errors import ConfigError
from net._fl_protocol import ModelError, blob_version, load_model

log = logging.getLogger(__name__)
LEDGER_FILE = "ledger.cbor"

TrainProgress = Callable[[int, int], None]
"""Called after every optimizer step with (steps done, steps planned); any thread."""


class LocalTrainer(Protocol):
    """A peer's local data and training (`GoTrainer` for the Go network)."""

    def data_summary(self) -> tuple[int, bytes]:
        """(games held, BLAKE3 over them) for PeerReady; called in the trio thread."""
        ...

    def train(
        self, weights: NamedTensors, hyperparams: Mapping[str, float]
    ) -> tuple[NamedTensors, int, Mapping[str, float]]:
        """(delta, examples, metrics) from the round's weights; runs in a worker thread."""
        ...


class GoTrainer:
    """Trains the Go network on the peer's own finished games with
    `engine.nn.train_local` (the architecture comes from `codec`, learnt from the
    coordinator's model). `config` is an `engine.nn.TrainConfig` (CPU, 1 epoch by
    default); the round's FedProx coefficient overrides its ``prox_mu``.

    The game store is read in `data_summary` (trio thread, where the game service
    writes it too) and the records it found are what `train` uses. `progress`, if
    given, hears every optimizer step (a screen's progress bar).
    """

    def __init__(
        self,
        store: Any,
        codec: Any,
        config: Any = None,
        *,
        progress: TrainProgress | None = None,
    ) -> None:
        self._store = store  # engine.GameStore
        self._codec = codec  # net.GoModelCodec
        self._config = config
        self._progress = progress
        self._records: list[Any] = []
        self._rounds = 0

    def records(self) -> list[Any]:
        """The finished games to train on (override to add other sources)."""
        from engine.nn import records_from_store

        return records_from_store(self._store)

    def data_summary(self) -> tuple[int, bytes]:
        self._records = self.records()
        hasher = blake3.blake3()
        for record_id in sorted(r.record_id for r in self._records):
            hasher.update(bytes.fromhex(record_id))
        return len(self._records), hasher.digest()

    def train(
        self, weights: NamedTensors, hyperparams: Mapping[str, float]
    ) -> tuple[NamedTensors, int, Mapping[str, float]]:
        from engine.nn import TrainConfig, train_local

        if self._codec.config is None:
            raise ModelError("the model architecture is not known yet")
        base = self._config if self._config is not None else TrainConfig(device="cpu")
        self._rounds += 1
        config = replace(
            base,
            prox_mu=float(hyperparams.get("proximal_mu", base.prox_mu)),
            seed=base.seed + self._rounds,  # another batch order each round
        )
        report = self._progress
        result = train_local(
            (self._codec.config, weights),
            self._records,
            config,
            progress=None if report is None else lambda p: report(p.step, p.total),
        )
        metrics = {k: float(v) for k, v in result.metrics.to_dict().items()}
        return result.delta, result.num_examples, metrics


@dataclass
class ParticipantStats:
    sessions_opened: int = 0
    sessions_lost: int = 0
    bad_frames: int = 0
    ignored_messages: int = 0
    rounds_joined: int = 0
    models_adopted: int = 0
    models_synced: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    model_bytes: int = 0  # model blobs fetched


@dataclass(frozen=True, slots=True)
class ParticipantView:
    """Where the peer stands, for a screen (read on the trio thread).

    `round_id` is the round taken part in now or last (-1: none yet), `status` its
    `fl.ParticipantStatus` value ("" before any), `active` whether that round is still
    running for us. `joining` says a join is pending (or the peer joins every round).
    """

    round_id: int
    status: str
    reason: str
    active: bool
    joining: bool
    auto_join: bool
    model_version: str
    epsilon_spent: float | None
    epsilon_budget: float
    delta: float
    last_seen_round: int  # the newest RoundStart seen from any coordinator (-1: none)


def saved_model(path: Path, codec: Any) -> tuple[Any, NamedTensors, str] | None:
    """(codec, weights, version) of the model saved at `path`; None if none or unusable.

    `codec` None learns the format from the file.
    """
    if not path.exists():
        return None
    data = path.read_bytes()
    try:
        if codec is None:
            codec, weights = load_model(data)
        else:
            weights = codec.decode(data)
    except ModelError as err:
        log.warning("ignoring the saved model %s: %s", path, err)
        return None
    return codec, weights, blob_version(data)


def epsilon_after(ledger: PrivacyLedger, event: PrivacyEvent) -> float:
    return ledger.epsilon_after(event)


def load_ledger(path: Path, budget: float, delta: float) -> PrivacyLedger:
    """The saved ledger with this run's budget and delta (a fresh one if none)."""
    if not (math.isfinite(budget) and budget > 0 and 0 < delta < 1):
        raise ConfigError("need a positive epsilon budget and 0 < delta < 1")
    if not path.exists():
        return PrivacyLedger(epsilon_budget=budget, delta=delta)
    try:
        saved = PrivacyLedger.from_dict(cbor2.loads(path.read_bytes()))
    except Exception as err:  # cbor2 and the ledger raise several types; all mean unusable
        raise ConfigError(
            f"privacy ledger {path} is unreadable ({err}); refusing to guess what was spent"
        ) from None
    return replace(saved, epsilon_budget=budget, delta=delta)
