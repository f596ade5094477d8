"""Systolic-array scenarios (shared with the Amaranth-simulator tests) and the cocotb tests
that run them on Verilator (started by tests/hw/test_array.py through `sim.build.run_cocotb`).

A scenario is a sequence of weight tiles, each in a random mode, and the activation
vectors computed with each: the first vector of a tile carries `swap`. The expected
output of every vector comes from `golden.matmul` of the tile's vectors with its weights.

The cocotb side is Driver -> Monitor -> Model -> Checker: `StreamSource`s drive `a` and
`w` with random idle gaps, a `StreamSink` drains `out` with random backpressure,
`StreamMonitor`s check the stream rules, and a `Scoreboard` compares each output beat with
the golden result of its vector. The array's parameters arrive in `LPMAC_ARRAY` (JSON);
the seed is cocotb's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from golden import matmul
from golden.config import MODE_INFO, ArrayConfig
from sim.cocotb_streams import (
    StreamMonitor,
    StreamSink,
    StreamSource,
    random_pauses,
    reset_dut,
    start_clock,
)
from sim.scoreboard import Scoreboard

# Inclusive operand ranges per mode: (activations, weights). MX elements are the
# integer codes P (the block scales are applied after the array).
OPERAND_RANGES: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "a8w8": ((-128, 127), (-128, 127)),
    "a8w4": ((-128, 127), (-8, 7)),
    "a4w4": ((-8, 7), (-8, 7)),
    "mxint8": ((-127, 127), (-127, 127)),
    "mxint4": ((-7, 7), (-7, 7)),
    "mxint8w4": ((-127, 127), (-7, 7)),
}
CORNERS = np.array([-128, 127, -127, -8, 7, -7, 8, -1, 1, 0])


def operands(rng: np.random.Generator, bounds: tuple[int, int], shape: tuple[int, ...],
             corner_fraction: float = 0.3) -> np.ndarray:
    """Uniform integers in `bounds`, with a fraction replaced by corner values."""
    low, high = bounds
    values = rng.integers(low, high + 1, size=shape)
    corners = CORNERS[(CORNERS >= low) & (CORNERS <= high)]
    mask = rng.random(shape) < corner_fraction
    values[mask] = rng.choice(corners, size=int(mask.sum()))
    return values


@dataclasses.dataclass
class Tile:
    """One weight tile: `weights` [R, lanes(mode) * C]; column n + C of a 4-bit-weight tile
    sits in the high nibble of PE (r, n)."""

    mode: str
    weights: np.ndarray

    def weight_rows(self, cols: int) -> list[list[int | tuple[int, int]]]:
        """Per row, the C PE weight bytes: an int8, or (lane 0, lane 1) int4 pairs."""
        if MODE_INFO[self.mode].lanes == 1:
            return [[int(w) for w in row] for row in self.weights]
        return [[(int(row[c]), int(row[c + cols])) for c in range(cols)]
                for row in self.weights]


@dataclasses.dataclass
class Scenario:
    """Tiles, activation vectors [N, R], the tile index of each vector, each vector's
    `swap` flag and `meta` value, and the expected outputs [N, lanes * C]."""

    config: ArrayConfig
    lanes: int
    tiles: list[Tile]
    vectors: np.ndarray
    tile_of_vector: np.ndarray
    swaps: list[bool]
    meta: list[int]
    expected: np.ndarray

    @property
    def macs(self) -> int:
        """Useful MACs of the whole scenario (R * C per vector, times the mode's lanes)."""
        rows, cols = self.config.rows, self.config.cols
        return sum(rows * cols * MODE_INFO[self.tiles[t].mode].lanes
                   for t in self.tile_of_vector)


def make_scenario(config: ArrayConfig, lanes: int, seed: int, *, vectors: int,
                  tile_lengths: list[int] | None = None, modes: tuple[str, ...] | None = None,
                  meta_bits: int = 0) -> Scenario:
    """A random scenario of `vectors` vectors. `tile_lengths` fixes the vectors per tile
    (default: random, from 1 to 3 R, so that swaps both wait for loads and overlap them);
    `modes` are drawn in turn (default: every mode of `config`, shuffled, repeated).
    Some tiles are all-extreme (every product at its maximum or minimum), to reach the
    limits of the partial-sum width."""
    rng = np.random.default_rng(seed)
    rows, cols = config.rows, config.cols
    if tile_lengths is None:
        tile_lengths = []
        while sum(tile_lengths) < vectors:
            tile_lengths.append(int(rng.integers(1, 3 * rows + 2)))
        tile_lengths[-1] -= sum(tile_lengths) - vectors
    if modes is None:
        modes = tuple(rng.permutation(list(config.modes)))
    tiles: list[Tile] = []
    blocks: list[np.ndarray] = []
    expected: list[np.ndarray] = []
    tile_of_vector: list[int] = []
    swaps: list[bool] = []
    for index, length in enumerate(tile_lengths):
        mode = modes[index % len(modes)]
        mode_lanes = MODE_INFO[mode].lanes
        a_bounds, w_bounds = OPERAND_RANGES[mode]
        weights = operands(rng, w_bounds, (rows, mode_lanes * cols))
        block = operands(rng, a_bounds, (length, rows))
        if rng.random() < 0.2:  # all-extreme tile: every product at one limit
            a_extreme = a_bounds[0]
            w_extreme = w_bounds[0] if rng.random() < 0.5 else w_bounds[1]
            weights[:] = w_extreme
            block[: max(1, length // 2)] = a_extreme
        tiles.append(Tile(mode, weights))
        blocks.append(block)
        result = np.zeros((length, lanes * cols), dtype=np.int64)
        result[:, : mode_lanes * cols] = matmul(block, weights)
        expected.append(result)
        tile_of_vector += [index] * length
        swaps += [True] + [False] * (length - 1)
    meta_rng = random.Random(seed)
    return Scenario(
        config=config, lanes=lanes, tiles=tiles, vectors=np.concatenate(blocks),
        tile_of_vector=np.array(tile_of_vector), swaps=swaps,
        meta=[meta_rng.getrandbits(meta_bits) if meta_bits else 0 for _ in tile_of_vector],
        expected=np.concatenate(expected))


# --- cocotb ------------------------------------------------------------------------------
# Everything below runs inside the simulator process.

def _field_offsets(layout) -> dict[str, tuple[int, int]]:
    return {name: (field.offset, field.width) for name, field in layout}


class _Codec:
    """Packs `a` and `w` beats and unpacks `out` beats as integers, from the layouts of a
    `SystolicArray` built with the same parameters as the design under test."""

    def __init__(self, parameters: dict) -> None:
        from hw.array import SystolicArray
        from hw.pe import Mode

        self.config = ArrayConfig(**{**parameters["config"],
                                     "modes": tuple(parameters["config"]["modes"])})
        self.meta_bits = parameters["meta_bits"]
        array = SystolicArray(self.config, meta_shape=self.meta_bits,
                              multiplier=parameters["multiplier"])
        self.lanes = array.lanes
        self.latency = array.latency
        self.psum_bits = array.psum_shape.width
        self.mode_code = {name: Mode.from_name(name).value for name in self.config.modes}
        self.a_fields = _field_offsets(array.activation_layout)
        self.w_fields = _field_offsets(array.weight_layout)
        self.out_fields = _field_offsets(array.output_layout)

    def activation(self, vector: np.ndarray, swap: bool, meta: int) -> int:
        packed = 0
        for row, value in enumerate(vector):
            packed |= (int(value) & 0xFF) << (8 * row)
        packed |= int(swap) << self.a_fields["swap"][0]
        if "meta" in self.a_fields:
            packed |= meta << self.a_fields["meta"][0]
        return packed

    def weight_row(self, row: list, mode: str) -> int:
        packed = 0
        for col, value in enumerate(row):
            byte = ((value[0] & 0xF) | (value[1] & 0xF) << 4) if isinstance(value, tuple) \
                else value & 0xFF
            packed |= byte << (8 * col)
        return packed | self.mode_code[mode] << self.w_fields["mode"][0]

    def output(self, packed: int) -> tuple[tuple[int, ...], int]:
        width = self.psum_bits
        lanes = []
        for index in range(self.lanes * self.config.cols):
            value = (packed >> (index * width)) & ((1 << width) - 1)
            lanes.append(value - (1 << width) if value >> (width - 1) else value)
        offset, bits = self.out_fields.get("meta", (0, 0))
        return tuple(lanes), (packed >> offset) & ((1 << bits) - 1)


async def _run(dut, *, gaps: float, stalls: float, vectors: int,
               tile_lengths: list[int] | None = None, modes: tuple[str, ...] | None = None):
    """Drive one scenario; return (scenario, scoreboard, first input cycle, last output
    cycle)."""
    parameters = json.loads(os.environ["LPMAC_ARRAY"])
    codec = _Codec(parameters)
    seed = cocotb.RANDOM_SEED
    scenario = make_scenario(codec.config, codec.lanes, seed, vectors=vectors,
                             tile_lengths=tile_lengths, modes=modes,
                             meta_bits=codec.meta_bits)
    dut._log.info("seed %d: %d vectors in %d tiles, modes %s", seed, vectors,
                  len(scenario.tiles), sorted({str(t.mode) for t in scenario.tiles}))
    start_clock(dut)
    await reset_dut(dut)

    def expected(index: int) -> tuple[tuple[int, ...], int]:
        return tuple(int(x) for x in scenario.expected[index]), scenario.meta[index]

    scoreboard = Scoreboard(name=f"array {codec.config.rows}x{codec.config.cols}")
    cycles = {"first_in": None, "last_out": None}
    inputs_seen = [0]

    def on_input(_payload: int) -> None:
        if cycles["first_in"] is None:
            cycles["first_in"] = a_monitor.cycle
        scoreboard.add_expected(expected(inputs_seen[0]), inputs=inputs_seen[0])
        inputs_seen[0] += 1

    def on_output(payload: int) -> None:
        cycles["last_out"] = out_monitor.cycle
        scoreboard.add_output(codec.output(payload))

    a_monitor = StreamMonitor(dut, "a", dut.clk, reset=dut.rst, callback=on_input)
    w_monitor = StreamMonitor(dut, "w", dut.clk, reset=dut.rst)
    out_monitor = StreamMonitor(dut, "out", dut.clk, reset=dut.rst, callback=on_output)
    idle = random.Random(seed + 5)
    a_source = StreamSource(dut, "a", dut.clk, pauses=random_pauses(gaps, seed + 1),
                            idle_payload=lambda: idle.getrandbits(64))
    w_source = StreamSource(dut, "w", dut.clk, pauses=random_pauses(gaps, seed + 2),
                            idle_payload=lambda: idle.getrandbits(64))
    sink = StreamSink(dut, "out", dut.clk, pauses=random_pauses(stalls, seed + 3))
    for component in (a_monitor, w_monitor, out_monitor, a_source, w_source, sink):
        component.start()
    for tile in scenario.tiles:
        w_source.send_all(codec.weight_row(row, tile.mode)
                          for row in tile.weight_rows(codec.config.cols))
    a_source.send_all(codec.activation(vector, swap, meta) for vector, swap, meta
                      in zip(scenario.vectors, scenario.swaps, scenario.meta, strict=True))
    await sink.wait_for(vectors, timeout_cycles=50 * vectors + 50 * codec.config.rows + 200)
    await ClockCycles(dut.clk, 2 * codec.latency + 4)  # anything now is a duplicate
    for monitor in (a_monitor, w_monitor, out_monitor):
        monitor.check()
    dut._log.info("%s", scoreboard.summary())
    scoreboard.check()
    assert scoreboard.received_count == vectors
    return scenario, codec, cycles


@cocotb.test()
async def array_matches_golden(dut):
    """Every mode, random and extreme values, tile swaps mid-stream, random input
    gaps and output backpressure: every beat equals golden.matmul."""
    vectors = int(os.environ.get("LPMAC_ARRAY_VECTORS", "400"))
    await _run(dut, gaps=0.3, stalls=0.3, vectors=vectors)


@cocotb.test()
async def array_full_throughput(dut):
    """No gaps, no stalls, a new tile (each mode in turn) every R + 1 vectors, loaded
    while the previous one computes: N vectors take N + latency cycles."""
    parameters = json.loads(os.environ["LPMAC_ARRAY"])
    rows = parameters["config"]["rows"]
    modes = tuple(parameters["config"]["modes"])
    tiles = 2 * len(modes)
    lengths = [rows + 1] * tiles
    scenario, codec, cycles = await _run(dut, gaps=0.0, stalls=0.0, vectors=sum(lengths),
                                         tile_lengths=lengths, modes=modes)
    count = len(scenario.vectors)
    taken = cycles["last_out"] - cycles["first_in"] + 1
    dut._log.info("%d vectors in %d cycles (latency %d), %d MACs", count, taken,
                  codec.latency, scenario.macs)
    assert taken == count + codec.latency, (
        f"{count} vectors took {taken} cycles, not {count} + {codec.latency}")
