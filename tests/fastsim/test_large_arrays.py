"""Arrays larger than 8 x 8 (protocol 2.1: activation vectors and weight rows of several
words) on the Verilator harness, against the golden model and the protocol reference.

The default run builds one 16 x 16 accelerator (every mode of the default configuration;
about three minutes the first time, then from the cache) and runs on it:

* every mode and output kind on a shape that is a multiple of nothing, and GEMMs of several
  M-tiles, N-chunks and one-row batches, under random input gaps and output backpressure:
  0 mismatches against golden, every response beat the reference's;
* 512 x 512 x 512 in A8W8 and A8W4 without gaps: utilization from the accelerator's own
  counters (`host.GemmStats.utilization`, cycles and MACs read with READ_COUNTERS) at least
  90% and 85%.

`-m slow` adds the non-square 16 x 8 and 8 x 16 builds and the 32 x 32 one (the modes it
builds: the 4-bit MX modes would be wider than an MX block) with the same cases and the
corrupted-program fuzz.
"""

from __future__ import annotations

import numpy as np
import pytest

import golden
from golden.config import MODE_INFO, ArrayConfig
from golden.protocol import vector_words, weight_row_words
from host import Accelerator
from sim.fastsim import VerilatorTransport
from tests.accel.scenarios import gemm_cases
from tests.fastsim.test_fastsim import Checked, odd_shape_cases

pytestmark = pytest.mark.xdist_group("verilator-16x16")

BIG = ArrayConfig(rows=16, cols=16)
"""The default configuration with a 16 x 16 array: two words per vector and weight row."""
NON_SQUARE = (ArrayConfig(rows=16, cols=8), ArrayConfig(rows=8, cols=16))
LARGEST = ArrayConfig(rows=32, cols=32, modes=("a8w8", "a8w4", "a4w4", "mxint8"))
SHAPE = (37, 515, 45)   # M x K x N: a multiple of nothing, several N-tiles on 16 columns


def _check_every_mode(config: ArrayConfig, seed: int, *, fuzz: int = 0) -> None:
    """The odd-shape cases of every mode and output kind and the groups with several
    M-tiles, N-chunks and one-row batches, under gaps and backpressure; then `fuzz`
    corrupted programs per kind (integer, MX) and a correct GEMM after them."""
    rng = np.random.default_rng(seed)
    with VerilatorTransport(config, gaps=0.3, stalls=0.4, seed=seed) as transport:
        checked = Checked(transport)
        cases = odd_shape_cases(config, rng, SHAPE) + gemm_cases(config, rng,
                                                                  ["shapes", "one_row"])
        assert {case.program.plan.mode for case in cases} == set(config.modes)
        for case in cases:
            assert checked.mismatches(case) == 0, case.name
        if fuzz:
            checked.fuzz(rng, fuzz)
            for case in gemm_cases(config, rng, ["a8w8_small"]):
                assert checked.mismatches(case) == 0, case.name


def test_16x16_every_mode_under_gaps_and_backpressure(sim_seed: int) -> None:
    assert (vector_words(BIG), weight_row_words(BIG)) == (2, 2)
    _check_every_mode(BIG, sim_seed, fuzz=5)


@pytest.mark.parametrize("mode, floor", [("a8w8", 0.90), ("a8w4", 0.85)])
def test_16x16_utilization_of_512_cubed(mode: str, floor: float) -> None:
    """512^3 on the 16 x 16 array over a link that keeps up with the clock (64 bits per
    cycle): the counters' utilization at least `floor`, the result golden's."""
    rng = np.random.default_rng(512)
    info = MODE_INFO[mode]
    a_top, w_top = 1 << (info.activation_bits - 1), 1 << (info.weight_bits - 1)
    a = rng.integers(-a_top, a_top, (512, 512)).astype(np.int8)
    b = rng.integers(-w_top, w_top, (512, 512)).astype(np.int8)
    with Accelerator(transport=VerilatorTransport(BIG)) as accelerator:
        assert accelerator.config == BIG and accelerator.protocol_version == (2, 1)
        got = accelerator.matmul(a, b, mode=mode)
        stats = accelerator.last_stats
    assert golden.mismatches(golden.matmul(a, b), got) == 0
    assert stats.macs == 512 ** 3 and stats.peak_macs_per_cycle == 256 * info.lanes
    print(f"{mode} 512^3 on 16 x 16: {stats.cycles} cycles, utilization "
          f"{stats.utilization:.2%}")
    assert stats.utilization >= floor


@pytest.mark.slow
@pytest.mark.parametrize("config", NON_SQUARE, ids=lambda c: f"{c.rows}x{c.cols}")
def test_non_square_every_mode_under_gaps_and_backpressure(config: ArrayConfig,
                                                           sim_seed: int) -> None:
    _check_every_mode(config, sim_seed, fuzz=10)


@pytest.mark.slow
def test_32x32_every_mode_under_gaps_and_backpressure(sim_seed: int) -> None:
    assert (vector_words(LARGEST), weight_row_words(LARGEST)) == (4, 4)
    _check_every_mode(LARGEST, sim_seed)
