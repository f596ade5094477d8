"""hw.arith.SerialMultiplier and SkidBuffer in the Amaranth simulator."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator, SimulatorContext

from hw.arith import SerialMultiplier, SkidBuffer
from tests.hw.streams import run_stream_test


def test_serial_multiplier_products_and_timing(sim_seed: int) -> None:
    a_width, b_width = 16, 18
    rng = np.random.default_rng(sim_seed)
    corners = [(0, 0), (1, 1), ((1 << a_width) - 1, (1 << b_width) - 1), (0, 12345),
               (1 << (a_width - 1), 3), (54321, 0)]
    pairs = corners + [(int(rng.integers(0, 1 << a_width)), int(rng.integers(0, 1 << b_width)))
                       for _ in range(40)]
    dut = SerialMultiplier(a_width, b_width)
    results = []

    async def testbench(ctx: SimulatorContext) -> None:
        for a, b in pairs:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.a, 0)          # the operands are latched at `start`
            ctx.set(dut.b, 0)
            cycles = 0
            while ctx.get(dut.busy):
                await ctx.tick()
                cycles += 1
            results.append((ctx.get(dut.product), cycles))
            await ctx.tick()           # held until the next start
            assert ctx.get(dut.product) == results[-1][0]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert [product for product, _ in results] == [a * b for a, b in pairs]
    assert {cycles for _, cycles in results} == {a_width}


@pytest.mark.parametrize(("gaps", "stalls"), [(0.0, 0.0), (0.3, 0.5), (0.7, 0.2), (0.1, 0.9)])
def test_skid_buffer_passes_every_beat_in_order(gaps: float, stalls: float,
                                                sim_seed: int) -> None:
    """Under random gaps and backpressure every beat comes out once, in order, and the
    output keeps the stream rules (the monitor of `run_stream_test`)."""
    rng = np.random.default_rng(sim_seed)
    beats = [int(value) for value in rng.integers(0, 1 << 12, size=300)]
    received = run_stream_test(SkidBuffer(unsigned(12)), beats, len(beats), seed=sim_seed,
                               convert=int, gap_probability=gaps, stall_probability=stalls)
    assert received == beats


def test_skid_buffer_full_throughput_and_registered_ready() -> None:
    """With the output always ready a beat per cycle passes, one cycle late; with it
    stalled, the output register holds its beat, one more is taken into the skid register
    and `ready` then stays low."""
    dut = SkidBuffer(unsigned(8))

    async def testbench(ctx: SimulatorContext) -> None:
        ctx.set(dut.o_stream.ready, 1)
        ctx.set(dut.i_stream.valid, 1)
        seen = []
        for value in range(1, 11):
            ctx.set(dut.i_stream.payload, value)
            _, _, ready, valid, payload = await ctx.tick().sample(
                dut.i_stream.ready, dut.o_stream.valid, dut.o_stream.payload)
            assert ready
            if valid:
                seen.append(payload)
        assert seen == list(range(1, 10))          # each beat one cycle after it went in
        ctx.set(dut.o_stream.ready, 0)
        taken = 0
        for value in range(11, 15):
            ctx.set(dut.i_stream.payload, value)
            _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
            taken += ready
        assert taken == 1 and not ctx.get(dut.i_stream.ready) and ctx.get(dut.busy)
        assert ctx.get(dut.o_stream.valid) and ctx.get(dut.o_stream.payload) == 10

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
