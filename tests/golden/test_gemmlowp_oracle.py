"""gemmlowp rounding vs the published TFLite / gemmlowp reference code and definitions.

Two independent scalar oracles in plain Python integers:
- `tflite_*`: a line-by-line transcription of TFLite's reference C++ (QuantizeMultiplier,
  MultiplyByQuantizedMultiplier, gemmlowp's SaturatingRoundingDoublingHighMul and
  RoundingDivideByPOT), C++ semantics spelled out (truncating division, int32 wrap);
- `exact_*`: the mathematical definitions with `fractions.Fraction`.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import golden
from golden.rounding import rounding_divide_by_pot, saturating_rounding_doubling_high_mul

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def wrap32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


def tflite_srdhm(a: int, b: int) -> int:
    overflow = a == b and a == INT32_MIN
    ab_64 = a * b
    nudge = (1 << 30) if ab_64 >= 0 else (1 - (1 << 30))
    numerator = ab_64 + nudge
    ab_x2_high32 = abs(numerator) // (1 << 31) * (1 if numerator >= 0 else -1)  # C++ "/"
    return INT32_MAX if overflow else ab_x2_high32


def tflite_rdbpot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def tflite_multiply_by_quantized_multiplier(x: int, q: int, shift: int) -> int:
    left_shift = shift if shift > 0 else 0
    right_shift = 0 if shift > 0 else -shift
    return tflite_rdbpot(tflite_srdhm(wrap32(x * (1 << left_shift)), q), right_shift)


def tflite_quantize_multiplier(m: float) -> tuple[int, int]:
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = math.floor(q * (1 << 31) + 0.5)  # TfLiteRound (std::round) of a positive value
    assert q_fixed <= (1 << 31)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def exact_srdhm(a: int, b: int) -> int:
    """Nearest integer to a * b / 2^31, ties toward plus infinity, saturated."""
    if a == b == INT32_MIN:
        return INT32_MAX
    return math.floor(Fraction(a * b, 2**31) + Fraction(1, 2))


def exact_rdbpot(x: int, exponent: int) -> int:
    """Nearest integer to x / 2^exponent, ties away from zero."""
    magnitude = math.floor(Fraction(abs(x), 2**exponent) + Fraction(1, 2))
    return magnitude if x >= 0 else -magnitude


def _corner_int32(rng: random.Random) -> int:
    return rng.choice([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX, INT32_MAX - 1,
                       1 << 30, -(1 << 30), rng.randint(INT32_MIN, INT32_MAX),
                       rng.randint(-1000, 1000)])


def test_srdhm_matches_both_oracles():
    seed = 11
    print(f"seed={seed}")
    rng = random.Random(seed)
    a = [_corner_int32(rng) for _ in range(20_000)] + [INT32_MIN]
    b = [_corner_int32(rng) for _ in range(20_000)] + [INT32_MIN]
    # Exact ties: a * b = (2j + 1) * 2^30, positive and negative.
    a += [2 * j + 1 for j in range(-500, 500)]
    b += [1 << 30] * 1000
    got = saturating_rounding_doubling_high_mul(np.array(a), np.array(b))
    assert got[20_000] == INT32_MAX  # the INT32_MIN * INT32_MIN saturation
    for index, (x, y) in enumerate(zip(a, b, strict=True)):
        assert got[index] == tflite_srdhm(x, y) == exact_srdhm(x, y), (index, x, y)


def test_rdbpot_matches_both_oracles():
    seed = 12
    print(f"seed={seed}")
    rng = random.Random(seed)
    xs, exps = [], []
    for exponent in range(32):
        for _ in range(300):
            xs.append(_corner_int32(rng))
            exps.append(exponent)
        if exponent:
            # Exact ties (odd multiples of 2^(exponent-1)), both signs.
            for j in range(-20, 20):
                tie = (2 * j + 1) << (exponent - 1)
                if INT32_MIN <= tie <= INT32_MAX:
                    xs.append(tie)
                    exps.append(exponent)
    got = rounding_divide_by_pot(np.array(xs), np.array(exps))
    for index, (x, e) in enumerate(zip(xs, exps, strict=True)):
        assert got[index] == tflite_rdbpot(x, e) == exact_rdbpot(x, e), (x, e)


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=2.0**-45, max_value=2.0**29, exclude_max=True,
                 allow_subnormal=False))
def test_quantize_multiplier_matches_tflite(real):
    q31, shift = golden.quantize_multiplier(real)
    assert (int(q31), int(shift)) == tflite_quantize_multiplier(real)


def test_quantize_multiplier_corner_cases():
    # Renormalisation when the rounded fraction reaches 2^31.
    just_below_one = math.nextafter(1.0, 0.0)
    assert tflite_quantize_multiplier(just_below_one) == (1 << 30, 1)
    q31, shift = golden.quantize_multiplier(just_below_one)
    assert (int(q31), int(shift)) == (1 << 30, 1)
    # A shift below -31 flushes to (0, 0).
    q31, shift = golden.quantize_multiplier(2.0**-40)
    assert (int(q31), int(shift)) == (0, 0) == tflite_quantize_multiplier(2.0**-40)
    with pytest.raises(ValueError, match="multiplier"):
        golden.quantize_multiplier(2.0**31)


def _params(q31, shift, bias, zero_point, out_dtype="int8", relu=False):
    return golden.RequantParams("gemmlowp", np.asarray(q31, np.int64),
                                np.asarray(shift, np.int64), np.asarray(bias, np.int64),
                                zero_point, out_dtype, relu)


def tflite_requantize(acc, bias, q31, shift, zero_point, lo, hi):
    value = tflite_multiply_by_quantized_multiplier(wrap32(acc + bias), q31, shift)
    return min(max(value + zero_point, lo), hi)


@pytest.mark.parametrize("out_dtype,relu", [("int8", False), ("uint8", False),
                                            ("int4", False), ("int8", True)])
def test_requantize_gemmlowp_matches_tflite_reference(out_dtype, relu):
    seed = 21 + len(out_dtype) + relu
    print(f"seed={seed}")
    rng = random.Random(seed)
    channels = 64
    count = 200
    reals = [2.0 ** rng.uniform(-38, 6) for _ in range(channels - 4)]
    # Ties: real multipliers 1/2 and 1/4 make SRDHM / RDBPOT see exact halves.
    reals += [0.5, 0.25, 2.0**-20, 3.0]
    multipliers = [tflite_quantize_multiplier(r) for r in reals]
    q31 = np.array([m[0] for m in multipliers])
    shift = np.array([m[1] for m in multipliers])
    assert shift.max() > 0 and shift.min() <= -31 + 13  # large shifts both ways
    bias = np.array([rng.randint(-(2**20), 2**20) for _ in range(channels)])
    lo, hi = golden.output_range(out_dtype)
    zero_point = rng.randint(lo, hi)
    params = _params(q31, shift, bias, zero_point, out_dtype, relu)
    acc = np.array([[_corner_int32(rng) for _ in range(channels)] for _ in range(count)])
    got = golden.requantize(acc.astype(np.int32), params)
    lo, hi = params.bounds
    mismatches = 0
    for row in range(count):
        for n in range(channels):
            expected = tflite_requantize(int(acc[row, n]), int(bias[n]), int(q31[n]),
                                         int(shift[n]), zero_point, lo, hi)
            mismatches += int(got[row, n]) != expected
    assert mismatches == 0


def test_requantize_gemmlowp_int32_min_and_wrapping_bias():
    """acc + bias wraps modulo 2^32 before scaling; INT32_MIN flows through SRDHM."""
    params = _params([2**31 - 1], [0], [-1], 0, "int8")
    acc = np.array([[INT32_MIN, INT32_MAX, 0]], dtype=np.int32)
    got = golden.requantize(acc, params)
    expected = [tflite_requantize(int(a), -1, 2**31 - 1, 0, 0, -128, 127) for a in acc[0]]
    assert got.tolist() == [expected]
    assert expected == [127, 127, -1]  # INT32_MIN - 1 wraps to INT32_MAX


def test_qlinear_gemmlowp_uses_double_precision_multiplier():
    rng = np.random.default_rng(3)
    x_q = rng.integers(-128, 128, (9, 70), dtype=np.int8)
    w_q = rng.integers(-127, 128, (11, 70), dtype=np.int8)
    w_scale = rng.uniform(0.001, 0.01, 11)
    got = golden.qlinear(x_q, w_q, x_scale=0.02, x_zero_point=-5, w_scale=w_scale,
                         y_scale=0.07, y_zero_point=3, rounding="gemmlowp", out_dtype="int8")
    acc = (x_q.astype(np.int64) + 5) @ w_q.T.astype(np.int64)
    for n in range(11):
        real = float(np.float32(0.02)) * float(np.float32(w_scale[n])) / float(np.float32(0.07))
        q, s = tflite_quantize_multiplier(real)
        for m in range(9):
            assert got[m, n] == tflite_requantize(int(acc[m, n]), 0, q, s, 3, -128, 127)
