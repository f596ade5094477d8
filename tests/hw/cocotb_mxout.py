"""MX output path vectors, golden expectations and cocotb tests (run by test_mxout.py).

Driver -> Monitor -> Model -> Checker, as in cocotb_requant: StreamSource with idle gaps,
StreamSink with random backpressure, monitors checking the stream rules, a Scoreboard
fed with golden `bfp_to_float32` / `mx_quantize` results computed in bulk.

Environment: LPMAC_ACC_BITS, LPMAC_BLOCK_SIZE (the build's ArrayConfig), LPMAC_MX_COUNT.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np

from golden.config import ArrayConfig
from golden.mx import bfp_normalize, bfp_to_float32, bfp_to_float64, mx_quantize
from hw.mxout import BfpToFloat32, MxElementFormat, MxQuantizer
from sim.cocotb_streams import (
    StreamBench,
    random_pauses,
    reset_dut,
    start_clock,
)
from tests.hw.payloads import StructCodec


def _canonical(rng: np.random.Generator, count: int, width: int) -> np.ndarray:
    """Canonical W-bit mantissas: normalised magnitudes of both signs, some negative
    powers of two."""
    magnitude = rng.integers(1 << (width - 2), 1 << (width - 1), count)
    mantissa = np.where(rng.random(count) < 0.5, -magnitude, magnitude)
    return np.where(rng.random(count) < 0.03, -(1 << (width - 1)), mantissa)


def float32_vectors(seed: int, count: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(m, e), canonical but for a few, whose values cover normal, subnormal, underflowing
    and overflowing float32 results, exact rounding ties and the largest finite value."""
    rng = np.random.default_rng(seed)
    mantissa = _canonical(rng, count, width)
    lead = rng.integers(-160, 140, count)  # floor(log2 |value|)
    lead = np.where(rng.random(count) < 0.5, rng.integers(-20, 20, count), lead)
    kind = rng.random(count)
    if width > 24:  # ties of the 24-bit rounding: 1, 23 bits, then 1 and zeros
        kept = rng.integers(1 << 23, 1 << 24, count)
        tie = (kept << (width - 25)) | (1 << (width - 26))
        mantissa = np.where(kind < 0.15, np.where(rng.random(count) < 0.5, -tie, tie),
                            mantissa)
    # subnormal ties: round bit of the 2^-149 grid set, nothing below
    sub_lead = rng.integers(-150, -126, count)
    mantissa = np.where((kind >= 0.15) & (kind < 0.25), (1 << (width - 2)) + (1 << (width - 3))
                        * (rng.random(count) < 0.5), mantissa)
    lead = np.where((kind >= 0.15) & (kind < 0.25), sub_lead, lead)
    # the top of the range: largest finite, rounding to infinity, beyond
    ones = (1 << (width - 1)) - 1
    top = (kind >= 0.25) & (kind < 0.3)
    mantissa = np.where(top, np.where(rng.random(count) < 0.5, -ones, ones), mantissa)
    lead = np.where(top, rng.integers(126, 129, count), lead)
    magnitude = np.abs(mantissa)
    bits = np.floor(np.log2(magnitude)).astype(np.int64)
    exponent = lead - bits
    zero = rng.random(count) < 0.02
    mantissa = np.where(zero, 0, mantissa)
    exponent = np.where(zero, 0, exponent)
    m, e = bfp_normalize(mantissa, exponent, width)
    return _denormalize(rng, m, e, width)


def _denormalize(rng: np.random.Generator, mantissa: np.ndarray, exponent: np.ndarray,
                 width: int) -> tuple[np.ndarray, np.ndarray]:
    """Make 5% of the values non-canonical (redundant sign bits): the units accept any
    mantissa."""
    shift = np.where(rng.random(mantissa.shape) < 0.05,
                     rng.integers(1, width - 1, mantissa.shape), 0)
    return mantissa >> shift, np.where(mantissa != 0, exponent + shift, exponent)


def float32_expected(mantissa: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    return bfp_to_float32(mantissa, exponent).view(np.uint32).astype(np.int64)


def mx_rows(seed: int, rows: int, length: int, width: int, block: int,
            fraction_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """`rows` rows of `length` canonical (m, e): per block a random shared exponent
    (including the clamped extremes: values below 2^-127 and at or above 2^127), elements
    spread below it, exact ties of the element rounding, zeros and all-zero blocks."""
    rng = np.random.default_rng(seed)
    count = rows * length
    blocks = -(-length // block)
    block_lead = rng.integers(-135, 135, (rows, blocks))
    block_lead = np.where(rng.random((rows, blocks)) < 0.7,
                          rng.integers(-20, 20, (rows, blocks)), block_lead)
    extreme = rng.random((rows, blocks))
    block_lead = np.where(extreme < 0.05, rng.integers(-150, -126, (rows, blocks)), block_lead)
    block_lead = np.where(extreme > 0.95, rng.integers(126, 140, (rows, blocks)), block_lead)
    lead = np.repeat(block_lead, block, axis=1)[:, :length].reshape(-1)
    lead = lead - np.minimum(rng.geometric(0.25, count) - 1, 40)
    mantissa = _canonical(rng, count, width)
    # ties: (2k + 1) * 2^(lead_block - f - 1), k small
    tie = rng.random(count) < 0.2
    k = rng.integers(0, 1 << fraction_bits, count)
    odd = 2 * k + 1
    odd_bits = np.floor(np.log2(odd)).astype(np.int64)
    tie_mantissa = odd << (width - 2 - odd_bits)
    tie_lead = np.repeat(block_lead, block, axis=1)[:, :length].reshape(-1) - fraction_bits \
        - 1 + odd_bits
    mantissa = np.where(tie, np.where(rng.random(count) < 0.5, -tie_mantissa, tie_mantissa),
                        mantissa)
    lead = np.where(tie, tie_lead, lead)
    magnitude = np.abs(mantissa)
    exponent = lead - np.floor(np.log2(magnitude)).astype(np.int64)
    zero = rng.random(count) < 0.05
    zero_block = np.repeat(rng.random((rows, blocks)) < 0.05, block, axis=1)[:, :length]
    zero = zero | zero_block.reshape(-1)
    mantissa = np.where(zero, 0, mantissa)
    exponent = np.where(zero, 0, exponent)
    m, e = _denormalize(rng, *bfp_normalize(mantissa, exponent, width), width)
    return m.reshape(rows, length), e.reshape(rows, length)


def mx_expected(mantissa: np.ndarray, exponent: np.ndarray, fmt: str,
                block: int) -> list[tuple[int, int, int, int]]:
    """(element, scale code, first, last) per value, rows in order."""
    elements, codes = mx_quantize(bfp_to_float64(mantissa, exponent), fmt, block, axis=-1)
    length = mantissa.shape[1]
    out = []
    for row in range(mantissa.shape[0]):
        for n in range(length):
            out.append((int(elements[row, n]), int(codes[row, n // block]),
                        int(n % block == 0), int(n % block == block - 1 or n == length - 1)))
    return out


def _config() -> ArrayConfig:
    return ArrayConfig(acc_bits=int(os.environ.get("LPMAC_ACC_BITS", "32")),
                       block_size=int(os.environ.get("LPMAC_BLOCK_SIZE", "32")))


async def _run(dut, items: list[int], expected: list, decode, *, name: str,
               seed: int) -> None:
    bench = StreamBench(dut, decode, name=name, source_pauses=random_pauses(0.25, seed + 1),
                        sink_pauses=random_pauses(0.3, seed + 2))
    for value in expected:
        bench.scoreboard.add_expected(value)
    bench.source.send_all(items)
    await bench.sink.wait_for(len(expected), timeout_cycles=20 * len(expected) + 500)
    await bench.finish(dut, 40)


@cocotb.test()
async def float32_matches_golden(dut):
    """BfpToFloat32 equals golden bfp_to_float32 (bit patterns, -0.0 included)."""
    seed = cocotb.RANDOM_SEED
    config = _config()
    count = int(os.environ.get("LPMAC_MX_COUNT", "2000"))
    start_clock(dut)
    await reset_dut(dut)
    codec = StructCodec(BfpToFloat32(config).input_layout)
    mantissa, exponent = float32_vectors(seed, count, config.acc_bits)
    items = [codec.pack({"mantissa": int(m), "exponent": int(e)})
             for m, e in zip(mantissa, exponent, strict=True)]
    expected = float32_expected(mantissa, exponent).tolist()
    await _run(dut, items, expected, lambda p: p, name="bfp_to_float32", seed=seed)


@cocotb.test()
async def mx_quantize_matches_golden(dut):
    """MxQuantizer equals golden mx_quantize, MXINT8 then MXINT4, rows of whole and
    partial blocks."""
    seed = cocotb.RANDOM_SEED
    config = _config()
    count = int(os.environ.get("LPMAC_MX_COUNT", "2000"))
    block = config.block_size
    start_clock(dut)
    await reset_dut(dut)
    unit = MxQuantizer(config)
    codec = StructCodec(unit.input_layout)
    out = StructCodec(unit.output_layout)

    def decode(packed: int) -> tuple[int, int, int, int]:
        fields = out.unpack(packed)
        return (fields["element"], fields["scale"], fields["first"], fields["last"])

    for index, fmt in enumerate(("mxint8", "mxint4")):
        dut.format.value = (MxElementFormat.MXINT8 if fmt == "mxint8"
                            else MxElementFormat.MXINT4).value
        fraction_bits = 6 if fmt == "mxint8" else 2
        items: list[int] = []
        expected: list = []
        # rows of whole blocks, and rows ending in a partial block
        for part, length in enumerate((4 * block, 2 * block + 5, 3)):
            rows = max(1, count // 2 // 3 // length)
            m, e = mx_rows(seed + 10 * index + part, rows, length, config.acc_bits, block,
                           fraction_bits)
            for row in range(rows):
                for n in range(length):
                    items.append(codec.pack({"value": {"mantissa": int(m[row, n]),
                                                       "exponent": int(e[row, n])},
                                             "last": int(n == length - 1)}))
            expected += mx_expected(m, e, fmt, block)
        await _run(dut, items, expected, decode, name=f"mx_quantize-{fmt}",
                   seed=seed + 100 * index)
