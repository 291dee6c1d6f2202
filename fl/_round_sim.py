"""In-process simulation of whole federated rounds: the real state machines and
cryptography, with messages passed in memory through their CBOR encoding.

`drive_round` runs one round between a `RoundCoordinator` and `RoundParticipant`s:
every message is encoded by its sender and decoded by each recipient (so sizes and
codec costs are real), blobs go straight to the coordinator, and time is virtual —
when nothing is in flight the clock jumps to the coordinator's next deadline, so
dropouts cost no waiting. A dropout is the coordinator stage from which a peer goes
silent. Compute is measured per party with an injected clock.

`Simulation` strings rounds together for `p2pgo-sim` and the benchmark: N peers with
synthetic non-IID local objectives (each pulls the model toward its own target — a
stand-in for training, clearly labelled as such), persistent privacy ledgers, and a
report per round that includes the largest gap between the securely aggregated mean
and the plaintext mean of the very same clipped, noised inputs (quantisation error).
"""

from __future__ import annotations

import functools
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from nacl.signing import SigningKey
from numpy.typing import NDArray

from fl._aggregate import FedAdam, FedAdamState, FedAvg
from fl._dp import PrivacyEvent, PrivacyLedger, Sampling
from fl._errors import FlInputError
from fl._round_codec import decode_round_message, encode_round_message
from fl._round_coordinator import RoundCoordinator, RoundStage, RoundTiming
from fl._round_messages import (
    Blob,
    GradientSubmission,
    ModelUpdate,
    PeerId,
    PeerReady,
    RoundAborted,
    RoundMessage,
    RoundParams,
    SecAggStep,
    Send,
    default_quant_range,
)
from fl._round_participant import ParticipantStatus, RoundParticipant, TrainFn
from fl._round_update import tensors_version
from fl._secagg_types import AdvertiseKeys, ConsistencySignature, ShareKeys, UnmaskResponse
from fl._tensors import NamedTensors, flatten

DROP_STAGES = (
    RoundStage.ADVERTISE_KEYS,
    RoundStage.SHARE_KEYS,
    RoundStage.MASKED_INPUT,
    RoundStage.CONSISTENCY_CHECK,
    RoundStage.UNMASK,
)
_RANK = {stage: k for k, stage in enumerate(RoundStage)}
_BODY_STAGE: dict[type, RoundStage] = {
    AdvertiseKeys: RoundStage.ADVERTISE_KEYS,
    ShareKeys: RoundStage.SHARE_KEYS,
    ConsistencySignature: RoundStage.CONSISTENCY_CHECK,
    UnmaskResponse: RoundStage.UNMASK,
}


def _upload_stage(message: RoundMessage | Blob) -> RoundStage:
    if isinstance(message, SecAggStep):
        return _BODY_STAGE.get(type(message.body), RoundStage.NEW)
    if isinstance(message, GradientSubmission | Blob):
        return RoundStage.MASKED_INPUT
    if isinstance(message, PeerReady):
        return RoundStage.COLLECT_READY
    return RoundStage.NEW


@dataclass(slots=True)
class RoundTrace:
    """What one driven round cost: compute seconds and bytes per party, and the plain
    (unmasked) sum of the inputs the coordinator accepted, for checking."""

    coordinator_seconds: float = 0.0
    peer_seconds: dict[PeerId, float] = field(default_factory=lambda: defaultdict(float))
    upload_bytes: dict[PeerId, int] = field(default_factory=lambda: defaultdict(int))
    download_bytes: dict[PeerId, int] = field(default_factory=lambda: defaultdict(int))
    plain_sum: NDArray[np.float64] | None = None
    plain_count: int = 0
    inputs: dict[PeerId, NDArray[np.float32]] = field(default_factory=dict)
    end_time: float = 0.0


def drive_round(
    coordinator: RoundCoordinator,
    participants: Mapping[PeerId, RoundParticipant],
    *,
    dropouts: Mapping[PeerId, RoundStage] | None = None,
    now: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
    shuffle: np.random.Generator | None = None,
    keep_inputs: bool = False,
) -> RoundTrace:
    """Run one round to its end; participant p goes silent from stage `dropouts[p]` on
    (it still hears the final ModelUpdate or RoundAborted, as a peer that reconnects).

    `shuffle` delivers whatever is in flight in a random order instead of FIFO;
    `keep_inputs` keeps each accepted participant's plaintext input in the trace (small
    rounds only: tests compare with plaintext FedAvg).
    """
    drop = dict(dropouts or {})
    trace = RoundTrace()
    gone: set[PeerId] = set()
    queue: deque[tuple[PeerId | None, Send]] = deque()
    encoded: dict[int, tuple[RoundMessage, bytes]] = {}

    def coordinator_call(call: Callable[[], list[Send]]) -> None:
        start = clock()
        sends = call()
        trace.coordinator_seconds += clock() - start
        queue.extend((None, send) for send in sends)

    def to_participants(send: Send) -> None:
        message = send.message
        assert not isinstance(message, Blob)
        cached = encoded.get(id(message))
        if cached is None:
            start = clock()
            cached = (message, encode_round_message(message))
            trace.coordinator_seconds += clock() - start  # encoded once, sent to many
            encoded[id(message)] = cached
        data = cached[1]
        final = isinstance(message, ModelUpdate | RoundAborted)
        targets = list(participants) if send.to is None else [send.to]
        for peer in targets:
            party = participants.get(peer)
            if party is None or (peer in gone and not final):
                continue
            trace.download_bytes[peer] += len(data)
            start = clock()
            sends = party.receive(decode_round_message(data), now)
            trace.peer_seconds[peer] += clock() - start
            queue.extend((peer, s) for s in sends)

    def to_coordinator(peer: PeerId, send: Send) -> None:
        message = send.message
        if peer in drop and _RANK[_upload_stage(message)] >= _RANK[drop[peer]]:
            gone.add(peer)
            return
        if isinstance(message, Blob):
            trace.upload_bytes[peer] += len(message.data)
            before = len(coordinator.rejections)
            coordinator_call(lambda: coordinator.receive_blob(peer, message.data, now))
            if len(coordinator.rejections) == before:
                contribution = participants[peer].take_contribution()
                _accumulate(trace, contribution)
                if keep_inputs and contribution is not None:
                    trace.inputs[peer] = contribution
            return
        start = clock()
        data = encode_round_message(message)
        trace.peer_seconds[peer] += clock() - start
        trace.upload_bytes[peer] += len(data)
        coordinator_call(lambda: coordinator.receive(peer, decode_round_message(data), now))

    coordinator_call(lambda: coordinator.start(now))
    while True:
        while queue:
            if shuffle is not None:
                queue.rotate(-int(shuffle.integers(len(queue))))
            source, send = queue.popleft()
            if source is None:
                to_participants(send)
            else:
                to_coordinator(source, send)
        deadline = coordinator.deadline
        if deadline is None:
            break
        now = max(now, deadline)
        for party in participants.values():
            party.tick(now)
        coordinator_call(partial(coordinator.tick, now))
    trace.end_time = now
    return trace


def _accumulate(trace: RoundTrace, contribution: NDArray[np.float32] | None) -> None:
    if contribution is None:
        return
    if trace.plain_sum is None:
        trace.plain_sum = np.zeros(contribution.shape, dtype=np.float64)
    trace.plain_sum += contribution
    trace.plain_count += 1


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulation: `peers` peers, about `per_round` of them per round."""

    peers: int
    per_round: int
    rounds: int = 1
    dropout: float = 0.1
    params: int = 10_000
    seed: int = 0
    dropout_stage: RoundStage | None = None
    """Stage at which dropouts go silent; None draws one of `DROP_STAGES` per peer."""
    clip_norm: float = 1.0
    noise_multiplier: float = 1.0
    epsilon_budget: float = 100.0
    modulus_bits: int = 16
    pow_difficulty: int = 8
    sampling: Sampling = Sampling.POISSON_SECRET
    min_participants: int | None = None
    strategy: str = "fedavg"

    def __post_init__(self) -> None:
        if self.peers < 2 or not 2 <= self.per_round <= self.peers:
            raise FlInputError("need peers >= 2 and 2 <= per_round <= peers")
        if self.rounds < 1 or self.params < 1:
            raise FlInputError("rounds and params must be positive")
        if not 0 <= self.dropout < 0.9:
            raise FlInputError("dropout must be in [0, 0.9)")
        if self.dropout_stage is not None and self.dropout_stage not in DROP_STAGES:
            raise FlInputError(f"dropout_stage must be one of {[s.value for s in DROP_STAGES]}")
        if self.strategy not in ("fedavg", "fedadam"):
            raise FlInputError("strategy must be fedavg or fedadam")


@dataclass(frozen=True, slots=True)
class RoundReport:
    """One simulated round, as `p2pgo-sim` prints it."""

    round: int
    ready: int
    selected: int
    survivors: int
    completed: bool
    abort_reason: str
    coordinator_seconds: float
    participant_mean_seconds: float
    train_mean_seconds: float
    upload_bytes_mean: float
    download_bytes_mean: float
    epsilon_max: float
    max_abs_error: float | None
    verified: int
    rejections: int
    new_version: str

    def to_json(self) -> dict[str, object]:
        return {
            "round": self.round,
            "ready": self.ready,
            "selected": self.selected,
            "survivors": self.survivors,
            "completion": round(self.survivors / self.selected, 4) if self.selected else 0.0,
            "completed": self.completed,
            "abort_reason": self.abort_reason,
            "coordinator_s": round(self.coordinator_seconds, 4),
            "participant_mean_s": round(self.participant_mean_seconds, 4),
            "train_mean_s": round(self.train_mean_seconds, 4),
            "upload_bytes_per_participant": round(self.upload_bytes_mean),
            "download_bytes_per_participant": round(self.download_bytes_mean),
            "epsilon": round(self.epsilon_max, 4),
            "max_abs_error": self.max_abs_error,
            "verified": self.verified,
            "rejections": self.rejections,
            "model_version": self.new_version[:16],
        }


def _initial_model(params: int) -> NamedTensors:
    if params <= 16:
        return {"w": np.zeros(params, dtype=np.float32)}
    head = min(16, params // 4)
    return {
        "body": np.zeros((params - head,), dtype=np.float32),
        "head": np.zeros((head,), dtype=np.float32),
    }


class Simulation:
    """Rounds of `config` with persistent peers, ledgers and model."""

    def __init__(
        self, config: SimConfig, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.config = config
        self._clock = clock
        seed_rng = np.random.default_rng(config.seed)
        self._coordinator_key = SigningKey(seed_rng.bytes(32))
        self._keys = [SigningKey(seed_rng.bytes(32)) for _ in range(config.peers)]
        self._ids = [bytes(k.verify_key) for k in self._keys]
        self._ledgers = {
            peer: PrivacyLedger(epsilon_budget=config.epsilon_budget) for peer in self._ids
        }
        self._epsilon = dict.fromkeys(self._ids, 0.0)
        self.weights = _initial_model(config.params)
        self.version = tensors_version(self.weights)
        self._parent = ""
        self._server_state: FedAdamState | None = None
        self._now = 0.0
        self._epsilon_after = functools.lru_cache(maxsize=256)(_epsilon_after)
        self._train_seconds: dict[int, float] = {}

    def _trainer(self, index: int, round_id: int) -> TrainFn:
        seed = self.config.seed
        clock = self._clock

        def train(
            weights: NamedTensors, hyperparams: Mapping[str, float]
        ) -> tuple[NamedTensors, int, dict[str, float]]:
            # Synthetic objective: peer `index` pulls toward its own fixed target.
            start = clock()
            target_rng = np.random.default_rng([seed, index])
            delta: NamedTensors = {}
            loss = 0.0
            for name in sorted(weights):
                target = target_rng.normal(0.01 * (index % 7), 0.05, weights[name].shape)
                gap = (target - weights[name]).astype(np.float32)
                delta[name] = 0.5 * gap
                loss += float(np.einsum("i,i->", gap.ravel(), gap.ravel()))
            self._train_seconds[index] = clock() - start
            return delta, 1 + (index * 7919 + round_id) % 50, {"loss": loss}

        return train

    def run_round(self, round_id: int) -> RoundReport:
        """Run round `round_id` and fold its result into the simulation's state."""
        cfg = self.config
        min_participants = cfg.min_participants or max(2, (3 * cfg.per_round) // 4)
        _, spec = flatten(self.weights)
        noise_std = cfg.noise_multiplier * cfg.clip_norm / math.sqrt(min_participants)
        params = RoundParams.create(
            clip_norm=cfg.clip_norm,
            noise_multiplier=cfg.noise_multiplier,
            sampling=cfg.sampling,
            sampling_rate=1.0,  # the cap; the coordinator derives q from `eligible`
            min_participants=min_participants,
            target_participants=cfg.per_round,
            expected_dropout=cfg.dropout,
            modulus_bits=cfg.modulus_bits,
            quant_range=default_quant_range(cfg.clip_norm, noise_std, spec.size),
            pow_difficulty=cfg.pow_difficulty,
        )
        strategy = FedAdam(lr=0.05) if cfg.strategy == "fedadam" else FedAvg()
        rng = np.random.default_rng([cfg.seed, round_id, 1])
        coordinator = RoundCoordinator(
            round_id=round_id,
            signing_key=self._coordinator_key,
            model=self.weights,
            params=params,
            timing=RoundTiming(ready_seconds=5.0, train_seconds=60.0, stage_seconds=10.0),
            strategy=strategy,
            server_state=self._server_state,
            parent_version=self._parent,
            seed=rng.bytes(32),
            eligible=cfg.peers,
        )
        participants = {
            peer: RoundParticipant(
                signing_key=key,
                coordinator_key=bytes(self._coordinator_key.verify_key),
                model=self.weights,
                model_version=self.version,
                ledger=self._ledgers[peer],
                train=self._trainer(i, round_id),
                game_count=10 + i % 90,
                data_hash=rng.bytes(32),
                epsilon_after=self._epsilon_after,
                rng=np.random.default_rng([cfg.seed, round_id, 2, i]),
                keep_contribution=True,
            )
            for i, (peer, key) in enumerate(zip(self._ids, self._keys, strict=True))
        }
        dropping = rng.random(cfg.peers) < cfg.dropout
        stages = rng.integers(0, len(DROP_STAGES), cfg.peers)
        dropouts = {
            peer: cfg.dropout_stage or DROP_STAGES[int(stages[i])]
            for i, peer in enumerate(self._ids)
            if dropping[i]
        }
        self._train_seconds = {}
        trace = drive_round(
            coordinator, participants, dropouts=dropouts, now=self._now, clock=self._clock
        )
        self._now = trace.end_time + 1.0
        return self._fold(round_id, coordinator, participants, trace)

    def _fold(
        self,
        round_id: int,
        coordinator: RoundCoordinator,
        participants: Mapping[PeerId, RoundParticipant],
        trace: RoundTrace,
    ) -> RoundReport:
        for peer, party in participants.items():
            self._ledgers[peer] = party.ledger
            if party.epsilon is not None:
                self._epsilon[peer] = party.epsilon
        selection = coordinator.selection
        selected = selection.selected if selection else ()
        outcome = coordinator.outcome
        error: float | None = None
        if outcome is not None:
            secure, _ = flatten(outcome.mean_delta)
            if trace.plain_sum is not None and trace.plain_count == len(outcome.survivors):
                plain = trace.plain_sum / trace.plain_count
                error = float(np.max(np.abs(secure.astype(np.float64) - plain)))
            adopting = [p for p in participants.values() if p.verdict and p.verdict.adopt]
            if adopting:
                adopting[0].accept_weights(outcome.weights)  # the version really matches
            self._parent = self.version
            self.weights = outcome.weights
            self.version = outcome.update.new_version
            self._server_state = outcome.server_state
        chosen = [p for p in selected if p in participants]
        return RoundReport(
            round=round_id,
            ready=len(coordinator.ready_peers),
            selected=len(selected),
            survivors=len(outcome.survivors) if outcome else 0,
            completed=outcome is not None,
            abort_reason=coordinator.abort_reason or "",
            coordinator_seconds=trace.coordinator_seconds,
            participant_mean_seconds=_mean([trace.peer_seconds[p] for p in chosen]),
            train_mean_seconds=_mean(list(self._train_seconds.values())),
            upload_bytes_mean=_mean([float(trace.upload_bytes[p]) for p in chosen]),
            download_bytes_mean=_mean([float(trace.download_bytes[p]) for p in chosen]),
            epsilon_max=max(self._epsilon.values()),
            max_abs_error=error,
            verified=sum(
                1 for p in participants.values() if p.status is ParticipantStatus.VERIFIED
            ),
            rejections=len(coordinator.rejections),
            new_version=outcome.update.new_version if outcome else "",
        )


def _epsilon_after(ledger: PrivacyLedger, event: PrivacyEvent) -> float:
    return ledger.epsilon_after(event)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
