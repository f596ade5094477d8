"""Throughput floors of the default build, asserted from the accelerator's own counters
(cycle counts are deterministic): for M >= 64, N >= 128 and K from 64 to 4,096, at least 90%
in the modes with 8-bit weights and 85% in the modes with 4-bit weights, every result equal
to the golden model's. The default run checks a subset; `-m slow` the whole sweep (every
mode, K = 768, 1,536, 3,072 and 4,096, short K, a shape that is a multiple of nothing)."""

from __future__ import annotations

import numpy as np
import pytest

import golden
from golden.config import MODE_INFO, MODES
from host import Accelerator
from sim.fastsim import VerilatorTransport

pytestmark = pytest.mark.xdist_group("verilator-default")

SEED = 2026


def floor(mode: str) -> float:
    """The utilization floor of `mode`: 85% with 4-bit weights, else 90%."""
    return 0.85 if MODE_INFO[mode].weight_bits == 4 else 0.90


def _run(accelerator: Accelerator, mode: str, shape: tuple[int, int, int],
         rng: np.random.Generator) -> float:
    """One GEMM in `mode`: its result against golden, its utilization returned."""
    m, k, n = shape
    info = MODE_INFO[mode]
    if info.mx:
        fmt_a, fmt_b = info.mx_formats
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        got = accelerator.mx_matmul(a, b, fmt_a=fmt_a, fmt_b=fmt_b)
        expected = golden.mx_matmul(a, b, fmt_a=fmt_a, fmt_b=fmt_b)
    else:
        a_top, w_top = 1 << (info.activation_bits - 1), 1 << (info.weight_bits - 1)
        a = rng.integers(-a_top, a_top, (m, k)).astype(np.int8)
        b = rng.integers(-w_top, w_top, (k, n)).astype(np.int8)
        got = accelerator.matmul(a, b, mode=mode)
        expected = golden.matmul(a, b)
    assert golden.mismatches(expected, got) == 0, f"{mode} {shape}"
    return accelerator.last_stats.utilization


@pytest.fixture(scope="module")
def accelerator():
    with Accelerator(backend="verilator") as accelerator:
        yield accelerator


@pytest.mark.parametrize("mode, shape", [
    ("a8w8", (64, 1536, 128)),
    ("a8w4", (64, 768, 128)),
    ("mxint8", (64, 3072, 128)),
    ("a8w4", (128, 64, 256)),           # short K: the paired drain
    ("mxint8w4", (64, 256, 128)),
])
def test_utilization_floor(accelerator, mode: str, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng([SEED, *shape, MODES.index(mode)])
    utilization = _run(accelerator, mode, shape, rng)
    print(f"{mode} {shape}: {utilization:.2%}")
    assert utilization >= floor(mode)


SWEEP = [(128, 768, 384), (128, 1536, 384), (128, 3072, 384), (64, 4096, 128),
         (64, 256, 128), (128, 64, 256), (100, 1000, 130)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_utilization_floor_sweep(accelerator, mode: str) -> None:
    rng = np.random.default_rng([SEED, MODES.index(mode)])
    low = {shape: _run(accelerator, mode, shape, rng) for shape in SWEEP}
    print(mode, {f"{m}x{k}x{n}": f"{value:.2%}" for (m, k, n), value in low.items()})
    assert min(low.values()) >= floor(mode), low


def test_long_k_under_gaps_and_stalls() -> None:
    """A long-K GEMM with 30% idle input cycles and 30% output stalls: the same result."""
    rng = np.random.default_rng(SEED + 1)
    a = rng.integers(-128, 128, (33, 2000)).astype(np.int8)
    b = rng.integers(-8, 8, (2000, 40)).astype(np.int8)
    transport = VerilatorTransport(gaps=0.3, stalls=0.3, seed=SEED)
    with Accelerator(transport=transport) as accelerator:
        assert golden.mismatches(golden.matmul(a, b), accelerator.matmul(a, b)) == 0
        assert accelerator.last_stats.k == 2000
