"""Model versions and the check every peer runs on a ModelUpdate.

A model version is the BLAKE3 hex digest of the weights' canonical bytes. The round
machines take the version function as an argument (`version_of`), because what is
hashed is whatever file format the model travels in: `tensors_version` below hashes a
plain named-tensor encoding (used by the simulator and tests); the network layer passes
a function that hashes the engine's weight file instead.

`verify_model_update` is what any peer — selected or not — runs before adopting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import blake3
import cbor2
import numpy as np

from fl._errors import RemoteProtocolError
from fl._merkle import merkle_root
from fl._round_codec import verify_signature
from fl._round_messages import ModelUpdate
from fl._tensors import NamedTensors, flatten

_KIND = "p2pgo-tensors"
_MAX_TENSOR_BYTES = 256 * 1024 * 1024


def encode_tensors(weights: Mapping[str, np.ndarray]) -> bytes:
    """Canonical CBOR of float32 named tensors: {name: ["float32", shape, bytes]}."""
    _, spec = flatten(weights)  # validates names, dtypes and finiteness
    tensors: dict[str, list[Any]] = {}
    for name, shape in zip(spec.names, spec.shapes, strict=True):
        array = np.ascontiguousarray(weights[name], dtype="<f4")
        tensors[name] = ["float32", list(shape), array.tobytes()]
    data: bytes = cbor2.dumps({"v": 1, "kind": _KIND, "tensors": tensors}, canonical=True)
    return data


def decode_tensors(data: bytes) -> NamedTensors:
    """Inverse of `encode_tensors`; malformed input raises `RemoteProtocolError`."""
    if not isinstance(data, bytes) or len(data) > _MAX_TENSOR_BYTES:
        raise RemoteProtocolError("tensor file must be bytes under the size limit")
    try:
        doc = cbor2.loads(data, max_depth=8, allow_indefinite=False, allow_duplicate_keys=False)
    except Exception as exc:
        # Third-party decoder on hostile bytes: anything it raises means "malformed".
        raise RemoteProtocolError(f"tensor file is not CBOR ({type(exc).__name__})") from exc
    if not isinstance(doc, dict) or set(doc) != {"v", "kind", "tensors"}:
        raise RemoteProtocolError("tensor file must be a map of v, kind, tensors")
    if doc["v"] != 1 or doc["kind"] != _KIND or not isinstance(doc["tensors"], dict):
        raise RemoteProtocolError("not a version-1 tensor file")
    out: NamedTensors = {}
    for name, entry in doc["tensors"].items():
        if not isinstance(name, str) or not isinstance(entry, list) or len(entry) != 3:
            raise RemoteProtocolError("tensor entries must be name -> [dtype, shape, bytes]")
        dtype, shape, raw = entry
        if (
            dtype != "float32"
            or not isinstance(shape, list)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or not isinstance(raw, bytes)
            or len(raw) != 4 * math.prod(shape)
        ):
            raise RemoteProtocolError(f"tensor {name!r} is malformed")
        array = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        if not np.all(np.isfinite(array)):
            raise RemoteProtocolError(f"tensor {name!r} holds NaN or infinity")
        out[name] = array
    if encode_tensors(out) != data:
        raise RemoteProtocolError("tensor file is not canonical")
    return out


def tensors_version(weights: Mapping[str, np.ndarray]) -> str:
    """The model version of `weights`: BLAKE3 hex of `encode_tensors(weights)`."""
    return blake3.blake3(encode_tensors(weights)).hexdigest()


def verify_model_update(
    update: ModelUpdate,
    coordinator_key: bytes,
    expected_parent: str,
    my_submission_hash: bytes | None = None,
) -> None:
    """Check a ModelUpdate before adopting it; raise `RemoteProtocolError` saying why not.

    Checks, in order: the coordinator signed it; it builds on `expected_parent`; its
    participant count matches its submission list, which has no repeats; the Merkle root
    is the root of that list; and, if `my_submission_hash` is given, that my submission
    is in it (a coordinator that dropped or swapped it is caught here).
    """
    if not verify_signature(update, coordinator_key):
        raise RemoteProtocolError("model update is not signed by the coordinator")
    if update.parent_version != expected_parent:
        raise RemoteProtocolError(
            f"model update builds on {update.parent_version[:12]}, not {expected_parent[:12]}"
        )
    if update.participant_count != len(update.submissions) or not update.submissions:
        raise RemoteProtocolError("participant count does not match the submission list")
    if len(set(update.submissions)) != len(update.submissions):
        raise RemoteProtocolError("submission list has repeats")
    if merkle_root(update.submissions) != update.merkle_root:
        raise RemoteProtocolError("Merkle root does not match the submission list")
    if my_submission_hash is not None and my_submission_hash not in update.submissions:
        raise RemoteProtocolError("my submission is missing from the model update")
