"""Differential privacy: accountant against DESIGN.md's arithmetic, noise, the ledger."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fl import (
    Accountant,
    BudgetExceeded,
    FlInputError,
    PrivacyEvent,
    PrivacyLedger,
    Sampling,
    add_gaussian_noise,
    compute_epsilon,
    effective_noise_multiplier,
    participant_noise_std,
    rounds_within_budget,
)

DELTA = 1e-5


def _sampled(z: float, rounds: int = 100) -> PrivacyEvent:
    return PrivacyEvent(z, Sampling.POISSON_SECRET, 0.1, rounds)


def test_design_arithmetic_with_amplification() -> None:
    assert compute_epsilon([_sampled(1.0)], DELTA) == pytest.approx(7.0, abs=0.3)
    assert compute_epsilon([_sampled(4.0)], DELTA) < 1.0
    assert compute_epsilon([_sampled(3.0)], DELTA) > 1.0


def test_design_arithmetic_without_amplification() -> None:
    assert compute_epsilon([PrivacyEvent(37.0, rounds=100)], DELTA) == pytest.approx(1.0, abs=0.05)
    assert compute_epsilon([PrivacyEvent(30.0, rounds=100)], DELTA) > 1.0
    assert compute_epsilon([PrivacyEvent(45.0, rounds=100)], DELTA) < 1.0


def test_rdp_agrees_roughly_and_never_undercuts_much() -> None:
    pld = compute_epsilon([PrivacyEvent(37.0, rounds=100)], DELTA)
    rdp = compute_epsilon([PrivacyEvent(37.0, rounds=100)], DELTA, Accountant.RDP)
    assert pld <= rdp <= pld * 1.2


def test_amplification_is_only_claimed_with_secret_sampling() -> None:
    assert not PrivacyEvent(2.0).amplified
    assert _sampled(2.0).amplified
    with pytest.raises(FlInputError, match="amplification"):
        PrivacyEvent(2.0, Sampling.NONE, 0.1)


def test_rounds_within_budget_is_the_last_round_that_fits() -> None:
    # The default settings' arithmetic (docs/privacy.md): z=2, q=0.1 fits 16 rounds.
    one = PrivacyEvent(2.0, Sampling.POISSON_SECRET, 0.1)
    fit = rounds_within_budget(one, 1.0, DELTA)
    assert fit == 16
    assert compute_epsilon([PrivacyEvent(2.0, Sampling.POISSON_SECRET, 0.1, fit)]) <= 1.0
    assert compute_epsilon([PrivacyEvent(2.0, Sampling.POISSON_SECRET, 0.1, fit + 1)]) > 1.0
    assert rounds_within_budget(PrivacyEvent(1.0), 1.0, DELTA) == 0  # z=1, no sampling
    cheap = PrivacyEvent(3.0, Sampling.POISSON_SECRET, 0.01)
    assert rounds_within_budget(cheap, 1.0, DELTA, max_rounds=50) == 50
    with pytest.raises(FlInputError):
        rounds_within_budget(one, 0.0)


def test_composition_adds_up() -> None:
    split = compute_epsilon([PrivacyEvent(10.0, rounds=30), PrivacyEvent(10.0, rounds=70)], DELTA)
    whole = compute_epsilon([PrivacyEvent(10.0, rounds=100)], DELTA)
    assert split == pytest.approx(whole, rel=1e-3)
    assert compute_epsilon([], DELTA) == 0.0


def test_noise_scaling_and_trust_shortfall() -> None:
    assert participant_noise_std(1.0, 2.0, 100) == pytest.approx(0.2)
    assert effective_noise_multiplier(1.0, 100, 25) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    m, d = 64, 20_000
    std = participant_noise_std(1.5, 1.0, m)
    total = sum(add_gaussian_noise(np.zeros(d, dtype=np.float32), std, rng) for _ in range(m))
    assert float(np.std(total)) == pytest.approx(1.5, rel=0.03)
    unseeded = add_gaussian_noise(np.zeros(4, dtype=np.float32), 1.0)
    assert unseeded.dtype == np.float32 and not np.all(unseeded == 0)


def test_ledger_refuses_a_round_over_budget() -> None:
    ledger = PrivacyLedger()
    assert ledger.epsilon_budget == 1.0 and ledger.delta == DELTA
    assert ledger.spent() == 0.0
    ledger = ledger.join(PrivacyEvent(40.0, rounds=90))
    ledger = ledger.record(PrivacyEvent(40.0, rounds=10))
    assert ledger.events == (PrivacyEvent(40.0, rounds=100),)
    assert 0.85 < ledger.spent() < 1.0
    planned = PrivacyEvent(40.0, rounds=20)
    assert not ledger.can_join(planned)
    with pytest.raises(BudgetExceeded, match="budget"):
        ledger.join(planned)
    assert ledger.can_join(PrivacyEvent(400.0))


def test_ledger_state_round_trips_and_rejects_garbage() -> None:
    ledger = PrivacyLedger(2.0, 1e-6).record(_sampled(4.0, 5)).record(PrivacyEvent(9.0))
    state = ledger.to_dict()
    assert PrivacyLedger.from_dict(state) == ledger
    for bad in (
        {},
        {**state, "v": 2},
        {**state, "events": [{"z": -1, "sampling": "none", "q": 1.0, "rounds": 1}]},
        {**state, "events": [{"z": 1, "sampling": "bogus", "q": 1.0, "rounds": 1}]},
        {**state, "events": "nope"},
        {**state, "delta": "x"},
    ):
        with pytest.raises(FlInputError):
            PrivacyLedger.from_dict(bad)
    assert math.isfinite(ledger.spent())


def test_tiny_noise_uses_the_cheap_accountant_and_reports_no_privacy() -> None:
    # PLD at z=0.001 exhausted memory; below z=0.3 the RDP accountant answers instead.
    eps = compute_epsilon([PrivacyEvent(0.001, rounds=3)], DELTA)
    assert eps > 1e3
    assert compute_epsilon([PrivacyEvent(0.2)], DELTA) > compute_epsilon([PrivacyEvent(0.5)], DELTA)
