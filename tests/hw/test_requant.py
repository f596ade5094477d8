"""The requantization unit against golden `requantize`: Amaranth simulator (small sets)
and cocotb on Verilator (20,000 vectors per rounding mode by default, 1,000,000 in the
slow run)."""

from __future__ import annotations

import numpy as np
import pytest

from golden.requant import requant_params, requantize
from hw.requant import INT32_MIN, Requantizer, requant_config, requant_inputs
from sim.build import run_cocotb
from tests.hw.cocotb_requant import (
    OUTPUT_SETTINGS,
    requant_config_value,
    requant_expected,
    requant_vectors,
)
from tests.hw.streams import run_stream_test

TOPLEVEL = "requantizer"
COCOTB_MODULE = "tests.hw.cocotb_requant"


def _run_amaranth(vectors: dict[str, np.ndarray], config: dict, seed: int,
                  multiplier: str = "dsp") -> list[int]:
    dut = Requantizer(multiplier=multiplier)
    items = [{name: int(vectors[name][n]) for name in vectors}
             for n in range(len(vectors["acc"]))]

    def setup(ctx) -> None:
        ctx.set(dut.config, config)

    return run_stream_test(dut, items, len(items), seed=seed, setup=setup,
                           convert=lambda p: p.value)


@pytest.mark.parametrize("rounding", ["fp32", "gemmlowp"])
@pytest.mark.parametrize("setting", OUTPUT_SETTINGS[:4], ids=lambda s: "-".join(map(str, s)))
def test_requantizer_matches_golden(rounding: str, setting: tuple, sim_seed: int) -> None:
    _check_amaranth(rounding, setting, sim_seed, "dsp")


@pytest.mark.parametrize("rounding", ["fp32", "gemmlowp"])
def test_lut_multiplier_requantizer_matches_golden(rounding: str, sim_seed: int) -> None:
    """The shift-and-add multiplier (multiplier="lut") gives the same results."""
    _check_amaranth(rounding, OUTPUT_SETTINGS[0], sim_seed, "lut")


def test_requantizer_refuses_unknown_multiplier() -> None:
    with pytest.raises(ValueError, match="multiplier must be one of dsp, lut, not 'dsp48'"):
        Requantizer(multiplier="dsp48")


def _check_amaranth(rounding: str, setting: tuple, seed: int, multiplier: str) -> None:
    out_dtype, zero_point, relu = setting
    vectors = requant_vectors(seed, 250, rounding)
    expected = requant_expected(vectors, rounding, out_dtype, zero_point, relu)
    config = requant_config_value(rounding, out_dtype, zero_point, relu)
    got = _run_amaranth(vectors, config, seed, multiplier)
    bad = [n for n in range(len(got)) if got[n] != expected[n]]
    assert not bad, (f"{len(bad)} mismatches; first: "
                     f"{ {name: int(vectors[name][bad[0]]) for name in vectors} } "
                     f"expected {expected[bad[0]]}, got {got[bad[0]]}")


def test_requantizer_host_helpers(sim_seed: int) -> None:
    """`requant_config` / `requant_inputs` turn a per-channel golden GEMM setup into port
    values that reproduce `requantize`."""
    rng = np.random.default_rng(sim_seed)
    acc = rng.integers(-(2**20), 2**20, size=(3, 8)).astype(np.int32)
    bias = rng.integers(-5000, 5000, size=8)
    for rounding in ("fp32", "gemmlowp"):
        params = requant_params(x_scale=0.02, w_scale=rng.uniform(0.001, 0.01, 8),
                                y_scale=0.05, y_zero_point=3, bias=bias, relu=True,
                                rounding=rounding, out_dtype="int8", channels=8)
        dut = Requantizer()
        config = requant_config(params)
        got = run_stream_test(dut, requant_inputs(acc, params), acc.size, seed=sim_seed,
                              setup=lambda ctx, d=dut, c=config: ctx.set(d.config, c),
                              convert=lambda p: p.value)
        assert got == requantize(acc, params).reshape(-1).tolist()


@pytest.mark.parametrize("multiplier", ["dsp", "lut"])
def test_requantizer_latency_and_busy(multiplier: str, sim_seed: int) -> None:
    """The first result appears `latency` cycles after the input is accepted."""
    from amaranth.sim import Simulator

    dut = Requantizer(multiplier=multiplier)
    seen: list[int] = []

    async def bench(ctx) -> None:
        ctx.set(dut.config, requant_config_value("fp32", "int8", 0, False))
        ctx.set(dut.o_stream.ready, 1)
        ctx.set(dut.i_stream.payload, {"acc": 200, "bias": 0, "multiplier": 0x3F000000,
                                       "shift": 0})
        ctx.set(dut.i_stream.valid, 1)
        await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        for cycle in range(1, 20):
            if ctx.get(dut.o_stream.valid):
                seen.append(cycle)
                assert ctx.get(dut.o_stream.payload.value) == 100
            assert ctx.get(dut.busy) == (cycle <= dut.latency)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [dut.latency]


def _run_cocotb(count: int, seed: int, multiplier: str) -> None:
    result = run_cocotb(Requantizer(multiplier=multiplier), TOPLEVEL, COCOTB_MODULE,
                        seed=seed, extra_env={"LPMAC_REQUANT_COUNT": str(count)},
                        build_name=f"requantizer-{multiplier}")
    assert result.tests == (f"{COCOTB_MODULE}.requant_matches_golden",)


@pytest.mark.parametrize("multiplier", ["dsp", "lut"])
def test_requantizer_verilator(multiplier: str, sim_seed: int) -> None:
    """20,000 vectors per rounding mode, every output setting, on Verilator."""
    _run_cocotb(20_000, sim_seed, multiplier)


@pytest.mark.slow
@pytest.mark.parametrize("multiplier", ["dsp", "lut"])
def test_requantizer_verilator_million(multiplier: str, sim_seed: int) -> None:
    """1,000,000 vectors per rounding mode on Verilator."""
    _run_cocotb(1_000_000, sim_seed, multiplier)


@pytest.mark.parametrize("multiplier", ["dsp", "lut"])
def test_product_stages_multiply_exactly(multiplier: str, sim_seed: int) -> None:
    """The 32 x 32-bit product alone, both ways: a and b as int32 (their bit patterns),
    every sign combination, the extremes and random values; three cycles after the
    operands on the DSP blocks (stages 7 to 9), four shift-and-add (stages 6 to 9)."""
    from amaranth.hdl import Module, Signal, unsigned
    from amaranth.sim import Simulator

    m = Module()
    a, b = Signal(unsigned(32)), Signal(unsigned(32))

    def reg(value, name: str) -> Signal:
        register = Signal.like(value, name=name)
        m.d.sync += register.eq(value)
        return register

    if multiplier == "lut":
        product, stages = Requantizer._lut_product(reg, Requantizer._lut_pairs(reg, a, b)), 4
    else:
        product, stages = Requantizer._dsp_product(reg, a, b), 3
    rng = np.random.default_rng(sim_seed)
    extremes = [INT32_MIN, INT32_MIN + 1, -1, 0, 1, 2**31 - 1, 2**16, -(2**16), 2**24 - 1]
    pairs = [(x, y) for x in extremes for y in extremes]
    pairs += [tuple(int(v) for v in rng.integers(INT32_MIN, 2**31, 2)) for _ in range(300)]
    got: list[int] = []

    async def bench(ctx) -> None:
        for x, y in pairs + [(0, 0)] * stages:
            ctx.set(a, x & 0xFFFFFFFF)
            ctx.set(b, y & 0xFFFFFFFF)
            await ctx.tick()
            got.append(ctx.get(product))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # After the tick of cycle t the product register holds the pair of cycle
    # t - (stages - 1).
    products = got[stages - 1:stages - 1 + len(pairs)]
    bad = [(x, y) for (x, y), value in zip(pairs, products, strict=True) if value != x * y]
    assert not bad, f"{len(bad)} wrong products, first {bad[0]}"
