"""Exact integer GEMM with int32 wrap-around, the accumulation of the integer modes."""

from __future__ import annotations

import numpy as np

from . import _checks

__all__ = ["matmul", "exact_matmul_int64", "max_safe_k"]

# Largest integer magnitude float32 and float64 hold exactly (every partial sum must stay
# within it for a BLAS product of integers to be exact, whatever the summation order).
_FLOAT32_EXACT = 2**24
_FLOAT64_EXACT = 2**53


def exact_matmul_int64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [..., M, K] @ b [..., K, N] for integer arrays, exact modulo 2^64 (int64 result;
    leading axes broadcast as in np.matmul, so a stack of GEMMs is one call).

    Uses BLAS on float32 (or float64) operands over K-chunks short enough that no partial
    sum can leave the float's exact-integer range, and integer arithmetic otherwise."""
    return _exact_matmul(a, b, np.int64)


def _exact_matmul(a: np.ndarray, b: np.ndarray, out_dtype: type) -> np.ndarray:
    magnitude_a = max(abs(int(a.min())), abs(int(a.max())), 1)
    magnitude_b = max(abs(int(b.min())), abs(int(b.max())), 1)
    product = magnitude_a * magnitude_b
    k = a.shape[-1]
    for dtype, limit in ((np.float32, _FLOAT32_EXACT), (np.float64, _FLOAT64_EXACT)):
        chunk = limit // product
        if chunk >= k:
            # One BLAS call; every sum is below 2^24 (2^53), so it fits any out_dtype.
            return (a.astype(dtype) @ b.astype(dtype)).astype(out_dtype)
        if chunk >= 64:
            a_float = a.astype(dtype)
            b_float = b.astype(dtype)
            stack = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
            result = np.zeros((*stack, a.shape[-2], b.shape[-1]), dtype=np.int64)
            for start in range(0, k, chunk):
                part = a_float[..., start:start + chunk] @ b_float[..., start:start + chunk, :]
                result += part.astype(np.int64)
            return result.astype(out_dtype)
    return np.matmul(a.astype(np.int64), b.astype(np.int64)).astype(out_dtype)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer product a [M, K] @ b [K, N] in int32, wrapping modulo 2^32.

    This is the integer accumulation of lpmac (and of ONNX MatMulInteger and
    `torch._int_mm`): every product and sum is exact, and only the final int32 result
    wraps. Any integer dtypes are accepted."""
    a = _checks.int_array("a", a, ndim=2)
    b = _checks.int_array("b", b, ndim=2)
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"a [M, K] and b [K, N] must agree on K, but a has shape {a.shape} and b has "
            f"shape {b.shape}")
    return _exact_matmul(a, b, np.int32)


def max_safe_k(activation_range: tuple[int, int], weight_range: tuple[int, int]) -> int:
    """Largest K for which no int32 accumulator can wrap, for operands in the given
    inclusive ranges (the host refuses larger K unless the caller allows wrapping)."""
    corners = [x * w for x in activation_range for w in weight_range]
    largest, smallest = max(corners), min(corners)
    limits = [2**31 - 1]
    if largest > 0:
        limits.append((2**31 - 1) // largest)
    if smallest < 0:
        limits.append(2**31 // -smallest)
    return min(limits)
