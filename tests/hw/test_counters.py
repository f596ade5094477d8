"""`hw.counters.PerformanceCounters` on the Amaranth simulator: each counter against a
Python model of READ_COUNTERS' rules (events one cycle late, clear drops them, the cycles
snapshot), including the wrap at 2 ** counter_bits, reached by loading the registers
close to it."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator, SimulatorContext

from host.protocol import COUNTER_NAMES
from hw.counters import EVENT_NAMES, PerformanceCounters

MACS_BITS = 8


class Model:
    """The counters as docs/protocol.md describes them."""

    def __init__(self, bits: int, start: dict[str, int]) -> None:
        self.mask = (1 << bits) - 1
        self.counters = dict(start)
        self.pending = dict.fromkeys(EVENT_NAMES, 0)
        self.snapshot = 0

    def step(self, events: dict[str, int], clear: bool, snapshot: bool) -> None:
        if snapshot:
            self.snapshot = self.counters["cycles"]
        if clear:
            self.counters = dict.fromkeys(COUNTER_NAMES, 0)
            self.pending = dict.fromkeys(EVENT_NAMES, 0)
            return
        self.counters["cycles"] = (self.counters["cycles"] + 1) & self.mask
        for name in EVENT_NAMES:
            self.counters[name] = (self.counters[name] + self.pending[name]) & self.mask
        self.pending = dict(events)

    def words(self) -> list[int]:
        return [self.snapshot, *(self.counters[name] for name in EVENT_NAMES)]


def _run(bits: int, start: dict[str, int], cycles: int, seed: int,
         clear_prob: float = 0.02) -> list[tuple[int, list[int], list[int]]]:
    dut = PerformanceCounters(bits, MACS_BITS)
    rng = np.random.default_rng(seed)
    model = Model(bits, start)
    seen: list[tuple[int, list[int], list[int]]] = []

    async def testbench(ctx: SimulatorContext) -> None:
        for name, value in start.items():
            ctx.set(dut.counters[name], value)
        for cycle in range(cycles):
            events = {"busy": int(rng.integers(2)), "input_stall": int(rng.integers(2)),
                      "output_stall": int(rng.integers(2)),
                      "macs": int(rng.choice([0, 16, 32, (1 << MACS_BITS) - 1]))}
            clear = bool(rng.random() < clear_prob)
            snapshot = bool(rng.random() < 0.2)
            for name, value in events.items():
                ctx.set(dut.events[name], value)
            ctx.set(dut.clear, clear)
            ctx.set(dut.snapshot, snapshot)
            await ctx.tick()
            model.step(events, clear, snapshot)
            seen.append((cycle, [ctx.get(word) for word in dut.words], model.words()))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return seen


@pytest.mark.parametrize("bits", [40, 64])
def test_counters_wrap_at_their_width(bits: int, sim_seed: int) -> None:
    top = 1 << bits
    start = {"cycles": top - 5, "busy": top - 3, "input_stall": top - 2,
             "output_stall": top - 1, "macs": top - 300}
    seen = _run(bits, start, cycles=40, seed=sim_seed, clear_prob=0.0)
    mismatches = [entry for entry in seen if entry[1] != entry[2]]
    assert not mismatches, f"{len(mismatches)} mismatches, first {mismatches[:2]}"
    # Every counter went past 2 ** bits and starts again from zero.
    last = seen[-1][1]
    assert last[EVENT_NAMES.index("macs") + 1] < 40 * ((1 << MACS_BITS) - 1)
    assert all(value < 100 for value in last[1:4])


def test_clear_and_snapshot_follow_the_protocol(sim_seed: int) -> None:
    seen = _run(40, dict.fromkeys(COUNTER_NAMES, 0), cycles=400, seed=sim_seed)
    mismatches = [entry for entry in seen if entry[1] != entry[2]]
    assert not mismatches, f"{len(mismatches)} mismatches, first {mismatches[:2]}"
