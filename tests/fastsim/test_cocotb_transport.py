"""The cocotb transport (`sim.cocotb_transport.CocotbTransport`): slow (one simulator run per
exchange, a few seconds each), so one small GEMM, split over two exchanges so that the
state carried between runs is exercised. It must agree with the golden model and, beat for
beat and cycle for cycle, with the Verilator harness transport.
"""

from __future__ import annotations

import numpy as np

from golden.config import ArrayConfig
from golden.protocol import Opcode, parse_responses
from sim.cocotb_transport import CocotbTransport
from sim.fastsim import VerilatorTransport
from tests.accel.scenarios import qlinear_case

CONFIG = ArrayConfig()


def test_small_gemm_over_two_exchanges_matches_golden_and_the_harness(sim_seed: int) -> None:
    rng = np.random.default_rng(sim_seed)
    case = qlinear_case(CONFIG, rng, mode="a8w8", rounding="gemmlowp", out_dtype="int8",
                        shape=(20, 40, 24))
    packets = case.program.packets
    split = next(index for index, packet in enumerate(packets)
                 if packet.header.opcode == Opcode.COMPUTE)
    parts = [[beat for packet in packets[:split] for beat in packet.beats()],
             [beat for packet in packets[split:] for beat in packet.beats()]]
    cocotb = CocotbTransport(CONFIG, progress=print)
    with VerilatorTransport(CONFIG) as fast:
        cocotb_beats, fast_beats = [], []
        for part in parts:
            cocotb_beats += cocotb.exchange(part)
            fast_beats += fast.exchange(part)
            assert cocotb.last_cycles == fast.last_cycles > 0
        assert cocotb.simulated_cycles == fast.simulated_cycles
    cocotb.close()
    assert cocotb_beats == fast_beats
    result = case.program.decode(parse_responses(cocotb_beats))
    assert case.mismatches(case.expected, result) == 0
