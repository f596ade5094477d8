"""The CONFIGURE unit in the Amaranth simulator against the specification's checks
(`golden.protocol.check_configure`) and geometry, on random and edge payloads."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from golden.config import MODES, ArrayConfig
from golden.protocol import (
    MX_KINDS,
    OUT_KINDS,
    REQUANT_KINDS,
    ConfigureFields,
    Field,
    Status,
    check_configure,
)
from hw.configure import ConfigureUnit
from tests.hw.registers import expected_registers

SEED = 1207
CONFIGS = {
    "default": ArrayConfig(),
    "mx-only": ArrayConfig(modes=("mxint8", "mxint4")),
    "integer-int32": ArrayConfig(modes=("a8w8", "a4w4"), requant_depth=0),
    "small": ArrayConfig(rows=4, cols=4, block_size=16, weight_buffer_depth=64,
                         activation_buffer_depth=256, accumulator_depth=64, requant_depth=64),
    "k-pairs": ArrayConfig(rows=4, cols=4, block_size=16, modes=("a8w8", "a4w4"),
                           multiplier="ice40-sb-mac16", int4_packing="k-pairs"),
}


def _cases(config: ArrayConfig, rng: random.Random, count: int) -> list[ConfigureFields]:
    """Payloads that pass and payloads that fail each check, the rest random."""
    cases = []
    for _ in range(count):
        mode = rng.randrange(8)
        out_kind = rng.randrange(8)
        if rng.random() < 0.7:      # mostly a built mode with an output kind it allows
            name = rng.choice(config.modes)
            mode = MODES.index(name)
            kinds = ("fp32", *MX_KINDS) if config.mode(name).mx else \
                (*REQUANT_KINDS, "int32")
            out_kind = OUT_KINDS.index(rng.choice(kinds))
        granule = config.block_size if rng.random() < 0.5 else config.rows
        m = rng.choice([0, 1, rng.randrange(1, 70), config.accumulator_bank_depth,
                        config.accumulator_bank_depth + 1, rng.randrange(1 << 16)])
        k = rng.choice([0, granule, granule * rng.randrange(1, 40), rng.randrange(1 << 16)])
        n = rng.choice([0, 8, 32 * rng.randrange(1, 12), rng.randrange(1 << 16),
                        config.requant_depth + 8])
        if rng.random() < 0.4:      # built to pass the checks
            name = rng.choice(config.modes)
            mode, info = MODES.index(name), config.mode(name)
            allowed = ("fp32", *MX_KINDS) if info.mx else REQUANT_KINDS
            if out_kind >= len(OUT_KINDS) or OUT_KINDS[out_kind] not in allowed:
                out_kind = OUT_KINDS.index("fp32" if info.mx else "int32")
            lc = config.cols * info.lanes
            group = config.block_size // lc if OUT_KINDS[out_kind] in MX_KINDS else 1
            k = (config.block_size if info.mx else config.rows) * rng.randrange(1, 5)
            n = (config.block_size if group > 1 else lc) * rng.randrange(1, 4)
            m = rng.randrange(1, 1 + min(config.accumulator_bank_depth // group,
                                         config.activation_bank_depth // (k // config.rows)))
        cases.append(ConfigureFields(mode=mode, out_kind=out_kind, rounding=rng.randrange(2),
                                     relu=rng.randrange(2), zero_point=rng.randrange(-256, 256)
                                     if rng.random() < 0.3 else rng.randrange(-8, 8),
                                     m=m, k=k, n=n))
    return cases


@pytest.mark.parametrize("name", list(CONFIGS))
def test_configure_unit_matches_the_specification(name: str) -> None:
    config = CONFIGS[name]
    rng = random.Random(f"{SEED}-{name}")
    print(f"seed {SEED}-{name}")
    cases = _cases(config, rng, 120)
    dut = ConfigureUnit(config)
    problems: list[str] = []
    outcomes: set[tuple[int, int]] = set()

    async def testbench(ctx) -> None:
        control = dut.control
        for number, fields in enumerate(cases):
            ctx.set(control.invalidate, 1)
            await ctx.tick()
            ctx.set(control.invalidate, 0)
            assert not ctx.get(control.configured), "invalidate left the unit configured"
            words = fields.encode()
            ctx.set(control.word0, words[0])
            ctx.set(control.word1, words[1])
            ctx.set(control.start, 1)
            await ctx.tick()
            ctx.set(control.start, 0)
            for _cycle in range(dut.latency + 2):
                if ctx.get(control.done):
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"case {number}: no done within {dut.latency + 2} cycles")
            code, field = ctx.get(control.code), ctx.get(control.field)
            status, want_field, geometry = check_configure(config, fields)
            outcomes.add((int(status), int(want_field)))
            if (code, field) != (status, want_field):
                problems.append(f"case {number} {fields}: got {Status(code).name} "
                                f"{Field(field).name}, expected {status.name} "
                                f"{want_field.name}")
                continue
            await ctx.tick()
            assert ctx.get(dut.applied) == (geometry is not None), f"case {number}: applied"
            assert ctx.get(control.configured) == (geometry is not None)
            await ctx.tick()
            assert not ctx.get(dut.applied), "applied lasts one cycle"
            if geometry is None:
                continue
            registers = ctx.get(dut.registers)
            for key, value in expected_registers(config, geometry).items():
                got = getattr(registers, key)
                got = got.value if hasattr(got, "value") else int(got)
                if got != value:
                    problems.append(f"case {number} {fields}: register {key} = {got}, "
                                    f"expected {value}")

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    assert not problems, "\n".join(problems[:10])
    # The cases reach success and several distinct failures.
    assert (Status.OK, Field.NONE) in outcomes
    assert len(outcomes) >= 5, outcomes
