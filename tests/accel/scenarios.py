"""GEMM cases and malformed-packet cases for the accelerator tests.

Pure Python: the cocotb tests run them on the RTL, tests/accel/test_protocol.py runs them on
the reference executor alone. A `GemmCase` holds the packets (built by `host.tiling`) and the
golden result, computed directly with `golden.qlinear`, `golden.matmul` or
`golden.mx_matmul`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import golden
from golden.config import MODE_INFO, ArrayConfig
from golden.mx import MX_FORMATS
from golden.protocol import (
    CONFIGURE,
    WORD_MASK,
    Beat,
    ConfigureFields,
    Field,
    Header,
    Opcode,
    Packet,
    check_configure,
    decode_configure,
    encode_configure,
    encode_requant_words,
    mode_code,
    out_kind_code,
)
from host import tiling
from host.driver import M_TILE_ROWS

CORNERS = np.array([-128, 127, -127, -8, 7, -7, 8, -1, 1, 0])
SHAPE = (37, 115, 29)      # M x K x N, a multiple of nothing


@dataclass
class GemmCase:
    name: str
    program: tiling.GemmProgram
    expected: Any
    mismatches: Callable[[Any, Any], int]


def _operands(rng: np.random.Generator, low: int, high: int, shape: tuple[int, ...],
              corner_fraction: float = 0.2) -> np.ndarray:
    values = rng.integers(low, high + 1, size=shape)
    corners = CORNERS[(CORNERS >= low) & (CORNERS <= high)]
    mask = rng.random(shape) < corner_fraction
    values[mask] = rng.choice(corners, size=int(mask.sum()))
    return values




def qlinear_case(config: ArrayConfig, rng: np.random.Generator, *, mode: str, rounding: str,
                 out_dtype: str, shape: tuple[int, int, int] = SHAPE, uint8: bool = True,
                 relu: bool | None = None, y_scale_factor: float = 1.0,
                 max_m_tile: int | None = None) -> GemmCase:
    """A quantized linear layer with random zero points, per-channel scales, a bias, and
    an output scale that makes some outputs saturate (times `y_scale_factor`)."""
    m, k, n = shape
    info = MODE_INFO[mode]
    w_range = (-8, 7) if info.weight_bits == 4 else (-128, 127)
    w_q = _operands(rng, *w_range, (n, k)).astype(np.int8)
    if info.activation_bits == 4:
        uint8 = False
        x_q = _operands(rng, -8, 7, (m, k)).astype(np.int8)   # sent as they are
        x_zero = int(rng.integers(-8, 8))
    elif uint8:
        x_q = rng.integers(0, 256, (m, k)).astype(np.uint8)
        x_q[rng.random((m, k)) < 0.1] = 255
        x_zero = int(rng.integers(0, 256))
    else:
        x_q = _operands(rng, -128, 127, (m, k)).astype(np.int8)
        x_zero = int(rng.integers(-128, 128))
    lo, hi = {"uint8": (0, 255), "int8": (-128, 127), "int4": (-8, 7)}[out_dtype]
    typical = np.sqrt(k) * 60 * (8 if info.weight_bits == 8 else 0.5) \
        * (1 if info.activation_bits == 8 else 0.06)
    kwargs = dict(
        x_scale=float(rng.uniform(0.005, 0.05)), x_zero_point=x_zero,
        w_scale=rng.uniform(0.002, 0.02, n).astype(np.float32),
        y_zero_point=int(rng.integers(lo, hi + 1)),
        bias=rng.integers(-5000, 5000, n).astype(np.int32),
        relu=bool(rng.integers(0, 2)) if relu is None else relu,
        rounding=rounding, out_dtype=out_dtype)
    kwargs["y_scale"] = float(kwargs["x_scale"] * 0.01 * typical / (hi - lo) * 4
                              * y_scale_factor)
    program = tiling.qlinear_program(config, x_q, w_q, mode=mode, max_m_tile=max_m_tile,
                                     **kwargs)
    expected = golden.qlinear(x_q, w_q, **kwargs)
    name = f"qlinear_{mode}_{rounding}_{out_dtype}_{m}x{k}x{n}"
    return GemmCase(name, program, expected, golden.mismatches)


def _operand_ranges(mode: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Inclusive (activation, weight) value ranges of an integer mode."""
    info = MODE_INFO[mode]
    return tuple((-8, 7) if bits == 4 else (-128, 127)
                 for bits in (info.activation_bits, info.weight_bits))


def matmul_case(config: ArrayConfig, rng: np.random.Generator, *, mode: str,
                shape: tuple[int, int, int] = SHAPE, max_m_tile: int | None = None) -> GemmCase:
    m, k, n = shape
    a_range, w_range = _operand_ranges(mode)
    a = _operands(rng, *a_range, (m, k))
    b = _operands(rng, *w_range, (k, n))
    program = tiling.matmul_program(config, a, b, mode=mode, max_m_tile=max_m_tile)
    return GemmCase(f"matmul_{mode}_{m}x{k}x{n}", program, golden.matmul(a, b), golden.mismatches)


def mx_case(config: ArrayConfig, rng: np.random.Generator, *, mode: str, out: str,
            shape: tuple[int, int, int] = SHAPE, max_m_tile: int | None = None,
            spread: bool = False) -> GemmCase:
    """MX GEMM of floats whose rows and columns span many binades, with zero blocks;
    `spread`: every K-block of every row and column at its own binade (up to 2^+-16), so
    the BFP accumulator aligns block partials far apart and its mantissa carries bits far
    below its leading one."""
    m, k, n = shape
    if spread:
        blocks = -(-k // config.block_size)
        a_exp = np.repeat(rng.integers(-16, 17, (m, blocks)), config.block_size, axis=1)
        b_exp = np.repeat(rng.integers(-16, 17, (blocks, n)), config.block_size, axis=0)
        a = rng.standard_normal((m, k)) * np.exp2(a_exp[:, :k])
        b = rng.standard_normal((k, n)) * np.exp2(b_exp[:k])
    else:
        a = rng.standard_normal((m, k)) * np.exp2(rng.integers(-30, 30, (m, 1)))
        b = rng.standard_normal((k, n)) * np.exp2(rng.integers(-30, 30, (1, n)))
    a[rng.random((m, k)) < 0.05] = 0.0
    a[: max(1, m // 8), : config.block_size] = 0.0          # all-zero blocks
    b[:, : max(1, n // 8)] *= 2.0 ** 90                      # large exponents
    a, b = a.astype(np.float32), b.astype(np.float32)
    program = tiling.mx_matmul_program(config, a, b, mode=mode, out=out,
                                       max_m_tile=max_m_tile)
    fmt_a, fmt_b = MODE_INFO[mode].mx_formats
    expected = golden.mx_matmul(a, b, fmt_a=fmt_a, fmt_b=fmt_b, block=config.block_size,
                                acc_bits=config.acc_bits, out=out,
                                acc_rounding=config.acc_rounding)
    name = f"mx_{mode}_{out}_{m}x{k}x{n}" + ("_spread" if spread else "")
    return GemmCase(name, program, expected, golden.mismatches)


def _cancellation_elements(value: int, top: int, block: int) -> np.ndarray:
    """Elements (|element| <= top) of one K-block of A whose dot product with the block of
    B that `cancellation_case` uses everywhere, (top, ..., top, 1), is `value`."""
    whole, rest = divmod(abs(value), top)
    if whole > (block - 1) * top:
        raise ValueError(f"{value} is not the dot product of one block of {block} elements")
    a = np.zeros(block, dtype=np.int64)
    full, part = divmod(whole, top)
    a[:full] = top
    if part:
        a[full] = part
    a[block - 1] = rest
    return a if value >= 0 else -a


def cancellation_case(config: ArrayConfig, *, mode: str) -> GemmCase:
    """An MX GEMM of block partials that cancel in the BFP accumulator. Each row of A is a
    list of (block partial, exponent) that every column (every accumulator lane of one
    N-tile) accumulates:

    * a large partial p, a residual r (+1 or -Pmax) s places below it, then -p: the sum
      keeps r with from a few to more than W - 8 leading zeros, for s from 0 to 2 beyond
      the W - 1 - bits(p) the accumulator holds exactly (there r is rounded away);
    * partials that add up to 2^(W-1) - 1 (every bit of the W-bit mantissa set), then
      -2^(W-1): one unit is left, as far below the larger operand as a sum can reach;
    * a zero row.

    So the adder's normalisation takes every group of its leading-zero count."""
    block, top = config.block_size, MX_FORMATS[mode].max_code
    w = config.acc_bits
    big = (block - 2) * top * top
    rows: list[list[tuple[int, int]]] = [[(0, 0)]]
    for shift in range(0, max(w - 1 - big.bit_length(), 0) + 3, 2):
        for residual in (1, -top):
            rows.append([(big, shift), (residual, 0), (-big, shift)])
    chunk = ((block - 1) * top * top + top).bit_length() - 1   # bits one partial can hold
    ones = [((1 << min(chunk, w - 1 - low)) - 1, low) for low in range(0, w - 1, chunk)]
    rows.append([*ones, (-1, w - 1)])
    blocks = max(map(len, rows))
    m, k, n = len(rows), blocks * block, config.cols * config.mode(mode).lanes
    a = np.zeros((m, k), dtype=np.int64)
    a_codes = np.full((m, blocks), 127)
    for row, partials in enumerate(rows):
        for index, (value, exponent) in enumerate(partials):
            a[row, index * block:(index + 1) * block] = _cancellation_elements(value, top, block)
            a_codes[row, index] += exponent
    column = np.array([top] * (block - 1) + [1])
    b = np.tile(column, blocks)[:, None].repeat(n, axis=1)
    b_codes = np.full((blocks, n), 127)
    program = tiling.mx_matmul_quantized_program(config, a, a_codes, b, b_codes, mode=mode,
                                                 out="fp32")
    expected = golden.bfp_to_float32(*golden.mx_matmul_quantized(
        a, a_codes, b, b_codes, fmt_a=mode, fmt_b=mode, block=block, acc_bits=w,
        acc_rounding=config.acc_rounding))
    return GemmCase(f"cancellation_{mode}_{m}x{k}x{n}", program, expected, golden.mismatches)


def gemm_cases(config: ArrayConfig, rng: np.random.Generator,
               names: Sequence[str]) -> list[GemmCase]:
    """Cases by group name:

    a8w8_small   one A8W8 uint8-activation layer, 37 x 115 x 29
    qlinear      every integer mode x both roundings x uint8 / int8 / int4 outputs
    matmul       int32 outputs in every integer mode
    mx           every MX mode (MXINT8, MXINT4, MXINT8 x MXINT4) with FP32, MXINT8 and
                 MXINT4 outputs; and per MX mode an FP32 GEMM of 12 K-blocks, each of
                 every row and column at its own binade (`mx_case(spread=True)`)
    shapes       1 x 1 x 1, 3 x 8 x 16, 130 x 40 x 70 (several M-tiles) and an N of 300
                 (two N-chunks of the requantization memory), int8 activations
    same_bank    a GEMM of 4 M-tiles on banks 0, 0, 1, 1 instead of alternating: the
                 second LOAD_ACTIVATIONS of each bank must wait for the COMPUTE before it
                 to finish reading, and COMPUTEs follow each other on the same bank
    cancel       per MX mode of one format (mxint8, mxint4), a GEMM whose K-blocks
                 cancel in the BFP accumulator (`cancellation_case`)
    tiny_scales  gemmlowp layers whose output scale is 2^20 and 2^27 times the usual: the
                 requantizer's right shift beyond 16 and up to 31
    deep         int32 GEMMs in the first integer mode whose activation tile is as deep
                 as the buffers allow (M x K / R vectors up to one activation bank), so the
                 last addresses of both banks are written and read; and one row of the
                 longest K a tile can hold (every bit of the K-tile counters)
    one_row      batches of one and two rows with several N-tiles and K a multiple of 4 R
                 (short drains that finish before the accumulation pipeline has emptied;
                 they once left stale results behind in the integer modes), and MX GEMMs
                 of one K-block
    extremes     per integer mode, int32 GEMMs of the operand extremes only: every
                 product the largest positive one (min x min), and min / max alternating
                 along K (odd K, so a K-pair build pads the last pair)
    random       24 GEMMs of random shapes (M, N up to 90, K up to 300), modes and outputs

    M-tiles are at most `host.driver.M_TILE_ROWS` x R rows, as `host.Accelerator` tiles
    over a link that keeps up with the clock (so the groups above have several M-tiles
    and both activation banks in use), except in `deep`: as tall as the banks allow.
    """
    cases: list[GemmCase] = []
    int_modes = [mode for mode in config.modes if not MODE_INFO[mode].mx]
    mx_modes = [mode for mode in config.modes if MODE_INFO[mode].mx]
    tile = M_TILE_ROWS * config.rows
    qcase = functools.partial(qlinear_case, config, rng, max_m_tile=tile)
    mcase = functools.partial(matmul_case, config, rng, max_m_tile=tile)
    xcase = functools.partial(mx_case, config, rng, max_m_tile=tile)
    for name in names:
        if name == "a8w8_small":
            cases.append(qcase(mode="a8w8", rounding="fp32", out_dtype="uint8"))
        elif name == "qlinear":
            for mode in int_modes:
                for rounding in ("fp32", "gemmlowp"):
                    for out_dtype in ("uint8", "int8", "int4"):
                        cases.append(qcase(mode=mode, rounding=rounding,
                                           out_dtype=out_dtype))
        elif name == "matmul":
            cases += [mcase(mode=mode) for mode in int_modes]
        elif name == "mx":
            for mode in mx_modes:
                for out in ("fp32", "mxint8", "mxint4"):
                    cases.append(xcase(mode=mode, out=out))
            k = 12 * config.block_size - 5       # the last K-block partial
            for mode in mx_modes:
                cases.append(xcase(mode=mode, out="fp32", shape=(9, k, 2 * config.cols + 5),
                                   spread=True))
        elif name == "shapes":
            for shape in ((1, 1, 1), (3, 8, 16), (130, 40, 70), (20, 64, 300)):
                cases.append(qcase(mode="a8w8", rounding="gemmlowp", out_dtype="int8",
                                   shape=shape, uint8=False))
            if "a8w4" in int_modes:
                cases.append(qcase(mode="a8w4", rounding="fp32", out_dtype="uint8",
                                   shape=(5, 300, 17)))
            for mode in mx_modes[:1]:
                cases.append(xcase(mode=mode, out="mxint8", shape=(2, 33, 40)))
        elif name == "same_bank":
            case = qcase(mode=int_modes[0], rounding="fp32", out_dtype="uint8",
                         shape=(120, 256, 24))
            case.program.packets = _banks_in_pairs(case.program.packets)
            case.name += "_same_bank"
            cases.append(case)
        elif name == "cancel":
            # The modes of one format on both sides (MXINT8 x MXINT4 shares their BFP
            # accumulator and normaliser).
            cases += [cancellation_case(config, mode=mode) for mode in mx_modes
                      if mode in MX_FORMATS]
        elif name == "tiny_scales":
            for factor in (2.0 ** 20, 2.0 ** 27):
                cases.append(qcase(mode=int_modes[0], rounding="gemmlowp", out_dtype="int8",
                                   shape=(5, 40, 16), uint8=False, y_scale_factor=factor))
        elif name == "deep":
            m = min(config.accumulator_depth // 2, config.activation_buffer_depth // 2)
            k = min(config.activation_buffer_depth // 2 // m, 128) * config.rows
            cases.append(matmul_case(config, rng, mode=int_modes[0],
                                     shape=(2 * m, k, config.cols)))
            longest = min(config.activation_bank_depth * config.rows,
                          0xFFFF // config.rows * config.rows)
            cases.append(matmul_case(config, rng, mode=int_modes[0],
                                     shape=(1, longest, config.cols)))
        elif name == "one_row":
            r, c = config.rows, config.cols
            for mode in int_modes:
                cases.append(mcase(mode=mode, shape=(1, 8 * r, 4 * c + 3)))
                cases.append(qcase(mode=mode, rounding="gemmlowp", out_dtype="int8",
                                   shape=(2, 4 * r, 2 * c), uint8=False))
            for mode in mx_modes:
                cases.append(xcase(mode=mode, out="fp32",
                                   shape=(1, 2 * config.block_size, 3 * c)))
                cases.append(xcase(mode=mode, out="fp32",
                                   shape=(2, config.block_size - 3, 2 * c)))
        elif name == "extremes":
            for mode in int_modes:
                (a_lo, a_hi), (w_lo, w_hi) = _operand_ranges(mode)
                m, k, n = 9, 4 * config.rows + 1, config.cols + 3
                a = np.full((m, k), a_lo)
                b = np.full((k, n), w_lo)
                cases.append(GemmCase(f"extremes_{mode}_min_min", tiling.matmul_program(
                    config, a, b, mode=mode, max_m_tile=tile), golden.matmul(a, b),
                    golden.mismatches))
                a = np.where(np.arange(k) % 2, a_hi, a_lo)[None, :].repeat(m, axis=0)
                b = np.where(np.arange(k)[:, None] % 2 ^ np.arange(n) % 2, w_hi, w_lo)
                cases.append(GemmCase(f"extremes_{mode}_alternating", tiling.matmul_program(
                    config, a, b, mode=mode, max_m_tile=tile), golden.matmul(a, b),
                    golden.mismatches))
        elif name == "random":
            for _ in range(24):
                mode = str(rng.choice(list(config.modes)))
                shape = (int(rng.integers(1, 91)), int(rng.integers(1, 301)),
                         int(rng.integers(1, 91)))
                if MODE_INFO[mode].mx:
                    out = str(rng.choice(["fp32", "mxint8", "mxint4"]))
                    cases.append(xcase(mode=mode, out=out, shape=shape))
                elif rng.random() < 0.2:
                    cases.append(mcase(mode=mode, shape=shape))
                else:
                    cases.append(qcase(
                        mode=mode, shape=shape,
                        rounding=str(rng.choice(["fp32", "gemmlowp"])),
                        out_dtype=str(rng.choice(["uint8", "int8", "int4"])),
                        uint8=bool(rng.integers(0, 2))))
        elif name:
            raise ValueError(f"unknown case group {name!r}")
    return cases


def _banks_in_pairs(packets: list[Packet]) -> list[Packet]:
    """The packets with the M-tiles' banks 0, 0, 1, 1, 0, ... instead of alternating."""
    out, tile = [], 0
    for packet in packets:
        header = packet.header
        if header.opcode in (Opcode.LOAD_ACTIVATIONS, Opcode.LOAD_SCALES, Opcode.COMPUTE):
            packet = Packet(Header(header.opcode, header.tag, header.length, tile // 2 % 2),
                            packet.payload)
            tile += header.opcode == Opcode.COMPUTE
        out.append(packet)
    return out


async def run_case(harness: Any, case: GemmCase) -> int:
    """Run `case` on the harness (responses checked against the reference); mismatches of
    the decoded result against golden."""
    got = await harness.run_program(case.program)
    return case.mismatches(case.expected, got)


# --- Malformed input ---------------------------------------------------------------------

def _packet(opcode: int, payload: Sequence[int] = (), *, tag: int = 0x5A, args: int = 0,
            length: int | None = None, cut: int | None = None, extra: int = 0) -> list[Beat]:
    """Beats of a packet whose header says `length` (default: the payload's), cut after
    `cut` payload words (last arrives early) or followed by `extra` words (no last in time)."""
    payload = list(payload) + [0x1111_2222_3333_4444 + index for index in range(extra)]
    header = Header(opcode, tag, len(payload) - extra if length is None else length, args)
    words = [header.encode(), *payload]
    if cut is not None:
        words = words[:cut + 1]
    return [(word, index == len(words) - 1) for index, word in enumerate(words)]


def _configure(config: ArrayConfig, **overrides: int) -> list[Beat]:
    fields = encode_configure(mode="a8w8", out_kind="uint8", m=4, k=16, n=8)
    values = {**fields.__dict__, **overrides}
    return _packet(Opcode.CONFIGURE, ConfigureFields(**values).encode())


def malformed_cases(config: ArrayConfig,
                    rng: np.random.Generator) -> list[tuple[str, list[Beat]]]:
    """(name, beats): malformed packets, and corner values the host packer never sends;
    each is followed by a correct GEMM in the tests. The reference executor says what the
    response must be."""
    good = _configure(config)   # M 4, K 16, N 8 in A8W8 -> 8 activation words
    act = [int(x) for x in rng.integers(0, 2**63, 8)]
    cases = [
        ("illegal opcode with payload", _packet(0x00, [1, 2, 3])),
        ("illegal opcode 0xff", _packet(0xFF)),
        ("unconfigured LOAD_ACTIVATIONS", _configure(config, mode=7)
         + _packet(Opcode.LOAD_ACTIVATIONS, act)),
        ("bank out of range", good + _packet(Opcode.LOAD_ACTIVATIONS, act, args=2)),
        ("output kind of another mode", _configure(config, out_kind=out_kind_code("fp32"))),
        ("zero point out of range", _configure(config, out_kind=out_kind_code("int4"),
                                               zero_point=9)),
        ("M = 0", _configure(config, m=0)),
        ("K not a multiple of R", _configure(config, k=7)),
        ("N not a multiple of C", _configure(config, n=7)),
        ("tile larger than the activation bank", _configure(config, m=600, k=8)),
        ("tile larger than the accumulator bank", _configure(config, m=200, k=8)),
        ("N larger than the requantization memory",
         _configure(config, n=config.requant_depth + 8)),
        ("CONFIGURE with a wrong length", _packet(Opcode.CONFIGURE, [0, 0, 0])),
        ("CONFIGURE cut short", _packet(Opcode.CONFIGURE, [good[1][0], good[2][0]], cut=1)),
        ("LOAD_ACTIVATIONS cut short", good + _packet(Opcode.LOAD_ACTIVATIONS, act, cut=5)),
        ("LOAD_ACTIVATIONS too long", good + _packet(Opcode.LOAD_ACTIVATIONS, act, extra=3)),
        ("IDENTIFY too long", _packet(Opcode.IDENTIFY, extra=2)),
        ("LOAD_SCALES in an integer mode", good + _packet(Opcode.LOAD_SCALES, [0])),
        ("LOAD_REQUANT with int32 outputs",
         _configure(config, out_kind=out_kind_code("int32")) + _packet(Opcode.LOAD_REQUANT,
                                                                        [0] * 16)),
        ("COMPUTE cut short in its weights",
         good + _packet(Opcode.LOAD_ACTIVATIONS, act)
         + _packet(Opcode.COMPUTE, [int(x) for x in rng.integers(0, 2**63, 16)], cut=7)),
        ("COMPUTE header only", good + _packet(Opcode.COMPUTE, [0] * 16, cut=0)),
        ("COMPUTE with a wrong length", good + _packet(Opcode.COMPUTE, [0] * 5)),
        ("COMPUTE too long", good + _packet(Opcode.COMPUTE, [0] * 16, extra=4)),
        ("IDENTIFY with a wrong length", _packet(Opcode.IDENTIFY, length=1)),
        ("READ_COUNTERS with a wrong length", _packet(Opcode.READ_COUNTERS, [5])),
        ("READ_COUNTERS too long", _packet(Opcode.READ_COUNTERS, extra=2)),
        ("CLEAR_COUNTERS with a wrong length", _packet(Opcode.CLEAR_COUNTERS, [1, 2])),
        ("CLEAR_COUNTERS too long", _packet(Opcode.CLEAR_COUNTERS, extra=1)),
        ("LOAD_REQUANT cut short", good + _packet(Opcode.LOAD_REQUANT, [0] * 16, cut=5)),
        ("LOAD_REQUANT with a wrong length", good + _packet(Opcode.LOAD_REQUANT, [0] * 10)),
        ("LOAD_REQUANT too long", good + _packet(Opcode.LOAD_REQUANT, [0] * 16, extra=2)),
        ("LOAD_ACTIVATIONS with a wrong length", good + _packet(Opcode.LOAD_ACTIVATIONS, act[:5])),
        ("CONFIGURE too long", _packet(Opcode.CONFIGURE, [good[1][0], good[2][0]], extra=1)),
        ("COMPUTE on bank 2", good + _packet(Opcode.COMPUTE, [0] * 16, args=2)),
        ("unconfigured LOAD_REQUANT, LOAD_SCALES and COMPUTE", _configure(config, mode=7)
         + _packet(Opcode.LOAD_REQUANT, [0] * 16) + _packet(Opcode.LOAD_SCALES, [0])
         + _packet(Opcode.COMPUTE, [0] * 16)),
    ]
    # Every CONFIGURE field at its largest (refused: the tile does not fit), and the
    # reserved bits of CONFIGURE's words and of a header's args set (not checked).
    cases.append(("CONFIGURE with every field at its largest",
                  _configure(config, m=0xFFFF, k=0xFFFF // config.rows * config.rows,
                             n=0xFFFF // config.cols * config.cols, zero_point=-256,
                             out_kind=out_kind_code("int32"))))
    reserved = [WORD_MASK & ~sum(field.mask << field.offset for field in layout.fields.values())
                for layout in CONFIGURE]
    fields = good[1][0] | reserved[0], good[2][0] | reserved[1]
    cases.append(("reserved bits set", _packet(Opcode.CONFIGURE, fields)
                  + _packet(Opcode.LOAD_ACTIVATIONS, act, args=0xFFFF00)))
    # Activation reuse: on each bank, three COMPUTEs with different weights on one loaded
    # tile, queued faster than they run (64 rows: 8 array cycles per weight word) and
    # computing longer than their results take to send, so a bank is used by several jobs
    # at once.
    k_tiles = max(1, min(8, config.activation_bank_depth // 64))
    reuse = _configure(config, out_kind=out_kind_code("int32"), m=64, k=k_tiles * config.rows)
    for bank in (0, 1):
        reuse += _packet(Opcode.LOAD_ACTIVATIONS,
                         [int(x) for x in rng.integers(0, 2**63, 64 * k_tiles)], args=bank)
        for _ in range(3):
            reuse += _packet(Opcode.COMPUTE, [int(x) for x in rng.integers(
                0, 2**63, k_tiles * config.rows)], args=bank)
    cases.append(("three COMPUTEs per activation tile", reuse))
    # gemmlowp's one saturating case, SRDHM(INT32_MIN, INT32_MIN): q31 = -2^31, which
    # QuantizeMultiplier never produces, and acc + bias = INT32_MIN (zero activations); in
    # channels 4..7 with the shift -32 (a right shift of 32), which it never produces either.
    int32_min = np.full(8, -2**31)
    cases.append(("requantizer saturating SRDHM(INT32_MIN, INT32_MIN)",
                  _configure(config, out_kind=out_kind_code("int8"), rounding=1)
                  + _packet(Opcode.LOAD_REQUANT, encode_requant_words(
                      int32_min, int32_min.astype(np.int64) & 0xFFFFFFFF,
                      np.repeat([0, -32], 4)))
                  + _packet(Opcode.LOAD_ACTIVATIONS, [0] * 8)
                  + _packet(Opcode.COMPUTE, [0] * 16)))
    # A COMPUTE longer than a header can say: M = 1 row of the longest K, the widest N.
    k = min(config.activation_bank_depth * config.rows, 0xFFFF // config.rows * config.rows)
    widest = _configure(config, out_kind=out_kind_code("int32"), m=1, k=k,
                        n=0xFFFF // config.cols * config.cols)
    if check_configure(config, decode_configure([widest[1][0], widest[2][0]]))[1] \
            == Field.LENGTH:
        cases.append(("COMPUTE longer than a packet can be", widest))
    if config.has_mx:
        mx = [mode for mode in config.modes if MODE_INFO[mode].mx][0]
        mx_configure = _configure(config, mode=mode_code(mx), out_kind=out_kind_code("fp32"),
                                  k=config.block_size * 2, m=8)
        cases.append(("LOAD_SCALES cut short",
                      mx_configure + _packet(Opcode.LOAD_SCALES, [1, 2], cut=1)))
        cases.append(("LOAD_SCALES too long",
                      mx_configure + _packet(Opcode.LOAD_SCALES, [1, 2], extra=1)))
        cases.append(("LOAD_SCALES with a wrong length",
                      mx_configure + _packet(Opcode.LOAD_SCALES, [1, 2, 3])))
        cases.append(("LOAD_SCALES on bank 2",
                      mx_configure + _packet(Opcode.LOAD_SCALES, [1, 2], args=2)))
    return cases



def mutate(beats: list[Beat], rng: np.random.Generator) -> tuple[list[Beat], str]:
    """One random corruption of one packet of `beats`: cut it short, drop its `last`
    (merging it with the next packet), change its length field, its opcode (to an illegal
    one) or its bank field. Returns the beats and a description of the change."""
    starts = [0] + [index + 1 for index, (_, last) in enumerate(beats[:-1]) if last]
    start = int(rng.choice(starts))
    end = next(index for index in range(start, len(beats)) if beats[index][1]) + 1
    packet = list(beats[start:end])
    header = Header.decode(packet[0][0])
    kind = str(rng.choice(["cut", "no_last", "length", "opcode", "bank"]))
    what = f"{kind} of packet {len(starts[:starts.index(start)])} ({header})"
    if kind == "cut" and len(packet) > 1:
        cut = int(rng.integers(1, len(packet)))
        packet = packet[:cut - 1] + [(packet[cut - 1][0], True)]
        what += f" after {cut - 1} payload words"
    elif kind == "no_last" and end < len(beats):
        packet[-1] = (packet[-1][0], False)
    elif kind == "length":
        length = max(0, header.length + int(rng.choice([-3, -2, -1, 1, 2, 3])))
        packet[0] = (Header(header.opcode, header.tag, length, header.args).encode(),
                     packet[0][1])
        what += f" to {length}"
    elif kind == "opcode":
        opcode = int(rng.choice([0, *range(9, 256)]))
        packet[0] = (Header(opcode, header.tag, header.length, header.args).encode(),
                     packet[0][1])
        what += f" to {opcode:#x}"
    else:
        packet[0] = (Header(header.opcode, header.tag, header.length,
                            int(rng.integers(2, 256))).encode(), packet[0][1])
    return beats[:start] + packet + beats[end:], what


def fuzz_streams(config: ArrayConfig, rng: np.random.Generator, count: int,
                 mx: bool) -> list[tuple[list[Beat], str]]:
    """`count` small GEMM programs (one MX mode, or the integer modes), each with one or
    two random corruptions and followed by an IDENTIFY (so the stream always ends with a
    complete packet), each with a description of its corruptions. A corrupted load leaves
    stale buffer contents for the next COMPUTE; they stay specified because the MX fuzz
    uses one format only (MXINT8 elements in an MXINT4 COMPUTE would not be) and the
    integer modes accept any int8 values. Run the MX fuzz before any integer traffic for
    the same reason."""
    modes = [mode for mode in config.modes if MODE_INFO[mode].mx == mx]
    if mx:
        modes = modes[:1]
    streams = []
    for _ in range(count):
        mode = str(rng.choice(modes))
        shape = (int(rng.integers(1, 24)), int(rng.integers(1, 70)), int(rng.integers(1, 40)))
        if mx:
            case = mx_case(config, rng, mode=mode, shape=shape,
                           out=str(rng.choice(["fp32", "mxint8", "mxint4"])))
        elif rng.random() < 0.5:
            case = matmul_case(config, rng, mode=mode, shape=shape)
        else:
            case = qlinear_case(config, rng, mode=mode, shape=shape,
                                rounding=str(rng.choice(["fp32", "gemmlowp"])),
                                out_dtype=str(rng.choice(["uint8", "int8", "int4"])))
        beats = case.program.beats()
        changes = []
        for _ in range(int(rng.integers(1, 3))):
            beats, what = mutate(beats, rng)
            changes.append(what)
        streams.append((beats + Packet.make(Opcode.IDENTIFY, 0xEE).beats(),
                        f"{case.name}: {'; '.join(changes)}"))
    return streams
