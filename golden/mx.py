"""OCP Microscaling (MX v1.0) integer formats and block-floating-point accumulation.

MXINT8: element P in [-127, 127], value = 2^(c - 127) * P * 2^-6
MXINT4: element P in [-7, 7],     value = 2^(c - 127) * P * 2^-2
c is the block's E8M0 scale code (255 = NaN, refused). docs/numerics.md, "MX".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _checks
from .intgemm import exact_matmul_int64
from .rounding import bit_length, round_half_even, round_magnitude, round_sum

__all__ = [
    "MX_FORMATS", "MxFormat", "SCALE_BIAS", "SCALE_NAN", "mx_quantize", "mx_dequantize",
    "block_dot_products", "block_exponents", "bfp_add", "bfp_accumulate", "bfp_normalize",
    "bfp_to_float64", "bfp_to_float32", "mx_matmul_quantized", "mx_matmul",
]

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


def _format(name: str, value: str) -> MxFormat:
    return MX_FORMATS[_checks.choice(name, value, tuple(MX_FORMATS))]


def _block(value: int) -> int:
    if value not in (16, 32):
        raise ValueError(f"block must be 16 or 32, not {value!r}")
    return value


def _blocked(x: np.ndarray, axis: int, block: int) -> tuple[np.ndarray, int]:
    """Zero-pad `axis` to whole blocks and split it in place into (nb, block): a [M, K] with
    axis 1 becomes [M, nb, block], b [K, N] with axis 0 becomes [nb, block, N]."""
    length = x.shape[axis]
    blocks = -(-length // block)
    if blocks * block != length:
        padding = [(0, 0)] * x.ndim
        padding[axis] = (0, blocks * block - length)
        x = np.pad(x, padding)
    return x.reshape(*x.shape[:axis], blocks, block, *x.shape[axis + 1:]), length


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
    # Floats keep their dtype (|v| and max are exact in any of them); integers become float64
    # first, as float64(max|v|) is then the maximum of the float64 values.
    values, length = _blocked(x if x.dtype.kind == "f" else x.astype(np.float64), axis,
                              block)
    amax = np.abs(values).max(axis=axis + 1)
    # floor(log2(amax)) exactly: frexp gives amax = f * 2^e with f in [0.5, 1).
    _, exponent = np.frexp(amax)
    shared = np.where(amax > 0, exponent.astype(np.int64) - 1, SHARED_EXP_MIN)
    shared = np.clip(shared, SHARED_EXP_MIN, SHARED_EXP_MAX)
    # v * 2^(fraction_bits - shared) in float64: the power of two (2^-121 .. 2^133) is a
    # float64, so the product is the correctly rounded (exact unless it underflows) value,
    # as ldexp gives it.
    scale = np.expand_dims(np.ldexp(1.0, spec.fraction_bits - shared), axis + 1)
    scaled = np.multiply(values, scale, dtype=np.float64)
    elements = np.clip(round_half_even(scaled, out=scaled), -spec.max_code, spec.max_code,
                       out=scaled)
    elements = elements.reshape(x.shape[:axis] + (-1,) + x.shape[axis + 1:])
    elements = elements[(slice(None),) * axis + (slice(0, length),)]
    return elements.astype(np.int8), (shared + SCALE_BIAS).astype(np.uint8)


def _check_codes(name: str, codes: np.ndarray) -> np.ndarray:
    codes = _checks.int_array(name, codes, value_range=(0, 255))
    if np.any(codes == SCALE_NAN):
        raise ValueError(f"{name} contains the E8M0 NaN code 255, which lpmac does not accept")
    return codes


def _check_elements(name: str, elements: np.ndarray, spec: MxFormat) -> np.ndarray:
    return _checks.int_array(name, elements, value_range=(-spec.max_code, spec.max_code),
                             range_name=spec.name)


def mx_dequantize(elements: np.ndarray, scale_codes: np.ndarray, fmt: str = "mxint8",
                  block: int = 32, axis: int = -1) -> np.ndarray:
    """Exact values 2^(c - 127) * P * 2^-fraction_bits as float64."""
    spec = _format("fmt", fmt)
    block = _block(block)
    elements = _check_elements("elements", elements, spec)
    axis = _checks.axis_index("axis", axis, elements.ndim)
    codes = _check_codes("scale_codes", scale_codes)
    blocks = -(-elements.shape[axis] // block)
    expected = list(elements.shape)
    expected[axis] = blocks
    if list(codes.shape) != expected:
        raise ValueError(
            f"scale_codes must have shape {tuple(expected)} for elements of shape "
            f"{elements.shape} with block {block}, not {codes.shape}")
    exponent = np.repeat(codes.astype(np.int64), block, axis=axis)
    exponent = np.take(exponent, np.arange(elements.shape[axis]), axis=axis)
    return np.ldexp(elements.astype(np.float64), exponent - SCALE_BIAS - spec.fraction_bits)


def block_dot_products(a_elements: np.ndarray, b_elements: np.ndarray,
                       block: int) -> np.ndarray:
    """p[m, n, b] = exact sum over K-block b of a[m, k] * b[k, n] (int64, [M, N, nb]); a
    trailing partial block counts only its elements."""
    a_blocks, _ = _blocked(a_elements, 1, block)                 # [M, nb, block]
    b_blocks, _ = _blocked(b_elements, 0, block)                 # [nb, block, N]
    # One stacked exact GEMM [nb, M, block] @ [nb, block, N]; the zero padding of the last
    # block adds nothing. The result is laid out [nb, M, N] so that each block is contiguous.
    products = exact_matmul_int64(a_blocks.transpose(1, 0, 2), b_blocks)
    return np.moveaxis(products, 0, -1)


def block_exponents(a_codes: np.ndarray, b_codes: np.ndarray, fmt_a: str = "mxint8",
                    fmt_b: str = "mxint8") -> np.ndarray:
    """x[m, n, b] = (ca[m, b] - 127) + (cb[b, n] - 127) - fa - fb: the power of two of the
    block's integer dot product ([M, N, nb] int64)."""
    fa = _format("fmt_a", fmt_a).fraction_bits
    fb = _format("fmt_b", fmt_b).fraction_bits
    a_exp = a_codes.astype(np.int64) - SCALE_BIAS - fa
    b_exp = b_codes.astype(np.int64) - SCALE_BIAS - fb
    # Laid out [nb, M, N] like block_dot_products.
    return np.moveaxis(np.add(a_exp.T[:, :, None], b_exp[:, None, :], order="C"), 0, -1)


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


# --- The accumulator evaluated in float64 ------------------------------------------------
#
# bfp_accumulate and the MX GEMM evaluate the same updates acc <- round_W(acc + t_b) on
# float64 values, exactly (docs/numerics.md, section 7):
#
# * Every term t_b = p_b * 2^x_b is exact in float64 (|p_b| < 2^32) and every accumulator
#   value has at most W - 1 <= 31 significant bits, so it is a float64 too.
# * round_W(acc + t_b) is rounding.round_sum (TwoSum, round to odd, round to W - 1 bits),
#   exact when every non-zero value involved is a normal float64 and nothing overflows.
#   All values are multiples of 2^min(x_b) (rounding only coarsens the grid), so keeping
#   the exponents, relative to a per-output offset, within [-_FLOAT64_SPREAD, 0] bounds
#   them to [2^-_FLOAT64_SPREAD, nb * 2^32]: normal, and far from overflow.
# Outputs whose exponents spread wider go through bfp_add, the integer definition.

_FLOAT64_SPREAD = 900
# Outputs updated together: the temporaries of one update stay in cache and the allocator
# reuses them (fresh multi-megabyte arrays cost more in page faults than their arithmetic).
_TILE = 2**16


def _to_bfp(values: np.ndarray, acc_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The canonical (m, e) of float64 values (zero or normal) with at most acc_bits - 1
    significant bits, read from their IEEE fields: value = s * 2^(field - 1075) with the
    53-bit significand s, so m = s >> (54 - W) exactly and e = field - 1075 + 54 - W, with
    m in [2^(W-2), 2^(W-1)). A negative power of two is canonically -2^(W-1) * 2^(e-1)."""
    bits = np.asarray(values, dtype=np.float64).view(np.int64)
    shift = 54 - acc_bits
    mantissa = bits & ((1 << 52) - 1)
    mantissa |= 1 << 52
    mantissa >>= shift
    exponent = bits >> 52
    exponent &= 0x7FF
    zero = exponent == 0                           # +0.0 and -0.0 (no subnormals here)
    exponent += shift - 1075
    negative = bits < 0
    negative_power = (mantissa == 1 << (acc_bits - 2)) & negative
    mantissa <<= negative_power
    exponent -= negative_power
    np.negative(mantissa, out=mantissa, where=negative)
    mantissa[zero] = 0
    exponent[zero] = 0
    return mantissa, exponent


def _accumulate_float64(rows: int, cols: int, blocks: int,
                        term: Callable[[slice, int], np.ndarray], acc_bits: int,
                        rounding: str) -> np.ndarray:
    """acc <- round_W(acc + term(r, b)) for b = 0, 1, ..., blocks - 1 from acc = 0, on float64
    outputs [rows, cols]; term(r, b) is the float64 term of block b for the rows r (a
    slice). Tiles of about _TILE outputs run one after the other."""
    result = np.empty((rows, cols))
    step = max(1, _TILE // max(cols, 1))
    for start in range(0, rows, step):
        tile = slice(start, min(start + step, rows))
        accumulator = np.zeros((tile.stop - tile.start, cols))
        for index in range(blocks):
            accumulator = round_sum(accumulator, term(tile, index), acc_bits - 1, rounding)
        result[tile] = accumulator
    return result


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
    if -int(partials.min()) >= _OPERAND_LIMIT or int(partials.max()) >= _OPERAND_LIMIT:
        raise ValueError("partials must have magnitudes below 2^32")
    _acc_bits(acc_bits)
    _checks.choice("rounding", rounding, ACC_ROUNDINGS)
    blocks = partials.shape[-1]
    flat_partials = partials.reshape(-1, blocks)
    flat_exponents = exponents.reshape(-1, blocks)
    # Exponents relative to an offset: one for all outputs if they allow it (the MX GEMM's
    # always do), else one per output.
    highest = int(exponents.max())
    if highest - int(exponents.min()) <= _FLOAT64_SPREAD:
        offset = np.full(len(flat_exponents), highest, dtype=np.int64)
        in_float64 = np.ones(len(flat_exponents), dtype=bool)
    else:
        offset = flat_exponents.max(axis=1).astype(np.int64)
        in_float64 = offset - flat_exponents.min(axis=1) <= _FLOAT64_SPREAD

    def term(tile: slice, index: int) -> np.ndarray:
        relative = np.maximum(flat_exponents[tile, index] - offset[tile], -_FLOAT64_SPREAD)
        # int32 exponents: NumPy's ldexp is many times slower with int64 ones.
        return np.ldexp(flat_partials[tile, index].astype(np.float64),
                        relative.astype(np.int32))[:, None]

    values = _accumulate_float64(len(flat_partials), 1, blocks, term, acc_bits, rounding)
    mantissa, exponent = _to_bfp(values[:, 0], acc_bits)
    exponent = np.where(mantissa == 0, 0, exponent + offset)
    if not in_float64.all():
        wide = ~in_float64
        wide_partials = flat_partials[wide].astype(np.int64)
        wide_exponents = flat_exponents[wide].astype(np.int64)
        m = np.zeros(len(wide_partials), dtype=np.int64)
        e = np.zeros_like(m)
        for index in range(blocks):
            m, e = bfp_add(m, e, wide_partials[:, index], wide_exponents[:, index],
                           acc_bits=acc_bits, rounding=rounding)
        mantissa[wide], exponent[wide] = m, e
    return mantissa.reshape(partials.shape[:-1]), exponent.reshape(partials.shape[:-1])


def bfp_to_float64(mantissa: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """Exact value m * 2^e (exact in float64 for |m| < 2^53 and moderate exponents)."""
    return np.ldexp(np.asarray(mantissa, dtype=np.float64), np.asarray(exponent, np.int64))


def bfp_to_float32(mantissa: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """FP32 output: m * 2^e rounded half to even to float32, with IEEE subnormals and
    overflow to infinity."""
    with np.errstate(over="ignore"):
        return bfp_to_float64(mantissa, exponent).astype(np.float32)


def _cannot_round(a_blocks: np.ndarray, a_exponents: np.ndarray, b_blocks: np.ndarray,
                  b_exponents: np.ndarray, precision: int) -> np.ndarray:
    """True [M, N] where no update of the accumulator can round, so that it ends with the
    exact sum of all the products. Elements a [M, nb, block] with exponents [M, nb] and
    b [nb, block, N] with exponents [nb, N] (value P * 2^s).

    Every non-zero product is P_a * P_b * 2^(sa + sb) with sa >= La[m], the lowest exponent
    of a non-zero block of row m, and sb >= Lb[n]: a multiple of 2^L, L = La + Lb, and so is
    every partial sum. If U = sum_k |A[m, k] * B[k, n]| < 2^(L + precision), every partial
    sum, in any order, is k * 2^L with |k| < 2^precision: on the grid of round_W, and a
    float64 (precision < 53). U <= min(|A_m|_1 * max|B_n|, max|A_m| * |B_n|_1), with the
    norms counted in units of 2^La and 2^Lb. They are sums and products of non-negative
    float64 numbers, whose rounding is monotone, and 2^precision is a float64: a computed
    bound below 2^precision means that the exact one is too."""
    a_abs, b_abs = np.abs(a_blocks), np.abs(b_blocks)
    a_sum, a_max = _norms(a_abs.sum(axis=2, dtype=np.int64), a_abs.max(axis=2), a_exponents,
                          axis=1)
    b_sum, b_max = _norms(b_abs.sum(axis=1, dtype=np.int64), b_abs.max(axis=1), b_exponents,
                          axis=0)
    limit = 2.0**precision
    exact = np.multiply.outer(a_sum, b_max) < limit
    exact |= np.multiply.outer(a_max, b_sum) < limit
    return exact


def _norms(block_sums: np.ndarray, block_maxima: np.ndarray, exponents: np.ndarray,
           axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1-norm and the max-norm along the blocks (`axis`) of values P * 2^s, in units of
    2^(lowest s of a block with a non-zero element) (units of 1 where all are zero)."""
    nonzero = block_maxima > 0
    lowest = np.where(nonzero, exponents, np.iinfo(np.int64).max).min(axis=axis,
                                                                          keepdims=True)
    lowest = np.where(nonzero.any(axis=axis, keepdims=True), lowest, 0)
    unit = np.ldexp(1.0, (exponents - lowest).astype(np.int32))   # fractions: zero blocks
    return (block_sums * unit).sum(axis=axis), (block_maxima * unit).max(axis=axis)


def _mx_accumulate(a_elements: np.ndarray, a_codes: np.ndarray, b_elements: np.ndarray,
                   b_codes: np.ndarray, spec_a: MxFormat, spec_b: MxFormat, block: int,
                   acc_bits: int, rounding: str) -> np.ndarray:
    """The MX GEMM's accumulators [M, N] as float64 values (exact, see `bfp_accumulate`).

    Outputs that cannot round (`_cannot_round`) are the exact sum: one float64 GEMM of the
    values P * 2^s, exact by the same argument. The others run the accumulator block by
    block; each block's term p_b * 2^x_b is a float64 GEMM over the block, exact because its
    products are multiples of 2^x_b (|P| <= 127, so each is exact) and |p_b| < 2^19. MX
    exponents x_b lie in [-266, 250], so all values stay normal float64."""
    a_exponents = a_codes.astype(np.int64) - SCALE_BIAS - spec_a.fraction_bits   # [M, nb]
    b_exponents = b_codes.astype(np.int64) - SCALE_BIAS - spec_b.fraction_bits   # [nb, N]
    a_blocks, _ = _blocked(a_elements, 1, block)                                # [M, nb, bk]
    b_blocks, _ = _blocked(b_elements, 0, block)                                # [nb, bk, N]
    exact = _cannot_round(a_blocks, a_exponents, b_blocks, b_exponents, acc_bits - 1)
    # The values P * 2^s (exact float64 products of an integer and a power of two).
    a_values = np.multiply(a_blocks, np.ldexp(1.0, a_exponents)[:, :, None])
    b_values = np.multiply(b_blocks, np.ldexp(1.0, b_exponents)[:, None, :])
    rows, cols = ~exact.all(axis=1), ~exact.all(axis=0)
    if rows.all() and cols.all():
        return _block_by_block(a_values, b_values, acc_bits, rounding)
    m, n = len(a_values), b_values.shape[-1]
    accumulator = a_values.reshape(m, -1) @ b_values.reshape(-1, n)
    if rows.any():
        accumulator[np.ix_(rows, cols)] = _block_by_block(a_values[rows], b_values[..., cols],
                                                          acc_bits, rounding)
    return accumulator


def _block_by_block(a_values: np.ndarray, b_values: np.ndarray, acc_bits: int,
                    rounding: str) -> np.ndarray:
    """The accumulator run block by block on a [M, nb, block] and b [nb, block, N]."""
    a_by_block = np.ascontiguousarray(a_values.transpose(1, 0, 2))     # [nb, M, block]
    b_values = np.ascontiguousarray(b_values)
    return _accumulate_float64(
        len(a_values), b_values.shape[-1], len(b_values),
        lambda tile, index: a_by_block[index, tile] @ b_values[index], acc_bits, rounding)


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
    _acc_bits(acc_bits)
    _checks.choice("acc_rounding", acc_rounding, ACC_ROUNDINGS)
    accumulator = _mx_accumulate(a_elements, a_codes, b_elements, b_codes, spec_a, spec_b,
                                 block, acc_bits, acc_rounding)
    return _to_bfp(accumulator, acc_bits)


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
    spec_a, spec_b = _format("fmt_a", fmt_a), _format("fmt_b", fmt_b)
    _acc_bits(acc_bits)
    _checks.choice("acc_rounding", acc_rounding, ACC_ROUNDINGS)
    a_elements, a_codes = mx_quantize(a, fmt_a, block, axis=1)
    b_elements, b_codes = mx_quantize(b, fmt_b, block, axis=0)
    # The accumulator values, exactly bfp_to_float64 of the canonical (m, e) (+ 0.0 turns a
    # -0.0 into the 0.0 of (0, 0)).
    values = _mx_accumulate(a_elements, a_codes, b_elements, b_codes, spec_a, spec_b, block,
                            acc_bits, acc_rounding)
    values += 0.0
    if out == "fp32":
        with np.errstate(over="ignore"):
            return values.astype(np.float32)
    return mx_quantize(values, out, block, axis=1)
