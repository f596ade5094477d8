"""hw.arith.SerialMultiplier in the Amaranth simulator against Python integers."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator, SimulatorContext

from hw.arith import SerialMultiplier


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
