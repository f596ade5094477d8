"""cocotb test of `hw.actbuffer.ActivationBuffer` (run by tests/fpga/test_actbuffer.py).

Environment: LPMAC_ACTBUF (JSON: rows, depth). The buffer is used as the accelerator uses
it: phases that each load one bank (random addresses and data, with gaps) while the other
bank is read (random addresses of words written before, `r_en` low in some cycles, when
`r_data` must hold). `r_data` is checked against a model of the two banks after every
cycle from a phase's first read on.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sim.cocotb_streams import reset_dut, start_clock


@cocotb.test()
async def banks_match_model(dut):
    parameters = json.loads(os.environ["LPMAC_ACTBUF"])
    width, depth = 8 * parameters["rows"], parameters["depth"]
    half = depth // 2
    rng = random.Random(cocotb.RANDOM_SEED)
    start_clock(dut)
    dut.w_en.value = 0
    dut.r_en.value = 0
    await reset_dut(dut)
    model: dict[int, int] = {}
    expected: int | None = None     # what r_data must show (None: nothing read yet)
    checked = mismatches = 0
    first = []
    for phase in range(8):
        write_bank = phase % 2
        # The first phase only loads; later phases read the bank loaded before.
        reading = phase > 0
        expected = None     # a word held from the bank now written is undefined
        for _ in range(400):
            await FallingEdge(dut.clk)
            w_en = rng.random() < 0.7
            w_addr = write_bank * half + rng.randrange(half)
            w_data = rng.getrandbits(width)
            r_en = reading and rng.random() < 0.8
            filled = [a for a in model if a // half != write_bank]
            r_addr = rng.choice(filled) if filled else (1 - write_bank) * half
            dut.w_en.value, dut.w_addr.value, dut.w_data.value = int(w_en), w_addr, w_data
            dut.r_en.value, dut.r_addr.value = int(r_en), r_addr
            await RisingEdge(dut.clk)
            if r_en:
                expected = model.get(r_addr)
            if w_en:
                model[w_addr] = w_data
            await ReadOnly()
            if reading and expected is not None:
                got = int(dut.r_data.value)
                checked += 1
                if got != expected:
                    mismatches += 1
                    if len(first) < 3:
                        first.append((phase, r_addr, hex(got), hex(expected)))
    dut._log.info(f"{checked} reads checked, {mismatches} mismatches")
    assert checked > 2000
    assert mismatches == 0, f"{mismatches} mismatches, first {first}"
