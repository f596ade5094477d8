"""The performance counters READ_COUNTERS reports (docs/protocol.md, "READ_COUNTERS").

cycles, busy (vectors the array accepted), input stall (a vector waits for its weight
tile), output stall (the sequencer waits for an accumulator bank) and MACs, each
`ArrayConfig.counter_bits` wide, wrapping; cleared by CLEAR_COUNTERS and by reset. READ_COUNTERS
snapshots `cycles` only: the decoder takes no new command until the counter words are out,
and the others do not change while nothing runs. Events are registered before they are
added (a short path into the adders); CLEAR_COUNTERS drops the pending ones, as it drops
the events of its own cycle.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, Value

from golden.config import ArrayConfig
from golden.protocol import COUNTER_NAMES

__all__ = ["PerformanceCounters"]


class PerformanceCounters:
    """The counters (`counters`, by name) and the `cycles` snapshot READ_COUNTERS sends."""

    def __init__(self, config: ArrayConfig) -> None:
        self.counters = {name: Signal(config.counter_bits, name=f"counter_{name}")
                         for name in COUNTER_NAMES}
        self.cycles_snapshot = Signal(config.counter_bits)

    @property
    def words(self) -> list[Signal]:
        """What READ_COUNTERS sends, in `COUNTER_NAMES` order."""
        return [self.cycles_snapshot, *(self.counters[name] for name in COUNTER_NAMES[1:])]

    def build(self, m: Module, increments: dict[str, Value], clear: Value,
              snapshot: Value) -> None:
        """Count `increments` (an event value per counter but `cycles`) every cycle; `clear`
        zeroes them, `snapshot` copies `cycles` for READ_COUNTERS."""
        counters, cycles_snapshot = self.counters, self.cycles_snapshot
        increments = {"cycles": Const(1, 1), **increments}
        assert COUNTER_NAMES[0] == "cycles" and set(increments) == set(COUNTER_NAMES)
        with m.If(snapshot):
            m.d.sync += cycles_snapshot.eq(counters["cycles"])
        for name in COUNTER_NAMES:
            if name == "cycles":
                with m.If(clear):
                    m.d.sync += counters[name].eq(0)
                with m.Else():
                    m.d.sync += counters[name].eq(counters[name] + 1)
                continue
            pending = Signal(len(Value.cast(increments[name])), name=f"pending_{name}")
            with m.If(clear):
                m.d.sync += [counters[name].eq(0), pending.eq(0)]
            with m.Else():
                m.d.sync += [counters[name].eq(counters[name] + pending),
                             pending.eq(increments[name])]
