"""The bank bookkeeping of the accelerator's double buffers.

`ActivationBankUses` counts the queued or running jobs that read each activation bank, so
a LOAD_ACTIVATIONS / LOAD_SCALES into a bank waits until no job uses it.
`AccumulatorBanks` holds the state of the two accumulator banks: busy (being filled or
drained), full (complete, waiting for or in the drain) and last (holding the job's last
group).
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, Value

__all__ = ["ActivationBankUses", "AccumulatorBanks"]


class ActivationBankUses:
    """Jobs per activation bank (`uses[bank]`, 3 bits): `increment` and `decrement` are
    one-hot bank masks; a decrement counts a cycle late (a shorter path; releasing late
    only makes a load into that bank wait a cycle longer)."""

    def __init__(self) -> None:
        self.uses = Array(Signal(3, name=f"bank_uses_{b}") for b in range(2))
        self.increment = Signal(2, name="bank_use_inc")
        self.decrement = Signal(2, name="bank_use_dec")

    def build(self, m: Module) -> None:
        bank_uses, bank_use_inc, bank_use_dec = self.uses, self.increment, self.decrement
        bank_use_dec_r = Signal(2)
        m.d.sync += bank_use_dec_r.eq(bank_use_dec)
        for b in range(2):
            m.d.sync += bank_uses[b].eq(bank_uses[b] + bank_use_inc[b] - bank_use_dec_r[b])


class AccumulatorBanks:
    """Per accumulator bank: `busy` (filled or drained), `full` (complete), `last` (the
    job's last group), two bits each."""

    def __init__(self) -> None:
        self.busy = Signal(2, name="acc_busy")
        self.full = Signal(2, name="acc_full")
        self.last = Signal(2, name="acc_last")

    def build_full(self, m: Module, written: Value, bank: Value) -> None:
        """A group's last row written into `bank` (when `written`) makes the bank full."""
        with m.If(written):
            m.d.sync += self.full.bit_select(bank, 1).eq(1)
