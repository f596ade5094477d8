"""The MX golden model as it was before the vectorised rewrite, kept as a test oracle.

This is the previous straightforward implementation of golden.mx (one exact int64 GEMM per
K-block, one integer `bfp_add` per block over all outputs), copied together with the
rounding helpers and the exact integer GEMM it used, so that later changes to golden/
cannot change it. tests/golden/test_mx_speed_equivalence.py checks the current golden.mx
against it bit for bit. Input validation is the golden model's own (golden._checks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden import _checks

SCALE_BIAS = 127
SCALE_NAN = 255
SHARED_EXP_MIN, SHARED_EXP_MAX = -127, 127
MX_OUTPUTS = ("fp32", "mxint8", "mxint4")
ACC_ROUNDINGS = ("nearest", "truncate")
ACC_BITS_RANGE = (8, 32)


@dataclass(frozen=True)
class MxFormat:
    """An MX integer element format: P in [-max_code, max_code], value P * 2^-fraction_bits
    times the block scale; emax_elem = 0 for both."""

    name: str
    bits: int
    max_code: int
    fraction_bits: int


MX_FORMATS: dict[str, MxFormat] = {
    "mxint8": MxFormat("mxint8", 8, 127, 6),
    "mxint4": MxFormat("mxint4", 4, 7, 2),
}


# --- golden/rounding.py ------------------------------------------------------------------

def round_half_even(x: np.ndarray) -> np.ndarray:
    """RNE to an integer-valued float of the same dtype (C `nearbyint`, `lrintf`)."""
    return np.rint(x)


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



# --- golden/intgemm.py -------------------------------------------------------------------

_FLOAT32_EXACT = 2**24
_FLOAT64_EXACT = 2**53


def exact_matmul_int64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [M, K] @ b [K, N] for integer arrays, exact modulo 2^64 (int64 result).

    Uses BLAS on float32 (or float64) operands over K-chunks short enough that no partial
    sum can leave the float's exact-integer range, and integer arithmetic otherwise."""
    return _exact_matmul(a, b, np.int64)


def _exact_matmul(a: np.ndarray, b: np.ndarray, out_dtype: type) -> np.ndarray:
    magnitude_a = max(abs(int(a.min())), abs(int(a.max())), 1)
    magnitude_b = max(abs(int(b.min())), abs(int(b.max())), 1)
    product = magnitude_a * magnitude_b
    k = a.shape[1]
    for dtype, limit in ((np.float32, _FLOAT32_EXACT), (np.float64, _FLOAT64_EXACT)):
        chunk = limit // product
        if chunk >= k:
            # One BLAS call; every sum is below 2^24 (2^53), so it fits any out_dtype.
            return (a.astype(dtype) @ b.astype(dtype)).astype(out_dtype)
        if chunk >= 64:
            a_float = a.astype(dtype)
            b_float = b.astype(dtype)
            result = np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
            for start in range(0, k, chunk):
                part = a_float[:, start:start + chunk] @ b_float[start:start + chunk]
                result += part.astype(np.int64)
            return result.astype(out_dtype)
    return np.matmul(a.astype(np.int64), b.astype(np.int64)).astype(out_dtype)



# --- golden/mx.py ------------------------------------------------------------------------

def _format(name: str, value: str) -> MxFormat:
    return MX_FORMATS[_checks.choice(name, value, tuple(MX_FORMATS))]


def _block(value: int) -> int:
    if value not in (16, 32):
        raise ValueError(f"block must be 16 or 32, not {value!r}")
    return value


def _blocked(x: np.ndarray, axis: int, block: int) -> tuple[np.ndarray, int]:
    """Move `axis` last, zero-pad it to whole blocks, split it: [..., nb, block]."""
    moved = np.moveaxis(x, axis, -1)
    length = moved.shape[-1]
    blocks = -(-length // block)
    padded = np.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(0, blocks * block - length)])
    return padded.reshape(*moved.shape[:-1], blocks, block), length


def mx_quantize(x: np.ndarray, fmt: str = "mxint8", block: int = 32,
                axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """OCP Algorithm 1 along `axis`: per block of `block` consecutive elements,
    shared_exp = clamp(floor(log2(max|v|)) - emax_elem, -127, 127) (emax_elem = 0),
    P = clamp(round_half_even(v * 2^(fraction_bits - shared_exp)), -max, max).

    An all-zero block gets scale code 0 (2^-127). A trailing partial block is scaled by its
    own elements. Returns (elements int8 shaped like x, scale codes uint8 shaped like x
    with `axis` of length ceil(n / block))."""
    spec = _format("fmt", fmt)
    block = _block(block)
    x = _checks.finite_float_array("x", np.asarray(x) if not isinstance(x, np.ndarray) else x)
    axis = _checks.axis_index("axis", axis, x.ndim)
    values, length = _blocked(x.astype(np.float64), axis, block)
    amax = np.abs(values).max(axis=-1)
    # floor(log2(amax)) exactly: frexp gives amax = f * 2^e with f in [0.5, 1).
    _, exponent = np.frexp(amax)
    shared = np.where(amax > 0, exponent.astype(np.int64) - 1, SHARED_EXP_MIN)
    shared = np.clip(shared, SHARED_EXP_MIN, SHARED_EXP_MAX)
    scaled = np.ldexp(values, (spec.fraction_bits - shared)[..., None])
    elements = np.clip(round_half_even(scaled), -spec.max_code, spec.max_code)
    elements = elements.reshape(*values.shape[:-2], -1)[..., :length].astype(np.int8)
    codes = (shared + SCALE_BIAS).astype(np.uint8)
    return np.moveaxis(elements, -1, axis), np.moveaxis(codes, -1, axis)


def _check_codes(name: str, codes: np.ndarray) -> np.ndarray:
    codes = _checks.int_array(name, codes, value_range=(0, 255))
    if np.any(codes == SCALE_NAN):
        raise ValueError(f"{name} contains the E8M0 NaN code 255, which lpmac does not accept")
    return codes


def _check_elements(name: str, elements: np.ndarray, spec: MxFormat) -> np.ndarray:
    return _checks.int_array(name, elements, value_range=(-spec.max_code, spec.max_code),
                             range_name=spec.name)


def block_dot_products(a_elements: np.ndarray, b_elements: np.ndarray,
                       block: int) -> np.ndarray:
    """p[m, n, b] = exact sum over K-block b of a[m, k] * b[k, n] (int64, [M, N, nb]); a
    trailing partial block counts only its elements."""
    k = a_elements.shape[1]
    blocks = -(-k // block)
    out = np.empty((a_elements.shape[0], b_elements.shape[1], blocks), dtype=np.int64)
    for index in range(blocks):
        cut = slice(index * block, min((index + 1) * block, k))
        out[:, :, index] = exact_matmul_int64(a_elements[:, cut], b_elements[cut, :])
    return out


def block_exponents(a_codes: np.ndarray, b_codes: np.ndarray, fmt_a: str = "mxint8",
                    fmt_b: str = "mxint8") -> np.ndarray:
    """x[m, n, b] = (ca[m, b] - 127) + (cb[b, n] - 127) - fa - fb: the power of two of the
    block's integer dot product ([M, N, nb] int64)."""
    fa = _format("fmt_a", fmt_a).fraction_bits
    fb = _format("fmt_b", fmt_b).fraction_bits
    a_exp = a_codes.astype(np.int64) - SCALE_BIAS - fa
    b_exp = b_codes.astype(np.int64) - SCALE_BIAS - fb
    return a_exp[:, None, :] + b_exp.T[None, :, :]


# --- The block-floating-point accumulator ------------------------------------------------
#
# A value is m * 2^e with m a W-bit two's-complement integer. The representable set is
# symmetric, {+-k * 2^e : 0 <= k < 2^(W-1)}, i.e. binary floating point with W - 1 bits of
# precision and an unbounded exponent. The canonical form (the one `bfp_*` return) has no
# redundant sign bit: m in [2^(W-2), 2^(W-1)) or m in [-2^(W-1), -2^(W-2)); zero is (0, 0).

_FRAME_BITS = 61          # operands are normalised to 61-bit magnitudes before alignment
_ZERO_EXPONENT = -(2**40)  # exponent given to zero operands so they never dominate
_OPERAND_LIMIT = 2**32     # |mantissa| bound of an operand (W <= 32, block sums < 2^32)


def _acc_bits(acc_bits: int) -> int:
    lo, hi = ACC_BITS_RANGE
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not lo <= acc_bits <= hi:
        raise ValueError(f"acc_bits must be an integer from {lo} to {hi}, not {acc_bits!r}")
    return acc_bits


def _to_frame(mantissa: np.ndarray, exponent: np.ndarray):
    negative = mantissa < 0
    magnitude = np.abs(mantissa)
    shift = np.where(magnitude > 0, _FRAME_BITS - bit_length(magnitude), 0)
    frame_exp = np.where(magnitude > 0, exponent - shift, _ZERO_EXPONENT)
    return negative, magnitude << shift, frame_exp


def bfp_normalize(mantissa: np.ndarray, exponent: np.ndarray,
                  acc_bits: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The canonical (m, e) of the exact values m * 2^e, which must be representable with
    a W = acc_bits mantissa (otherwise a ValueError)."""
    precision = _acc_bits(acc_bits) - 1
    mantissa = np.asarray(mantissa, dtype=np.int64)
    exponent = np.broadcast_to(np.asarray(exponent, dtype=np.int64), mantissa.shape)
    negative = mantissa < 0
    magnitude = np.abs(mantissa)
    length = bit_length(magnitude)
    power_of_two = (magnitude & (magnitude - 1)) == 0
    target = np.where(negative & power_of_two, precision + 1, precision)
    shift = target - length
    if np.any((magnitude > 0) & (shift < 0) & ~((shift == -1) & power_of_two)):
        raise ValueError(f"the mantissas do not fit in {acc_bits} bits")
    normal = np.where(shift >= 0, magnitude << np.maximum(shift, 0),
                      magnitude >> np.maximum(-shift, 0))
    zero = magnitude == 0
    m = np.where(zero, 0, np.where(negative, -normal, normal))
    e = np.where(zero, 0, exponent - shift)
    return m.astype(np.int64), e.astype(np.int64)


def bfp_add(mantissa: np.ndarray, exponent: np.ndarray, term: np.ndarray,
            term_exponent: np.ndarray, *, acc_bits: int = 32,
            rounding: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """One accumulator update: round_W(m * 2^e + term * 2^term_exponent), canonical.

    round_W is "nearest" (ties to even) or "truncate" (toward minus infinity) onto the
    W-bit-mantissa grid. Exact arithmetic: the smaller operand is aligned with a sticky
    bit that cannot reach the rounding position (docs/numerics.md)."""
    precision = _acc_bits(acc_bits) - 1
    _checks.choice("rounding", rounding, ACC_ROUNDINGS)
    mantissa = np.asarray(mantissa, dtype=np.int64)
    term = np.asarray(term, dtype=np.int64)
    if np.any(np.abs(term) >= _OPERAND_LIMIT) or np.any(np.abs(mantissa) > 2**precision):
        raise ValueError("bfp_add operands must have magnitudes below 2^32")
    shape = np.broadcast_shapes(mantissa.shape, np.shape(exponent), term.shape,
                                np.shape(term_exponent))
    a_neg, a_mag, a_exp = _to_frame(np.broadcast_to(mantissa, shape),
                                    np.broadcast_to(np.asarray(exponent, np.int64), shape))
    b_neg, b_mag, b_exp = _to_frame(np.broadcast_to(term, shape),
                                    np.broadcast_to(np.asarray(term_exponent, np.int64),
                                                    shape))
    a_big = a_exp >= b_exp
    big_neg, big_mag, big_exp = (np.where(a_big, a, b) for a, b in
                                 ((a_neg, b_neg), (a_mag, b_mag), (a_exp, b_exp)))
    small_neg, small_mag, small_exp = (np.where(a_big, b, a) for a, b in
                                       ((a_neg, b_neg), (a_mag, b_mag), (a_exp, b_exp)))
    distance = np.minimum(big_exp - small_exp, 62)
    aligned = small_mag >> distance
    sticky = (small_mag & ((np.int64(1) << distance) - 1)) != 0
    aligned = aligned | sticky
    total = np.where(big_neg, -big_mag, big_mag) + np.where(small_neg, -aligned, aligned)
    negative = total < 0
    magnitude = np.abs(total)
    drop = np.maximum(bit_length(magnitude) - precision, 0)
    rounded = round_magnitude(magnitude, negative, drop, rounding)
    result_exp = np.where(magnitude > 0, big_exp + drop, 0)
    return bfp_normalize(np.where(negative, -rounded, rounded), result_exp, acc_bits)


def bfp_accumulate(partials: np.ndarray, exponents: np.ndarray, *, acc_bits: int = 32,
                   rounding: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """The BFP accumulation unit: acc <- round_W(acc + p_b * 2^x_b) for b = 0, 1, ... along
    the last axis, from acc = 0. Returns canonical (mantissa, exponent), int64."""
    partials = _checks.int_array("partials", partials)
    exponents = _checks.int_array("exponents", exponents)
    if partials.shape != exponents.shape:
        raise ValueError(
            f"partials and exponents must have the same shape, not {partials.shape} and "
            f"{exponents.shape}")
    if np.any(np.abs(partials.astype(np.int64)) >= _OPERAND_LIMIT):
        raise ValueError("partials must have magnitudes below 2^32")
    mantissa = np.zeros(partials.shape[:-1], dtype=np.int64)
    exponent = np.zeros(partials.shape[:-1], dtype=np.int64)
    for index in range(partials.shape[-1]):
        mantissa, exponent = bfp_add(mantissa, exponent, partials[..., index],
                                     exponents[..., index], acc_bits=acc_bits,
                                     rounding=rounding)
    return mantissa, exponent


def bfp_to_float64(mantissa: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """Exact value m * 2^e (exact in float64 for |m| < 2^53 and moderate exponents)."""
    return np.ldexp(np.asarray(mantissa, dtype=np.float64), np.asarray(exponent, np.int64))


def bfp_to_float32(mantissa: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """FP32 output: m * 2^e rounded half to even to float32, with IEEE subnormals and
    overflow to infinity."""
    with np.errstate(over="ignore"):
        return bfp_to_float64(mantissa, exponent).astype(np.float32)


def mx_matmul_quantized(a_elements: np.ndarray, a_codes: np.ndarray, b_elements: np.ndarray,
                        b_codes: np.ndarray, *, fmt_a: str = "mxint8", fmt_b: str = "mxint8",
                        block: int = 32, acc_bits: int = 32,
                        acc_rounding: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """MX GEMM on quantized operands: a [M, K] with codes [M, nb], b [K, N] with codes
    [nb, N]. Returns the canonical BFP accumulators (mantissa, exponent), each [M, N]."""
    spec_a, spec_b = _format("fmt_a", fmt_a), _format("fmt_b", fmt_b)
    block = _block(block)
    a_elements = _check_elements("a_elements", a_elements, spec_a)
    b_elements = _check_elements("b_elements", b_elements, spec_b)
    if a_elements.ndim != 2 or b_elements.ndim != 2 or \
            a_elements.shape[1] != b_elements.shape[0]:
        raise ValueError(
            f"a_elements [M, K] and b_elements [K, N] must be 2-D and agree on K, not "
            f"{a_elements.shape} and {b_elements.shape}")
    blocks = -(-a_elements.shape[1] // block)
    a_codes = _check_codes("a_codes", a_codes)
    b_codes = _check_codes("b_codes", b_codes)
    if a_codes.shape != (a_elements.shape[0], blocks):
        raise ValueError(f"a_codes must have shape {(a_elements.shape[0], blocks)}, not "
                         f"{a_codes.shape}")
    if b_codes.shape != (blocks, b_elements.shape[1]):
        raise ValueError(f"b_codes must have shape {(blocks, b_elements.shape[1])}, not "
                         f"{b_codes.shape}")
    partials = block_dot_products(a_elements, b_elements, block)
    exponents = block_exponents(a_codes, b_codes, fmt_a, fmt_b)
    return bfp_accumulate(partials, exponents, acc_bits=acc_bits, rounding=acc_rounding)


def mx_matmul(a: np.ndarray, b: np.ndarray, *, fmt_a: str = "mxint8", fmt_b: str = "mxint8",
              block: int = 32, acc_bits: int = 32, out: str = "fp32",
              acc_rounding: str = "nearest"):
    """MX GEMM of float a [M, K] and b [K, N]: a quantized along K per row, b along K per
    column (`mx_quantize`), block dot products accumulated in the W = acc_bits BFP
    accumulator, then output as float32 [M, N] (out="fp32") or re-blocked along N as
    (elements [M, N] int8, scale codes [M, ceil(N / block)] uint8) (out="mxint8"/"mxint4")."""
    a = _checks.finite_float_array("a", a)
    b = _checks.finite_float_array("b", b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"a [M, K] and b [K, N] must be 2-D and agree on K, not {a.shape} and {b.shape}")
    out = _checks.choice("out", out, MX_OUTPUTS)
    _format("fmt_a", fmt_a)
    _format("fmt_b", fmt_b)
    _acc_bits(acc_bits)
    _checks.choice("acc_rounding", acc_rounding, ACC_ROUNDINGS)
    a_elements, a_codes = mx_quantize(a, fmt_a, block, axis=1)
    b_elements, b_codes = mx_quantize(b, fmt_b, block, axis=0)
    mantissa, exponent = mx_matmul_quantized(
        a_elements, a_codes, b_elements, b_codes, fmt_a=fmt_a, fmt_b=fmt_b, block=block,
        acc_bits=acc_bits, acc_rounding=acc_rounding)
    if out == "fp32":
        return bfp_to_float32(mantissa, exponent)
    return mx_quantize(bfp_to_float64(mantissa, exponent), out, block, axis=1)
