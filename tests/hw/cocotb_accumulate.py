"""Accumulation unit vectors, golden expectations and cocotb tests (run by
test_accumulate.py).

Driver -> Monitor -> Model -> Checker, as in cocotb_requant. `bfp_chains_match_golden`
also uses the unit the way the accelerator does: read-modify-write of a set of
accumulators, one K-block at a time, checked against golden `bfp_accumulate`.

Environment: LPMAC_ACC_BITS, LPMAC_BLOCK_SIZE, LPMAC_ACC_ROUNDING (the build's
ArrayConfig), LPMAC_ACC_COUNT.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np

from golden.config import ArrayConfig
from golden.mx import bfp_accumulate, bfp_add
from hw.accumulate import BfpAccumulator, IntAccumulator, block_partial_bits
from sim.cocotb_streams import (
    StreamBench,
    random_pauses,
    reset_dut,
    start_clock,
)
from tests.hw.payloads import StructCodec

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Block exponents of MX GEMMs: (ca - 127) + (cb - 127) - fa - fb, codes 0 ... 254.
BLOCK_EXPONENT_RANGE = (-266, 254)


def bfp_vectors(seed: int, count: int, config: ArrayConfig) -> dict[str, np.ndarray]:
    """Accumulator updates (acc mantissa, acc exponent, partial, partial exponent, first):
    canonical accumulators (some not canonical, some negative powers of two), block sums
    with corner values (0, +-1, +-BK * 127^2, the width's extremes), exponents close
    together (alignment, cancellation) and far apart (sticky bits only), and exact ties of
    the final rounding."""
    rng = np.random.default_rng(seed)
    width = config.acc_bits
    limit = config.block_size * 127 * 127
    widest = (1 << (block_partial_bits(config) - 1)) - 1
    kind = rng.random(count)
    magnitude = rng.integers(1 << (width - 2), 1 << (width - 1), count)
    mantissa = np.where(rng.random(count) < 0.5, -magnitude, magnitude)
    mantissa = np.where(kind < 0.05, -(1 << (width - 1)), mantissa)
    mantissa = np.where((kind >= 0.05) & (kind < 0.08), 0, mantissa)
    noncanonical = (kind >= 0.08) & (kind < 0.14)
    mantissa = np.where(noncanonical, mantissa >> rng.integers(1, width, count), mantissa)
    exponent = rng.integers(-330, 330, count)
    partial = rng.integers(-limit, limit, count, endpoint=True)
    opposite = rng.random(count) < 0.25  # cancellation against the accumulator
    partial = np.where(opposite, -np.sign(mantissa) * np.abs(partial), partial)
    corners = np.array([0, 1, -1, limit, -limit, widest, -widest, 16129, -16129, 127, -128])
    partial = np.where(rng.random(count) < 0.1, rng.choice(corners, count), partial)
    spread = rng.choice([0, 1, 2, 3, 8, 40, 80], count)
    partial_exponent = exponent + width - 20 + rng.integers(-spread, spread, endpoint=True)
    partial_exponent = np.where(rng.random(count) < 0.2,
                                rng.integers(*BLOCK_EXPONENT_RANGE, count, endpoint=True),
                                partial_exponent)
    # block exponents of the extreme scale codes (0 and 254 on both operands)
    partial_exponent = np.where(rng.random(count) < 0.04,
                                rng.choice([-266, -254, -258, 242, 250, 254], count),
                                partial_exponent)
    # exact ties: p * 2^x with p odd lands half-way on the accumulator's grid
    tie = (kind >= 0.8) & (mantissa != 0)
    shift = rng.integers(0, 3, count)
    partial = np.where(tie, (rng.integers(-200, 200, count) * 2 + 1) << shift, partial)
    partial_exponent = np.where(tie, exponent - 1 - shift, partial_exponent)
    partial_exponent = np.clip(partial_exponent, *BLOCK_EXPONENT_RANGE)
    first = (rng.random(count) < 0.08).astype(np.int64)
    return {"mantissa": mantissa, "exponent": exponent, "partial": partial,
            "partial_exponent": partial_exponent, "first": first}


def bfp_expected(vectors: dict[str, np.ndarray], config: ArrayConfig,
                 rounding: str) -> tuple[np.ndarray, np.ndarray]:
    first = vectors["first"].astype(bool)
    return bfp_add(np.where(first, 0, vectors["mantissa"]),
                   np.where(first, 0, vectors["exponent"]), vectors["partial"],
                   vectors["partial_exponent"], acc_bits=config.acc_bits, rounding=rounding)


def bfp_payload(vectors: dict[str, np.ndarray], n: int) -> dict:
    return {"acc": {"mantissa": int(vectors["mantissa"][n]),
                    "exponent": int(vectors["exponent"][n])},
            "partial": int(vectors["partial"][n]),
            "partial_exponent": int(vectors["partial_exponent"][n]),
            "first": int(vectors["first"][n])}


def _config() -> ArrayConfig:
    return ArrayConfig(acc_bits=int(os.environ.get("LPMAC_ACC_BITS", "32")),
                       block_size=int(os.environ.get("LPMAC_BLOCK_SIZE", "32")),
                       acc_rounding=os.environ.get("LPMAC_ACC_ROUNDING", "nearest"))


def _bench(dut, decode, *, name: str, seed: int) -> StreamBench:
    return StreamBench(dut, decode, name=name, source_pauses=random_pauses(0.25, seed + 1),
                       sink_pauses=random_pauses(0.3, seed + 2))


@cocotb.test()
async def bfp_matches_golden(dut):
    """Every update equals golden bfp_add, under random gaps and backpressure."""
    seed = cocotb.RANDOM_SEED
    config = _config()
    count = int(os.environ.get("LPMAC_ACC_COUNT", "2000"))
    start_clock(dut)
    await reset_dut(dut)
    unit = BfpAccumulator(config)
    codec, out = StructCodec(unit.input_layout), StructCodec(unit.value_layout)
    vectors = bfp_vectors(seed, count, config)
    mantissa, exponent = bfp_expected(vectors, config, config.acc_rounding)
    bench = _bench(dut, lambda p: tuple(out.unpack(p).values()), name="bfp_add", seed=seed)
    for n in range(count):
        bench.scoreboard.add_expected((int(mantissa[n]), int(exponent[n])),
                                      inputs=bfp_payload(vectors, n))
    bench.source.send_all(codec.pack(bfp_payload(vectors, n)) for n in range(count))
    await bench.sink.wait_for(count, timeout_cycles=20 * count + 200)
    await bench.finish(dut, 30)


@cocotb.test()
async def bfp_chains_match_golden(dut):
    """Read-modify-write of 16 accumulators over 24 K-blocks of MX-like block sums equals
    golden bfp_accumulate."""
    seed = cocotb.RANDOM_SEED
    config = _config()
    start_clock(dut)
    await reset_dut(dut)
    unit = BfpAccumulator(config)
    codec, out = StructCodec(unit.input_layout), StructCodec(unit.value_layout)
    rng = np.random.default_rng(seed + 5)
    outputs, blocks = 16, 24
    limit = config.block_size * 127 * 127
    partials = rng.integers(-limit, limit, (outputs, blocks), endpoint=True)
    partials = np.where(rng.random((outputs, blocks)) < 0.1, 0, partials)
    exponents = rng.integers(-20, 20, (outputs, 1)) + rng.integers(-12, 12, (outputs, blocks))
    expected_m, expected_e = bfp_accumulate(partials, exponents, acc_bits=config.acc_bits,
                                            rounding=config.acc_rounding)
    # Only the final accumulators are compared; intermediate outputs feed the next block.
    bench = _bench(dut, None, name="bfp_chains", seed=seed)
    state = [(0, 0)] * outputs
    for block in range(blocks):
        for row in range(outputs):
            payload = {"acc": {"mantissa": state[row][0], "exponent": state[row][1]},
                       "partial": int(partials[row, block]),
                       "partial_exponent": int(exponents[row, block]), "first": int(block == 0)}
            bench.source.send(codec.pack(payload))
        items = await bench.sink.wait_for((block + 1) * outputs, timeout_cycles=2000)
        state = [tuple(out.unpack(p).values()) for p in items[-outputs:]]
    for row in range(outputs):
        bench.scoreboard.add_expected((int(expected_m[row]), int(expected_e[row])),
                                      inputs=f"accumulator {row}")
        bench.scoreboard.add_output(state[row])
    await bench.finish(dut, 30)


@cocotb.test()
async def int_matches_golden(dut):
    """IntAccumulator: int32 wrapping sums (ONNX MatMulInteger semantics)."""
    seed = cocotb.RANDOM_SEED
    count = int(os.environ.get("LPMAC_ACC_COUNT", "2000"))
    start_clock(dut)
    await reset_dut(dut)
    unit = IntAccumulator()
    codec, out = StructCodec(unit.input_layout), StructCodec(unit.output_layout)
    rng = np.random.default_rng(seed)
    corners = np.array([INT32_MIN, INT32_MAX, 0, -1, 1, -128, 127])
    acc = rng.integers(INT32_MIN, INT32_MAX, count, endpoint=True)
    acc = np.where(rng.random(count) < 0.3, rng.choice(corners, count), acc)
    partial = rng.integers(INT32_MIN, INT32_MAX, count, endpoint=True)
    partial = np.where(rng.random(count) < 0.3, rng.choice(corners, count), partial)
    first = rng.random(count) < 0.1
    expected = (np.where(first, 0, acc) + partial).astype(np.int32)
    bench = _bench(dut, lambda p: out.unpack(p)["acc"], name="int_accumulate", seed=seed)
    for n in range(count):
        bench.scoreboard.add_expected(int(expected[n]), inputs=(int(acc[n]), int(partial[n]),
                                                               bool(first[n])))
    bench.source.send_all(codec.pack({"acc": int(acc[n]), "partial": int(partial[n]),
                                      "first": int(first[n])}) for n in range(count))
    await bench.sink.wait_for(count, timeout_cycles=20 * count + 200)
    await bench.finish(dut, 30)
