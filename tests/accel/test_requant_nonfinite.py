"""Float32 multipliers whose exponent field is 255 (infinity and NaN bit patterns).

docs/protocol.md (LOAD_REQUANT) specifies what the accelerator does with them: the value is
taken as the finite +-2^128 * 1.m, so a non-zero x = wrap32(acc + bias) saturates (to hi,
or lo when x and the multiplier have opposite signs) and x = 0 gives the zero point.
PyTorch never produces such multipliers, but a host that sends garbage, or a COMPUTE that
runs on stale parameters after a lost LOAD_REQUANT (the fuzz test found this), still gets a
defined answer. Both sides are checked against the same rule: the Requantizer unit in the
Amaranth simulator and the reference executor.
"""

from __future__ import annotations

import itertools

import numpy as np

from golden.config import ArrayConfig
from golden.protocol import (
    Opcode,
    Packet,
    Status,
    check_configure,
    encode_configure,
    encode_requant_words,
    parse_responses,
    unpack_results,
)
from golden.reference import ReferenceAccelerator
from hw.requant import Requantizer, RequantRounding
from tests.hw.streams import run_stream_test

PATTERNS = (0x7F800000, 0xFF800000, 0x7FC00001, 0x7F812345, 0xFFFFFFFF)
ACCUMULATORS = (0, 1, -1, 12345, -(2**31), 2**31 - 1)
ZERO_POINT, LO, HI = 5, -8, 7      # int4 outputs


def rule(acc: int, bias: int, bits: int) -> int:
    x = (acc + bias + 2**31) % 2**32 - 2**31
    if x == 0:
        return min(max(ZERO_POINT, LO), HI)
    return LO if (x < 0) != bool(bits >> 31) else HI


def test_requantizer_follows_the_rule(sim_seed: int) -> None:
    cases = [(acc, bias, bits) for acc, bits in itertools.product(ACCUMULATORS, PATTERNS)
             for bias in (0, 7)]
    items = [{"acc": acc, "bias": bias, "multiplier": bits, "shift": 0}
             for acc, bias, bits in cases]
    dut = Requantizer()

    def setup(ctx) -> None:
        ctx.set(dut.config, {"rounding": RequantRounding.FP32, "zero_point": ZERO_POINT,
                             "lo": LO, "hi": HI})

    got = run_stream_test(dut, items, len(items), seed=sim_seed, setup=setup,
                          convert=lambda payload: int(payload.value))
    assert got == [rule(*case) for case in cases]


def test_reference_follows_the_rule() -> None:
    config = ArrayConfig()
    fields = encode_configure(mode="a8w8", out_kind="int4", m=4, k=8, n=8,
                              zero_point=ZERO_POINT)
    bits = np.array([*PATTERNS, 0x3F800000, 0, 0x80000001], dtype=np.int64)
    bias = np.array([0, 7, -3, 0, 1, 2, 0, 9], dtype=np.int64)
    rows = np.array([[0] * 8, [1] * 8, [-1] * 8, [100] * 8], dtype=np.int64)    # A [4, 8]
    activations = [sum((int(v) & 0xFF) << (8 * r) for r, v in enumerate(row)) for row in rows]
    identity = [1 << (8 * r) for r in range(8)]                  # W = I, so acc = A
    beats = []
    for opcode, payload in ((Opcode.CONFIGURE, fields.encode()),
                            (Opcode.LOAD_REQUANT,
                             encode_requant_words(bias, bits, np.zeros(8, np.int64))),
                            (Opcode.LOAD_ACTIVATIONS, activations),
                            (Opcode.COMPUTE, identity)):
        beats += Packet.make(opcode, 0, payload).beats()
    reference = ReferenceAccelerator(config)
    responses = parse_responses([(b.word, b.last) for b in reference.run(beats)])
    assert all(response.ok for response in responses)
    status, _, geometry = check_configure(config, fields)
    assert status == Status.OK
    values, _ = unpack_results(geometry, responses[-1].data)
    got = np.where(values >= 8, values - 16, values)
    for m, n in itertools.product(range(4), range(len(PATTERNS))):
        assert got[m, n] == rule(int(rows[m, n]), int(bias[n]), int(bits[n])), (m, n)
