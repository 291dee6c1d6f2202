"""Weight files: bit-exact round trips, stable ids, and hostile files refused."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import cbor2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.nn import (
    MAX_WEIGHTS_BYTES,
    ModelConfig,
    ModelFormatError,
    PolicyValueNet,
    arrays_to_model,
    average_weights,
    decode_weights,
    encode_weights,
    expected_shapes,
    load_arrays,
    load_weights,
    model_to_arrays,
    save_weights,
    weights_id,
)

from .conftest import SMALL, make_small_model

TINY = ModelConfig(blocks=1, channels=8, head_channels=4, value_hidden=4, global_pool_every=1)


@pytest.fixture(scope="module")
def tiny_file() -> bytes:
    return save_weights(make_small_model(3, TINY))


def _same_weights(a: PolicyValueNet, b: PolicyValueNet) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_is_bit_exact_and_the_id_is_stable(small_model: PolicyValueNet) -> None:
    data = save_weights(small_model)
    loaded = load_weights(data)
    assert loaded.config == small_model.config
    assert _same_weights(loaded, small_model)
    again = save_weights(loaded)
    assert again == data
    assert weights_id(again) == weights_id(data)
    assert len(weights_id(data)) == 64 and int(weights_id(data), 16) >= 0
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data  # canonical
    with torch.no_grad():
        loaded.stem.weight.view(-1)[0] += 1e-6
    assert weights_id(save_weights(loaded)) != weights_id(data)


def test_file_layout(small_model: PolicyValueNet) -> None:
    doc = cbor2.loads(save_weights(small_model))
    assert doc["v"] == 1 and doc["kind"] == "p2pgo-model"
    assert doc["config"] == small_model.config.to_dict()
    dtype, shape, raw = doc["tensors"]["stem.weight"]
    assert dtype == "float32" and shape == list(small_model.stem.weight.shape)
    assert raw == small_model.stem.weight.detach().numpy().astype("<f4").tobytes()


def test_float16_files_are_smaller_and_close(small_model: PolicyValueNet) -> None:
    full, half = save_weights(small_model), save_weights(small_model, dtype="float16")
    assert len(half) < 0.6 * len(full)
    loaded = load_weights(half)
    for name, a in model_to_arrays(loaded).items():
        assert a.dtype == np.float32
        assert np.allclose(a, model_to_arrays(small_model)[name], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError):
        save_weights(small_model, dtype="float64")


def test_named_arrays_for_federated_learning(small_model: PolicyValueNet) -> None:
    arrays = model_to_arrays(small_model)
    shapes = expected_shapes(SMALL)
    assert {k: v.shape for k, v in arrays.items()} == shapes
    assert all(a.dtype == np.float32 for a in arrays.values())
    arrays["stem.bias"][0] = 123.0  # a copy: the model is untouched
    assert model_to_arrays(small_model)["stem.bias"][0] != 123.0
    rebuilt = arrays_to_model(SMALL, arrays)
    assert model_to_arrays(rebuilt)["stem.bias"][0] == 123.0
    assert encode_weights(SMALL, model_to_arrays(small_model)) == save_weights(small_model)
    config, decoded = decode_weights(save_weights(rebuilt))
    assert config == SMALL and np.array_equal(decoded["stem.bias"], arrays["stem.bias"])


def test_load_arrays_is_all_or_nothing(small_model: PolicyValueNet) -> None:
    before = model_to_arrays(small_model)
    bad = {k: v + 1 for k, v in before.items()}
    bad["value_out.bias"] = np.array([np.nan, 0.0], dtype=np.float32)
    with pytest.raises(ModelFormatError, match="NaN"):
        load_arrays(small_model, bad)
    after = model_to_arrays(small_model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    bad["value_out.bias"] = np.zeros(2, dtype=np.float64)
    with pytest.raises(ModelFormatError, match="float32"):
        load_arrays(small_model, bad)
    del bad["value_out.bias"]
    with pytest.raises(ModelFormatError, match="missing"):
        arrays_to_model(SMALL, bad)


def _edit(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = cbor2.loads(data)
    change(doc)
    return cbor2.dumps(doc, canonical=True)


def _tensor(doc: dict[str, Any], name: str = "stem.bias") -> list[Any]:
    entry: list[Any] = doc["tensors"][name]
    return entry


def _set_config(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["config"].__setitem__(key, value)


TAMPERINGS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "missing tensor": (lambda d: d["tensors"].pop("stem.bias"), "missing"),
    "extra tensor": (
        lambda d: d["tensors"].__setitem__("extra", ["float32", [1], b"\0" * 4]),
        "unexpected",
    ),
    "renamed tensor": (
        lambda d: d["tensors"].__setitem__("stem.b", d["tensors"].pop("stem.bias")),
        "tensor names",
    ),
    "wrong shape": (lambda d: _tensor(d).__setitem__(1, [4, 2]), "shape"),
    "huge shape": (lambda d: _tensor(d).__setitem__(1, [10**12, 10**12]), "shape"),
    "bool shape": (lambda d: _tensor(d).__setitem__(1, [True] * 8), "shape"),
    "short data": (lambda d: _tensor(d).__setitem__(2, _tensor(d)[2][:-1]), "data"),
    "text data": (lambda d: _tensor(d).__setitem__(2, "abc"), "data"),
    "float64": (lambda d: _tensor(d).__setitem__(0, "float64"), "dtype"),
    "int32": (lambda d: _tensor(d).__setitem__(0, "int32"), "dtype"),
    "not a triple": (lambda d: d["tensors"].__setitem__("stem.bias", [1, 2]), "expected"),
    "nan": (lambda d: _tensor(d).__setitem__(2, np.full(8, np.nan, "<f4").tobytes()), "NaN"),
    "inf": (lambda d: _tensor(d).__setitem__(2, np.full(8, np.inf, "<f4").tobytes()), "infinite"),
    "version 2": (lambda d: d.__setitem__("v", 2), "version"),
    "version true": (lambda d: d.__setitem__("v", True), "version"),
    "kind": (lambda d: d.__setitem__("kind", "pickle"), "kind"),
    "extra key": (lambda d: d.__setitem__("meta", 1), "keys"),
    "no tensors map": (lambda d: d.__setitem__("tensors", []), "tensors"),
    "blocks 0": (_set_config("blocks", 0), "blocks"),
    "channels huge": (_set_config("channels", 10**9), "channels"),
    "config other net": (_set_config("blocks", 2), "tensor names"),
    "config text": (_set_config("blocks", "1"), "blocks"),
    "score_head int": (_set_config("score_head", 1), "score_head"),
    "config extra": (_set_config("dropout", 0), "config keys"),
    "config not map": (lambda d: d.__setitem__("config", [1]), "config"),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_tampered_files_are_refused(case: str, tiny_file: bytes) -> None:
    change, message = TAMPERINGS[case]
    with pytest.raises(ModelFormatError, match=message):
        load_weights(_edit(tiny_file, change))


def _long_bytes(n: int) -> bytes:
    return b"\x5b" + n.to_bytes(8, "big")  # a byte string that claims n bytes


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"garbage, not CBOR at all",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps({"v": 1}),
        cbor2.dumps(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)),
        cbor2.dumps(cbor2.CBORTag(12345, b"x")),
        _long_bytes(2**40),
        _long_bytes(2**63),
        b"\x9f" * 5 + b"\xff" * 5,  # indefinite-length arrays
        b"\x81" * 50_000 + b"\x00",  # absurd nesting
        b"\xa2\x61a\x01\x61a\x02",  # duplicate keys
    ],
    ids=lambda d: repr(d[:12]),
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ModelFormatError):
        load_weights(data)


def test_truncated_and_non_canonical_files_are_refused(tiny_file: bytes) -> None:
    for cut in (1, 2, 100, len(tiny_file) // 2, len(tiny_file) - 1):
        with pytest.raises(ModelFormatError):
            load_weights(tiny_file[:cut])
    with pytest.raises(ModelFormatError):
        load_weights(tiny_file + b"\x00")
    doc = cbor2.loads(tiny_file)
    reordered = dict(reversed(list(doc.items())))
    with pytest.raises(ModelFormatError, match="canonical"):
        load_weights(cbor2.dumps(reordered))


def test_oversized_files_are_refused_before_decoding() -> None:
    with pytest.raises(ModelFormatError, match="limit"):
        load_weights(b"\x00" * (MAX_WEIGHTS_BYTES + 1))
    with pytest.raises(ModelFormatError, match="bytes"):
        load_weights("not bytes")  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_model_or_model_format_error(data: bytes) -> None:
    try:
        model = load_weights(data)
    except ModelFormatError:
        return
    assert isinstance(model, PolicyValueNet)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_files_give_a_model_or_model_format_error(
    tiny_file: bytes, data: st.DataObject
) -> None:
    corrupted = bytearray(tiny_file)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(corrupted) - 1))
        corrupted[i] = data.draw(st.integers(0, 255))
    try:
        model = load_weights(bytes(corrupted))
    except ModelFormatError:
        return
    assert isinstance(model, PolicyValueNet)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_error_messages_stay_short_for_huge_values(tiny_file: bytes) -> None:
    cases: list[Callable[[dict[str, Any]], None]] = [
        lambda d: d.__setitem__("kind", "k" * 1_000_000),
        lambda d: d.__setitem__("v", 10**5000),
        lambda d: _tensor(d).__setitem__(0, "f" * 1_000_000),
        lambda d: _tensor(d).__setitem__(1, [1] * 1_000_000),
        lambda d: d["tensors"].__setitem__("x" * 1_000_000, 0),
        lambda d: d["config"].__setitem__(b"y" * 1_000_000, 0),
    ]
    for change in cases:
        with pytest.raises(ModelFormatError) as info:
            load_weights(_edit(tiny_file, change))
        assert len(str(info.value)) < 300


def test_average_weights_is_the_element_wise_mean(tiny_file: bytes) -> None:
    other = save_weights(make_small_model(4, TINY))
    third = save_weights(make_small_model(5, TINY))
    config, mean = average_weights([tiny_file, other, third])
    assert config == TINY
    parts = [decode_weights(f)[1] for f in (tiny_file, other, third)]
    for name, a in mean.items():
        assert a.dtype == np.float32
        expected = (parts[0][name] + parts[1][name] + parts[2][name]) / 3
        np.testing.assert_allclose(a, expected, rtol=1e-6, atol=1e-7)
    # One file averages to itself, bit for bit, and the result is a valid file.
    assert encode_weights(*average_weights([tiny_file])) == tiny_file
    load_weights(encode_weights(config, mean))


def test_average_weights_refuses_mixed_configs_and_bad_files(tiny_file: bytes) -> None:
    small = save_weights(make_small_model(0, SMALL))
    with pytest.raises(ModelFormatError, match="file 2: its config differs"):
        average_weights([tiny_file, small])
    with pytest.raises(ModelFormatError, match="file 2: "):
        average_weights([tiny_file, tiny_file[:-3]])
    with pytest.raises(ValueError, match="nothing"):
        average_weights([])
