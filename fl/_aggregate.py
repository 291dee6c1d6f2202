"""Aggregation strategies over named tensors: FedAvg, FedProx and FedAdam.

Shaped like Flower's strategies but without I/O or hidden state: `configure_fit` says what
local training should use, `aggregate(round, current, results, failures)` turns the peers'
results into new parameters and metrics, and failures are an ordinary argument. Results
carry *deltas* (local model minus the round's model) because secure aggregation sums
deltas; `step(current, mean_delta, ...)` is the same update for the secure path, where
only the (already weighted) mean is known. FedAdam's optimiser state goes in and out as a
frozen dataclass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fl._errors import FlInputError
from fl._tensors import NamedTensors, TensorSpec


@dataclass(frozen=True, slots=True, eq=False)
class FitResult:
    """One peer's contribution: its delta, how many examples it trained on, its metrics."""

    peer: str
    delta: NamedTensors
    num_examples: int
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FitFailure:
    """A peer that did not contribute, and why (timeout, dropped, rejected)."""

    peer: str
    reason: str


def _check_like(current: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> None:
    if TensorSpec.of(current) != TensorSpec.of(delta):
        raise FlInputError("delta does not match the model's tensor names and shapes")


def weighted_mean(results: Sequence[FitResult]) -> NamedTensors:
    """Example-weighted mean of the results' deltas (float64 accumulation)."""
    if not results:
        raise FlInputError("weighted_mean needs at least one result")
    total = sum(r.num_examples for r in results)
    if any(r.num_examples < 0 for r in results) or total <= 0:
        raise FlInputError("example counts must be non-negative with a positive total")
    spec = TensorSpec.of(results[0].delta)
    sums = {
        name: np.zeros(shape, dtype=np.float64)
        for name, shape in zip(spec.names, spec.shapes, strict=True)
    }
    for result in results:
        if TensorSpec.of(result.delta) != spec:
            raise FlInputError(f"peer {result.peer}'s delta has a different shape")
        for name in spec.names:
            sums[name] += np.asarray(result.delta[name], dtype=np.float64) * result.num_examples
    return {name: (acc / total).astype(np.float32) for name, acc in sums.items()}


def _metrics(results: Sequence[FitResult], failures: Sequence[FitFailure]) -> dict[str, float]:
    total = sum(r.num_examples for r in results)
    out = {
        "num_results": float(len(results)),
        "num_failures": float(len(failures)),
        "num_examples": float(total),
    }
    if results and total > 0:
        shared = set.intersection(*(set(r.metrics) for r in results))
        for key in sorted(shared):
            out[f"fit_{key}"] = sum(r.metrics[key] * r.num_examples for r in results) / total
    return out


@dataclass(frozen=True, slots=True)
class FedAvg:
    """Federated averaging: new = current + server_lr * example-weighted mean delta."""

    server_lr: float = 1.0

    def configure_fit(self, server_round: int) -> dict[str, float]:
        """Local-training settings for this round (none for FedAvg)."""
        return {}

    def step(self, current: NamedTensors, mean_delta: NamedTensors) -> NamedTensors:
        """Apply an already averaged delta (the secure-aggregation path)."""
        _check_like(current, mean_delta)
        return {
            name: (current[name] + np.float32(self.server_lr) * mean_delta[name]).astype(np.float32)
            for name in current
        }

    def aggregate(
        self,
        server_round: int,
        current: NamedTensors,
        results: Sequence[FitResult],
        failures: Sequence[FitFailure],
    ) -> tuple[NamedTensors, dict[str, float]]:
        """New parameters and metrics; with no results the model is unchanged."""
        metrics = _metrics(results, failures)
        if not results:
            return dict(current), metrics
        return self.step(current, weighted_mean(results)), metrics


@dataclass(frozen=True, slots=True)
class FedProx(FedAvg):
    """FedProx: FedAvg aggregation; local training adds (mu/2)*||w - w_round||^2."""

    proximal_mu: float = 0.01

    def configure_fit(self, server_round: int) -> dict[str, float]:
        """Tells local training the proximal coefficient."""
        return {"proximal_mu": self.proximal_mu}


@dataclass(frozen=True, slots=True, eq=False)
class FedAdamState:
    """FedAdam's moments and step count (None before the first round)."""

    m: NamedTensors
    v: NamedTensors
    step: int


@dataclass(frozen=True, slots=True)
class FedAdam:
    """Adaptive server optimiser (Reddi et al. 2021): Adam on the negative mean delta."""

    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        if not (self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.tau > 0):
            raise FlInputError("FedAdam needs lr > 0, betas in [0, 1), tau > 0")

    def configure_fit(self, server_round: int) -> dict[str, float]:
        """Local-training settings for this round (none for FedAdam)."""
        return {}

    def step(
        self, current: NamedTensors, mean_delta: NamedTensors, state: FedAdamState | None
    ) -> tuple[NamedTensors, FedAdamState]:
        """One optimiser step from an averaged delta; returns new params and state."""
        _check_like(current, mean_delta)
        if state is None:
            zeros = {n: np.zeros_like(a, dtype=np.float32) for n, a in current.items()}
            state = FedAdamState(zeros, dict(zeros), 0)
        m: NamedTensors = {}
        v: NamedTensors = {}
        new: NamedTensors = {}
        for name in current:
            d = mean_delta[name].astype(np.float64)
            m64 = self.beta1 * state.m[name] + (1 - self.beta1) * d
            v64 = self.beta2 * state.v[name] + (1 - self.beta2) * d * d
            m[name] = m64.astype(np.float32)
            v[name] = v64.astype(np.float32)
            update = self.lr * m64 / (np.sqrt(v64) + self.tau)
            new[name] = (current[name] + update).astype(np.float32)
        return new, FedAdamState(m, v, state.step + 1)

    def aggregate(
        self,
        server_round: int,
        current: NamedTensors,
        results: Sequence[FitResult],
        failures: Sequence[FitFailure],
        state: FedAdamState | None,
    ) -> tuple[NamedTensors, dict[str, float], FedAdamState | None]:
        """New parameters, metrics and state; with no results nothing changes."""
        metrics = _metrics(results, failures)
        if not results:
            return dict(current), metrics, state
        new, new_state = self.step(current, weighted_mean(results), state)
        metrics["server_step"] = float(new_state.step)
        return new, metrics, new_state


def is_finite(tensors: Mapping[str, np.ndarray]) -> bool:
    """True if every value is finite (a cheap sanity check before adopting a model)."""
    return all(bool(np.all(np.isfinite(a))) for a in tensors.values())
