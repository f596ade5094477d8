"""The whole accelerator on Verilator (cocotb), against the protocol reference and golden.

One Verilator build of `Accelerator(ArrayConfig())` (the default 8x8 configuration with every
mode) serves every test; tests/accel/cocotb_accel.py holds the cocotb side. Seeds come from
the `sim_seed` fixture (printed; replay with --sim-seed).
"""

from __future__ import annotations

import json

import pytest

from golden.config import ArrayConfig
from hw.accelerator import Accelerator
from sim.build import config_build_name, run_cocotb
from sim.cocotb_transport import COCOTB_BUILD_ARGS as BUILD_ARGS  # shared with the transport
from sim.fastsim import accelerator_verilog  # cached on disk: about 10 s saved per process
from tests.accel.harness import config_to_env

COCOTB_MODULE = "tests.accel.cocotb_accel"


def run(testcase: str, seed: int, config: ArrayConfig | None = None, **env: object) -> None:
    config = config or ArrayConfig()
    result = run_cocotb(
        accelerator_verilog(config), "accelerator", COCOTB_MODULE, testcase=testcase, seed=seed,
        build_name=config_build_name("accelerator", config), build_args=BUILD_ARGS,
        extra_env={"LPMAC_ACCEL_CONFIG": config_to_env(config), **env})
    assert result.tests == (f"{COCOTB_MODULE}.{testcase}",)


def test_identify(sim_seed: int) -> None:
    latency = Accelerator(ArrayConfig()).command_latency
    run("identify", sim_seed, LPMAC_ACCEL_COMMAND_LATENCY=latency)


@pytest.mark.parametrize("cases", ["qlinear",
                                   "one_row,matmul,mx,shapes,same_bank,deep,cancel,tiny_scales"])
def test_gemms_match_golden(cases: str, sim_seed: int) -> None:
    """Every mode, both roundings, every output kind, shapes that are multiples of nothing,
    cancellation in the BFP accumulator: 0 mismatches against golden, every response word
    equal to the reference."""
    run("gemms", sim_seed, LPMAC_ACCEL_CASES=cases)


@pytest.mark.parametrize("gaps,stalls,cases", [
    (0.3, 0.4, "qlinear,matmul,mx,shapes,same_bank"),
    (0.8, 0.9, "a8w8_small,matmul,mx,shapes"),
])
def test_gemms_under_gaps_and_backpressure(gaps: float, stalls: float, cases: str,
                                           sim_seed: int) -> None:
    """Random idle cycles on the input, random ready-low cycles on the output (at 0.8 / 0.9
    the weight FIFO runs dry and the accumulator banks wait for the drain, so both stall
    paths of the sequencer are exercised): 0 mismatches, nothing lost or duplicated, every
    response word as the reference says, stream rules kept on both streams."""
    run("gemms", sim_seed, LPMAC_ACCEL_CASES=cases, LPMAC_ACCEL_GAPS=str(gaps),
        LPMAC_ACCEL_STALLS=str(stalls))


def test_malformed_input(sim_seed: int) -> None:
    run("malformed", sim_seed)


def test_fuzzed_packets(sim_seed: int) -> None:
    """60 corrupted GEMM programs: every response exactly as the reference predicts."""
    run("fuzz", sim_seed)


def test_reset_in_the_middle_of_a_gemm(sim_seed: int) -> None:
    run("reset_mid_gemm", sim_seed)


UTILIZATION_FLOORS = {"a8w8": 0.95, "a8w4": 0.90, "a4w4": 0.90}
"""The targets of the design brief: fraction of the mode's peak MACs per cycle."""


def test_utilization_256_cube(sim_seed: int, tmp_path, record_property) -> None:
    """256 x 256 x 256 on the 8x8 array with the 64-bit stream, from the counters:
    >= 95% of peak in A8W8, >= 90% of the doubled peak in A8W4 and A4W4."""
    report = tmp_path / "utilization.json"
    try:
        run("utilization", sim_seed, LPMAC_ACCEL_UTIL_MODES=",".join(UTILIZATION_FLOORS),
            LPMAC_ACCEL_UTIL_FLOORS=",".join(f"{mode}={floor}" for mode, floor
                                             in UTILIZATION_FLOORS.items()),
            LPMAC_ACCEL_REPORT=report)
    finally:
        if report.exists():
            figures = json.loads(report.read_text())
            for mode, values in figures.items():
                record_property(f"utilization_{mode}", values["utilization"])
                print(f"{mode}: utilization {values['utilization']:.4f} "
                      f"({values['macs_per_cycle']:.2f} of {values['peak_macs_per_cycle']} "
                      f"MACs/cycle), {values['cycles']} cycles, busy {values['busy']}, "
                      f"input stall {values['input_stall']}, output stall "
                      f"{values['output_stall']}, {values['simulation_seconds']} s simulated")


SMALL = ArrayConfig(rows=4, cols=4, block_size=16, acc_bits=16, acc_rounding="truncate",
                    weight_buffer_depth=64, activation_buffer_depth=256, accumulator_depth=64,
                    requant_depth=32, pipeline="fast")
"""A second build: 4x4 array, BK 16, W 16 with truncation, small buffers (so that tiles,
N-chunks and accumulator groups take other shapes), the fast pipeline."""


@pytest.mark.slow
@pytest.mark.parametrize("gaps,stalls", [(0.0, 0.0), (0.5, 0.6)])
def test_small_config_gemms(gaps: float, stalls: float, sim_seed: int) -> None:
    run("gemms", sim_seed, SMALL, LPMAC_ACCEL_CASES="qlinear,matmul,mx,shapes,random",
        LPMAC_ACCEL_GAPS=str(gaps), LPMAC_ACCEL_STALLS=str(stalls))


@pytest.mark.slow
def test_small_config_malformed_and_reset(sim_seed: int) -> None:
    run("malformed", sim_seed, SMALL)
    run("reset_mid_gemm", sim_seed, SMALL)


@pytest.mark.slow
def test_fuzz_soak(sim_seed: int) -> None:
    run("fuzz", sim_seed, LPMAC_ACCEL_FUZZ="400")


@pytest.mark.slow
@pytest.mark.parametrize("seed_offset", range(4))
def test_random_gemm_soak(seed_offset: int, sim_seed: int) -> None:
    """Random shapes, modes and outputs under random gaps and backpressure."""
    run("gemms", sim_seed + seed_offset, LPMAC_ACCEL_CASES="random",
        LPMAC_ACCEL_GAPS="0.4", LPMAC_ACCEL_STALLS="0.5")
