"""The drain in the Amaranth simulator: full accumulator banks read out element by element,
with each channel's requantization parameters and BFP value, in the order of the result
stream, under random output stalls; banks released after their last read."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from golden.config import ArrayConfig
from hw.accumulation import accumulator_row, bfp_row
from hw.drain import Drain
from hw.params import ParamMemory
from tests.hw.registers import registers_for, set_registers
from tests.hw.streams import stream_get

SEED = 99


class _Bench(wiring.Component):
    """The drain with memories filled with known rows."""

    def __init__(self, config: ArrayConfig, acc: list, bfp: list) -> None:
        self.config_ = config
        self.drain = Drain(config)
        self._acc, self._bfp = acc, bfp
        super().__init__({})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self.config_
        m.submodules.drain = drain = self.drain
        acc = Memory(shape=accumulator_row(config), depth=config.accumulator_depth,
                     init=self._acc)
        m.submodules.acc = acc
        wiring.connect(m, drain.acc_read, acc.read_port())
        if config.has_mx:
            bfp = Memory(shape=bfp_row(config), depth=config.accumulator_depth, init=self._bfp)
            m.submodules.bfp = bfp
            wiring.connect(m, drain.bfp_read, bfp.read_port())
        if config.has_requantizer:
            self.params = params = ParamMemory(config)
            m.submodules.params = params
            wiring.connect(m, drain.requant_read, params.read)
        return m


CASES = {
    "a8w8 int8": (ArrayConfig(rows=4, cols=4, block_size=16, accumulator_depth=64,
                              requant_depth=64),
                  {"mode": "a8w8", "out_kind": "int8", "m": 5, "k": 8, "n": 12}),
    "a8w4 uint8 fast pairs": (ArrayConfig(rows=4, cols=4, block_size=16, accumulator_depth=64,
                                          requant_depth=64, pipeline="fast"),
                              {"mode": "a8w4", "out_kind": "uint8", "m": 3, "k": 4, "n": 24}),
    "a8w4 int4 one by one": (ArrayConfig(rows=4, cols=4, block_size=16, accumulator_depth=64,
                                         requant_depth=64, drain_pairs=False),
                             {"mode": "a8w4", "out_kind": "int4", "m": 5, "k": 8, "n": 16}),
    "a4w4 int32 pairs": (ArrayConfig(rows=4, cols=4, block_size=16, accumulator_depth=64,
                                     requant_depth=64),
                         {"mode": "a4w4", "out_kind": "int32", "m": 4, "k": 4, "n": 8}),
    "mxint8 mx out": (ArrayConfig(rows=4, cols=4, block_size=16, accumulator_depth=64,
                                  requant_depth=64),
                      {"mode": "mxint8", "out_kind": "mxint8", "m": 4, "k": 16, "n": 32}),
    "default fp32": (ArrayConfig(), {"mode": "mxint4", "out_kind": "fp32", "m": 6, "k": 32,
                                     "n": 48}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_drain_reads_banks_in_result_order(name: str) -> None:
    config, fields = CASES[name]
    seed = f"{SEED}-{name}"
    rng = random.Random(seed)
    print(f"seed {seed}")
    geometry, registers = registers_for(config, **fields)
    lc, depth = config.lane_columns, config.accumulator_depth
    acc = [[rng.randrange(-2**31, 2**31) for _ in range(lc)] for _ in range(depth)]
    bfp = [[{"mantissa": rng.randrange(-2**31, 2**31), "exponent": rng.randrange(-300, 300)}
            for _ in range(lc)] for _ in range(depth)] if config.has_mx else []
    params = [{"bias": rng.randrange(-2**31, 2**31), "multiplier": rng.getrandbits(32),
               "shift": rng.randrange(-32, 32)} for _ in range(config.requant_depth)]
    # The banks two jobs' groups fill, alternating, each job's last group marked.
    groups = geometry.nt // geometry.group
    banks = [(index % 2, index % groups == groups - 1) for index in range(2 * groups)]
    # What the drain offers per cycle: one element, or a pair of adjacent columns in a
    # two-lane mode with a paired drain (the second fields compared only for a pair).
    paired = config.drain_width == 2 and geometry.lanes == 2
    step = 2 if paired else 1
    expected = []
    half, span = config.accumulator_bank_depth, geometry.lc * geometry.group
    for index, (bank, _last) in enumerate(banks):
        channel_base = (index % groups) * span
        for row in range(geometry.m):
            for tile in range(geometry.group):
                for lane in range(0, geometry.lc, step):
                    address = bank * half + tile * geometry.m + row
                    lanes = range(lane, lane + step)
                    element = {"values": [acc[address][j] for j in lanes],
                               "block_end": int(lane + step == geometry.lc
                                                and tile == geometry.group - 1)}
                    if geometry.requant:
                        element["params"] = [params[channel_base + tile * geometry.lc + j]
                                             for j in lanes]
                    if geometry.mx:
                        element["bfp"] = [bfp[address][j] for j in lanes]
                    expected.append(element)
    bench = _Bench(config, acc, bfp)
    dut = bench.drain
    got: list[dict] = []
    releases: list[int] = []

    async def banks_testbench(ctx) -> None:
        set_registers(ctx, dut.config, registers)
        if config.has_requantizer:      # the parameters, one channel a cycle
            write = bench.params.write
            for channel, value in enumerate(params):
                ctx.set(write.addr, channel)
                ctx.set(write.data, value)
                ctx.set(write.en, 1)
                await ctx.tick()
            ctx.set(write.en, 0)
        for bank, last in banks:
            ctx.set(dut.full, 1 << bank)
            ctx.set(dut.last, int(last) << bank)
            while True:
                _, _, release, release_bank = await ctx.tick().sample(dut.release,
                                                                       dut.release_bank)
                if release:
                    releases.append(release_bank)
                    break
            ctx.set(dut.full, 0)
            for _ in range(rng.randrange(3)):
                await ctx.tick()

    async def consumer(ctx) -> None:
        stall = random.Random(seed + "c")
        while len(got) < len(expected):
            while stall.random() < 0.4:
                await ctx.tick()
            payload = await stream_get(ctx, dut.drained, timeout=3000)
            if config.drain_width == 2:
                assert payload.pair == paired
            element = {"values": [int(payload.values[j]) for j in range(step)],
                       "block_end": payload.block_end}
            if geometry.requant:
                element["params"] = [{key: int(getattr(payload.params[j], key))
                                      for key in ("bias", "multiplier", "shift")}
                                     for j in range(step)]
            if geometry.mx:
                element["bfp"] = [{key: int(getattr(payload.bfp[j], key))
                                   for key in ("mantissa", "exponent")} for j in range(step)]
            got.append(element)
        for _ in range(4):
            await ctx.tick()
        assert not ctx.get(dut.busy)

    simulator = Simulator(bench)
    simulator.add_clock(1e-8)
    simulator.add_testbench(banks_testbench)
    simulator.add_testbench(consumer)
    simulator.run()
    for index, (have, want) in enumerate(zip(got, expected, strict=True)):
        assert have == want, f"element {index}: got {have}, expected {want}"
    assert releases == [bank for bank, _ in banks]
