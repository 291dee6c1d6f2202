"""Aggregation strategies: FedAvg weighting, FedProx config, FedAdam state, invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl import (
    FedAdam,
    FedAvg,
    FedProx,
    FitFailure,
    FitResult,
    FlInputError,
    is_finite,
    weighted_mean,
)


def _model(value: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "w": np.full((2, 3), value, dtype=np.float32),
        "b": np.full((3,), value, dtype=np.float32),
    }


def test_fedavg_weights_by_examples() -> None:
    results = [
        FitResult("a", _model(1.0), 1, {"loss": 2.0}),
        FitResult("b", _model(4.0), 3, {"loss": 1.0}),
    ]
    new, metrics = FedAvg().aggregate(1, _model(10.0), results, [FitFailure("c", "timeout")])
    np.testing.assert_allclose(new["w"], 10.0 + (1.0 + 12.0) / 4)
    assert metrics["num_results"] == 2 and metrics["num_failures"] == 1
    assert metrics["num_examples"] == 4 and metrics["fit_loss"] == pytest.approx(1.25)


def test_no_results_keeps_the_model() -> None:
    current = _model(3.0)
    new, metrics = FedAvg().aggregate(1, current, [], [FitFailure("a", "dropped")])
    np.testing.assert_array_equal(new["w"], current["w"])
    assert metrics["num_results"] == 0


def test_mismatched_shapes_are_rejected() -> None:
    bad = {"w": np.zeros((3, 2), dtype=np.float32), "b": np.zeros(3, dtype=np.float32)}
    with pytest.raises(FlInputError):
        weighted_mean([FitResult("a", _model(), 1), FitResult("b", bad, 1)])
    with pytest.raises(FlInputError):
        FedAvg().step(_model(), {"w": np.zeros((2, 3), dtype=np.float32)})


def test_fedprox_passes_mu_and_aggregates_like_fedavg() -> None:
    assert FedProx(proximal_mu=0.1).configure_fit(3) == {"proximal_mu": 0.1}
    results = [FitResult("a", _model(2.0), 5)]
    prox, _ = FedProx(proximal_mu=0.1).aggregate(1, _model(), results, [])
    avg, _ = FedAvg().aggregate(1, _model(), results, [])
    np.testing.assert_array_equal(prox["w"], avg["w"])


def test_fedadam_moves_along_the_delta_and_carries_state() -> None:
    adam = FedAdam(lr=0.1)
    current = _model(0.0)
    results = [FitResult("a", _model(1.0), 1)]
    new, metrics, state = adam.aggregate(1, current, results, [], None)
    assert state is not None and state.step == 1 and metrics["server_step"] == 1
    assert np.all(new["w"] > 0) and is_finite(new)
    newer, _, state2 = adam.aggregate(2, new, results, [], state)
    assert state2 is not None and state2.step == 2
    assert np.all(newer["w"] > new["w"])
    same, _, kept = adam.aggregate(3, newer, [], [], state2)
    assert kept is state2
    np.testing.assert_array_equal(same["w"], newer["w"])
    with pytest.raises(FlInputError):
        FedAdam(lr=0.0)


_values = st.lists(st.floats(-100, 100, width=32), min_size=6, max_size=6)


@settings(max_examples=40, deadline=None)
@given(_values, st.lists(st.integers(1, 1000), min_size=1, max_size=6))
def test_aggregating_identical_updates_changes_nothing(
    values: list[float], counts: list[int]
) -> None:
    delta = {"w": np.array(values, dtype=np.float32).reshape(2, 3)}
    results = [FitResult(str(i), delta, c) for i, c in enumerate(counts)]
    np.testing.assert_allclose(weighted_mean(results)["w"], delta["w"], rtol=1e-6, atol=1e-5)
    current = {"w": np.array(values, dtype=np.float32).reshape(2, 3)}
    zero = [FitResult(str(i), {"w": np.zeros((2, 3), np.float32)}, c) for i, c in enumerate(counts)]
    new, _ = FedAvg().aggregate(1, current, zero, [])
    np.testing.assert_array_equal(new["w"], current["w"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_values, st.integers(1, 100)), min_size=1, max_size=6), st.randoms())
def test_order_does_not_matter(items: list[tuple[list[float], int]], rnd: object) -> None:
    results = [
        FitResult(str(i), {"w": np.array(v, dtype=np.float32)}, c) for i, (v, c) in enumerate(items)
    ]
    shuffled = list(results)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    current = {"w": np.zeros(6, dtype=np.float32)}
    a, ma = FedAvg().aggregate(1, current, results, [])
    b, mb = FedAvg().aggregate(1, current, shuffled, [])
    np.testing.assert_allclose(a["w"], b["w"], rtol=1e-6, atol=1e-5)
    assert ma == mb
