"""The bank bookkeeping of the accelerator's double buffers.

`ActivationBankUses` counts the queued or running jobs that read each activation bank, so a
LOAD_ACTIVATIONS / LOAD_SCALES into a bank waits until no job uses it. `AccumulatorBanks`
holds the state of the two accumulator banks. Each owns its registers; the engines change
them through one-cycle strobes.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ActivationBankUses", "AccumulatorBanks"]


class ActivationBankUses(wiring.Component):
    """Jobs per activation bank.

    Ports
    -----
    increment, decrement : In(2)
        One-hot bank masks: a job of that bank was queued / has finished. A decrement
        counts a cycle late (a shorter path; releasing late only makes a load into that
        bank wait a cycle longer).
    idle : Out(2)
        No queued or running job uses the bank (up to 7 jobs per bank are counted; the job
        FIFO holds fewer).
    """

    def __init__(self) -> None:
        super().__init__({"increment": In(2), "decrement": In(2), "idle": Out(2)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        decrement = Signal(2)
        m.d.sync += decrement.eq(self.decrement)
        for bank in range(2):
            uses = Signal(3, name=f"bank_uses_{bank}")
            m.d.sync += uses.eq(uses + self.increment[bank] - decrement[bank])
            m.d.comb += self.idle[bank].eq(uses == 0)
        return m


class AccumulatorBanks(wiring.Component):
    """The two accumulator banks' state: `busy` (being filled or drained), `full` (complete,
    waiting for or in the drain) and `last` (holding the job's last group), a bit per bank.

    Strobes (one cycle, with the bank they name):
    `claim` (the sequencer starts filling `claim_bank`; `claim_last`: with the job's last
    group), `written` (a group's last row was written into `written_bank`: full) and
    `release` (the drain has read all of `release_bank`: free). A claim never names a busy
    bank and a release never a bank that is not busy, so the strobes never conflict; when
    `written` and `release` name the same bank in one cycle (the next group completes as
    the drain ends), `written` wins."""

    def __init__(self) -> None:
        super().__init__({
            **{name: In(1) for name in ("claim", "claim_bank", "claim_last", "written",
                                        "written_bank", "release", "release_bank")},
            **{name: Out(2) for name in ("busy", "full", "last")},
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        with m.If(self.claim):
            m.d.sync += [self.busy.bit_select(self.claim_bank, 1).eq(1),
                         self.last.bit_select(self.claim_bank, 1).eq(self.claim_last)]
        with m.If(self.release):
            m.d.sync += [self.busy.bit_select(self.release_bank, 1).eq(0),
                         self.full.bit_select(self.release_bank, 1).eq(0)]
        with m.If(self.written):
            m.d.sync += self.full.bit_select(self.written_bank, 1).eq(1)
        return m
