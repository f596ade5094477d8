# amaranth: UnusedElaboratable=no
"""The ECP5 MULT18X18D PE variant (`multiplier="ecp5-mult18"`, `hw.pe.Ecp5Mult18`) against
the golden model, on Verilator with lpmac's MULT18X18D model (fpga/models/MULT18X18D.v;
Yosys ships only a black box of the primitive).

* the 2 x 2 arrays with every integer mode and with A8W8 alone (slow: 2 x 1, and 1 x 2
  with the 4-bit modes alone): the cocotb array scenarios of tests/hw (every integer mode,
  random and corner values, tile swaps, gaps and backpressure) against golden.matmul, and
  full throughput (N vectors in N + `latency` cycles, the blocks' three registers
  included);
* a whole accelerator with these PEs (every mode and output kind) under gaps and
  backpressure: tests/fpga/test_ulx3s_dsp.py.
"""

from __future__ import annotations

import pytest

from fpga.build import primitive_model, simulation_models
from golden.config import MULT18_PE_STAGES, ArrayConfig
from hw.array import SystolicArray
from hw.pe import Ecp5Mult18, ProcessingElement
from sim.build import generate_verilog
from tests.fpga.test_sb_mac16 import dsp_array_on_verilator

INTEGER_MODES = ("a8w8", "a8w4", "a4w4")


def test_simulation_model_is_lpmacs() -> None:
    model = primitive_model("MULT18X18D", "ecp5")
    assert "module MULT18X18D(" in model and model.rstrip().endswith("endmodule")
    config = ArrayConfig(rows=2, cols=2, multiplier="ecp5-mult18", pipeline="fast")
    assert simulation_models(config) == model
    assert simulation_models(config.replace(multiplier="lut")) == ""


def test_pe_instantiates_one_registered_block() -> None:
    config = ArrayConfig(rows=2, cols=4, block_size=16, modes=INTEGER_MODES,
                         multiplier="ecp5-mult18", pipeline="fast")
    assert config.pe_stages == MULT18_PE_STAGES == 2 + Ecp5Mult18.latency
    verilog = generate_verilog(SystolicArray(config), "top")
    assert verilog.count("MULT18X18D #(") == 8
    for register in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"):
        assert verilog.count(f".REG_{register}_CLK(\"CLK0\")") == 8, register
    pe = ProcessingElement(INTEGER_MODES, multiplier="ecp5-mult18", stages=MULT18_PE_STAGES)
    assert "enable" in pe.signature.members and "dsp_a" not in pe.signature.members
    with pytest.raises(ValueError, match="stages must be 5 with multiplier 'ecp5-mult18'"):
        ProcessingElement(INTEGER_MODES, multiplier="ecp5-mult18", stages=2)


@pytest.mark.parametrize("shape, modes", [
    ((2, 2), INTEGER_MODES), ((2, 2), ("a8w8",)),
    pytest.param((2, 1), INTEGER_MODES, marks=pytest.mark.slow),
    pytest.param((1, 2), ("a8w4", "a4w4"), marks=pytest.mark.slow)])
def test_mult18_array_matches_golden(shape: tuple[int, int], modes: tuple[str, ...],
                                     sim_seed: int) -> None:
    """Every product passes the block's input, pipeline and output registers, enabled by
    the array's `advance`: results against golden.matmul under gaps and backpressure, and
    one vector per cycle without them. The 8-bit-only array has no lane separation."""
    rows, cols = shape
    config = ArrayConfig(rows=rows, cols=cols, block_size=16, modes=modes,
                         multiplier="ecp5-mult18", pipeline="fast")
    dsp_array_on_verilator(config, f"mult18_array_{rows}x{cols}_{'_'.join(modes)}", sim_seed)
