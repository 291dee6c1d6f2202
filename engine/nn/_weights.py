"""Weight files: canonical CBOR in, validated network out; never pickle.

A weight file is the canonical CBOR (RFC 8949 core deterministic encoding, cbor2
``canonical=True``) of::

    {"v": 1, "kind": "p2pgo-model",
     "config": {ModelConfig fields},
     "tensors": {name: [dtype, shape, raw little-endian bytes]}}

with ``dtype`` ``"float32"`` or ``"float16"``. Its version id is the BLAKE3 hex digest
of those bytes; because the encoding is canonical (and loading insists on it), equal
weights always have equal ids.

Weight files come from other peers, so :func:`load_weights` treats them as hostile and
checks, in this order, before allocating anything big: the byte length, that the CBOR
is well formed and canonical, the schema version and kind, the config's ranges, the
exact tensor names for that config, every dtype, shape and byte length, and that every
value is finite. Anything else raises :class:`ModelFormatError`; the network is built
only from tensors that passed.

Federated learning works on named float32 numpy arrays; :func:`model_to_arrays`,
:func:`arrays_to_model` and :func:`load_arrays` convert, with the same checks.
:func:`average_weights` averages several files of one config (a "model soup",
Wortsman et al., 2022: fine-tunes of one parent averaged often beat each of them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import blake3
import cbor2
import numpy as np
import torch

from engine.nn._config import ModelConfig, ModelFormatError, describe
from engine.nn._model import PolicyValueNet

__all__ = [
    "FORMAT_KIND",
    "FORMAT_VERSION",
    "MAX_WEIGHTS_BYTES",
    "arrays_to_model",
    "average_weights",
    "decode_weights",
    "encode_weights",
    "expected_shapes",
    "load_arrays",
    "load_weights",
    "model_to_arrays",
    "save_weights",
    "weights_id",
]

FORMAT_VERSION = 1
FORMAT_KIND = "p2pgo-model"
MAX_WEIGHTS_BYTES = 64 * 1024 * 1024
_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
_TOP_KEYS = {"v", "kind", "config", "tensors"}


@functools.lru_cache(maxsize=32)
def _shapes(config: ModelConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    # Built on the meta device: no memory is allocated, so an untrusted config that asks
    # for a huge network costs nothing before its tensors are checked against the file.
    # (Not the torch.device("meta") context manager: like init on meta tensors, it
    # imports torch._dynamo, which takes seconds.)
    model = PolicyValueNet(config, device="meta")
    return tuple((name, tuple(t.shape)) for name, t in model.state_dict().items())


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes a network with ``config`` has."""
    return dict(_shapes(config))


def model_to_arrays(model: PolicyValueNet) -> dict[str, np.ndarray]:
    """Every tensor of ``model`` as a float32 numpy copy, by name."""
    return {
        name: t.detach().to("cpu", torch.float32).numpy().copy()
        for name, t in model.state_dict().items()
    }


def _check_arrays(config: ModelConfig, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Float32 copies of ``arrays`` if they fit ``config`` exactly; else ModelFormatError."""
    shapes = expected_shapes(config)
    _check_names(shapes, arrays)
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        a = arrays[name]
        if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float16):
            raise ModelFormatError(f"tensor {name}: expected a float32/float16 numpy array")
        if a.shape != shape:
            raise ModelFormatError(f"tensor {name}: shape {a.shape}, expected {shape}")
        if not np.isfinite(a).all():
            raise ModelFormatError(f"tensor {name}: has NaN or infinite values")
        out[name] = a.astype(np.float32)  # a copy, so callers cannot alias our weights
    return out


def _check_names(shapes: Mapping[str, tuple[int, ...]], given: Mapping[str, Any]) -> None:
    if set(given) != set(shapes):
        missing = sorted(set(shapes) - set(given))
        extra = sorted(describe(k) for k in set(given) - set(shapes))
        raise ModelFormatError(
            f"tensor names do not match the config: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
            f"{' ...' if len(extra) > 5 else ''}"
        )


def load_arrays(model: PolicyValueNet, arrays: Mapping[str, Any]) -> None:
    """Overwrite ``model``'s weights with ``arrays`` (checked first: all or nothing)."""
    checked = _check_arrays(model.config, arrays)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            t.copy_(torch.from_numpy(checked[name]))


def arrays_to_model(config: ModelConfig, arrays: Mapping[str, Any]) -> PolicyValueNet:
    """A new network with ``config`` and the (checked) ``arrays`` as weights."""
    checked = _check_arrays(config, arrays)
    model = PolicyValueNet(config)
    load_arrays(model, checked)
    return model


def encode_weights(
    config: ModelConfig, arrays: Mapping[str, np.ndarray], dtype: str = "float32"
) -> bytes:
    """The canonical weight file for ``config`` and ``arrays``, tensors stored as ``dtype``."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}")
    checked = _check_arrays(config, arrays)
    stored = _DTYPES[dtype]
    tensors: dict[str, list[Any]] = {}
    for name, a in checked.items():
        b = a.astype(stored)
        if not np.isfinite(b).all():
            raise ValueError(f"tensor {name} overflows {dtype}")
        tensors[name] = [dtype, list(a.shape), np.ascontiguousarray(b).tobytes()]
    doc = {
        "v": FORMAT_VERSION,
        "kind": FORMAT_KIND,
        "config": config.to_dict(),
        "tensors": tensors,
    }
    data: bytes = cbor2.dumps(doc, canonical=True)
    if len(data) > MAX_WEIGHTS_BYTES:
        raise ValueError(
            f"weight file would be {len(data)} bytes; the limit is {MAX_WEIGHTS_BYTES}"
        )
    return data


def save_weights(model: PolicyValueNet, dtype: str = "float32") -> bytes:
    """``model`` as a canonical CBOR weight file (see the module docstring)."""
    return encode_weights(model.config, model_to_arrays(model), dtype)


def weights_id(data: bytes) -> str:
    """The version id of a weight file: the BLAKE3 hex digest of its bytes."""
    return blake3.blake3(data).hexdigest()


def _decode_cbor(data: bytes) -> Any:
    try:
        doc = cbor2.loads(
            data,
            max_depth=8,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
        canonical = cbor2.dumps(doc, canonical=True) == data
    except Exception as exc:
        # The decoder is third-party code fed hostile bytes; whatever it raises (decode
        # errors, recursion, overflow, odd semantic tags) means "not a model file".
        raise ModelFormatError(f"weight file is not well-formed CBOR: {exc}") from exc
    if not canonical:
        raise ModelFormatError("weight file is not canonical CBOR")
    return doc


def decode_weights(data: bytes) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """Validate a weight file and return its config and float32 arrays."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ModelFormatError("weight file must be bytes")
    if len(data) > MAX_WEIGHTS_BYTES:
        raise ModelFormatError(
            f"weight file is {len(data)} bytes; the limit is {MAX_WEIGHTS_BYTES}"
        )
    doc = _decode_cbor(bytes(data))
    if not isinstance(doc, dict) or set(doc) != _TOP_KEYS:
        raise ModelFormatError(f"weight file must be a map with keys {sorted(_TOP_KEYS)}")
    version = doc["v"]
    if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT_VERSION:
        raise ModelFormatError(f"unsupported weight file version {describe(version)}")
    if doc["kind"] != FORMAT_KIND:
        raise ModelFormatError(f"not a p2pgo model (kind {describe(doc['kind'])})")
    config = ModelConfig.from_dict(doc["config"])
    tensors = doc["tensors"]
    if not isinstance(tensors, dict):
        raise ModelFormatError("tensors must be a map")
    shapes = expected_shapes(config)
    _check_names(shapes, tensors)
    arrays: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        arrays[name] = _decode_tensor(name, tensors[name], shape)
    return config, _check_arrays(config, arrays)


def _decode_tensor(name: str, entry: Any, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(entry, list) or len(entry) != 3:
        raise ModelFormatError(f"tensor {name}: expected [dtype, shape, bytes]")
    dtype_name, declared, raw = entry
    if not isinstance(dtype_name, str) or dtype_name not in _DTYPES:
        raise ModelFormatError(
            f"tensor {name}: dtype {describe(dtype_name)} is not float32 or float16"
        )
    if (
        not isinstance(declared, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in declared)
        or tuple(declared) != shape
    ):
        raise ModelFormatError(f"tensor {name}: shape {describe(declared)}, expected {list(shape)}")
    dtype = _DTYPES[dtype_name]
    if not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dtype.itemsize:
        raise ModelFormatError(f"tensor {name}: data is not {math.prod(shape)} {dtype_name}s")
    array: np.ndarray = np.frombuffer(raw, dtype=dtype).reshape(shape)  # (*shape)
    return array


def load_weights(data: bytes) -> PolicyValueNet:
    """A network from an untrusted weight file; :class:`ModelFormatError` if invalid."""
    config, arrays = decode_weights(data)
    return arrays_to_model(config, arrays)


def average_weights(files: Sequence[bytes]) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """The config and the element-wise mean (in float64, returned as float32) of the
    tensors of weight files that share one config; every file is validated first.

    Raises :class:`ModelFormatError` for an invalid file or mismatched configs (the
    message names the file by its position, from 1) and ``ValueError`` for no files.
    """
    if not files:
        raise ValueError("nothing to average")
    config: ModelConfig | None = None
    sums: dict[str, np.ndarray] = {}
    for number, data in enumerate(files, start=1):
        try:
            this, arrays = decode_weights(data)
        except ModelFormatError as exc:
            raise ModelFormatError(f"file {number}: {exc}") from exc
        if config is None:
            config = this
            sums = {name: a.astype(np.float64) for name, a in arrays.items()}
            continue
        if this != config:
            raise ModelFormatError(f"file {number}: its config differs from file 1's ({this})")
        for name, a in arrays.items():
            sums[name] += a
    assert config is not None
    return config, {name: (a / len(files)).astype(np.float32) for name, a in sums.items()}
