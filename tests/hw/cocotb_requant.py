"""Requantizer vectors, golden expectations and cocotb tests (run by test_requant.py).

Driver -> Monitor -> Model -> Checker: a StreamSource drives `i_stream` with random idle
gaps, a StreamSink drains `o_stream` with random backpressure, monitors on both streams
check the valid/ready rules, and a Scoreboard compares every output, in order, with the
golden `requantize` of the same vector (computed in bulk up front).

Environment: LPMAC_REQUANT_COUNT (vectors per rounding mode and output setting).
"""

from __future__ import annotations

import functools
import os
import random

import cocotb
import numpy as np

from golden.requant import RequantParams, output_range, requantize
from hw.requant import Requantizer, RequantRounding
from sim.cocotb_streams import (
    StreamBench,
    random_pauses,
    reset_dut,
    start_clock,
)
from sim.lanes import to_signed
from tests.hw.payloads import StructCodec

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# (out_dtype, zero_point, relu): every clamp the unit sees in the tests.
OUTPUT_SETTINGS = [
    ("uint8", 128, False),
    ("int8", 0, False),
    ("int8", -5, True),
    ("int4", 3, False),
    ("uint8", 0, True),
    ("int4", -8, False),
]


def _wrap32(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).astype(np.int32).astype(np.int64)


def _f32_bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.int64)


@functools.cache
def double_rounding_cases(count: int = 400) -> tuple[tuple[int, int, int], ...]:
    """(Mx, Ms, E): 24-bit normalised mantissas whose exact product Mx * Ms * 2^E is
    k + 0.5 +- half a float32 ulp, so that RNE to float32 lands on k + 0.5 (a tie of the
    integer rounding) while the exact value is no tie: double-rounding cases that a
    single rounding gets wrong.

    With Mx = 2^a u, Ms = 2^b v (u, v odd, a + b = drop - 1) the product is
    2^(drop-1) u v, and u v = (2k + 1) 2^(24 - ib) +- 1 (ib = bits of k) makes it
    r24 * 2^drop +- 2^(drop - 1) with r24 = (2k + 1) 2^(23 - ib), an even 24-bit
    mantissa: a tie that rounds to r24, whose value is k + 0.5."""
    rng = random.Random(20240601)
    cases: list[tuple[int, int, int]] = []
    while len(cases) < count:
        drop = rng.choice((23, 24))
        integer_bits = rng.randint(1, 8)
        sign = rng.choice((-1, 1))
        b = rng.randint(0, drop - 1)
        a = drop - 1 - b
        u = rng.randrange(1 << (23 - a), 1 << (24 - a)) | 1
        modulus = 1 << (25 - integer_bits)
        target = (sign + (1 << (24 - integer_bits))) % modulus
        v = target * pow(u, -1, modulus) % modulus
        v += modulus * -(-((1 << (23 - b)) - v) // modulus) if v < (1 << (23 - b)) else 0
        if not (1 << (23 - b)) <= v < (1 << (24 - b)):
            continue
        quotient = (u * v - sign) >> (24 - integer_bits)
        k = (quotient - 1) // 2
        if quotient % 2 != 1 or k.bit_length() != integer_bits:
            continue
        cases.append((u << a, v << b, integer_bits - 24 - drop))
    return tuple(cases)


def requant_vectors(seed: int, count: int, rounding: str) -> dict[str, np.ndarray]:
    """`count` vectors (acc, bias, multiplier bits, shift) for `rounding`: random values
    scaled into the interesting output range, random bit patterns, exact ties of every
    rounding step, saturation and the int32 extremes."""
    rng = np.random.default_rng(seed)
    kind = rng.random(count)
    magnitude = np.exp2(rng.uniform(0, 31, count))
    x = _wrap32(np.round(magnitude * rng.choice([-1, 1], count)))
    bias = np.where(rng.random(count) < 0.5, 0, rng.integers(-2**20, 2**20, count))
    bias = np.where(rng.random(count) < 0.05, rng.integers(INT32_MIN, INT32_MAX, count,
                                                           endpoint=True), bias)
    target = rng.uniform(0, 400, count)  # |x * s| aimed at a non-saturating output
    shift = np.zeros(count, dtype=np.int64)
    corners_x = np.array([INT32_MIN, INT32_MAX, 0, 1, -1, 127, -128, 7, -8, 2**24 + 1,
                          -(2**24 + 1), 2**24 - 1, 2**25 + 3, 255, 256, -255, 65535])
    if rounding == "fp32":
        s = np.maximum(target / np.maximum(np.abs(x), 1), 1e-30).astype(np.float32)
        bits = _f32_bits(s)
        # random finite bit patterns, including subnormals and negative multipliers
        random_bits = rng.integers(1, 0x7F800000, count)
        bits = np.where((kind >= 0.40) & (kind < 0.50), random_bits, bits)
        bits = np.where((kind >= 0.50) & (kind < 0.55), rng.integers(1, 0x800000, count), bits)
        bits = np.where((kind >= 0.55) & (kind < 0.57), bits | (1 << 31), bits)
        # exact integer ties: s = 2^-j, x = (2k + 1) * 2^(j - 1)
        j = rng.integers(1, 22, count)
        k = rng.integers(-300, 300, count)
        tie = (kind >= 0.57) & (kind < 0.72)
        x = np.where(tie, _wrap32((2 * k + 1) << (j - 1)), x)
        bits = np.where(tie, _f32_bits(np.ldexp(np.float32(1), -j)), bits)
        # double rounding: fl32(x) * s rounds onto k + 0.5
        cases = np.array(double_rounding_cases(), dtype=np.int64)
        pick = cases[rng.integers(0, len(cases), count)]
        x_shift = rng.integers(0, 8, count)  # x = Mx << x_shift (exact in float32)
        s_exp = pick[:, 2] - x_shift  # s = Ms * 2^s_exp
        s_bits = ((s_exp + 23 + 127) << 23) | (pick[:, 1] & 0x7FFFFF)
        double = (kind >= 0.72) & (kind < 0.82)
        x = np.where(double, _wrap32(pick[:, 0] << x_shift) * rng.choice([-1, 1], count), x)
        bits = np.where(double, s_bits, bits)
        # ties of int32 -> float32: x = M 2^t + 2^(t-1), M = (2n + 1) 2^a even, and
        # s = 2^-(a + t + 1) make fl32(x) * s = n + 0.5 exactly (RNE of x keeps M); a
        # conversion that rounds half up gives n + 0.5 + 2^-(a+1) instead
        n = rng.integers(0, 300, count)
        odd = 2 * n + 1
        a = 24 - (np.floor(np.log2(odd)).astype(np.int64) + 1)
        t = rng.integers(1, 8, count)
        conversion = (kind >= 0.82) & (kind < 0.88)
        x = np.where(conversion, ((odd << a) << t) + (1 << (t - 1)), x)
        x = np.where(conversion & (rng.random(count) < 0.5), -x, x)
        bits = np.where(conversion, (127 - (a + t + 1)) << 23, bits)
        # corner values of x and s
        corner = kind >= 0.92
        x = np.where(corner, rng.choice(corners_x, count), x)
        corner_s = _f32_bits(np.array([1.0, 0.5, 2.0**-31, 2.0**-126, 3.4e38, 1.5, 2.0**-24,
                                       0.25, 0.75, 1e-45, 2.0**-149 * 3], dtype=np.float32))
        bits = np.where(corner & (rng.random(count) < 0.7), rng.choice(corner_s, count), bits)
        bits = np.where(rng.random(count) < 0.002, 0, bits)  # s = +0
    else:
        real = np.clip(target / np.maximum(np.abs(x), 1), 2.0**-40, 2.0**20)
        fraction, exponent = np.frexp(real)
        q31 = np.minimum(np.round(fraction * 2.0**31), 2**31 - 1).astype(np.int64)
        shift = np.clip(exponent, -31, 30).astype(np.int64)
        random_q = rng.integers(1 << 30, 1 << 31, count)
        random_shift = rng.integers(-32, 32, count)  # the port's whole range
        scramble = (kind >= 0.40) & (kind < 0.55)
        q31 = np.where(scramble, random_q, q31)
        shift = np.where(scramble, random_shift, shift)
        # SRDHM ties: q31 = 2^30 halves x, odd x is a tie (both signs)
        srdhm_tie = (kind >= 0.55) & (kind < 0.65)
        q31 = np.where(srdhm_tie, 1 << 30, q31)
        x = np.where(srdhm_tie, 2 * rng.integers(-(2**20), 2**20, count) + 1, x)
        shift = np.where(srdhm_tie, rng.integers(-3, 1, count), shift)
        # RDBPOT ties: high = (2j + 1) * 2^(right - 1) exactly
        right = rng.integers(1, 24, count)
        odd = 2 * rng.integers(-300, 300, count) + 1
        rdbpot_tie = (kind >= 0.65) & (kind < 0.80)
        q31 = np.where(rdbpot_tie, 1 << 30, q31)
        x = np.where(rdbpot_tie, _wrap32(odd << right), x)
        shift = np.where(rdbpot_tie, -right, shift)
        # saturation: SRDHM(INT32_MIN, INT32_MIN), wrapping left shifts, q31 = 0
        sat = (kind >= 0.80) & (kind < 0.84)
        left = rng.integers(0, 4, count)
        q31 = np.where(sat, INT32_MIN, q31)
        x = np.where(sat, INT32_MIN >> left, x)
        shift = np.where(sat, np.where(rng.random(count) < 0.5, left, -rng.integers(0, 32,
                                                                                     count)),
                         shift)
        wrap = (kind >= 0.84) & (kind < 0.88)
        shift = np.where(wrap, rng.integers(1, 31, count), shift)
        corner = kind >= 0.92
        x = np.where(corner, rng.choice(corners_x, count), x)
        q31 = np.where(rng.random(count) < 0.005, 0, q31)
        q31 = np.where(rng.random(count) < 0.01, rng.integers(INT32_MIN, INT32_MAX, count,
                                                              endpoint=True), q31)
        bits = q31 & 0xFFFFFFFF
    acc = _wrap32(x - bias)
    return {"acc": acc, "bias": bias, "multiplier": bits, "shift": shift}


def requant_expected(vectors: dict[str, np.ndarray], rounding: str, out_dtype: str,
                     zero_point: int, relu: bool) -> np.ndarray:
    """The golden outputs of `vectors` (int64)."""
    if rounding == "fp32":
        multiplier = vectors["multiplier"].astype(np.uint32).view(np.float32)
        shift = None
    else:
        multiplier = _wrap32(vectors["multiplier"])
        shift = vectors["shift"]
    params = RequantParams(rounding, multiplier, shift, vectors["bias"], zero_point, out_dtype,
                           relu)
    with np.errstate(over="ignore", invalid="ignore"):
        return requantize(vectors["acc"], params).astype(np.int64)


def requant_config_value(rounding: str, out_dtype: str, zero_point: int,
                         relu: bool) -> dict[str, int]:
    lo, hi = output_range(out_dtype, zero_point, relu)
    mode = RequantRounding.FP32 if rounding == "fp32" else RequantRounding.GEMMLOWP
    return {"rounding": mode.value, "zero_point": zero_point, "lo": lo, "hi": hi}


@cocotb.test()
async def requant_matches_golden(dut):
    """Every output equals golden `requantize`, for both rounding modes and every output
    setting, under random valid gaps and ready backpressure."""
    seed = cocotb.RANDOM_SEED
    count = int(os.environ.get("LPMAC_REQUANT_COUNT", "1000"))
    dut._log.info("seed %d, at least %d vectors per rounding mode", seed, count)
    start_clock(dut)
    await reset_dut(dut)
    layouts = Requantizer()
    payload = StructCodec(layouts.input_layout)
    config = StructCodec(layouts.config_layout)
    out_width = layouts.output_layout.size
    settings = [(rounding, *setting) for rounding in ("fp32", "gemmlowp")
                for setting in OUTPUT_SETTINGS]
    # Ceiling division: each rounding mode sees at least `count` vectors in all.
    per_setting = max(1, -(-count * 2 // len(settings)))
    for index, (rounding, out_dtype, zero_point, relu) in enumerate(settings):
        vectors = requant_vectors(seed + index, per_setting, rounding)
        expected = requant_expected(vectors, rounding, out_dtype, zero_point, relu)
        dut.config.value = config.pack(requant_config_value(rounding, out_dtype, zero_point,
                                                            relu))
        names = list(vectors)  # inputs are reported as (acc, bias, multiplier, shift)
        rows = list(zip(*(vectors[name].tolist() for name in names), strict=True))
        items = [payload.pack(dict(zip(names, row, strict=True))) for row in rows]
        bench = StreamBench(dut, lambda p: to_signed(p, out_width),
                            name=f"requant-{rounding}-{out_dtype}-{zero_point}-{relu}",
                            source_pauses=random_pauses(0.2, seed * 7 + index),
                            sink_pauses=random_pauses(0.2, seed * 11 + index))
        for row, value in zip(rows, expected.tolist(), strict=True):
            bench.scoreboard.add_expected(value, inputs=row)
        bench.source.send_all(items)
        await bench.sink.wait_for(per_setting, timeout_cycles=20 * per_setting + 200)
        await bench.finish(dut, 20)
