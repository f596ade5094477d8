"""The sequencer in the Amaranth simulator: the vectors it issues for each job, in order,
with their tags, against a model of the loop nest (docs/architecture.md, "Sequencer"),
under random array stalls, busy accumulator banks and gaps in the weight rows."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from golden.config import ArrayConfig
from hw.array import SystolicArray
from hw.sequencer import Sequencer, vector_meta
from tests.hw.registers import registers_for, set_registers
from tests.hw.streams import stream_get, stream_put

SEED = 777


class _Bench(wiring.Component):
    """The sequencer with its activation (and scale) memory, filled with known words."""

    def __init__(self, config: ArrayConfig, activations: list[int], scales: list[int]) -> None:
        self.config_ = config
        array = SystolicArray(config, meta_shape=vector_meta(config))
        array._MustUse__silence = True
        self.sequencer = Sequencer(config, array.activation_layout, array.weight_layout)
        self._activations, self._scales = activations, scales
        super().__init__({})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self.config_
        m.submodules.sequencer = sequencer = self.sequencer
        act = Memory(shape=unsigned(8 * config.rows), depth=config.activation_buffer_depth,
                     init=self._activations)
        m.submodules.act = act
        wiring.connect(m, sequencer.act_read, act.read_port())
        if config.has_mx:
            scale = Memory(shape=unsigned(64), depth=2 * config.scale_bank_words,
                           init=self._scales)
            m.submodules.scale = scale
            wiring.connect(m, sequencer.scale_read, scale.read_port())
        return m


def _expected(config: ArrayConfig, geometry, jobs: list[int], activations: list[int],
              scale_codes: list[int]) -> tuple[list[tuple], list[tuple]]:
    """(vectors, claims) the sequencer must issue: per job, group, N-tile, K-tile and row."""
    m, kt = geometry.m, geometry.kt
    groups, group = geometry.nt // geometry.group, geometry.group
    act_half = config.activation_bank_depth
    acc_half = config.accumulator_bank_depth
    ppb = config.passes_per_block
    vectors, claims = [], []
    select = 0
    for bank in jobs:
        for g in range(groups):
            claims.append((select, int(g == groups - 1)))
            for tile in range(group):
                for k in range(kt):
                    for row in range(m):
                        vector = {
                            "data": activations[bank * act_half + k * m + row],
                            "swap": int(row == 0),
                            "addr": select * acc_half + tile * m + row,
                            "first": int(k % ppb == 0 if geometry.mx else k == 0),
                            "group_end": int(tile == group - 1 and k == kt - 1
                                             and row == m - 1),
                        }
                        if geometry.mx:
                            block, block_pass = divmod(k, ppb)
                            code = bank * config.scale_bank_words * 8 + block * m + row
                            vector.update(last_pass=int(block_pass == ppb - 1),
                                          first_block=int(block == 0),
                                          pop_scale=int(block_pass == ppb - 1 and row == m - 1),
                                          ca=scale_codes[code])
                        vectors.append(tuple(sorted(vector.items())))
            select ^= 1
    return vectors, claims


CASES = {
    "a8w8 short pass": (ArrayConfig(rows=4, cols=4, block_size=16, activation_buffer_depth=512,
                                    accumulator_depth=64, weight_buffer_depth=64),
                        {"mode": "a8w8", "out_kind": "int32", "m": 2, "k": 12, "n": 12}),
    "a8w4 long pass": (ArrayConfig(rows=4, cols=4, block_size=16, activation_buffer_depth=512,
                                   accumulator_depth=64, weight_buffer_depth=64),
                       {"mode": "a8w4", "out_kind": "int8", "m": 9, "k": 8, "n": 16}),
    "mxint8 groups": (ArrayConfig(rows=4, cols=4, block_size=16, activation_buffer_depth=512,
                                  accumulator_depth=64, weight_buffer_depth=64),
                      {"mode": "mxint8", "out_kind": "mxint8", "m": 3, "k": 32, "n": 32}),
    "mxint4 fp32 default": (ArrayConfig(),
                            {"mode": "mxint4", "out_kind": "fp32", "m": 5, "k": 64, "n": 32}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sequencer_issues_the_loop_nest(name: str) -> None:
    config, fields = CASES[name]
    seed = f"{SEED}-{name}"
    rng = random.Random(seed)
    print(f"seed {seed}")
    geometry, registers = registers_for(config, **fields)
    activations = [rng.getrandbits(8 * config.rows) for _ in range(config.activation_buffer_depth)]
    scale_words = [rng.getrandbits(64) for _ in range(2 * config.scale_bank_words)]
    scale_codes = [(word >> (8 * i)) & 0xFF for word in scale_words for i in range(8)]
    jobs = [rng.randrange(2) for _ in range(3)]
    vectors, claims = _expected(config, geometry, jobs, activations, scale_codes)
    weight_rows = [rng.getrandbits(8 * config.cols) for _ in range(40)]
    bench = _Bench(config, activations, scale_words if config.has_mx else [])
    dut = bench.sequencer
    got_vectors, got_claims, got_done, got_weights, stalls = [], [], [], [], []
    fields_of = ["addr", "first", "group_end"] + (
        ["last_pass", "first_block", "pop_scale", "ca"] if geometry.mx else [])

    async def jobs_producer(ctx) -> None:
        set_registers(ctx, dut.config, registers)
        for bank in jobs:
            await stream_put(ctx, dut.jobs, bank)

    async def weights_producer(ctx) -> None:
        for row in weight_rows:
            while rng.random() < 0.3:
                await ctx.tick()
            await stream_put(ctx, dut.weights_in, row)

    async def vector_consumer(ctx) -> None:
        stall = random.Random(seed + "v")
        while len(got_vectors) < len(vectors):
            while stall.random() < 0.3:
                await ctx.tick()
            payload = await stream_get(ctx, dut.vectors, timeout=5000)
            vector = {"data": payload.data.as_value().value, "swap": payload.swap}
            vector.update({name: int(getattr(payload.meta, name)) for name in fields_of})
            got_vectors.append(tuple(sorted(vector.items())))
        for _ in range(8):      # the job's trailing bubbles, then its job_done
            await ctx.tick()

    async def weight_consumer(ctx) -> None:
        stall = random.Random(seed + "w")
        while len(got_weights) < len(weight_rows):
            while stall.random() < 0.5:
                await ctx.tick()
            got_weights.append((await stream_get(ctx, dut.weights, timeout=5000)).data
                               .as_value().value)

    async def banks_and_strobes(ctx) -> None:
        # After each claim the other bank (the next group's) stays busy for a while, as if
        # the drain were still reading it.
        busy = random.Random(seed + "b")
        busy_until = [0, 0]
        cycle = 0
        async for _, _, claim, bank, last, done, stall in ctx.tick().sample(
                dut.claim, dut.claim_bank, dut.claim_last, dut.job_done, dut.output_stall):
            cycle += 1
            if claim:
                got_claims.append((bank, last))
                busy_until[1 - bank] = cycle + busy.randrange(400)
            if done:
                got_done.append(done)
            stalls.append(stall)
            ctx.set(dut.bank_busy, sum(1 << b for b in range(2) if busy_until[b] > cycle))

    simulator = Simulator(bench)
    simulator.add_clock(1e-8)
    for testbench in (jobs_producer, weights_producer, vector_consumer, weight_consumer):
        simulator.add_testbench(testbench)
    simulator.add_testbench(banks_and_strobes, background=True)
    simulator.run()
    assert len(got_vectors) == len(vectors)
    for index, (got, want) in enumerate(zip(got_vectors, vectors, strict=True)):
        assert got == want, f"vector {index}: got {dict(got)}, expected {dict(want)}"
    assert got_claims == claims
    assert got_done == [1 << bank for bank in jobs]
    assert got_weights == weight_rows
    assert sum(stalls) > 0, "no group ever waited for a busy bank"
