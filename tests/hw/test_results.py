"""The result path in the Amaranth simulator: drained elements through the output unit of
each kind and the packer into result words, equal to the specification's result stream
(`golden.protocol.pack_results` of the golden model's outputs), under random input gaps and
output stalls."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

import golden
from golden.config import ArrayConfig
from golden.protocol import pack_results
from golden.requant import RequantParams
from hw.results import ResultPath
from tests.hw.registers import registers_for, set_registers
from tests.hw.streams import stream_get, stream_put

SEED = 31
CONFIG = ArrayConfig(rows=4, cols=4, block_size=16, acc_bits=24, accumulator_depth=64,
                     requant_depth=64)
CASES = {
    "int32": {"mode": "a8w8", "out_kind": "int32", "m": 3, "k": 4, "n": 8},
    "int32 pairs": {"mode": "a8w4", "out_kind": "int32", "m": 3, "k": 4, "n": 16},
    "int8 pairs": {"mode": "a4w4", "out_kind": "int8", "m": 2, "k": 4, "n": 16,
                   "zero_point": 5},
    "fp32 pairs": {"mode": "mxint8w4", "out_kind": "fp32", "m": 3, "k": 16, "n": 16},
    "mxint8 from pairs": {"mode": "mxint4", "out_kind": "mxint8", "m": 2, "k": 16,
                          "n": 32},
    "uint8 fp32 relu": {"mode": "a8w4", "out_kind": "uint8", "m": 5, "k": 4, "n": 16,
                        "relu": True, "zero_point": 17},
    "int4 gemmlowp": {"mode": "a8w8", "out_kind": "int4", "m": 3, "k": 4, "n": 12,
                      "rounding": "gemmlowp", "zero_point": -3},
    "fp32": {"mode": "mxint8", "out_kind": "fp32", "m": 4, "k": 16, "n": 8},
    "mxint4": {"mode": "mxint8", "out_kind": "mxint4", "m": 3, "k": 16, "n": 32},
}


def _bfp(rng: np.random.Generator, shape: tuple, acc_bits: int) -> tuple[np.ndarray, ...]:
    """Canonical BFP values (the accumulator's): |m| in [2^(W-2), 2^(W-1)) or 0."""
    magnitude = rng.integers(1 << (acc_bits - 2), 1 << (acc_bits - 1), shape)
    mantissa = np.where(rng.random(shape) < 0.5, -magnitude, magnitude)
    mantissa[rng.random(shape) < 0.1] = 0
    exponent = np.where(mantissa == 0, 0, rng.integers(-60, 20, shape))
    return mantissa.astype(np.int64), exponent.astype(np.int64)


@pytest.mark.parametrize("name", list(CASES))
def test_result_path_packs_what_the_golden_model_computes(name: str) -> None:
    config = CONFIG
    seed = f"{SEED}-{name}"
    rng = np.random.default_rng(list(seed.encode()))
    print(f"seed {seed}")
    geometry, registers = registers_for(config, **CASES[name])
    m, n = geometry.m, geometry.n
    acc = rng.integers(-2**31, 2**31, (m, n), dtype=np.int64)
    bias = rng.integers(-2**20, 2**20, n)
    codes = None
    multiplier_bits = shift = np.zeros(n, np.int64)
    if geometry.out_kind == "int32":
        values = acc & 0xFFFFFFFF
    elif geometry.requant:
        if geometry.rounding == "fp32":
            scale = (rng.random(n) * 2.0**rng.integers(-20, -8, n)).astype(np.float32)
            multiplier_bits, shift = scale.view(np.uint32).astype(np.int64), np.zeros(n, int)
            multiplier = scale
        else:
            multiplier_bits = rng.integers(2**30, 2**31, n)
            shift = rng.integers(-31, -8, n)
            multiplier = multiplier_bits
        params = RequantParams(geometry.rounding, multiplier, shift if geometry.rounding ==
                               "gemmlowp" else None, bias, geometry.zero_point,
                               geometry.out_kind, geometry.relu)
        values = golden.requantize(acc, params).astype(np.int64) \
            & (0xF if geometry.out_kind == "int4" else 0xFF)
    else:
        mantissa, exponent = _bfp(rng, (m, n), config.acc_bits)
        if geometry.out_kind == "fp32":
            values = golden.bfp_to_float32(mantissa, exponent).view(np.uint32).astype(np.int64)
        else:
            elements, codes = golden.mx_quantize(golden.bfp_to_float64(mantissa, exponent),
                                                 geometry.out_kind, config.block_size, axis=1)
            values = elements.astype(np.int64) & (0xFF if geometry.out_kind == "mxint8"
                                                   else 0xF)
    words = pack_results(geometry, values, codes)

    # The drained elements in result order: group by group, row by row, lane by lane; in
    # pairs of adjacent columns in the two-lane modes (a paired drain).
    span = geometry.lc * geometry.group
    width = config.drain_width
    step = width if geometry.lanes == 2 else 1
    elements = []

    def one(row: int, column: int) -> dict[str, object]:
        fields: dict[str, object] = {"value": int(np.int64(acc[row, column]).astype(np.int32))}
        fields["params"] = {"bias": int(bias[column]),
                            "multiplier": int(multiplier_bits[column]) if geometry.requant
                            else 0, "shift": int(shift[column]) if geometry.requant else 0}
        fields["bfp"] = {"mantissa": int(mantissa[row, column]),
                         "exponent": int(exponent[row, column])} if geometry.mx else \
            {"mantissa": 0, "exponent": 0}
        return fields

    for group in range(n // span):
        for row in range(m):
            for column in range(group * span, (group + 1) * span, step):
                parts = [one(row, column + j) for j in range(step)]
                parts += [parts[0]] * (width - step)       # an unused second slot
                element = {"values": [part["value"] for part in parts],
                           "block_end": int(column + step == (group + 1) * span),
                           "pair": int(step == 2),
                           "params": [part["params"] for part in parts],
                           "bfp": [part["bfp"] for part in parts]}
                elements.append(element)
    dut = ResultPath(config, "split")
    got: list[int] = []

    async def producer(ctx) -> None:
        set_registers(ctx, dut.config, registers)
        ctx.set(dut.applied, 1)
        await ctx.tick()
        ctx.set(dut.applied, 0)
        gaps = random.Random(seed + "p")
        for element in elements:
            while gaps.random() < 0.3:
                await ctx.tick()
            await stream_put(ctx, dut.drained, element)

    async def consumer(ctx) -> None:
        stall = random.Random(seed + "c")
        while len(got) < len(words):
            while stall.random() < 0.4:
                await ctx.tick()
            got.append(await stream_get(ctx, dut.results, timeout=3000))
        for _ in range(4):
            await ctx.tick()
        assert not ctx.get(dut.busy)

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(producer)
    simulator.add_testbench(consumer)
    simulator.run()
    assert [f"{word:#018x}" for word in got] == [f"{word:#018x}" for word in words]
