"""Accumulation units in the Amaranth simulator against the golden model.

Random and corner inputs under random valid gaps and ready backpressure; the seed comes
from the `sim_seed` fixture (printed, replay with --sim-seed).
"""

from __future__ import annotations

import gc
import random
import warnings

import numpy as np
import pytest

from golden.config import ArrayConfig
from golden.mx import bfp_accumulate
from hw.accumulate import BfpAccumulator, IntAccumulator
from sim.build import run_cocotb
from tests.hw.cocotb_accumulate import bfp_expected, bfp_payload, bfp_vectors
from tests.hw.streams import run_stream_test

COCOTB_MODULE = "tests.hw.cocotb_accumulate"

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@pytest.mark.parametrize("acc_bits,block_size", [(16, 16), (24, 32), (32, 32), (32, 16)])
@pytest.mark.parametrize("rounding", ["nearest", "truncate"])
def test_bfp_accumulator_matches_golden(acc_bits: int, block_size: int, rounding: str,
                                        sim_seed: int) -> None:
    config = ArrayConfig(acc_bits=acc_bits, block_size=block_size, acc_rounding=rounding)
    vectors = bfp_vectors(sim_seed, 400, config)
    mantissa, exponent = bfp_expected(vectors, config, rounding)
    expected = list(zip(mantissa.tolist(), exponent.tolist(), strict=True))
    items = [bfp_payload(vectors, n) for n in range(len(expected))]
    got = run_stream_test(BfpAccumulator(config), items, len(items), seed=sim_seed,
                          convert=lambda p: (p.mantissa, p.exponent))
    bad = [n for n in range(len(items)) if got[n] != expected[n]]
    assert not bad, (f"{len(bad)} mismatches; first: {items[bad[0]]} expected "
                     f"{expected[bad[0]]}, got {got[bad[0]]}")


def test_bfp_accumulator_chain_matches_bfp_accumulate(sim_seed: int) -> None:
    """A whole K loop, fed back through the unit one block at a time."""
    config = ArrayConfig(acc_bits=16, block_size=32, acc_rounding="nearest")
    rng = np.random.default_rng(sim_seed)
    partials = rng.integers(-516128, 516129, size=(6, 12))
    exponents = rng.integers(-30, 30, size=(6, 12))
    expected_m, expected_e = bfp_accumulate(partials, exponents, acc_bits=16)
    dut = BfpAccumulator(config)
    state = [(0, 0)] * partials.shape[0]
    for block in range(partials.shape[1]):
        vectors = [{"acc": {"mantissa": state[row][0], "exponent": state[row][1]},
                    "partial": int(partials[row, block]),
                    "partial_exponent": int(exponents[row, block]), "first": int(block == 0)}
                   for row in range(partials.shape[0])]
        state = run_stream_test(dut, vectors, len(vectors), seed=sim_seed + block,
                                convert=lambda p: (p.mantissa, p.exponent))
    assert state == list(zip(expected_m.tolist(), expected_e.tolist(), strict=True))


@pytest.mark.parametrize("registered", [False, True])
def test_int_accumulator_wraps(registered: bool, sim_seed: int) -> None:
    rng = random.Random(sim_seed)
    corners = [INT32_MIN, INT32_MAX, 0, -1, 1, -128, 127]
    vectors = []
    for _ in range(300):
        acc = rng.choice(corners) if rng.random() < 0.3 else rng.randint(INT32_MIN, INT32_MAX)
        partial = rng.choice(corners) if rng.random() < 0.3 else rng.randint(INT32_MIN, INT32_MAX)
        vectors.append({"acc": acc, "partial": partial, "first": int(rng.random() < 0.1)})
    expected = [int(np.int64((0 if v["first"] else v["acc"]) + v["partial"]).astype(np.int32))
                for v in vectors]
    dut = IntAccumulator(registered=registered)
    assert dut.latency == (2 if registered else 1)
    got = run_stream_test(dut, vectors, len(vectors), seed=sim_seed, convert=lambda p: p.acc)
    assert got == expected


def test_bfp_accumulator_rejects_bad_parameters() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the half-built components warn when collected
        with pytest.raises(ValueError, match="rounding must be"):
            BfpAccumulator(ArrayConfig(), rounding="up")
        with pytest.raises(ValueError, match="exponent_bits must be"):
            BfpAccumulator(ArrayConfig(), exponent_bits=40)
        gc.collect()


# --- Verilator: two configurations in the default run, the sweep in the slow run ---------

def _run_bfp(acc_bits: int, block_size: int, rounding: str, seed: int, count: int) -> None:
    config = ArrayConfig(acc_bits=acc_bits, block_size=block_size, acc_rounding=rounding)
    result = run_cocotb(
        BfpAccumulator(config), "bfp_accumulator", COCOTB_MODULE,
        testcase=["bfp_matches_golden", "bfp_chains_match_golden"], seed=seed,
        extra_env={"LPMAC_ACC_BITS": str(acc_bits), "LPMAC_BLOCK_SIZE": str(block_size),
                   "LPMAC_ACC_ROUNDING": rounding, "LPMAC_ACC_COUNT": str(count)},
        build_name=f"bfp_accumulator-w{acc_bits}-bk{block_size}-{rounding}")
    assert len(result.tests) == 2


@pytest.mark.parametrize("acc_bits,block_size,rounding",
                         [(32, 32, "nearest"), (16, 16, "truncate")])
def test_bfp_accumulator_verilator(acc_bits: int, block_size: int, rounding: str,
                                   sim_seed: int) -> None:
    _run_bfp(acc_bits, block_size, rounding, sim_seed, 20_000)


@pytest.mark.slow
@pytest.mark.parametrize("acc_bits,block_size,rounding",
                         [(16, 32, "nearest"), (24, 16, "nearest"), (24, 32, "truncate"),
                          (32, 16, "truncate"), (32, 32, "truncate"), (16, 16, "nearest")])
def test_bfp_accumulator_verilator_sweep(acc_bits: int, block_size: int, rounding: str,
                                         sim_seed: int) -> None:
    _run_bfp(acc_bits, block_size, rounding, sim_seed, 200_000)


def test_int_accumulator_verilator(sim_seed: int) -> None:
    run_cocotb(IntAccumulator(), "int_accumulator", COCOTB_MODULE,
               testcase="int_matches_golden", seed=sim_seed,
               extra_env={"LPMAC_ACC_COUNT": "5000"}, build_name="int_accumulator")
