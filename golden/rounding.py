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


def round_half_even(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RNE to an integer-valued float of the same dtype (C `nearbyint`, `lrintf`); into
    `out` when given."""
    return np.rint(x, out=out)


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


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum of float64 arrays: s = fl(a + b) and the exact error e, with
    s + e == a + b exactly (no overflow assumed) and |e| <= ulp(s) / 2."""
    total = a + b
    virtual = total - a
    error = (a - (total - virtual)) + (b - virtual)
    return total, error


def round_to_precision(x: np.ndarray, precision: int, rounding: str) -> np.ndarray:
    """round_W on float64: x rounded to `precision` (< 53) significant bits, "nearest" (ties
    to even) or "truncate" (toward minus infinity), as round_magnitude does on integers.

    Works on the IEEE bit pattern: adding the rounding increment to the magnitude field and
    clearing the dropped bits carries into the exponent field when the significand
    overflows, which is the next binade. Exact for zero and normal x (not for subnormals,
    infinities or NaN)."""
    bits = np.asarray(x, dtype=np.float64).view(np.int64)
    drop = 53 - precision
    mask = np.int64((1 << drop) - 1)
    if rounding == "nearest":
        increment = (bits >> drop) & 1
        increment += mask >> 1
    elif rounding == "truncate":
        # A negative value (sign bit set) rounds its magnitude up.
        increment = (bits >> 63) & mask
    else:
        raise ValueError(f"rounding must be 'nearest' or 'truncate', not {rounding!r}")
    increment += bits
    increment &= ~mask
    return increment.view(np.float64)


def round_sum(a: np.ndarray, b: np.ndarray, precision: int, rounding: str) -> np.ndarray:
    """round_W(a + b) for float64 a and b, rounded once from the exact sum onto `precision`
    (at most 51) significant bits as `round_to_precision`; a, b, a + b must be zero or normal
    float64 values and the result must not overflow.

    TwoSum gives s = fl(a + b) and its error e. If e != 0, the exact sum x lies strictly
    between s and its float64 neighbour s' towards e; where s has an even significand, s is
    replaced by s', which is round-to-odd of x to 53 bits. The precision-bit values and the
    midpoints between them have even 53-bit significands (53 - precision >= 2), so none
    lies in the closed interval between x and the odd value: both round alike."""
    total, error = two_sum(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    total = np.asarray(total)
    inexact = error != 0
    if inexact.any():
        bits = total.view(np.int64)
        even = (bits & 1) == 0
        # +1 on the magnitude field moves away from zero, -1 towards it.
        towards_zero = (error.view(np.int64) ^ bits) < 0
        bits += np.where(inexact & even, np.where(towards_zero, -1, 1), 0)
    return round_to_precision(total, precision, rounding)


def fma_float32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """fl32(a * b + c) with a single rounding (the x86 `vfmadd` of float32 operands).

    a * b is exact in float64; the sum is formed with TwoSum and rounded to odd in float64,
    after which rounding to float32 (24 bits < 53 - 1) is correct."""
    a = np.asarray(a, dtype=np.float32).astype(np.float64)
    b = np.asarray(b, dtype=np.float32).astype(np.float64)
    c = np.asarray(c, dtype=np.float32).astype(np.float64)
    total, error = two_sum(a * b, c)
    even = (total.view(np.int64) & 1) == 0
    to_odd = (error != 0) & even
    nudged = np.nextafter(total, np.where(error > 0, np.inf, -np.inf))
    return np.where(to_odd, nudged, total).astype(np.float32)
