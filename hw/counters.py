"""The accelerator's performance counters (READ_COUNTERS, docs/protocol.md).

Five counters, in `host.protocol.COUNTER_NAMES` order: `cycles` counts every cycle; `busy`,
`input_stall`, `output_stall` and `macs` add the accelerator's events of each cycle. Each
counts modulo 2 ** `bits` (`ArrayConfig.counter_bits`); READ_COUNTERS sends them
zero-extended to 64 bits, with `cycles` as it was when the command was decoded.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from host.protocol import COUNTER_NAMES

__all__ = ["PerformanceCounters"]

EVENT_NAMES = COUNTER_NAMES[1:]
"""The counters that add events (`cycles` adds 1 every cycle)."""


class PerformanceCounters(wiring.Component):
    """The five counters of READ_COUNTERS.

    Parameters
    ----------
    bits
        Counter width: they count modulo 2 ** bits.
    macs_bits
        Width of the `macs` increment (MACs of one accepted vector).

    Ports
    -----
    events : In(StructLayout({"busy": 1, "input_stall": 1, "output_stall": 1,
                              "macs": macs_bits}))
        What each counter adds in this cycle. Events are registered before they are
        added (a short path into the adders), so a counter shows them one cycle later.
    clear : In(1)
        Set every counter to zero at the clock edge, dropping the events of this cycle and
        the registered ones of the cycle before.
    snapshot : In(1)
        Copy `cycles` into `cycles_snapshot` at the clock edge.

    Attributes
    ----------
    counters : dict[str, Signal]
        The counter registers by name (`COUNTER_NAMES`).
    cycles_snapshot : Signal
        `cycles` as it was at the last `snapshot`, what READ_COUNTERS sends for it.
    words : list[Signal]
        The values READ_COUNTERS sends, in order: `cycles_snapshot`, then the others.
    """

    def __init__(self, bits: int, macs_bits: int) -> None:
        super().__init__({
            "events": In(data.StructLayout({
                "busy": 1, "input_stall": 1, "output_stall": 1, "macs": unsigned(macs_bits),
            })),
            "clear": In(1),
            "snapshot": In(1),
        })
        self.counters = {name: Signal(bits, name=f"counter_{name}") for name in COUNTER_NAMES}
        self.cycles_snapshot = Signal(bits)
        self.words = [self.cycles_snapshot, *(self.counters[name] for name in EVENT_NAMES)]

    def elaborate(self, platform: object) -> Module:
        m = Module()
        with m.If(self.snapshot):
            m.d.sync += self.cycles_snapshot.eq(self.counters["cycles"])
        cycles = self.counters["cycles"]
        with m.If(self.clear):
            m.d.sync += cycles.eq(0)
        with m.Else():
            m.d.sync += cycles.eq(cycles + 1)
        for name in EVENT_NAMES:
            event = self.events[name]
            pending = Signal(len(event), name=f"pending_{name}")
            counter = self.counters[name]
            with m.If(self.clear):
                m.d.sync += [counter.eq(0), pending.eq(0)]
            with m.Else():
                m.d.sync += [counter.eq(counter + pending), pending.eq(event)]
        return m
