"""Wire packing of quantised (or masked) updates: <= 2 bytes per parameter, framed.

Frame: magic `P2Q1`, value bits (1 byte), codec (1 byte: 0 raw, 1 zlib), element count
(uint32), then the little-endian uint16 (bits <= 16) or uint32 payload, zlib-compressed
when that is smaller. Masked vectors are uniform and do not compress; plain quantised
updates often do. zlib is the standard library's; `zstandard` is not a dependency.
Decoding bounds the decompressed size, so a malformed or hostile frame raises
`FlInputError` and never allocates more than the declared payload.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from numpy.typing import NDArray

from fl._errors import FlInputError

MAGIC = b"P2Q1"
MAX_UPDATE_BYTES = 10 * 1024 * 1024
_HEADER = struct.Struct(">4sBBI")
_RAW, _ZLIB = 0, 1


def _width(bits: int) -> int:
    if not 1 <= bits <= 32:
        raise FlInputError("bits must be in 1..32")
    return 2 if bits <= 16 else 4


def pack_quantized(
    values: NDArray[np.unsignedinteger],
    bits: int,
    max_bytes: int = MAX_UPDATE_BYTES,
    *,
    compress: bool = True,
) -> bytes:
    """Frame a 1-D vector of integers below 2^bits; raises `FlInputError` over `max_bytes`.

    ``compress=False`` skips zlib: masked vectors are uniformly random and never shrink,
    so trying costs 8-18 ms per 100k values for nothing.
    """
    vector = np.asarray(values)
    if vector.ndim != 1 or not np.issubdtype(vector.dtype, np.unsignedinteger):
        raise FlInputError("values must be a 1-D unsigned integer vector")
    width = _width(bits)
    if vector.size and int(vector.max()) >= 1 << bits:
        raise FlInputError(f"values must be below 2^{bits}")
    if vector.size >= 1 << 32:
        raise FlInputError("too many values for one frame")
    raw = vector.astype("<u2" if width == 2 else "<u4").tobytes()
    packed = zlib.compress(raw, 1) if compress else raw
    codec, payload = (_ZLIB, packed) if len(packed) < len(raw) else (_RAW, raw)
    frame = _HEADER.pack(MAGIC, bits, codec, vector.size) + payload
    if len(frame) > max_bytes:
        raise FlInputError(f"packed update is {len(frame)} bytes, over the {max_bytes} limit")
    return frame


def unpack_quantized(frame: bytes) -> tuple[NDArray[np.uint32], int]:
    """Inverse of `pack_quantized`: (uint32 vector, bits). Malformed -> `FlInputError`."""
    if len(frame) < _HEADER.size:
        raise FlInputError("frame too short")
    magic, bits, codec, count = _HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise FlInputError("not a quantised-update frame")
    width = _width(bits)
    expected = count * width
    if expected > MAX_UPDATE_BYTES * 2:
        raise FlInputError("declared size is implausibly large")
    body = frame[_HEADER.size :]
    if codec == _RAW:
        raw = body
    elif codec == _ZLIB:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(body, expected)
        except zlib.error as exc:
            raise FlInputError(f"corrupt compressed payload: {exc}") from exc
        if inflater.unconsumed_tail or not inflater.eof:
            raise FlInputError("compressed payload has the wrong length")
    else:
        raise FlInputError(f"unknown codec {codec}")
    if len(raw) != expected:
        raise FlInputError("payload length does not match the element count")
    vector = np.frombuffer(raw, dtype="<u2" if width == 2 else "<u4").astype(np.uint32)
    if vector.size and int(vector.max()) >= 1 << bits:
        raise FlInputError("payload holds values above the declared bits")
    return vector, bits
