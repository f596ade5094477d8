# amaranth: UnusedElaboratable=no
"""The activation buffer (`hw.actbuffer`): the iCE40 SB_SPRAM256KA banks on Verilator with
the model Yosys ships, and the inferred-memory variant, against a model of the two banks;
the configuration checks of `activation_memory`."""

from __future__ import annotations

import json

import pytest

from fpga.build import primitive_model, simulation_models
from golden.config import ArrayConfig
from hw.actbuffer import ActivationBuffer
from sim.build import generate_verilog


def test_spram_model_is_the_yosys_one() -> None:
    model = primitive_model("SB_SPRAM256KA")
    assert model.startswith("module SB_SPRAM256KA") and "reg [15:0] mem [0:16383]" in model


@pytest.mark.parametrize("rows, depth, blocks", [(4, 32768, 4), (2, 256, 2), (1, 64, 2)])
def test_spram_blocks(rows: int, depth: int, blocks: int) -> None:
    config = ArrayConfig(rows=rows, cols=4, block_size=16, modes=("a8w8",),
                         activation_buffer_depth=depth, activation_memory="ice40-spram")
    verilog = generate_verilog(ActivationBuffer(config), "actbuf")
    assert verilog.count("SB_SPRAM256KA ") == blocks


@pytest.mark.parametrize("memory, rows, depth", [
    ("ice40-spram", 4, 32768), ("block", 4, 256),
    pytest.param("ice40-spram", 2, 256, marks=pytest.mark.slow),
    pytest.param("ice40-spram", 1, 64, marks=pytest.mark.slow)])
def test_banks_match_model(memory: str, rows: int, depth: int, sim_seed: int) -> None:
    import tests.fpga.cocotb_actbuffer as module
    from sim.build import run_cocotb

    config = ArrayConfig(rows=rows, cols=4, block_size=16, modes=("a8w8",),
                         activation_buffer_depth=depth, activation_memory=memory)
    verilog = generate_verilog(ActivationBuffer(config), "actbuf") + simulation_models(config)
    result = run_cocotb(verilog, "actbuf", module, seed=sim_seed,
                        build_name=f"actbuf-{memory}-{rows}x{depth}",
                        extra_env={"LPMAC_ACTBUF": json.dumps({"rows": rows, "depth": depth})})
    assert result.tests == ("tests.fpga.cocotb_actbuffer.banks_match_model",)


@pytest.mark.parametrize("changes, message", [
    ({"activation_memory": "spram"},
     r"^activation_memory must be 'block' or 'ice40-spram', not 'spram'$"),
    ({"activation_memory": "ice40-spram", "rows": 8},
     r"^activation_memory 'ice40-spram' holds vectors of at most 32 bits \(rows at most 4\), "
     r"not rows=8$"),
    ({"activation_memory": "ice40-spram", "rows": 4, "activation_buffer_depth": 65536},
     r"^activation_buffer_depth must be at most 32768 with activation_memory 'ice40-spram', "
     r"not 65536$"),
])
def test_activation_memory_is_checked(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArrayConfig(**changes)


def test_spram_needs_an_ultraplus_board() -> None:
    from fpga.boards import ULX3S_85F
    from fpga.build import build_board

    config = ULX3S_85F.config.replace(rows=4, cols=4, activation_memory="ice40-spram",
                                      activation_buffer_depth=1024)
    with pytest.raises(ValueError, match="activation_memory 'ice40-spram' needs an iCE40 "
                                         "UltraPlus board, not 'ulx3s-85f'"):
        build_board(ULX3S_85F, config, synth_only=True)
