"""The ULX3S DSP variant (`fpga.boards.ULX3S_85F_DSP_CONFIG`: a 16 x 8 array of
MULT18X18D PEs, the fast pipeline, the board's buffers) as a whole accelerator on the
Verilator harness with lpmac's MULT18X18D model: every mode and output kind under random
input gaps and output backpressure, 0 mismatches against golden and every response beat the
protocol reference's. It is also the suite's non-square build of protocol 2.1 (two words
per activation vector, one per weight row). One build (about three minutes the first
time), cached."""

from __future__ import annotations

import numpy as np
import pytest

from fpga.boards import ULX3S_85F, ULX3S_85F_DSP_CONFIG
from fpga.build import simulation_models
from golden.protocol import vector_words, weight_row_words
from sim.fastsim import VerilatorTransport
from tests.accel.scenarios import gemm_cases
from tests.fastsim.test_fastsim import Checked, odd_shape_cases
from tests.fpga.test_build_boards import _variable_products

pytestmark = pytest.mark.xdist_group("verilator-ulx3s-dsp")

CONFIG = ULX3S_85F_DSP_CONFIG


def test_the_variant_is_the_board_with_dsp_pes() -> None:
    assert CONFIG == ULX3S_85F.config.replace(rows=16, cols=8, multiplier="ecp5-mult18")
    assert (vector_words(CONFIG), weight_row_words(CONFIG)) == (2, 1)
    assert CONFIG.peak_macs_per_cycle("a8w8") == 128
    assert CONFIG.peak_macs_per_cycle("a4w4") == 256
    # Every product is a MULT18X18D instance: nothing left for synthesis to infer one for
    # (the requantizer's multiplier is shift-and-add).
    assert _variable_products(CONFIG.replace(rows=2, cols=2)) == 0


def test_refused_without_the_model() -> None:
    with pytest.raises(ValueError, match="pass its simulation model"):
        VerilatorTransport(CONFIG)


def test_every_mode_under_gaps_and_backpressure(sim_seed: int) -> None:
    rng = np.random.default_rng(sim_seed)
    with VerilatorTransport(CONFIG, gaps=0.3, stalls=0.4, seed=sim_seed,
                            models=simulation_models(CONFIG)) as transport:
        checked = Checked(transport)
        cases = odd_shape_cases(CONFIG, rng) + gemm_cases(CONFIG, rng,
                                                          ["shapes", "one_row", "extremes"])
        assert {case.program.plan.mode for case in cases} == set(CONFIG.modes)
        for case in cases:
            assert checked.mismatches(case) == 0, case.name
        checked.fuzz(rng, 5)
        for case in gemm_cases(CONFIG, rng, ["a8w8_small"]):
            assert checked.mismatches(case) == 0, case.name
