"""Named tensors, clipping, quantisation and Shamir sharing."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl import (
    FlInputError,
    TensorSpec,
    choose_quant,
    clip_l2,
    combine_shares,
    dequantize,
    dequantize_sum,
    flatten,
    l2_norm,
    modular_sum,
    quantize,
    split_secret,
    unflatten,
)


def _update(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "conv.weight": rng.normal(size=(4, 3, 3)).astype(np.float32),
        "bias": rng.normal(size=(4,)).astype(np.float32),
        "scalar": np.array(2.5, dtype=np.float32),
    }


def test_flatten_round_trips_in_sorted_name_order() -> None:
    update = _update(np.random.default_rng(1))
    vector, spec = flatten(update)
    assert spec.names == ("bias", "conv.weight", "scalar")
    assert vector.dtype == np.float32 and vector.shape == (4 + 36 + 1,)
    assert vector[:4].tolist() == update["bias"].tolist()
    back = unflatten(vector, spec)
    assert set(back) == set(update)
    for name in update:
        assert back[name].shape == update[name].shape
        np.testing.assert_array_equal(back[name], update[name])


def test_flatten_rejects_mismatch_and_bad_values() -> None:
    update = _update(np.random.default_rng(2))
    _, spec = flatten(update)
    with pytest.raises(FlInputError):
        flatten({"bias": update["bias"]}, spec)
    with pytest.raises(FlInputError):
        flatten({"x": np.array([np.nan], dtype=np.float32)})
    with pytest.raises(FlInputError):
        flatten({"x": np.array([1, 2])})
    with pytest.raises(FlInputError):
        unflatten(np.zeros(3, dtype=np.float32), spec)
    with pytest.raises(FlInputError):
        TensorSpec(("a", "a"), ((1,), (1,)))


def test_clip_scales_down_only_above_the_bound() -> None:
    update = {"w": np.array([3.0, 4.0], dtype=np.float32)}
    assert l2_norm(update) == pytest.approx(5.0)
    clipped, scale = clip_l2(update, 1.0)
    assert scale == pytest.approx(0.2, rel=1e-6)
    assert l2_norm(clipped) <= 1.0
    np.testing.assert_allclose(clipped["w"], [0.6, 0.8], rtol=1e-6)
    same, scale = clip_l2(update, 10.0)
    assert scale == 1.0
    np.testing.assert_array_equal(same["w"], update["w"])
    with pytest.raises(FlInputError):
        clip_l2(update, 0.0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, width=32), min_size=1, max_size=50), st.floats(0.01, 10))
def test_clip_never_exceeds_the_bound(values: list[float], bound: float) -> None:
    clipped, _ = clip_l2({"w": np.array(values, dtype=np.float32)}, bound)
    assert l2_norm(clipped) <= bound


def test_choose_quant_leaves_room_for_n_summands() -> None:
    spec = choose_quant(1000, clip=1.0, target_bits=16)
    assert spec.modulus_bits == 16 and spec.value_bits == 6
    assert 1000 * spec.levels < 2**16
    assert choose_quant(1, clip=1.0).value_bits == 16
    assert choose_quant(2, clip=1.0).value_bits == 15
    with pytest.raises(FlInputError):
        choose_quant(2**15, clip=1.0, target_bits=16)
    with pytest.raises(FlInputError):
        choose_quant(10, clip=-1.0)


def test_worst_case_sum_does_not_wrap() -> None:
    n = 37
    spec = choose_quant(n, clip=0.5, target_bits=12)
    top = quantize(np.full(8, 0.5), spec, np.random.default_rng(0))
    assert top.max() == spec.levels
    total = modular_sum([top] * n, spec.modulus_bits)
    np.testing.assert_allclose(dequantize_sum(total, spec, n), np.full(8, n * 0.5), rtol=1e-6)


def test_stochastic_rounding_is_unbiased_and_bounded() -> None:
    spec = choose_quant(4, clip=1.0, target_bits=6)  # coarse: 15 levels
    rng = np.random.default_rng(3)
    x = np.full(200_000, 0.1234)
    q = quantize(x, spec, rng)
    back = dequantize(q, spec)
    assert np.all(np.abs(back - x) <= spec.step + 1e-6)
    assert abs(float(back.mean()) - 0.1234) < 0.002
    clamped = dequantize(quantize(np.array([-9.0, 9.0]), spec, rng), spec)
    np.testing.assert_allclose(clamped, [-1.0, 1.0], rtol=1e-6)
    with pytest.raises(FlInputError):
        quantize(np.array([np.inf]), spec, rng)


def test_shamir_any_t_shares_recover_and_fewer_do_not() -> None:
    secret = os.urandom(32)
    xs = [3, 8, 9, 12, 20]
    shares = list(zip(xs, split_secret(secret, 3, xs), strict=True))
    for subset in itertools.combinations(shares, 3):
        assert combine_shares(list(subset), 3) == secret
    wrong = []
    for subset in itertools.combinations(shares, 2):
        try:
            wrong.append(combine_shares(list(subset), 2))
        except FlInputError:
            wrong.append(b"")
    assert secret not in wrong
    with pytest.raises(FlInputError):
        combine_shares(shares[:2], 3)
    with pytest.raises(FlInputError):
        combine_shares([shares[0], shares[0], shares[1]], 3)
    with pytest.raises(FlInputError):
        split_secret(b"short", 2, xs)
