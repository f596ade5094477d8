"""cocotb test of `hw.pe.Ice40Mac16Pair` on the Yosys SB_MAC16 model (run by
tests/fpga/test_sb_mac16.py)."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import Timer


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


@cocotb.test()
async def every_product(dut):
    """Every (a, b) in int8 x int8 on both halves at once (the top half sees the operands
    in another order, so the halves never see the same pair in the same step)."""
    values = np.arange(-128, 128)
    a_bottom, b_bottom = (grid.ravel() for grid in np.meshgrid(values, values))
    a_top, b_top = b_bottom[::-1], a_bottom[::-1]
    expected_bottom, expected_top = a_bottom * b_bottom, a_top * b_top
    mismatches = []
    for index in range(len(a_bottom)):
        dut.a.value = (int(a_top[index]) & 0xFF) << 8 | (int(a_bottom[index]) & 0xFF)
        dut.b.value = (int(b_top[index]) & 0xFF) << 8 | (int(b_bottom[index]) & 0xFF)
        await Timer(1, "ns")
        product = int(dut.product.value)
        got = (_signed(product & 0xFFFF, 16), _signed(product >> 16, 16))
        if got != (expected_bottom[index], expected_top[index]):
            mismatches.append((int(a_bottom[index]), int(b_bottom[index]),
                               int(a_top[index]), int(b_top[index]), got))
    assert not mismatches, f"{len(mismatches)} mismatches, first {mismatches[:3]}"
