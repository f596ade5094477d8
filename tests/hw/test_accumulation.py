"""The accumulation engine in the Amaranth simulator: column sums added into the accumulator
memory by read-modify-write (int32, wrapping), `first` overwriting, rows written back in
order, and each group's end reported with its bank, under random gaps in the array's output
(the engine never stalls)."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from golden.config import ArrayConfig
from hw.accumulate import pass_min
from hw.accumulation import Accumulation, accumulator_row
from hw.array import SystolicArray
from hw.sequencer import vector_meta
from tests.hw.registers import registers_for, set_registers

SEED = 1618


class _Bench(wiring.Component):
    def __init__(self, config: ArrayConfig, init: list) -> None:
        self.config_ = config
        array = SystolicArray(config, meta_shape=vector_meta(config))
        array._MustUse__silence = True
        self.accumulation = Accumulation(config, stream.Signature(array.output_layout))
        self.psum_bits = array.psum_shape.width
        self._init = init
        super().__init__({})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self.config_
        m.submodules.accumulation = accumulation = self.accumulation
        memory = Memory(shape=accumulator_row(config), depth=config.accumulator_depth,
                        init=self._init)
        m.submodules.memory = memory
        wiring.connect(m, accumulation.acc_write, memory.write_port())
        wiring.connect(m, accumulation.acc_read, memory.read_port())
        return m


@pytest.mark.parametrize("pipeline", ["compact", "fast"])
def test_accumulation_read_modify_write(pipeline: str) -> None:
    config = ArrayConfig(rows=4, cols=4, block_size=16, accumulator_depth=64,
                         pipeline=pipeline)
    seed = f"{SEED}-{pipeline}"
    rng = random.Random(seed)
    print(f"seed {seed}")
    _, registers = registers_for(config, mode="a8w4", out_kind="int32", m=6, k=12, n=8)
    lanes, depth = config.lane_columns, config.accumulator_depth
    state = [[rng.randrange(-2**31, 2**31) for _ in range(lanes)] for _ in range(depth)]
    bench = _Bench(config, [list(row) for row in state])
    dut = bench.accumulation
    # Passes over M rows of one bank, as the sequencer issues them: the same addresses
    # every pass (at least pass_min vectors apart), `first` on a group's first pass.
    rows = max(6, pass_min(config, "a8w4"))
    limit = 1 << (bench.psum_bits - 1)       # the column sums' range
    vectors, expected_writes, expected_ends = [], [], []
    for group in range(4):
        bank = group % 2
        for k_pass in range(3):
            for row in range(rows):
                address = bank * config.accumulator_bank_depth + row
                psum = [rng.randrange(-limit, limit) for _ in range(lanes)]
                end = k_pass == 2 and row == rows - 1
                vectors.append({"data": psum, "meta": {"addr": address, "first": k_pass == 0,
                                                       "group_end": end}})
                base = [0] * lanes if k_pass == 0 else state[address]
                state[address] = [((b + p + 2**31) % 2**32) - 2**31
                                  for b, p in zip(base, psum, strict=True)]
                expected_writes.append((address, list(state[address])))
                if end:
                    expected_ends.append(bank)
    writes, ends = [], []

    async def producer(ctx) -> None:
        set_registers(ctx, dut.config, registers)
        for vector in vectors:
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.columns.payload, vector)
            ctx.set(dut.columns.valid, 1)
            await ctx.tick()
            ctx.set(dut.columns.valid, 0)
        for _ in range(8):
            await ctx.tick()

    async def monitor(ctx) -> None:
        async for _, _, en, addr, data, written, bank in ctx.tick().sample(
                dut.acc_write.en, dut.acc_write.addr, dut.acc_write.data, dut.written,
                dut.written_bank):
            if en:
                writes.append((addr, [int(lane) for lane in data]))
            if written:
                ends.append(bank)

    simulator = Simulator(bench)
    simulator.add_clock(1e-8)
    simulator.add_testbench(producer)
    simulator.add_testbench(monitor, background=True)
    simulator.run()
    assert writes == expected_writes
    assert ends == expected_ends
