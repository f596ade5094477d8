"""golden.mx against its previous straightforward implementation (tests/golden/_mx_reference.py),
bit for bit: every fmt pair, block size, accumulator width and rounding, output kind, odd
shapes and the corner cases of the accumulator (scale codes 0 and 254, all-zero and
saturating blocks, alignment shifts with sticky bits, exact ties of round_W). Every random
test is seeded and prints its seed."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import golden
import golden.mx

from . import _mx_reference as reference

FMTS = ("mxint8", "mxint4")
FMT_PAIRS = list(itertools.product(FMTS, FMTS))
ACC_BITS = (8, 16, 24, 32)
ROUNDINGS = ("nearest", "truncate")
OUTS = ("fp32", "mxint8", "mxint4")


def _seed(*parts) -> int:
    seed = zlib.crc32(repr(parts).encode())
    print(f"seed={seed}")
    return seed


@pytest.fixture(params=["as shipped", "block by block in small tiles"])
def accumulation(request, monkeypatch):
    """Run each MX GEMM test twice: as shipped (outputs that cannot round take the one-GEMM
    exact sum) and with that shortcut disabled and the float64 accumulator run in tiles of a
    few outputs, so that both paths, and tiles with a partial last one, meet the oracle on
    every case."""
    if request.param != "as shipped":
        monkeypatch.setattr(golden.mx, "_cannot_round",
                            lambda a_blocks, a_exponents, b_blocks, *rest:
                            np.zeros((len(a_blocks), b_blocks.shape[-1]), dtype=bool))
        monkeypatch.setattr(golden.mx, "_TILE", 29)
    return request.param


@pytest.fixture(params=[None, 29])
def tile(request, monkeypatch):
    """The float64 accumulator in its usual tiles, and in tiles of 29 outputs."""
    if request.param is not None:
        monkeypatch.setattr(golden.mx, "_TILE", request.param)
    return request.param


def _floats(rng: np.random.Generator, shape: tuple[int, int], axis: int, block: int,
            spread: int) -> np.ndarray:
    """float32 values whose K-blocks (along `axis`) have magnitudes 2^[-spread, spread), with
    all-zero, saturating (scale code 254), subnormal (code 0) and single-element blocks."""
    x = rng.standard_normal(shape)
    blocks = -(-shape[axis] // block)
    other = shape[1 - axis]
    magnitude = 2.0 ** rng.integers(-spread, spread, (other, blocks)).astype(np.float64)
    magnitude = np.repeat(magnitude, block, axis=1)[:, :shape[axis]]
    x = x * (magnitude if axis == 1 else magnitude.T)
    view = x if axis == 1 else x.T
    view[0, :block] = 0.0                                        # all-zero block: code 0
    if other > 1 and shape[axis] > block:
        view[1, block:2 * block] = 3.0e38 * np.sign(view[1, block:2 * block])  # code 254
    if other > 2:
        view[2, :block] = np.float32(2.0**-149) * rng.integers(-3, 4, block)[:view.shape[1]]
    if other > 3:
        view[3, :] = 0.0
        view[3, shape[axis] // 2] = 1.5                           # one non-zero element
    return x.astype(np.float32)


def _assert_same_output(got, expected) -> None:
    if isinstance(expected, tuple):
        for g, e in zip(got, expected, strict=True):
            assert g.dtype == e.dtype and g.shape == e.shape
            np.testing.assert_array_equal(g, e)
    else:
        assert got.dtype == expected.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("fmt_a,fmt_b", FMT_PAIRS)
@pytest.mark.parametrize("block", [16, 32])
@pytest.mark.parametrize("acc_bits", ACC_BITS)
@pytest.mark.parametrize("acc_rounding", ROUNDINGS)
def test_mx_matmul_matches_reference(fmt_a, fmt_b, block, acc_bits, acc_rounding,
                                     accumulation):
    seed = _seed("mx_matmul", fmt_a, fmt_b, block, acc_bits, acc_rounding)
    rng = np.random.default_rng(seed)
    m, k, n = 9, 5 * block + 7, 13            # M, N, K not multiples of the block
    for spread in (1, 12, 80):
        a = _floats(rng, (m, k), 1, block, spread)
        b = _floats(rng, (k, n), 0, block, spread)
        for out in OUTS:
            args = dict(fmt_a=fmt_a, fmt_b=fmt_b, block=block, acc_bits=acc_bits, out=out,
                        acc_rounding=acc_rounding)
            _assert_same_output(golden.mx_matmul(a, b, **args),
                                reference.mx_matmul(a, b, **args))


def _quantized(rng, m, k, n, block, fmt_a, fmt_b, codes):
    """Random MX operands with elements over the whole range (+-max included) and codes drawn
    from `codes` (inclusive range)."""
    max_a, max_b = golden.MX_FORMATS[fmt_a].max_code, golden.MX_FORMATS[fmt_b].max_code
    nb = -(-k // block)
    a = rng.integers(-max_a, max_a + 1, (m, k)).astype(np.int8)
    b = rng.integers(-max_b, max_b + 1, (k, n)).astype(np.int8)
    a[0] = max_a                                   # saturated rows and columns
    b[:, 0] = -max_b
    a[1, :block] = 0                               # an all-zero block
    ac = rng.integers(codes[0], codes[1] + 1, (m, nb)).astype(np.uint8)
    bc = rng.integers(codes[0], codes[1] + 1, (nb, n)).astype(np.uint8)
    return a, ac, b, bc


@pytest.mark.parametrize("fmt_a,fmt_b", FMT_PAIRS)
@pytest.mark.parametrize("block", [16, 32])
@pytest.mark.parametrize("acc_bits", [8, 12, 16, 24, 31, 32])
@pytest.mark.parametrize("acc_rounding", ROUNDINGS)
def test_mx_matmul_quantized_matches_reference(fmt_a, fmt_b, block, acc_bits, acc_rounding,
                                               accumulation):
    seed = _seed("mx_matmul_quantized", fmt_a, fmt_b, block, acc_bits, acc_rounding)
    rng = np.random.default_rng(seed)
    for codes in [(0, 254), (0, 0), (254, 254), (0, 1), (253, 254), (120, 134), (127, 127)]:
        operands = _quantized(rng, 11, 4 * block + 3, 7, block, fmt_a, fmt_b, codes)
        args = dict(fmt_a=fmt_a, fmt_b=fmt_b, block=block, acc_bits=acc_bits,
                    acc_rounding=acc_rounding)
        got = golden.mx_matmul_quantized(*operands, **args)
        expected = reference.mx_matmul_quantized(*operands, **args)
        _assert_same_output(got, expected)


@pytest.mark.parametrize("acc_rounding", ROUNDINGS)
def test_mx_matmul_larger_shapes_match_reference(acc_rounding, accumulation):
    """Whole-array paths at a size where some outputs round and most do not."""
    seed = _seed("larger", acc_rounding)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((64, 300)).astype(np.float32)
    a[:8] *= 2.0 ** rng.integers(-30, 30, (8, 1))
    a[8:12, 100:140] *= 2.0**40
    b = rng.standard_normal((300, 50)).astype(np.float32)
    b[:, :5] *= 2.0 ** rng.integers(-20, 20, (300, 1))
    for acc_bits in (16, 32):
        for out in OUTS:
            args = dict(acc_bits=acc_bits, acc_rounding=acc_rounding, out=out)
            _assert_same_output(golden.mx_matmul(a, b, **args),
                                reference.mx_matmul(a, b, **args))


def _assert_same_bfp(got, expected) -> None:
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype == np.int64 and g.shape == e.shape
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("acc_bits", [8, 9, 16, 23, 24, 31, 32])
@pytest.mark.parametrize("acc_rounding", ROUNDINGS)
def test_bfp_accumulate_matches_reference(acc_bits, acc_rounding, tile):
    seed = _seed("bfp_accumulate", acc_bits, acc_rounding)
    rng = np.random.default_rng(seed)
    shape = (6, 5, 9, 17)
    cases = {
        # Small partials over a few exponents: rounding, carries and ties on every step.
        "small": (rng.integers(-64, 65, shape), rng.integers(-4, 4, shape)),
        # MXINT8 block sums with MX exponents.
        "mx": (rng.integers(-516128, 516129, shape), rng.integers(-266, 251, shape)),
        # Operands near 2^32 and exponents far apart: alignment shifts and sticky bits.
        "wide": (rng.integers(-(2**32) + 1, 2**32, shape, dtype=np.int64),
                 rng.integers(-300, 300, shape)),
        # Mostly zero partials, powers of two and -2^k (the -2^(W-1) mantissa).
        "sparse": (np.where(rng.random(shape) < 0.7, 0,
                            rng.choice([-1, 1], shape) << rng.integers(0, 32, shape)),
                   rng.integers(-40, 40, shape)),
        # Exponents more than 1,000 apart and of +-2^30: the exact integer path.
        "far": (rng.integers(-(2**20), 2**20, shape),
                rng.choice([-(2**30), -1500, -3, 0, 5, 1200, 2**30], shape)),
    }
    for name, (partials, exponents) in cases.items():
        args = dict(acc_bits=acc_bits, rounding=acc_rounding)
        got = golden.bfp_accumulate(partials, exponents, **args)
        expected = reference.bfp_accumulate(partials, exponents, **args)
        try:
            _assert_same_bfp(got, expected)
        except AssertionError as error:
            raise AssertionError(f"case {name}") from error


@pytest.mark.parametrize("acc_bits", ACC_BITS)
@pytest.mark.parametrize("acc_rounding", ROUNDINGS)
def test_bfp_accumulate_ties_and_sticky_bits_match_reference(acc_bits, acc_rounding, tile):
    """Constructed sequences: an exact tie of round_W (to even, both parities, both signs),
    a tie disturbed by a sticky bit far below, cancellation to the -2^(W-1) mantissa,
    carries into the next binade and exact cancellation to zero."""
    seed = _seed("ties", acc_bits, acc_rounding)
    rng = np.random.default_rng(seed)
    top = 2 ** (acc_bits - 1)
    rows = []
    for _ in range(40):
        first = int(rng.integers(top // 2, top)) * int(rng.choice([-1, 1]))
        sign = int(rng.choice([-1, 1]))
        shift = int(rng.integers(1, 6))
        far = int(rng.integers(40, 300))
        rows += [
            [(first, 0), (sign, -1), (0, 0), (0, 0)],                   # tie
            [(first, 0), (sign, -1), (sign, -far), (0, 0)],             # tie, then sticky
            [(first, 0), (sign, -far), (sign, -1), (0, 0)],             # sticky, then tie
            [(first, 3), (sign * (2 * shift + 1), 3 - shift - 1), (-first, 3), (1, -far)],
            [(top - 1, 0), (1, 0), (-(top - 1), 0), (-1, 0)],           # carry, cancel
            [(-top, 0), (-1, -1), (top // 2, 1), (1, -far)],            # -2^(W-1)
            [(2**31 - 1, 40), (-(2**31 - 1), 40), (sign, -266), (sign, 250)],
        ]
    partials = np.array([[p for p, _ in row] for row in rows], dtype=np.int64)
    exponents = np.array([[x for _, x in row] for row in rows], dtype=np.int64)
    args = dict(acc_bits=acc_bits, rounding=acc_rounding)
    _assert_same_bfp(golden.bfp_accumulate(partials, exponents, **args),
                     reference.bfp_accumulate(partials, exponents, **args))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_block_dot_products_match_reference(dtype):
    seed = _seed("block_dot_products", np.dtype(dtype).name)
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max if dtype != np.int64 else 2**30
    for block, (m, k, n) in itertools.product([16, 32], [(1, 1, 1), (7, 45, 3), (16, 64, 9)]):
        a = rng.integers(-top, top + 1, (m, k)).astype(dtype)
        b = rng.integers(-top, top + 1, (k, n)).astype(dtype)
        got = golden.block_dot_products(a, b, block)
        expected = reference.block_dot_products(a, b, block)
        assert got.dtype == expected.dtype == np.int64
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("block", [16, 32])
def test_mx_quantize_matches_reference(fmt, block):
    seed = _seed("mx_quantize", fmt, block)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((6, 70, 5)) * 2.0 ** rng.integers(-150, 120, (6, 1, 5)))
    x[0, :, 0] = 0.0
    x[1, :, 1] = 3.4e38
    x[2, :, 2] = 2.0**-149
    spec = golden.MX_FORMATS[fmt]
    x[3, :, 3] = (np.arange(70) % 9 - 4 + 0.5) / 2**spec.fraction_bits   # exact ties
    for array in (x, x.astype(np.float32), np.rint(x[:, :, :1] * 0).astype(np.int32) + 3):
        for axis in (0, 1, -1):
            got = golden.mx_quantize(array, fmt, block, axis=axis)
            expected = reference.mx_quantize(array, fmt, block, axis=axis)
            _assert_same_output(got, expected)
