"""Quantisation of clipped floats into the integer field Z_{2^k} that SecAgg sums in.

Each coordinate is clamped to `[-clip, clip]` and mapped to an integer in `[0, 2^b - 1]`
with *stochastic* rounding (round up with probability equal to the fractional part), so the
quantised value is an unbiased estimate of the float. The field has `k = b + ceil(log2 n)`
bits: `n` values below `2^b` sum to less than `n * 2^b <= 2^k`, so the modular sum of `n`
summands never wraps and `dequantize_sum` recovers the float sum exactly up to rounding.

`k` is what travels on the wire per parameter (masked values are uniform in Z_{2^k}), so a
target of 16 bits keeps uploads at 2 bytes per parameter; the price is that `b` shrinks as
`n` grows (n = 1,000 leaves b = 6). Rounding error is mean-zero with variance at most
`step^2 / 4` per coordinate and summand.

The rounding randomness is not secret (it only de-biases), so a seeded numpy `Generator`
is fine here; masks never use numpy's PRNG (see `fl._secagg_crypto`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fl._errors import FlInputError

MAX_MODULUS_BITS = 32


@dataclass(frozen=True, slots=True)
class QuantSpec:
    """How floats map to field elements.

    `clip`: coordinates are clamped to [-clip, clip]. `value_bits` (b): one quantised value
    lies in [0, 2^b - 1]. `modulus_bits` (k): the field is Z_{2^k}. `max_summands`: how many
    quantised vectors may be summed without wrapping.
    """

    clip: float
    value_bits: int
    modulus_bits: int
    max_summands: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.clip) or self.clip <= 0:
            raise FlInputError(f"clip must be positive and finite, got {self.clip}")
        if not 1 <= self.modulus_bits <= MAX_MODULUS_BITS:
            raise FlInputError(f"modulus_bits must be in 1..{MAX_MODULUS_BITS}")
        if self.value_bits < 1 or self.max_summands < 1:
            raise FlInputError("value_bits and max_summands must be positive")
        if self.max_summands * ((1 << self.value_bits) - 1) >= (1 << self.modulus_bits):
            raise FlInputError("max_summands values of value_bits would wrap the modulus")

    @property
    def levels(self) -> int:
        """Largest quantised value, 2^b - 1."""
        return (1 << self.value_bits) - 1

    @property
    def step(self) -> float:
        """Float width of one quantisation level."""
        return 2.0 * self.clip / self.levels


def headroom_bits(n_summands: int) -> int:
    """ceil(log2 n): the bits a sum of n values needs beyond one value's bits."""
    if n_summands < 1:
        raise FlInputError(f"n_summands must be >= 1, got {n_summands}")
    return (n_summands - 1).bit_length()


def choose_quant(n_summands: int, clip: float, target_bits: int = 16) -> QuantSpec:
    """Pick the finest quantisation whose n-fold sum fits a `target_bits` field.

    `target_bits` (k, at most 32; 16 gives 2 bytes/param on the wire) is the field size;
    each value gets `b = k - ceil(log2 n)` bits. Raises `FlInputError` if fewer than 2
    value bits would remain (the quantisation would be too coarse to be useful).
    """
    if not 1 <= target_bits <= MAX_MODULUS_BITS:
        raise FlInputError(f"target_bits must be in 1..{MAX_MODULUS_BITS}")
    value_bits = target_bits - headroom_bits(n_summands)
    if value_bits < 2:
        raise FlInputError(
            f"{n_summands} summands leave {value_bits} value bits in a {target_bits}-bit field"
        )
    return QuantSpec(clip, value_bits, target_bits, n_summands)


def quantize(
    values: NDArray[np.floating], spec: QuantSpec, rng: np.random.Generator
) -> NDArray[np.uint32]:
    """Clamp, scale and stochastically round `values` (any shape) to uint32 in [0, 2^b-1]."""
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise FlInputError("cannot quantise NaN or infinity")
    scaled = (np.clip(x, -spec.clip, spec.clip) + spec.clip) / spec.step
    floor = np.floor(scaled)
    rounded = floor + (rng.random(x.shape) < (scaled - floor))
    out: NDArray[np.uint32] = np.clip(rounded, 0, spec.levels).astype(np.uint32)
    return out


def dequantize_sum(
    total: NDArray[np.unsignedinteger], spec: QuantSpec, n_summands: int
) -> NDArray[np.float32]:
    """Turn the field sum of `n_summands` quantised vectors back into a float sum."""
    if not 1 <= n_summands <= spec.max_summands:
        raise FlInputError(f"n_summands must be in 1..{spec.max_summands}, got {n_summands}")
    field = np.asarray(total).astype(np.uint64) & np.uint64((1 << spec.modulus_bits) - 1)
    return (field.astype(np.float64) * spec.step - n_summands * spec.clip).astype(np.float32)


def dequantize(values: NDArray[np.unsignedinteger], spec: QuantSpec) -> NDArray[np.float32]:
    """Dequantise one vector (a sum of one summand)."""
    return dequantize_sum(values, spec, 1)


def modular_sum(vectors: list[NDArray[np.uint32]], modulus_bits: int) -> NDArray[np.uint32]:
    """Sum of uint32 vectors mod 2^modulus_bits (the plaintext reference for SecAgg)."""
    if not vectors:
        raise FlInputError("modular_sum needs at least one vector")
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.uint32))
    for vector in vectors:
        total += np.asarray(vector, dtype=np.uint32)
    return total & np.uint32((1 << modulus_bits) - 1)
