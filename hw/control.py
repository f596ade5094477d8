"""Small control-path helpers shared by the accelerator's engines."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib.fifo import SyncFIFOBuffered

__all__ = ["registered_room", "first_failure"]


def registered_room(m: Module, fifo: SyncFIFOBuffered, name: str, spare: int = 2) -> Signal:
    """A register that is high when `fifo` can take a word: one cycle late, and the
    buffered FIFO's output register aside, so it keeps `spare` slots spare (two; three for
    a writer whose words go through one more register). A writer gated by it has a short
    path to its `ready` (no FIFO level arithmetic)."""
    room = Signal(name=name)
    m.d.sync += room.eq(fifo.level < fifo.depth - spare)
    return room


def first_failure(m: Module, checks: list, flags: Signal) -> tuple[Signal, Signal]:
    """(status, field) of the first of `checks` ((status, field, condition) in priority
    order) whose flag is set in `flags`; OK and NONE when none is."""
    code = Signal(4)
    field = Signal(4)
    for index, (status, which, _) in reversed(list(enumerate(checks))):
        with m.If(flags[index]):
            m.d.comb += [code.eq(status), field.eq(which)]
    return code, field
