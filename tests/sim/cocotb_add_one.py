"""cocotb tests for the add-one skid buffer of test_sim_streams.py (run by run_cocotb).

Structured as Driver -> Monitor -> Model -> Checker: a StreamSource drives `i`, monitors
on `i` and `o` feed a Scoreboard whose model adds one, a StreamSink drains `o` with random
backpressure. The seed is cocotb's (`run_cocotb(seed=...)`), so a failure replays exactly.
"""

from __future__ import annotations

import os
import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sim.cocotb_streams import (
    StreamMonitor,
    StreamSink,
    StreamSource,
    random_pauses,
    reset_dut,
    start_clock,
)
from sim.lanes import to_signed
from sim.scoreboard import Scoreboard

IN_WIDTH, OUT_WIDTH = 8, 9
CORNERS = [-128, 127, -1, 0, 1, -127, 126]


async def _run_add_one(dut, items: list[int], model, *, name: str) -> Scoreboard:
    """Push `items` through the design under random gaps and backpressure; check all."""
    seed = cocotb.RANDOM_SEED
    dut._log.info("seed %d, %d items", seed, len(items))
    start_clock(dut)
    await reset_dut(dut)
    scoreboard = Scoreboard(model, name=name)
    inputs = StreamMonitor(dut, "i", dut.clk, reset=dut.rst,
                           callback=lambda p: scoreboard.add_input(to_signed(p, IN_WIDTH)))
    outputs = StreamMonitor(dut, "o", dut.clk, reset=dut.rst,
                            callback=lambda p: scoreboard.add_output(to_signed(p, OUT_WIDTH)))
    idle_rng = random.Random(seed + 3)
    source = StreamSource(dut, "i", dut.clk, pauses=random_pauses(0.3, seed + 1),
                          idle_payload=lambda: idle_rng.getrandbits(IN_WIDTH))
    sink = StreamSink(dut, "o", dut.clk, pauses=random_pauses(0.4, seed + 2))
    for component in (inputs, outputs, source, sink):
        component.start()
    source.send_all(items)
    await sink.wait_for(len(items), timeout_cycles=20 * len(items) + 100)
    await ClockCycles(dut.clk, 20)  # anything arriving now is a duplicate
    inputs.check()
    outputs.check()
    dut._log.info("%s", scoreboard.summary())
    return scoreboard


@cocotb.test()
async def add_one_under_backpressure(dut):
    """Every item arrives once, in order, incremented, under random valid gaps and ready."""
    count = int(os.environ.get("LPMAC_ITEMS", "2000"))
    rng = random.Random(cocotb.RANDOM_SEED)
    items = CORNERS + [rng.randint(-128, 127) for _ in range(count - len(CORNERS))]
    scoreboard = await _run_add_one(dut, items, lambda a: a + 1, name="add_one")
    scoreboard.check()
    assert scoreboard.received_count == count


@cocotb.test()
async def wrong_model_is_reported(dut):
    """A model that is wrong for input 5 must fail with item 133 (the position of 5)."""
    items = list(range(-128, 128))
    scoreboard = await _run_add_one(dut, items, lambda a: a + 2 if a == 5 else a + 1,
                                    name="wrong_model")
    scoreboard.check()  # expected to raise ScoreboardError


# (valid, payload) driven after each rising edge by the rule-breaking source. With
# o.ready held low, the design accepts two items (output register, then skid register)
# and then holds i.ready low, so cycles 3.. wait for a ready that never comes.
_BAD_SCRIPT = [(1, 10), (1, 20), (1, 30), (1, 31), (0, 31), (1, 40)]


@cocotb.test()
async def monitor_flags_rule_breaking_source(dut):
    """StreamMonitor reports a payload change and a valid drop while ready is low."""
    start_clock(dut)
    await reset_dut(dut)
    dut.o__ready.value = 0
    monitor = StreamMonitor(dut, "i", dut.clk, reset=dut.rst, raise_on_error=False).start()
    for valid, payload in _BAD_SCRIPT:
        await RisingEdge(dut.clk)
        dut.i__valid.value = valid
        dut.i__payload.value = payload
    await RisingEdge(dut.clk)
    await ReadOnly()
    dut._log.info("monitor errors: %s", monitor.errors)
    assert monitor.transfers == [10, 20], monitor.transfers
    assert len(monitor.errors) == 2, monitor.errors
    assert "payload changed from 0x1e to 0x1f while valid and not ready" in monitor.errors[0]
    assert "valid dropped before the transfer of payload 0x1f" in monitor.errors[1]
