"""The MX output path against golden `bfp_to_float32` and `mx_quantize`: Amaranth
simulator (small sets) and cocotb on Verilator."""

from __future__ import annotations

import pytest

from golden.config import ArrayConfig
from hw.mxout import BfpToFloat32, MxElementFormat, MxQuantizer
from sim.build import run_cocotb
from tests.hw.cocotb_mxout import (
    float32_expected,
    float32_vectors,
    mx_expected,
    mx_rows,
)
from tests.hw.streams import run_stream_test

COCOTB_MODULE = "tests.hw.cocotb_mxout"


@pytest.mark.parametrize("acc_bits", [16, 24, 32])
def test_bfp_to_float32_matches_golden(acc_bits: int, sim_seed: int) -> None:
    config = ArrayConfig(acc_bits=acc_bits)
    mantissa, exponent = float32_vectors(sim_seed, 400, acc_bits)
    expected = float32_expected(mantissa, exponent).tolist()
    items = [{"mantissa": int(m), "exponent": int(e)}
             for m, e in zip(mantissa, exponent, strict=True)]
    got = run_stream_test(BfpToFloat32(config), items, len(items), seed=sim_seed,
                          convert=lambda p: p.bits)
    bad = [n for n in range(len(items)) if got[n] != expected[n]]
    assert not bad, (f"{len(bad)} mismatches; first: {items[bad[0]]} expected "
                     f"{expected[bad[0]]:#010x}, got {got[bad[0]]:#010x}")


@pytest.mark.parametrize("acc_bits,block_size", [(16, 16), (32, 32), (24, 16)])
@pytest.mark.parametrize("fmt", ["mxint8", "mxint4"])
def test_mx_quantizer_matches_golden(acc_bits: int, block_size: int, fmt: str,
                                     sim_seed: int) -> None:
    config = ArrayConfig(acc_bits=acc_bits, block_size=block_size)
    fraction_bits = 6 if fmt == "mxint8" else 2
    items, expected = [], []
    for part, (rows, length) in enumerate(((2, 3 * block_size), (2, block_size + 3),
                                           (3, 2))):
        m, e = mx_rows(sim_seed + part, rows, length, acc_bits, block_size, fraction_bits)
        items += [{"value": {"mantissa": int(m[r, n]), "exponent": int(e[r, n])},
                   "last": int(n == length - 1)} for r in range(rows) for n in range(length)]
        expected += mx_expected(m, e, fmt, block_size)
    dut = MxQuantizer(config)
    mode = MxElementFormat.MXINT8 if fmt == "mxint8" else MxElementFormat.MXINT4
    got = run_stream_test(dut, items, len(items), seed=sim_seed,
                          setup=lambda ctx: ctx.set(dut.format, mode),
                          convert=lambda p: (p.element, p.scale, p.first, p.last))
    bad = [n for n in range(len(items)) if got[n] != expected[n]]
    assert not bad, (f"{len(bad)} mismatches; first at {bad[0]}: {items[bad[0]]} expected "
                     f"{expected[bad[0]]}, got {got[bad[0]]}")


def test_mx_quantizer_full_throughput_and_latency(sim_seed: int) -> None:
    """Without gaps or backpressure, blocks stream through at one value per cycle and the
    first element of a block appears `latency` cycles after its last value went in."""
    from amaranth.sim import Simulator

    config = ArrayConfig(acc_bits=16, block_size=16)
    dut = MxQuantizer(config)
    m, e = mx_rows(sim_seed, 1, 64, 16, 16, 6)
    expected = mx_expected(m, e, "mxint8", 16)
    accepted: list[int] = []
    produced: list[tuple[int, tuple]] = []

    async def producer(ctx) -> None:
        ctx.set(dut.format, MxElementFormat.MXINT8)
        cycle = 0
        for n in range(64):
            ctx.set(dut.i_stream.payload, {"value": {"mantissa": int(m[0, n]),
                                                     "exponent": int(e[0, n])},
                                           "last": int(n == 63)})
            ctx.set(dut.i_stream.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
                cycle += 1
                if ready:
                    accepted.append(cycle)
                    break
        ctx.set(dut.i_stream.valid, 0)

    async def consumer(ctx) -> None:
        ctx.set(dut.o_stream.ready, 1)
        cycle = 0
        while len(produced) < 64:
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid,
                                                           dut.o_stream.payload)
            cycle += 1
            if valid:
                produced.append((cycle, (payload.element, payload.scale, payload.first,
                                         payload.last)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert [value for _, value in produced] == expected
    assert accepted == list(range(1, 65)), "the input stalled"
    cycles = [cycle for cycle, _ in produced]
    assert cycles == list(range(cycles[0], cycles[0] + 64)), "the output has gaps"
    assert cycles[0] - accepted[15] == dut.latency


# --- Verilator: the default run covers the default configuration, the slow run the sweep ---

def _run_float32(acc_bits: int, seed: int, count: int) -> None:
    config = ArrayConfig(acc_bits=acc_bits)
    run_cocotb(BfpToFloat32(config), "bfp_to_float32", COCOTB_MODULE,
               testcase="float32_matches_golden", seed=seed,
               extra_env={"LPMAC_ACC_BITS": str(acc_bits), "LPMAC_MX_COUNT": str(count)},
               build_name=f"bfp_to_float32-w{acc_bits}")


def _run_mx(acc_bits: int, block_size: int, seed: int, count: int) -> None:
    config = ArrayConfig(acc_bits=acc_bits, block_size=block_size)
    run_cocotb(MxQuantizer(config), "mx_quantizer", COCOTB_MODULE,
               testcase="mx_quantize_matches_golden", seed=seed,
               extra_env={"LPMAC_ACC_BITS": str(acc_bits), "LPMAC_BLOCK_SIZE": str(block_size),
                          "LPMAC_MX_COUNT": str(count)},
               build_name=f"mx_quantizer-w{acc_bits}-bk{block_size}")


def test_bfp_to_float32_verilator(sim_seed: int) -> None:
    _run_float32(32, sim_seed, 20_000)


def test_mx_quantizer_verilator(sim_seed: int) -> None:
    _run_mx(32, 32, sim_seed, 20_000)


@pytest.mark.slow
@pytest.mark.parametrize("acc_bits", [16, 24])
def test_bfp_to_float32_verilator_sweep(acc_bits: int, sim_seed: int) -> None:
    _run_float32(acc_bits, sim_seed, 200_000)


@pytest.mark.slow
@pytest.mark.parametrize("acc_bits,block_size",
                         [(16, 16), (16, 32), (24, 16), (24, 32), (32, 16)])
def test_mx_quantizer_verilator_sweep(acc_bits: int, block_size: int, sim_seed: int) -> None:
    _run_mx(acc_bits, block_size, sim_seed, 200_000)
