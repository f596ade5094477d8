# amaranth: UnusedElaboratable=no
"""The systolic array against golden.matmul: Amaranth simulator (2x2, 4x4) and cocotb on
Verilator (2x2, 4x4, 8x8).

Scenarios (tests/hw/cocotb_array.py) switch weight tiles mid-stream, in every mode, with
random and extreme values; producers leave random idle gaps on `a` and `w`, the consumer
drops `ready` at random, and a monitor checks the stream rules on `out`. Cycle counts
assert the throughput: N vectors take N + latency cycles when nothing stalls, in every
mode, so the 4-bit-weight modes deliver twice the MACs per cycle of A8W8. Seeds come from
the `sim_seed` fixture (printed; replay with --sim-seed).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator, SimulatorContext

from golden.config import MODE_INFO, MODES, ArrayConfig
from hw.array import SystolicArray
from hw.pe import Mode
from tests.hw.cocotb_array import Scenario, make_scenario
from tests.hw.streams import stream_get, stream_put


def _config(rows: int, cols: int, modes: tuple[str, ...] = MODES,
            pe_stages: int = 1) -> ArrayConfig:
    config = ArrayConfig(rows=rows, cols=cols, block_size=16, modes=modes,
                         pipeline="fast" if pe_stages == 2 else "compact")
    assert config.pe_stages == pe_stages
    return config


def weight_payload(row: list, mode: str) -> dict:
    return {
        "data": [{"int4": list(value)} if isinstance(value, tuple) else {"int8": value}
                 for value in row],
        "mode": Mode.from_name(mode),
    }


def simulate(dut: SystolicArray, scenario: Scenario, seed: int, *, gaps: float,
             stalls: float) -> dict:
    """Run `scenario` through `dut` in the Amaranth simulator; check every output beat,
    the stream rules of `out` and the cycle counts. Returns the first input and last
    output cycles and the outputs received."""
    rng_a, rng_w, rng_out = (random.Random(seed * 4 + k) for k in (1, 2, 3))
    cols = dut.config.cols
    has_meta = "meta" in dict(dut.output_layout)
    count = len(scenario.vectors)
    received: list[tuple[list[int], int]] = []
    violations: list[str] = []
    cycles: dict[str, int | None] = {"first_in": None, "last_out": None, "now": 0}

    async def weight_producer(ctx: SimulatorContext) -> None:
        for tile in scenario.tiles:
            for row in tile.weight_rows(cols):
                while rng_w.random() < gaps:
                    await ctx.tick()
                await stream_put(ctx, dut.w, weight_payload(row, tile.mode))

    async def activation_producer(ctx: SimulatorContext) -> None:
        for vector, swap, meta in zip(scenario.vectors, scenario.swaps, scenario.meta,
                                      strict=True):
            while rng_a.random() < gaps:
                await ctx.tick()
            payload = {"data": [int(x) for x in vector], "swap": swap}
            if has_meta:
                payload["meta"] = meta
            await stream_put(ctx, dut.a, payload)

    async def consumer(ctx: SimulatorContext) -> None:
        for _ in range(count):
            while rng_out.random() < stalls:
                await ctx.tick()
            payload = await stream_get(ctx, dut.out)
            received.append(([int(x) for x in payload.data],
                             int(payload.meta) if has_meta else 0))

    async def monitor(ctx: SimulatorContext) -> None:
        waiting = None
        bits = Value.cast(dut.out.payload)
        async for _, _, a_valid, a_ready, valid, ready, payload in ctx.tick().sample(
                dut.a.valid, dut.a.ready, dut.out.valid, dut.out.ready, bits):
            cycles["now"] += 1
            if a_valid and a_ready and cycles["first_in"] is None:
                cycles["first_in"] = cycles["now"]
            if valid and ready:
                cycles["last_out"] = cycles["now"]
            if waiting is not None and (not valid or payload != waiting):
                violations.append(f"cycle {cycles['now']}: out changed while not ready")
            waiting = payload if valid and not ready else None

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(weight_producer)
    sim.add_testbench(activation_producer)
    sim.add_testbench(consumer)
    sim.add_testbench(monitor, background=True)
    sim.run()

    assert not violations, violations[:5]
    assert len(received) == count
    mismatches = [index for index, (data, meta) in enumerate(received)
                  if data != scenario.expected[index].tolist() or meta != scenario.meta[index]]
    if mismatches:
        index = mismatches[0]
        pytest.fail(f"seed {seed}: {len(mismatches)} of {count} beats mismatch; first at "
                    f"vector {index} (tile {scenario.tile_of_vector[index]}, mode "
                    f"{scenario.tiles[scenario.tile_of_vector[index]].mode}): expected "
                    f"{scenario.expected[index].tolist()}, got {received[index]}")
    return {**cycles, "received": received}


@pytest.mark.parametrize(("shape", "pe_stages"),
                         [((2, 2), 1), ((4, 4), 1), ((2, 4), 1), ((1, 2), 1), ((4, 2), 2),
                          ((1, 1), 2)])
def test_array_matches_golden(shape: tuple[int, int], pe_stages: int, sim_seed: int) -> None:
    config = _config(*shape, pe_stages=pe_stages)
    dut = SystolicArray(config, meta_shape=3)
    scenario = make_scenario(config, dut.lanes, sim_seed, vectors=300, meta_bits=3)
    assert {tile.mode for tile in scenario.tiles} >= set(MODES) or len(scenario.tiles) < 5
    simulate(dut, scenario, sim_seed, gaps=0.3, stalls=0.3)


@pytest.mark.parametrize("pe_stages", [1, 2])
def test_array_heavy_backpressure(pe_stages: int, sim_seed: int) -> None:
    """Ready mostly low and one-vector tiles: swaps wait for loads, the skid buffer holds."""
    config = _config(2, 2, pe_stages=pe_stages)
    dut = SystolicArray(config)
    scenario = make_scenario(config, dut.lanes, sim_seed, vectors=60,
                             tile_lengths=[1, 1, 2, 1, 5, 1, 3, 1, 10, 1, 1, 33])
    simulate(dut, scenario, sim_seed, gaps=0.1, stalls=0.8)


@pytest.mark.parametrize(("multiplier", "pe_stages"), [("packed", 1), ("packed", 2),
                                                       ("lut", 2)])
def test_array_other_multipliers(multiplier: str, pe_stages: int, sim_seed: int) -> None:
    config = _config(2, 2, pe_stages=pe_stages)
    dut = SystolicArray(config, multiplier=multiplier)
    scenario = make_scenario(config, dut.lanes, sim_seed, vectors=100)
    simulate(dut, scenario, sim_seed, gaps=0.3, stalls=0.3)


def test_array_single_lane_build(sim_seed: int) -> None:
    """Built without 4-bit-weight modes: C outputs per beat, one lane per PE."""
    config = _config(2, 4, modes=("a8w8", "mxint8"))
    dut = SystolicArray(config)
    assert dut.lanes == 1
    assert dut.output_layout["data"].shape.length == 4
    scenario = make_scenario(config, dut.lanes, sim_seed, vectors=60)
    simulate(dut, scenario, sim_seed, gaps=0.3, stalls=0.3)


@pytest.mark.parametrize(("shape", "pe_stages"), [((2, 2), 1), ((4, 4), 1), ((2, 2), 2)])
def test_array_throughput(shape: tuple[int, int], pe_stages: int, sim_seed: int) -> None:
    """No gaps and no stalls: one vector per cycle in every mode, including across tile
    swaps whose loads overlap computation, so N vectors take N + latency cycles and the
    4-bit-weight modes deliver 2 R C MACs per cycle against R C for A8W8."""
    rows, cols = shape
    config = _config(rows, cols, pe_stages=pe_stages)
    dut = SystolicArray(config)
    assert dut.latency == rows + pe_stages
    macs_per_cycle = {}
    for mode in MODES:
        tiles = 3
        scenario = make_scenario(config, dut.lanes, sim_seed, vectors=tiles * (rows + 1),
                                 tile_lengths=[rows + 1] * tiles, modes=(mode,))
        result = simulate(dut, scenario, sim_seed, gaps=0.0, stalls=0.0)
        count = len(scenario.vectors)
        taken = result["last_out"] - result["first_in"] + 1
        assert taken == count + dut.latency, (mode, taken, count, dut.latency)
        # Steady state: one vector per cycle; the latency is paid once per stream.
        macs_per_cycle[mode] = scenario.macs // (taken - dut.latency)
        assert macs_per_cycle[mode] == config.peak_macs_per_cycle(mode)
    assert macs_per_cycle["a8w4"] == macs_per_cycle["a4w4"] == 2 * macs_per_cycle["a8w8"]
    assert macs_per_cycle["mxint4"] == 2 * macs_per_cycle["mxint8"] == 2 * rows * cols


def test_array_swap_waits_for_complete_tile() -> None:
    """A swap beat is not accepted before all R weight rows are in; then it is."""
    config = _config(4, 2)
    dut = SystolicArray(config)

    async def testbench(ctx: SimulatorContext) -> None:
        ctx.set(dut.out.ready, 1)
        ctx.set(dut.a.payload, {"data": [1, 1, 1, 1], "swap": 1})
        ctx.set(dut.a.valid, 1)
        for row in range(config.rows):
            ctx.set(dut.w.payload, weight_payload([row + 1, -(row + 1)], "a8w8"))
            ctx.set(dut.w.valid, 1)
            _, _, a_ready, w_ready = await ctx.tick().sample(dut.a.ready, dut.w.ready)
            assert not a_ready and w_ready
        ctx.set(dut.w.valid, 0)
        _, _, a_ready, w_ready = await ctx.tick().sample(dut.a.ready, dut.w.ready)
        assert a_ready and not w_ready and ctx.get(dut.shadow_full) == 0
        ctx.set(dut.a.valid, 0)
        payload = await stream_get(ctx, dut.out)
        assert [int(x) for x in payload.data] == [10, -10, 0, 0]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def test_array_widths_and_layouts() -> None:
    dut = SystolicArray(_config(8, 8))
    assert dut.psum_shape.signed and dut.psum_shape.width == 19
    assert (8 * 128 * 128).bit_length() + 1 == 19  # holds R * 128 * 128 exactly
    assert dut.lanes == 2 and dut.latency == 9 and dut.weight_beats == 8
    assert dut.output_layout["data"].shape.length == 16
    assert dut.activation_layout["data"].shape.length == 8


def test_array_refuses_bad_parameters() -> None:
    with pytest.raises(TypeError, match="config must be an ArrayConfig, not"):
        SystolicArray({"rows": 2})
    with pytest.raises(ValueError, match="multiplier must be one of .*, not 'x'"):
        SystolicArray(_config(2, 2), multiplier="x")


# --- cocotb on Verilator -------------------------------------------------------------


# Verilator flags of the array builds. `-O0` compiles the 8x8 array in about 20 s instead
# of 75 s; the cocotb testbench, not the model, bounds simulation speed. (Split models
# build with precompiled headers thanks to sim.build.MAKE_OVERRIDES.)
ARRAY_BUILD_ARGS = ("-CFLAGS", "-O0")


def _cocotb_parameters(config: ArrayConfig, meta_bits: int, multiplier: str) -> str:
    return json.dumps({
        "config": {"rows": config.rows, "cols": config.cols,
                   "block_size": config.block_size, "modes": list(config.modes)},
        "meta_bits": meta_bits, "multiplier": multiplier,
    })


@pytest.mark.parametrize("shape", [(2, 2), (4, 4), (8, 8)])
def test_array_cocotb(shape: tuple[int, int], sim_seed: int) -> None:
    import tests.hw.cocotb_array as module
    from sim.build import run_cocotb

    rows, cols = shape
    config = ArrayConfig(rows=rows, cols=cols, block_size=max(16, rows), modes=MODES)
    meta_bits = 4
    dut = SystolicArray(config, meta_shape=meta_bits)
    vectors = {2: 2000, 4: 1500, 8: 1000}[rows]
    result = run_cocotb(
        dut, f"systolic_array_{rows}x{cols}", module, seed=sim_seed,
        build_name=f"systolic-array-{rows}x{cols}", build_args=ARRAY_BUILD_ARGS,
        extra_env={"LPMAC_ARRAY": _cocotb_parameters(config, meta_bits, "split"),
                   "LPMAC_ARRAY_VECTORS": str(vectors)})
    assert set(result.tests) == {"tests.hw.cocotb_array.array_matches_golden",
                                 "tests.hw.cocotb_array.array_full_throughput"}


def test_modes_cover_every_lane_count() -> None:
    assert {MODE_INFO[mode].lanes for mode in MODES} == {1, 2}
    assert np.array_equal(np.array([m.value for m in Mode]), np.arange(len(MODES)))
