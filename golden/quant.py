"""Float <-> integer quantization helpers and int4 packing."""

from __future__ import annotations

import numpy as np

from . import _checks
from .rounding import fma_float32, round_half_even

__all__ = ["quantize", "dequantize", "pack_int4", "unpack_int4"]

_DTYPES = {"uint8": np.uint8, "int8": np.int8, "int4": np.int8}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str = "uint8") -> np.ndarray:
    """PyTorch's quantize_per_tensor: clamp(nearbyint(fma(fl32(x), 1 / s, zero_point)), lo, hi)
    with 1 / s computed in float32 (`1.0f / scale`) and the zero point added inside one
    fused multiply-add before rounding, as fbgemm's quantize kernel does (rounding first and
    adding the zero point after differs on ties; docs/numerics.md). `dtype` is "uint8",
    "int8" or "int4" (int4 values in an int8 array)."""
    x = _checks.finite_float_array("x", np.asarray(x))
    dtype = _checks.choice("dtype", dtype, tuple(_DTYPES))
    scale_v = _checks.positive_scale("scale", scale)
    lo, hi = _checks.INT_RANGES[dtype]
    zero_point = _checks.int_scalar("zero_point", zero_point, (lo, hi))
    inverse = np.float32(1.0) / np.float32(scale_v[()])
    fused = fma_float32(x.astype(np.float32), inverse, np.float32(zero_point))
    return np.clip(round_half_even(fused), lo, hi).astype(_DTYPES[dtype])


def dequantize(q: np.ndarray, scale: float | np.ndarray, zero_point: int = 0,
               axis: int = -1) -> np.ndarray:
    """(q - zero_point) * scale in float32; a 1-D `scale` applies along `axis`."""
    q = _checks.int_array("q", q)
    scale_v = np.asarray(scale, dtype=np.float32)
    if scale_v.ndim == 1:
        axis = _checks.axis_index("axis", axis, q.ndim)
        shape = [1] * q.ndim
        shape[axis] = -1
        scale_v = scale_v.reshape(shape)
    return ((q.astype(np.float32) - np.float32(zero_point)) * scale_v).astype(np.float32)


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Pack int4 values two per byte along the last axis, element 0 in the low nibble (the
    ONNX convention); an odd length is padded with a zero high nibble. Returns uint8."""
    values = _checks.int_array("values", values, value_range=_checks.INT_RANGES["int4"],
                               range_name="int4")
    if values.shape[-1] % 2:
        pad = [(0, 0)] * (values.ndim - 1) + [(0, 1)]
        values = np.pad(values, pad)
    nibbles = values.astype(np.uint8) & 0x0F
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, length: int | None = None) -> np.ndarray:
    """Inverse of `pack_int4`: uint8 bytes -> int8 values in [-8, 7] along the last axis,
    cut to `length` elements when given."""
    packed = _checks.int_array("packed", packed, dtypes=("uint8",))
    low = (packed & 0x0F).astype(np.int8)
    high = (packed >> 4).astype(np.int8)
    values = np.stack([low, high], axis=-1).reshape(*packed.shape[:-1], -1)
    values = np.where(values >= 8, values - 16, values).astype(np.int8)
    if length is not None:
        if not 0 < length <= values.shape[-1] or length < values.shape[-1] - 1:
            raise ValueError(
                f"length must be {values.shape[-1] - 1} or {values.shape[-1]} for "
                f"{packed.shape[-1]} packed bytes, not {length!r}")
        values = values[..., :length]
    return values
