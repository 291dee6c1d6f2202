"""The network's shape as one frozen record, and the one error type for bad model files.

A :class:`ModelConfig` says everything needed to rebuild a network's tensors: it is
stored inside every weight file, so a file carries its own architecture. Values are
range-checked in the constructor; :meth:`ModelConfig.from_dict` reads the untrusted
copy inside a weight file and turns every problem into :class:`ModelFormatError`.

Board size is *not* part of the config: the network is fully convolutional with global
pooling, so the same weights run on any board from 2x2 to 25x25 (9, 13 and 19 are the
sizes that matter). Which sizes a network is *good* at depends on its training data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from engine._coords import MAX_SIZE, MIN_SIZE

__all__ = [
    "FEATURE_PLANES",
    "FIRST_CLASS_SIZES",
    "MAX_BOARD_SIZE",
    "MIN_BOARD_SIZE",
    "ModelConfig",
    "ModelFormatError",
]

# The number of input planes that engine.nn._features produces (checked there).
FEATURE_PLANES = 19
MIN_BOARD_SIZE = MIN_SIZE
MAX_BOARD_SIZE = MAX_SIZE
FIRST_CLASS_SIZES = (9, 13, 19)

# Inclusive ranges. Generous enough for experiments, small enough that a config read from
# an untrusted file cannot ask for an absurd allocation before the size checks run.
_RANGES: dict[str, tuple[int, int]] = {
    "blocks": (1, 40),
    "channels": (8, 512),
    "input_planes": (1, 64),
    "head_channels": (4, 256),
    "value_hidden": (4, 1024),
    "global_pool_every": (0, 40),
}


class ModelFormatError(ValueError):
    """A weight file (or a config or tensor set) that is not a valid p2pgo model."""


def describe(value: Any) -> str:
    """A short, cheap description of an untrusted value for an error message.

    Never the full ``repr``: a hostile file's strings can be tens of megabytes, and
    Python refuses to print integers with more than 4,300 digits.
    """
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if -(10**12) < value < 10**12 else "a very large integer"
    if isinstance(value, str | bytes) and len(value) <= 40:
        return repr(value)
    if isinstance(value, list) and len(value) <= 8 and all(type(v) is int for v in value):
        return "[" + ", ".join(describe(v) for v in value) + "]"
    if isinstance(value, str | bytes | list | dict):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The architecture of a :class:`engine.nn.PolicyValueNet`.

    ``blocks`` residual blocks of ``channels`` 3x3 filters form the trunk; every
    ``global_pool_every``-th block adds a bias computed from the board-wide pooled
    features (0: only the heads pool). ``head_channels`` is the width of the 1x1 convs
    in the policy and value heads, ``value_hidden`` the width of the value head's
    fully connected layer. ``score_head`` adds a second value output: the expected
    score lead, in points, for the side to move.
    """

    blocks: int = 6
    channels: int = 64
    input_planes: int = FEATURE_PLANES
    head_channels: int = 32
    value_hidden: int = 64
    global_pool_every: int = 3
    score_head: bool = False

    def __post_init__(self) -> None:
        for name, (lo, hi) in _RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"model config {name} must be an integer from {lo} to {hi}")
        if not isinstance(self.score_head, bool):
            raise ValueError("model config score_head must be a boolean")

    def pooled_block(self, index: int) -> bool:
        """Whether residual block ``index`` (0-based) has a global-pooling bias."""
        every = self.global_pool_every
        return every > 0 and index % every == every - 1

    def to_dict(self) -> dict[str, int | bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """The config in a decoded weight file; anything unexpected is a ModelFormatError."""
        if not isinstance(data, dict):
            raise ModelFormatError("model config must be a map")
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            missing = sorted(names - set(data))
            extra = sorted(describe(k) for k in set(data) - names)[:5]
            raise ModelFormatError(f"model config keys differ: missing {missing}, unknown {extra}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(str(exc)) from exc
