"""The performance counters READ_COUNTERS reports (docs/protocol.md, "READ_COUNTERS")."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from golden.config import ArrayConfig
from golden.protocol import COUNTER_NAMES

__all__ = ["PerformanceCounters"]


class PerformanceCounters(wiring.Component):
    """cycles, busy (vectors the array accepted), input stall (a vector waits for its weight
    tile), output stall (the sequencer waits for an accumulator bank) and MACs, each
    `ArrayConfig.counter_bits` wide, wrapping.

    Ports
    -----
    busy, input_stall, output_stall : In(1)
        This cycle's events.
    macs : In(bits_for(2 * R * C))
        MACs performed this cycle.
    clear : In(1)
        CLEAR_COUNTERS: every counter to 0 (the events of this cycle and the pending ones
        are dropped).
    snapshot : In(1)
        READ_COUNTERS: copy `cycles`. The decoder takes no new command until the counter
        words are out, and the others do not change while nothing runs, so only `cycles`
        needs a copy.
    words : Out(ArrayLayout(counter_bits, 5))
        What READ_COUNTERS sends, in `COUNTER_NAMES` order: the `cycles` snapshot, then the
        other counters.

    Events are registered before they are added (a short path into the adders), so a
    counter shows an event two cycles after it. `bits` overrides the counters' width
    (tests use a narrow one to see them wrap)."""

    def __init__(self, config: ArrayConfig, *, bits: int | None = None) -> None:
        self._config = config
        self._bits = config.counter_bits if bits is None else bits
        super().__init__({
            "busy": In(1),
            "input_stall": In(1),
            "output_stall": In(1),
            "macs": In(bits_for(2 * config.rows * config.cols)),
            "clear": In(1),
            "snapshot": In(1),
            "words": Out(data.ArrayLayout(self._bits, len(COUNTER_NAMES))),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        bits = self._bits
        assert COUNTER_NAMES[0] == "cycles"
        cycles = Signal(bits, name="counter_cycles")
        with m.If(self.clear):
            m.d.sync += cycles.eq(0)
        with m.Else():
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(self.snapshot):
            m.d.sync += self.words[0].eq(cycles)
        for index, name in enumerate(COUNTER_NAMES[1:], start=1):
            event = getattr(self, name)
            counter = Signal(bits, name=f"counter_{name}")
            pending = Signal.like(event, name=f"pending_{name}")
            with m.If(self.clear):
                m.d.sync += [counter.eq(0), pending.eq(0)]
            with m.Else():
                m.d.sync += [counter.eq(counter + pending), pending.eq(event)]
            m.d.comb += self.words[index].eq(counter)
        return m
