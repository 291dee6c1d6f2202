"""`p2pgo-sim --train`: simulated peers really train the Go network on their own games.

The game set is split once, deterministically:

* **held out**: the games whose BLAKE3 record id sorts first, `held_out_fraction` of
  the usable games (at least one). Record ids are content hashes, so the split does not
  depend on file names or order. Both models are measured on these games only.
* **peer slices (non-IID)**: the remaining games are sorted by (winner, first move,
  record id) and dealt to the peers as contiguous chunks of near-equal size. A peer
  therefore holds mostly games one colour won, with similar openings: skewed value
  targets and skewed early positions, as real players' collections are.

Each round the selected participants run `engine.nn.train_local` on their slice from
the round's weights (one epoch, or `local_steps` optimizer steps), and their deltas go
through the real round protocol (clipping, DP noise, SecAgg, signed update). Next to
it a **centralised baseline** trains on the union of the same slices, continuing from
its own previous weights, for as many optimizer steps as the round's participants took
together, so both sides process the same number of examples per round.

Both are evaluated after every round on the held-out games: top-1/top-3 move accuracy
and the value head's binary cross-entropy. Note that DP noise is calibrated to the
clipping norm, not to the model size: with a few peers and the default noise
multiplier 1.0 the noise on the mean update dwarfs a small model's signal, which is
exactly what the comparison is meant to show; lower `--noise-multiplier` (and raise
`--epsilon-budget`) to see the federated optimisation on its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine import GameRecord
from engine.nn import (
    DatasetError,
    ExampleArrays,
    ExampleSet,
    Metrics,
    ModelConfig,
    PolicyValueNet,
    TrainConfig,
    arrays_to_model,
    evaluate,
    examples_from_record,
    load_records,
    model_to_arrays,
    result_targets,
    train_local,
)
from fl._errors import FlInputError
from fl._round_participant import TrainFn
from fl._round_sim import RoundReport, SimConfig, Simulation
from fl._round_update import tensors_version
from fl._tensors import NamedTensors

__all__ = [
    "GameSlices",
    "ModelScore",
    "TrainRoundReport",
    "TrainSetup",
    "TrainingSimulation",
    "deal_games",
    "load_slices",
]

_DEVICE = "cpu"  # the simulator measures CPU peers; determinism matters more than speed


@dataclass(frozen=True, slots=True)
class TrainSetup:
    """What `--train` needs besides the round protocol's `SimConfig`."""

    games: Path
    blocks: int = 2
    channels: int = 16
    local_steps: int | None = None
    """Optimizer steps per participant per round; None: one epoch of its slice."""
    lr: float = 1e-3
    batch_size: int = 32
    held_out_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.local_steps is not None and self.local_steps < 1:
            raise FlInputError("local_steps must be >= 1")
        if not 0.0 < self.held_out_fraction < 1.0:
            raise FlInputError("held_out_fraction must be between 0 and 1 (exclusive)")
        if not (math.isfinite(self.lr) and self.lr > 0) or self.batch_size < 1:
            raise FlInputError("lr must be > 0 and batch_size >= 1")

    def model_config(self) -> ModelConfig:
        """A small network: heads scaled with the trunk so tiny runs stay tiny."""
        try:
            return ModelConfig(
                blocks=self.blocks,
                channels=self.channels,
                head_channels=max(4, self.channels // 2),
                value_hidden=max(4, self.channels),
                global_pool_every=min(3, self.blocks),
            )
        except ValueError as exc:
            raise FlInputError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class GameSlices:
    """The peers' non-IID training slices and the held-out games (see the module doc)."""

    peers: tuple[tuple[GameRecord, ...], ...]
    held_out: tuple[GameRecord, ...]
    skipped: int
    """Files or games that gave no examples (unreadable, no result, no moves)."""


@dataclass(frozen=True, slots=True)
class ModelScore:
    """A model measured on the held-out games."""

    top1: float
    top3: float
    value_loss: float

    @staticmethod
    def of(metrics: Metrics) -> ModelScore:
        return ModelScore(metrics.top1, metrics.top3, metrics.value_loss)

    def to_json(self) -> dict[str, float]:
        return {
            "top1": round(self.top1, 4),
            "top3": round(self.top3, 4),
            "value_loss": round(self.value_loss, 4),
        }


@dataclass(frozen=True, slots=True)
class TrainRoundReport:
    """One round of `--train`: the protocol's report plus both models' held-out scores."""

    protocol: RoundReport
    federated: ModelScore
    central: ModelScore
    train_steps: int
    """Optimizer steps all this round's participants took together (and the baseline)."""
    central_seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            **self.protocol.to_json(),
            "federated": self.federated.to_json(),
            "central": self.central.to_json(),
            "train_steps": self.train_steps,
            "central_s": round(self.central_seconds, 4),
        }


def _sort_key(record: GameRecord) -> tuple[int, str, str]:
    targets = result_targets(record.result)
    winner = 2 if targets is None or targets[0] is None else targets[0].value
    first = record.moves[0] if record.moves else None
    opening = (
        "" if first is None or first.point is None else f"{first.point[0]:02d}{first.point[1]:02d}"
    )
    return int(winner), opening, record.record_id


def deal_games(
    records: Sequence[GameRecord], peers: int, held_out_fraction: float
) -> tuple[list[list[GameRecord]], list[GameRecord]]:
    """(peer slices, held-out games): the split and dealing of the module docstring."""
    by_id = sorted(records, key=lambda r: r.record_id)
    n_held = max(1, round(held_out_fraction * len(by_id)))
    held, train = by_id[:n_held], by_id[n_held:]
    if len(train) < peers:
        raise FlInputError(
            f"{len(records)} usable games: {len(held)} held out leaves {len(train)} "
            f"for {peers} peers (each peer needs at least one game)"
        )
    ordered = sorted(train, key=_sort_key)
    bounds = np.linspace(0, len(ordered), peers + 1).round().astype(int)
    return [ordered[bounds[i] : bounds[i + 1]] for i in range(peers)], held


def _example_set(parts: Sequence[ExampleArrays]) -> ExampleSet:
    by_size: dict[int, list[ExampleArrays]] = {}
    for arrays in parts:
        by_size.setdefault(arrays.size, []).append(arrays)
    groups = tuple(ExampleArrays.concat(p) for _, p in sorted(by_size.items()))
    return ExampleSet(groups, len(parts))


def load_slices(games: Path, peers: int, held_out_fraction: float) -> GameSlices:
    """Read `games` (SGF files, recursively) and split them; FlInputError if unusable."""
    if not games.is_dir():
        raise FlInputError(f"--games {games}: not a directory")
    try:
        loaded = load_records([games])
    except DatasetError as exc:
        raise FlInputError(f"--games {games}: {exc}") from exc
    usable = [
        r for r in loaded if isinstance(r, GameRecord) and result_targets(r.result) is not None
    ]
    if not usable:
        raise FlInputError(f"--games {games}: no SGF games with a usable result")
    slices, held = deal_games(usable, peers, held_out_fraction)
    return GameSlices(
        tuple(tuple(s) for s in slices), tuple(held), skipped=len(loaded) - len(usable)
    )


class TrainingSimulation(Simulation):
    """`Simulation` whose peers train the Go network on their slices of a game set."""

    def __init__(
        self,
        config: SimConfig,
        setup: TrainSetup,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(config, clock=clock)
        self.setup = setup
        self.slices = load_slices(setup.games, config.peers, setup.held_out_fraction)
        self._peer_data = [self._examples(s, f"peer {i}") for i, s in enumerate(self.slices.peers)]
        self.held_out = self._examples(self.slices.held_out, "the held-out games")
        self.union = _example_set([g for data in self._peer_data for g in data.groups])
        self.model_config = setup.model_config()
        torch.manual_seed(config.seed)
        initial = model_to_arrays(PolicyValueNet(self.model_config))
        self.weights = {k: np.asarray(v, dtype=np.float32) for k, v in initial.items()}
        self.version = tensors_version(self.weights)
        self.central: NamedTensors = dict(self.weights)
        self._steps: dict[int, int] = {}

    @staticmethod
    def _examples(games: Sequence[GameRecord], who: str) -> ExampleSet:
        parts = []
        for record in games:
            try:
                parts.append(examples_from_record(record))
            except DatasetError:
                continue  # a game with a result but nothing to imitate (e.g. only passes)
        if not parts:
            raise FlInputError(f"{who}: the games give no training examples")
        return _example_set(parts)

    @property
    def params(self) -> int:
        return sum(int(v.size) for v in self.weights.values())

    def _train_config(
        self, data: ExampleSet, seed: int, steps: int | None, prox_mu: float = 0.0
    ) -> TrainConfig:
        """`steps` optimizer steps on `data` (None: one epoch), over as many epochs as
        that takes: `max_steps` alone stops early but never runs past one epoch."""
        batch = self.setup.batch_size
        per_epoch = max(1, sum(math.ceil(len(g) / batch) for g in data.groups))
        return TrainConfig(
            lr=self.setup.lr,
            batch_size=batch,
            epochs=1 if steps is None else math.ceil(steps / per_epoch),
            max_steps=steps,
            seed=seed,
            device=_DEVICE,
            prox_mu=prox_mu,
        )

    def _trainer(self, index: int, round_id: int) -> TrainFn:
        data = self._peer_data[index]
        clock = self._clock
        seed = (self.config.seed * 1_000_003 + round_id * 10_007 + index) % 2**31

        def train(
            weights: NamedTensors, hyperparams: Mapping[str, float]
        ) -> tuple[NamedTensors, int, dict[str, float]]:
            start = clock()
            mu = float(hyperparams.get("proximal_mu", 0.0))
            config = self._train_config(data, seed, self.setup.local_steps, mu)
            result = train_local((self.model_config, weights), data, config)
            delta = {k: np.asarray(v, dtype=np.float32) for k, v in result.delta.items()}
            self._train_seconds[index] = clock() - start
            self._steps[index] = result.steps
            return delta, result.num_examples, {"loss": result.metrics.loss}

        return train

    def run_train_round(self, round_id: int) -> TrainRoundReport:
        """One federated round, then the same number of centralised steps; both scored."""
        self._steps = {}
        report = self.run_round(round_id)
        steps = sum(self._steps.values())
        start = time.perf_counter()
        if steps:
            seed = (self.config.seed * 1_000_003 + round_id * 10_007 + 7_777) % 2**31
            config = self._train_config(self.union, seed, steps)
            result = train_local((self.model_config, self.central), self.union, config)
            self.central = {k: np.asarray(v, dtype=np.float32) for k, v in result.weights.items()}
        central_seconds = time.perf_counter() - start
        return TrainRoundReport(
            protocol=report,
            federated=self._score(self.weights),
            central=self._score(self.central),
            train_steps=steps,
            central_seconds=central_seconds,
        )

    def _score(self, weights: NamedTensors) -> ModelScore:
        model = arrays_to_model(self.model_config, weights)
        return ModelScore.of(evaluate(model, self.held_out, device=_DEVICE))
