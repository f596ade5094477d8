# amaranth: UnusedElaboratable=no
"""Board configurations (fpga/boards.py) and the accelerator without the requantization
unit (`requant_depth=0`), which the iCEBreaker build uses to fit the iCE40UP5K.

Without the unit the hardware offers int32 outputs only; CONFIGURE with an 8- or 4-bit
output is refused (TOO_LARGE, field REQUANT) and `host.tiling.qlinear_program` computes
int32 on the accelerator and requantizes on the host. The host-side checks run on the
protocol reference (`golden.reference.ReferenceAccelerator`); the slow test runs the
iCEBreaker accelerator (SB_MAC16 multipliers, no requantizer) on Verilator.
"""

from __future__ import annotations

import numpy as np
import pytest

import golden
from fpga.boards import BOARDS, ICEBREAKER, ULX3S_85F, board
from golden.config import ArrayConfig
from golden.protocol import (
    ConfigureFields,
    Field,
    Status,
    check_configure,
    out_kind_code,
    parse_responses,
)
from golden.reference import ReferenceAccelerator
from host.tiling import qlinear_program
from hw.accelerator import Accelerator

# The iCEBreaker build with every integer mode (4-bit weights in columns, the packing A8W4
# needs): requant_depth=0 in each of them.
NO_REQUANT = ICEBREAKER.config.replace(modes=("a8w8", "a8w4", "a4w4"), int4_packing="columns")
WITH_REQUANT = NO_REQUANT.replace(requant_depth=64)


def test_board_table() -> None:
    assert set(BOARDS) == {"icebreaker", "ulx3s-85f"}
    assert board("icebreaker") is ICEBREAKER and board("ulx3s-85f") is ULX3S_85F
    with pytest.raises(ValueError, match="board must be one of icebreaker, ulx3s-85f, not 'x'"):
        board("x")
    # iCEBreaker: 16 int8 and 32 4-bit MACs per cycle on 8 SB_MAC16 blocks in one
    # bitstream (A4W4 in K-pairs, at 36 MHz with the UART bridge, docs/fpga.md).
    config = ICEBREAKER.config
    assert config.modes == ("a8w8", "a4w4") and config.k_pairs
    assert config.peak_macs_per_cycle("a8w8") == 16 and config.peak_macs_per_cycle("a4w4") == 32
    assert config.rows * config.cols // 2 == ICEBREAKER.capacity["dsp"] == 8
    assert config.multiplier == "ice40-sb-mac16" and not config.has_mx
    assert ICEBREAKER.clock_hz == 36_000_000 and ULX3S_85F.clock_hz >= 100_000_000
    assert set(ULX3S_85F.config.modes) == set(golden.config.MODES)


def test_requant_depth_zero_is_a_config_without_requantizer() -> None:
    assert NO_REQUANT.requant_depth == 0
    assert not NO_REQUANT.has_requantizer and WITH_REQUANT.has_requantizer
    assert not ArrayConfig(modes=("mxint8",)).has_requantizer
    with pytest.raises(ValueError, match="requant_depth must be a power of two of at least 2, "
                                         "or 0"):
        ArrayConfig(requant_depth=1)


def test_accelerator_elaborates_without_requantizer() -> None:
    from amaranth.hdl import Fragment

    def submodule_names(config: ArrayConfig) -> set[str]:
        """The names of every submodule of the accelerator, at any depth."""
        names: set[str] = set()
        pending = [Fragment.get(Accelerator(config), None)]
        while pending:
            fragment = pending.pop()
            for subfragment, name, _ in fragment.subfragments:
                names.add(name)
                pending.append(Fragment.get(subfragment, None))
        return names

    assert "requantizer" in submodule_names(WITH_REQUANT.replace(multiplier="split"))
    names = submodule_names(NO_REQUANT.replace(multiplier="split"))
    assert "requantizer" not in names and "requant_mem" not in names
    # No MX mode: no BFP accumulators, scale memory or MX output units either.
    assert not {"to_float", "mx_quantizer", "scale_mem", "bfp_mem"} & names
    assert not any(name.startswith("bfp_acc") for name in names)
    mx_names = submodule_names(NO_REQUANT.replace(multiplier="split",
                                                  modes=("a8w8", "mxint8")))
    assert {"to_float", "mx_quantizer", "bfp_acc_0"} <= mx_names


@pytest.mark.parametrize("out_kind", ["uint8", "int8", "int4"])
def test_configure_refuses_8_and_4_bit_outputs(out_kind: str) -> None:
    fields = ConfigureFields(mode=0, out_kind=out_kind_code(out_kind), rounding=0, relu=0,
                             zero_point=0, m=4, k=4, n=4)
    assert check_configure(NO_REQUANT, fields)[:2] == (Status.TOO_LARGE, Field.REQUANT)
    assert check_configure(WITH_REQUANT, fields)[0] == Status.OK
    int32 = ConfigureFields(mode=0, out_kind=out_kind_code("int32"), rounding=0, relu=0,
                            zero_point=0, m=4, k=4, n=4)
    assert check_configure(NO_REQUANT, int32)[0] == Status.OK


@pytest.mark.parametrize("mode,out_dtype,rounding", [
    ("a8w8", "uint8", "fp32"), ("a8w4", "int8", "gemmlowp"), ("a4w4", "int4", "fp32"),
    ("a8w8", "int8", "gemmlowp")])
def test_qlinear_requantizes_on_the_host(mode: str, out_dtype: str, rounding: str) -> None:
    """On the protocol reference of a requant_depth=0 accelerator, qlinear_program equals
    golden.qlinear bit for bit (ties included: small scales make many exact halves)."""
    seed = 20261122
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    m, k, n = 21, 36, 19
    four = mode != "a8w8"
    x_q = rng.integers(-8, 8, (m, k)).astype(np.int8) if mode == "a4w4" \
        else rng.integers(0, 256, (m, k)).astype(np.uint8)
    w_q = rng.integers(-8, 8, (n, k)).astype(np.int8) if four \
        else rng.integers(-128, 128, (n, k)).astype(np.int8)
    x_q[0, :] = -8 if mode == "a4w4" else 0
    w_q[0, :] = -8 if four else -128
    kwargs = dict(x_scale=0.02, x_zero_point=0 if mode == "a4w4" else 131,
                  w_scale=rng.uniform(0.002, 0.02, n).astype(np.float32), y_scale=0.5,
                  y_zero_point=-3 if out_dtype != "uint8" else 100,
                  bias=rng.integers(-5000, 5000, n).astype(np.int32), relu=False,
                  rounding=rounding, out_dtype=out_dtype)
    program = qlinear_program(NO_REQUANT, x_q, w_q, mode=mode, **kwargs)
    assert program.plan.out_kind == "int32" and program.host_requant is not None
    reference = ReferenceAccelerator(NO_REQUANT)
    responses = parse_responses((beat.word, beat.last)
                                for beat in reference.run(program.beats()))
    got = program.decode(responses)
    expected = golden.qlinear(x_q, w_q, **kwargs)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def _icebreaker_on_verilator(config: ArrayConfig, cases: str, seed: int, name: str) -> None:
    from fpga.build import simulation_models
    from sim.build import config_build_name, generate_verilog, run_cocotb
    from tests.accel.harness import config_to_env
    from tests.accel.test_accel import BUILD_ARGS, COCOTB_MODULE

    verilog = generate_verilog(Accelerator(config), "accelerator") + simulation_models(config)
    result = run_cocotb(
        verilog, "accelerator", COCOTB_MODULE, testcase="gemms", seed=seed,
        build_name=config_build_name(name, config), build_args=BUILD_ARGS,
        extra_env={"LPMAC_ACCEL_CONFIG": config_to_env(config), "LPMAC_ACCEL_CASES": cases,
                   "LPMAC_ACCEL_GAPS": "0.3", "LPMAC_ACCEL_STALLS": "0.3"})
    assert result.tests == (f"{COCOTB_MODULE}.gemms",)


def test_icebreaker_build_on_verilator(sim_seed: int) -> None:
    """The accelerator of the iCEBreaker bitstream as built (SB_MAC16 multipliers, A4W4 in
    K-pairs next to A8W8: each SB_MAC16 half multiplies the low nibbles and adds a LUT
    product of the high ones; SB_SPRAM256KA activation banks with Yosys's models, no
    requantizer) on Verilator under gaps and backpressure: a layer requantized on the
    host, int32 GEMMs in both modes, the operand extremes, batches of one and two rows, a
    GEMM whose two M-tiles fill both 16384-vector banks, and loads that must wait for the
    COMPUTE reading their bank; 0 mismatches against golden, every response word (the MAC
    counter too) equal to the protocol reference."""
    assert ICEBREAKER.config.activation_memory == "ice40-spram"
    _icebreaker_on_verilator(ICEBREAKER.config,
                             "a8w8_small,matmul,extremes,one_row,deep,same_bank", sim_seed,
                             "accelerator-icebreaker-kpairs")


def test_icebreaker_a4w4_k_pairs_only_on_verilator(sim_seed: int) -> None:
    """As above with A4W4 the only mode (no operand multiplexers: the SB_MAC16 halves
    always take the sign-extended low nibbles)."""
    _icebreaker_on_verilator(ICEBREAKER.config.replace(modes=("a4w4",)),
                             "matmul,extremes,one_row", sim_seed,
                             "accelerator-icebreaker-kpairs-only")


@pytest.mark.slow
def test_icebreaker_accelerator_on_verilator(sim_seed: int) -> None:
    """The iCEBreaker accelerator with every integer mode (SB_MAC16 multipliers and
    SB_SPRAM256KA banks with Yosys's models, no requantizer) on Verilator: int32 GEMMs in
    every mode and qlinear layers requantized on the host, 0 mismatches against golden,
    every response word equal to the protocol reference."""
    _icebreaker_on_verilator(NO_REQUANT, "qlinear,matmul,a8w8_small", sim_seed,
                             "accelerator-icebreaker")


def _variable_products(config: ArrayConfig) -> int:
    """`$mul` cells of the accelerator with no constant operand (what synthesis may map to
    a DSP block; a product with a constant is a shift or a few adders)."""
    import re

    from amaranth.back import rtlil

    text = rtlil.convert(Accelerator(config), name="top")
    cells = re.findall(r"cell \$mul .*?\n((?:\s+(?:parameter|connect) .*\n)+)", text)
    return sum(1 for body in cells
               if not re.search(r"connect \\[AB] \d+'[01]+\s*$", body, re.M))


def test_ulx3s_lut_build_multiplies_only_in_logic() -> None:
    """The ULX3S configuration (`multiplier="lut"`) has no product of two variables left
    for synthesis to put on a MULT18X18D, the requantizer's included; with the `split`
    PEs there are (the check can fail)."""
    config = ULX3S_85F.config.replace(rows=4, cols=4)
    assert config.multiplier == "lut" and config.has_requantizer
    assert _variable_products(config) == 0
    assert _variable_products(config.replace(multiplier="split")) > 4
