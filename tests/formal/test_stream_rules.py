"""Formal proofs: every streaming unit's output obeys the `amaranth.lib.stream` rules.

For each unit, a harness drives every input stream with arbitrary *legal* traffic
(`free_stream_input`: valid and payload free every cycle, assumed to follow the stream
rules), every other input port (per-GEMM configuration, formats) with a value that may
change in any cycle, every output stream's `ready` with a free value, and the sync reset
is free too. It asserts on every output stream (`stream_rules`): once `valid` is high and
`ready` low, the next cycle still has `valid` high and the same payload, unless reset.

* `prove` (default run): k-induction, k = 2, an unbounded proof from reset;
* `cover` (default run): a stalled output (`valid & ~ready`) is reachable, so the
  assertion is not vacuous;
* `bmc` (slow): bounded model check to `latency + 10` cycles, an independent
  cross-check of the induction result (which already covers every depth).

Widths are kept small with a 2 x 2 `ArrayConfig`, W = 16 and 16-element MX blocks (and
two-entry buffers for the whole accelerator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from amaranth.asserts import AnySeq
from amaranth.hdl import Elaboratable, Module, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In

from golden.config import ArrayConfig
from hw.accelerator import Accelerator
from hw.accumulate import BfpAccumulator, IntAccumulator
from hw.array import SystolicArray
from hw.mxout import BfpToFloat32, MxQuantizer
from hw.packer import ResultPacker
from hw.requant import Requantizer
from sim.formal import check_formal, free_stream_input, stream_rules

SMALL = ArrayConfig(rows=2, cols=2, block_size=16, acc_bits=16)
SMALL_BUFFERS = SMALL.replace(weight_buffer_depth=2, activation_buffer_depth=2,
                              accumulator_depth=2)


@dataclass(frozen=True)
class Unit:
    """A unit under test. latency: cycles until its first output can appear, when the unit
    has no `latency` property; heavy: its cover check belongs to the slow set; bmc: run the
    (redundant) BMC cross-check."""

    name: str
    make: Callable[[], wiring.Component]
    latency: int | None = None
    heavy: bool = False
    bmc: bool = True


UNITS = [
    Unit("requantizer", Requantizer),
    Unit("int_accumulator", IntAccumulator),
    Unit("bfp_accumulator", lambda: BfpAccumulator(SMALL)),
    Unit("bfp_to_float32", lambda: BfpToFloat32(SMALL)),
    Unit("mx_quantizer", lambda: MxQuantizer(SMALL)),
    Unit("systolic_array", lambda: SystolicArray(SMALL)),
    Unit("systolic_array_packed", lambda: SystolicArray(SMALL, multiplier="packed")),
    Unit("result_packer", ResultPacker),
    # The whole accelerator with two-entry buffers; a stalled response is reachable in 5
    # cycles from reset, hence the latency given here.
    # No BMC: 14 cycles of the whole accelerator take z3 about 20 minutes.
    Unit("accelerator", lambda: Accelerator(SMALL_BUFFERS), latency=4, heavy=True, bmc=False),
]


class StreamRulesHarness(Elaboratable):
    """Legal, arbitrary traffic on every input of `dut`; the stream rules asserted on every
    output stream."""

    def __init__(self, dut: wiring.Component) -> None:
        self.dut = dut

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.dut = dut = self.dut
        outputs = 0
        for name, member in dut.signature.members.items():
            port = getattr(dut, name)
            is_stream = member.is_signature and isinstance(member.signature, stream.Signature)
            if is_stream and member.flow == In:
                free_stream_input(m, port, name=name)
            elif is_stream:
                m.d.comb += port.ready.eq(AnySeq(1))
                stream_rules(m, port, name=name)
                outputs += 1
            elif member.flow == In:
                value = Value.cast(port)
                m.d.comb += value.eq(AnySeq(len(value)))
        assert outputs, f"{type(dut).__name__} has no output stream"
        return m


def _latency(unit: Unit, dut: wiring.Component) -> int:
    return unit.latency if unit.latency is not None else int(dut.latency)


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_stream_rules_prove(unit: Unit) -> None:
    check_formal(StreamRulesHarness(unit.make()), name=f"stream-rules-{unit.name}",
                 mode="prove", depth=2, timeout=300)


@pytest.mark.parametrize("unit", [
    pytest.param(unit, marks=[pytest.mark.slow] if unit.heavy else []) for unit in UNITS],
    ids=lambda unit: unit.name)
def test_stream_rules_not_vacuous(unit: Unit) -> None:
    dut = unit.make()
    check_formal(StreamRulesHarness(dut), name=f"stream-rules-cover-{unit.name}",
                 mode="cover", depth=_latency(unit, dut) + 2, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("unit", [unit for unit in UNITS if unit.bmc],
                         ids=lambda unit: unit.name)
def test_stream_rules_bmc(unit: Unit) -> None:
    dut = unit.make()
    check_formal(StreamRulesHarness(dut), name=f"stream-rules-bmc-{unit.name}", mode="bmc",
                 depth=_latency(unit, dut) + 10, timeout=1800)
