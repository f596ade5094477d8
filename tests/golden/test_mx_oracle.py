"""MX quantizer vs gfloat (an independent OCP MX implementation), and the
block-floating-point accumulator vs exact rational arithmetic."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import golden

gfloat = pytest.importorskip("gfloat")
from gfloat import RoundMode, compute_scale_amax, round_ndarray  # noqa: E402
from gfloat.formats import format_info_ocp_int8  # noqa: E402

# gfloat ships the MXINT8 element format; MXINT4 is the same two's-complement integer
# format narrowed to 4 bits (values k * 2^-2 in [-2, 1.75]).
GFLOAT_ELEMENTS = {
    "mxint8": format_info_ocp_int8,
    "mxint4": dataclasses.replace(format_info_ocp_int8, name="ocp_int4", k=4, precision=4),
}


def gfloat_mx_quantize(x: np.ndarray, fmt: str, block: int):
    """gfloat's MX quantization of each row of x (length a multiple of block): the codes and
    the element values as integers P (value / 2^-f)."""
    element = GFLOAT_ELEMENTS[fmt]
    fraction_bits = golden.MX_FORMATS[fmt].fraction_bits
    blocks = x.astype(np.float64).reshape(x.shape[0], -1, block)
    codes = np.empty(blocks.shape[:2], np.int64)
    elements = np.empty(blocks.shape, np.int64)
    for row in range(blocks.shape[0]):
        for index in range(blocks.shape[1]):
            values = blocks[row, index]
            scale = compute_scale_amax(element.emax, values)
            codes[row, index] = int(math.log2(scale)) + 127
            rounded = round_ndarray(element, values / scale, RoundMode.TiesToEven, sat=True)
            elements[row, index] = np.asarray(rounded) * 2**fraction_bits
    return elements.reshape(x.shape), codes


def _test_blocks(rng, rows, block, fmt):
    """float32 blocks of widely varying magnitude plus constructed corner blocks."""
    magnitude = 2.0 ** rng.integers(-140, 120, (rows, 1)).astype(np.float64)
    x = (rng.standard_normal((rows, 4 * block)) * magnitude).astype(np.float32)
    fraction_bits = golden.MX_FORMATS[fmt].fraction_bits
    x[0, :block] = 0.0                                   # all-zero block
    x[1, :block] = np.float32(2.0**-149)                  # subnormal block: shared exp clamps
    # Exact ties: v * 2^f = j + 1/2 with shared exponent 0 (block max in [1, 2)).
    span = 2 * (golden.MX_FORMATS[fmt].max_code + 1)
    ties = (np.arange(block) % span - span // 2 + 0.5) / 2**fraction_bits
    ties[0] = 1.5
    x[2, :block] = ties.astype(np.float32)
    x[3, :block] = np.float32(3.0e38)                     # shared exponent 127
    x[4, :block] = np.float32(2.0**-126) * np.arange(block)  # clamps at -127
    return x


@pytest.mark.parametrize("fmt", ["mxint8", "mxint4"])
@pytest.mark.parametrize("block", [16, 32])
def test_mx_quantize_matches_gfloat(fmt, block):
    seed = 400 + block + len(fmt)
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    x = _test_blocks(rng, 120, block, fmt)
    elements, codes = golden.mx_quantize(x, fmt, block, axis=-1)
    expected_elements, expected_codes = gfloat_mx_quantize(x, fmt, block)
    np.testing.assert_array_equal(codes, expected_codes)
    # The one intentional difference: gfloat's two's-complement element format keeps the
    # code -2^(bits-1) (-2.0); lpmac keeps elements symmetric (OCP's recommendation).
    most_negative = -(2 ** (golden.MX_FORMATS[fmt].bits - 1))
    differs = elements != expected_elements
    assert np.all(expected_elements[differs] == most_negative)
    assert np.all(elements[differs] == most_negative + 1)
    assert differs.sum() < elements.size / 50
    # Exact ties round to even.
    tie_elements = elements[2, 1:block].astype(np.int64)
    unsaturated = np.abs(tie_elements) < golden.MX_FORMATS[fmt].max_code
    assert unsaturated.sum() >= 8
    assert np.all(tie_elements[unsaturated] % 2 == 0)


@pytest.mark.parametrize("fmt", ["mxint8", "mxint4"])
def test_mx_quantize_most_negative_code_is_not_used(fmt):
    """Documented difference: a value that rounds to -2^(bits-1) is clamped to -max."""
    spec = golden.MX_FORMATS[fmt]
    block = np.zeros(32)
    block[0] = -(spec.max_code + 0.75) / 2**spec.fraction_bits  # rounds to -(max+1)
    block[1] = 1.0
    elements, codes = golden.mx_quantize(block[None, :], fmt, 32)
    gfloat_elements, gfloat_codes = gfloat_mx_quantize(block[None, :], fmt, 32)
    assert codes[0, 0] == gfloat_codes[0, 0] == 127
    assert elements[0, 0] == -spec.max_code
    assert gfloat_elements[0, 0] == -spec.max_code - 1


def test_mx_quantize_all_zero_block_gets_code_zero():
    """Documented choice: an all-zero block is encoded with code 0 (2^-127) and zero
    elements, as gfloat's compute_scale_amax does (OCP leaves it open)."""
    elements, codes = golden.mx_quantize(np.zeros((2, 32), np.float32), "mxint8", 32)
    assert codes.tolist() == [[0], [0]]
    assert not elements.any()
    assert gfloat_mx_quantize(np.zeros((1, 32)), "mxint8", 32)[1][0, 0] == 0


def test_mx_quantize_partial_block_and_axis():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((37, 5)).astype(np.float32)
    elements, codes = golden.mx_quantize(x, "mxint8", 16, axis=0)
    assert elements.shape == (37, 5) and codes.shape == (3, 5)
    padded = np.concatenate([x, np.zeros((11, 5), np.float32)]).T
    expected_elements, expected_codes = golden.mx_quantize(padded, "mxint8", 16)
    np.testing.assert_array_equal(codes, expected_codes.T)
    np.testing.assert_array_equal(elements, expected_elements.T[:37])


def test_mx_dequantize_is_exact():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    elements, codes = golden.mx_quantize(x, "mxint8", 32)
    values = golden.mx_dequantize(elements, codes, "mxint8", 32)
    for row in range(4):
        for col in range(64):
            exact = Fraction(int(elements[row, col])) * Fraction(2) ** (
                int(codes[row, col // 32]) - 127 - 6)
            assert Fraction(values[row, col]) == exact
    assert np.max(np.abs(values - x)) <= np.max(np.abs(x)) * 2.0**-6


# --- BFP accumulator ----------------------------------------------------------------------

def round_w(value: Fraction, acc_bits: int, rounding: str) -> Fraction:
    """Nearest (ties to even) or floor onto {k * 2^e : |k| < 2^(W-1)}, by definition."""
    if value == 0:
        return Fraction(0)
    precision = acc_bits - 1
    magnitude = abs(value)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1
    spacing = Fraction(2) ** (exponent - precision + 1)
    quotient = value / spacing
    integer = round(quotient) if rounding == "nearest" else math.floor(quotient)
    return integer * spacing


def exact_accumulate(partials, exponents, acc_bits, rounding):
    acc = Fraction(0)
    for p, x in zip(partials, exponents, strict=True):
        acc = round_w(acc + Fraction(int(p)) * Fraction(2) ** int(x), acc_bits, rounding)
    return acc


def _value(mantissa, exponent) -> Fraction:
    return Fraction(int(mantissa)) * Fraction(2) ** int(exponent)


def _assert_canonical(mantissa: int, exponent: int, acc_bits: int) -> None:
    if mantissa == 0:
        assert exponent == 0
        return
    assert 2 ** (acc_bits - 2) <= mantissa < 2 ** (acc_bits - 1) or \
        -(2 ** (acc_bits - 1)) <= mantissa < -(2 ** (acc_bits - 2))


@settings(max_examples=400, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(-(2**21), 2**21), st.integers(-280, 260)),
                  min_size=1, max_size=24),
    acc_bits=st.integers(8, 32),
    rounding=st.sampled_from(["nearest", "truncate"]),
)
def test_bfp_accumulate_equals_exact_rounding(data, acc_bits, rounding):
    partials = np.array([d[0] for d in data])[None, :]
    exponents = np.array([d[1] for d in data])[None, :]
    mantissa, exponent = golden.bfp_accumulate(partials, exponents, acc_bits=acc_bits,
                                               rounding=rounding)
    expected = exact_accumulate(partials[0], exponents[0], acc_bits, rounding)
    assert _value(mantissa[0], exponent[0]) == expected
    _assert_canonical(int(mantissa[0]), int(exponent[0]), acc_bits)


def test_bfp_accumulate_corner_cases():
    """Cancellation next to a sticky bit, ties, carries and -2^(W-1) mantissas, vectorised."""
    rows = []
    W = 16
    for first, second in [
        ((2**15 - 1, 0), (-(2**16) + 1, -1)),        # massive cancellation, distance 1
        ((1, 40), (1, 0)),                            # far-apart operands: sticky only
        ((2**15 - 1, 0), (1, -1)),                    # exact tie, rounds to even (up)
        ((2**15 - 2, 0), (1, -1)),                    # exact tie, stays even
        ((-(2**15), 0), (-1, -1)),                    # tie below -2^(W-1)
        ((2**15 - 1, 0), (1, 0)),                     # carry into a new binade
        ((-(2**15), 0), (0, 0)),                      # -2^(W-1) mantissa
        ((0, 0), (0, 0)),                             # zero stays (0, 0)
        ((5, -266), (7, 254)),                        # extreme exponents
        ((2**21, 0), (-(2**21), 0)),                  # exact cancellation to zero
    ]:
        rows.append((first, second))
    partials = np.array([[r[0][0], r[1][0]] for r in rows])
    exponents = np.array([[r[0][1], r[1][1]] for r in rows])
    for rounding in ("nearest", "truncate"):
        mantissa, exponent = golden.bfp_accumulate(partials, exponents, acc_bits=W,
                                                   rounding=rounding)
        for index in range(len(rows)):
            expected = exact_accumulate(partials[index], exponents[index], W, rounding)
            assert _value(mantissa[index], exponent[index]) == expected, (index, rounding)
            _assert_canonical(int(mantissa[index]), int(exponent[index]), W)


def _error_bound(terms: list[Fraction], acc_bits: int, rounding: str) -> Fraction:
    """A priori bound ((1 + u)^n - 1) * sum |t_b|, u = 2^(1-W) (nearest) or 2^(2-W)."""
    unit = Fraction(1, 2 ** (acc_bits - 1)) * (1 if rounding == "nearest" else 2)
    return ((1 + unit) ** len(terms) - 1) * sum(abs(t) for t in terms)


@pytest.mark.parametrize("acc_bits", [16, 20, 24])
@pytest.mark.parametrize("rounding", ["nearest", "truncate"])
def test_mx_matmul_error_within_documented_bound(acc_bits, rounding):
    seed = acc_bits * 10 + (rounding == "truncate")
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    # Per-block magnitudes spread over 2^+-12 force alignment shifts and rounding.
    block_scale = np.repeat(2.0 ** rng.integers(-12, 12, (6, 8)), 32, axis=1)
    a = (rng.standard_normal((6, 256)) * block_scale).astype(np.float32)
    b = (rng.standard_normal((256, 5)) * 2.0 ** rng.integers(-20, 20, (1, 5))).astype(np.float32)
    ae, ac = golden.mx_quantize(a, "mxint8", 32, axis=1)
    be, bc = golden.mx_quantize(b, "mxint8", 32, axis=0)
    partials = golden.block_dot_products(ae, be, 32)
    exponents = golden.block_exponents(ac, bc)
    mantissa, exponent = golden.bfp_accumulate(partials, exponents, acc_bits=acc_bits,
                                               rounding=rounding)
    worst = Fraction(0)
    for m in range(6):
        for n in range(5):
            terms = [Fraction(int(p)) * Fraction(2) ** int(x)
                     for p, x in zip(partials[m, n], exponents[m, n], strict=True)]
            error = abs(_value(mantissa[m, n], exponent[m, n]) - sum(terms))
            bound = _error_bound(terms, acc_bits, rounding)
            assert error <= bound
            worst = max(worst, error / bound if bound else Fraction(0))
    print(f"W={acc_bits} {rounding}: worst error / bound = {float(worst):.3g}")
    assert worst > 0, "the inputs must make the accumulator round"


def test_bfp_exact_when_wide_enough():
    """Equal exponents and partial sums below 2^(W-1): no rounding happens at all."""
    rng = np.random.default_rng(10)
    partials = rng.integers(-(2**19), 2**19, (50, 16))
    exponents = np.full((50, 16), -12)
    mantissa, exponent = golden.bfp_accumulate(partials, exponents, acc_bits=32)
    for row in range(50):
        assert _value(mantissa[row], exponent[row]) == \
            Fraction(int(partials[row].sum())) * Fraction(2) ** -12


def test_mx_matmul_outputs():
    rng = np.random.default_rng(11)
    a = rng.standard_normal((7, 100)).astype(np.float32)
    b = rng.standard_normal((100, 40)).astype(np.float32)
    fp32 = golden.mx_matmul(a, b, block=32)
    assert fp32.dtype == np.float32 and fp32.shape == (7, 40)
    assert np.max(np.abs(fp32 - a @ b)) < 0.05 * np.max(np.abs(a @ b))
    elements, codes = golden.mx_matmul(a, b, block=32, out="mxint8")
    assert elements.shape == (7, 40) and codes.shape == (7, 2)
    reblocked = golden.mx_dequantize(elements, codes, "mxint8", 32)
    expected_elements, expected_codes = golden.mx_quantize(fp32.astype(np.float64), "mxint8",
                                                           32)
    np.testing.assert_array_equal(codes, expected_codes)
    assert np.max(np.abs(reblocked - fp32)) <= np.max(np.abs(fp32)) * 2.0**-6
