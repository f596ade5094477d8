"""hw.arith.SerialMultiplier and SkidBuffer in the Amaranth simulator."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator, SimulatorContext

from hw.arith import (
    SerialMultiplier,
    SkidBuffer,
    booth_multiply_4x4,
    register,
    shift_right_rounding,
    staged_shift_right_rounding,
)
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


@pytest.mark.parametrize("signed_value", [False, True])
def test_staged_shift_right_rounding_equals_the_one_stage_shift(signed_value: bool,
                                                                sim_seed: int) -> None:
    """The two-stage shift gives, one cycle later, the one-stage shift's kept bits, round
    bit and sticky bit: every amount 0..36, random and corner values."""
    from amaranth.hdl import Module, Signal, signed

    shape = signed(34) if signed_value else unsigned(34)
    max_amount = 36
    m = Module()
    value = Signal(shape)
    amount = Signal(range(max_amount + 1))
    direct = [Signal.like(v, name=f"direct_{n}") for n, v in
              enumerate(shift_right_rounding(value, amount, max_amount))]
    m.d.comb += [d.eq(v) for d, v in zip(direct, shift_right_rounding(value, amount,
                                                                      max_amount),
                                         strict=True)]
    delayed = [Signal.like(d, name=f"delayed_{n}") for n, d in enumerate(direct)]
    m.d.sync += [d.eq(v) for d, v in zip(delayed, direct, strict=True)]
    staged = staged_shift_right_rounding(lambda v, name: register(m, v, name), value, amount,
                                         max_amount, "shift")
    staged_signals = [Signal.like(d, name=f"staged_{n}") for n, d in enumerate(direct)]
    m.d.comb += [s.eq(v) for s, v in zip(staged_signals, staged, strict=True)]
    rng = np.random.default_rng(sim_seed)
    low, high = (-(1 << 33), (1 << 33) - 1) if signed_value else (0, (1 << 34) - 1)
    values = [low, high, 0, 1, -1 if signed_value else 2, *(int(rng.integers(low, high + 1))
                                                             for _ in range(12))]
    checked = 0

    async def testbench(ctx: SimulatorContext) -> None:
        nonlocal checked
        for number in values:
            for shift in range(max_amount + 1):
                ctx.set(value, number)
                ctx.set(amount, shift)
                await ctx.tick()
                got = [ctx.get(s) for s in staged_signals]
                want = [ctx.get(d) for d in delayed]
                assert got == want, (number, shift, got, want)
                checked += 1

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert checked == len(values) * (max_amount + 1)


def test_booth_multiply_4x4_is_every_int4_product() -> None:
    """The Booth-recoded 4 x 4 product (the K-pair PEs' LUT multiplier) equals a * w for
    all 256 pairs of int4 operands (Amaranth simulator)."""
    from amaranth.hdl import Module, Signal, signed

    m = Module()
    a = Signal(signed(4))
    w = Signal(signed(4))
    product = Signal(signed(8))
    m.d.comb += product.eq(booth_multiply_4x4(a, w))
    seen: list[tuple[int, int, int]] = []

    async def testbench(ctx: SimulatorContext) -> None:
        for x in range(-8, 8):
            for y in range(-8, 8):
                ctx.set(a, x)
                ctx.set(w, y)
                seen.append((x, y, ctx.get(product)))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert len(seen) == 256
    assert [p for _, _, p in seen] == [x * y for x, y, _ in seen]
