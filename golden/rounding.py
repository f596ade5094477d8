"""Every rounding step of lpmac, named and defined once.

All functions are vectorised over NumPy arrays and exact: integer operands are carried
in int64 (never float64) unless stated otherwise.
"""

from __future__ import annotations

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap modulo 2^32, as int64 values in [-2^31, 2^31)."""
    return np.asarray(x, dtype=np.int64).astype(np.int32).astype(np.int64)


def to_float32(x: np.ndarray) -> np.ndarray:
    """fl32: int32 -> float32, round half to even (the x86 `cvtsi2ss` conversion)."""
    return np.asarray(x).astype(np.float32)


def round_half_even(x: np.ndarray) -> np.ndarray:
    """RNE to an integer-valued float of the same dtype (C `nearbyint`, `lrintf`)."""
    return np.rint(x)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (C `std::round`, TFLite's `TfLiteRound`); float64 in/out.
    Exact for |x| < 2^52."""
    x = np.asarray(x, dtype=np.float64)
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SRDHM: a * b / 2^31 rounded to the nearest integer, ties toward plus infinity
    (gemmlowp's nudge of 2^30 or 1 - 2^30 followed by truncation toward zero: SRDHM(1, 2^30)
    = 1 but SRDHM(-1, 2^30) = 0), with the one overflow case a == b == INT32_MIN saturating
    to INT32_MAX. int32 values in int64."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    total = ab + nudge
    # C++ integer division truncates toward zero.
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))
    return np.where(overflow, np.int64(INT32_MAX), high)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp RDBPOT: x / 2^exponent rounded half away from zero, 0 <= exponent <= 31."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def bit_length(magnitude: np.ndarray) -> np.ndarray:
    """Exact bit length of non-negative int64 values (0 for 0)."""
    value = np.asarray(magnitude, dtype=np.int64).copy()
    length = np.zeros(value.shape, dtype=np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        shifted = value >> step
        has_bits = shifted > 0
        length += np.where(has_bits, step, 0)
        value = np.where(has_bits, shifted, value)
    return length + (value > 0)


def round_magnitude(magnitude: np.ndarray, negative: np.ndarray, drop: np.ndarray,
                    rounding: str) -> np.ndarray:
    """Drop the `drop` (>= 0) low bits of a sign-magnitude integer, rounding as `rounding`:

    - "nearest": to nearest, ties to even (symmetric in sign);
    - "truncate": toward minus infinity (two's-complement truncation), so negative
      magnitudes round up.
    Returns the new magnitude (it may carry into one more bit)."""
    magnitude = np.asarray(magnitude, dtype=np.int64)
    drop = np.asarray(drop, dtype=np.int64)
    kept = magnitude >> drop
    remainder = magnitude & ((np.int64(1) << drop) - 1)
    if rounding == "nearest":
        half = np.where(drop > 0, np.int64(1) << np.maximum(drop - 1, 0), np.int64(1))
        up = (remainder > half) | ((remainder == half) & (drop > 0) & ((kept & 1) == 1))
    elif rounding == "truncate":
        up = negative & (remainder != 0)
    else:
        raise ValueError(f"rounding must be 'nearest' or 'truncate', not {rounding!r}")
    return kept + up


def fma_float32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """fl32(a * b + c) with a single rounding (the x86 `vfmadd` of float32 operands).

    a * b is exact in float64; the sum is formed with TwoSum and rounded to odd in float64,
    after which rounding to float32 (24 bits < 53 - 1) is correct."""
    a = np.asarray(a, dtype=np.float32).astype(np.float64)
    b = np.asarray(b, dtype=np.float32).astype(np.float64)
    c = np.asarray(c, dtype=np.float32).astype(np.float64)
    product = a * b
    total = product + c
    # TwoSum: total + error == product + c exactly.
    virtual = total - product
    error = (product - (total - virtual)) + (c - virtual)
    even = (total.view(np.int64) & 1) == 0
    to_odd = (error != 0) & even
    nudged = np.nextafter(total, np.where(error > 0, np.inf, -np.inf))
    return np.where(to_odd, nudged, total).astype(np.float32)
