"""Accumulation: the array's column sums into the accumulator memory (never stalls).

The column sums of a vector read their row of the accumulator memory (lc lanes of int32 in
one wide word), are added in one `IntAccumulator` per lane and written back two cycles later
(three in the fast pipeline, which registers the memory's data first). In the MX modes the
int32 row holds the exact block partial p_b; on the last pass of a block, p_b goes with its
exponent x_b = ca + cb_lane - 254 - fa - fb (cb from the head of the weight-scale FIFO,
popped after the block's last row) into one `BfpAccumulator` per lane, which reads and
writes a second memory of (mantissa, exponent) lanes; the row address and `group_end`
travel alongside its pipeline. The write of a group's last row is `group_written` (with
the bank it fills in `group_bank`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFOBuffered

from golden.config import ArrayConfig
from golden.mx import MX_FORMATS, SCALE_BIAS

from .accumulate import BLOCK_EXPONENT_BITS, BfpAccumulator, IntAccumulator
from .array import SystolicArray
from .configure import ConfigRegisters
from .pe import Mode

__all__ = ["Accumulation"]


def _latency(unit: IntAccumulator | BfpAccumulator) -> int:
    """The `latency` of a unit instantiated only to ask for it."""
    unit._MustUse__used = True  # not elaborated on purpose: no UnusedElaboratable warning
    return unit.latency


class Accumulation:
    """Read-modify-write of the accumulator memories.

    `group_written` / `group_bank`: a group's last row was written into that bank (the bank
    is full); `bfp_busy`: BFP updates are in flight."""

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        self.group_written = Signal()
        self.group_bank = Signal()
        self.bfp_busy = Signal()

    def int_accumulator(self) -> IntAccumulator:
        return IntAccumulator(registered=self._config.registered_acc_reads)

    def int_latency(self) -> int:
        """Cycles of one integer accumulator."""
        return _latency(self.int_accumulator())

    def bfp_latency(self) -> int:
        """Cycles of one BFP accumulator."""
        return _latency(BfpAccumulator(self._config))

    def build(self, m: Module, *, array: SystolicArray, acc_read: object, acc_write: object,
              bfp_read: object, bfp_write: object, bscale_fifo: SyncFIFOBuffered | None,
              c: ConfigRegisters, meta_layout: data.StructLayout, lc_max: int) -> None:
        config = self._config
        has_mx = config.has_mx
        # Stage 0: the array's output addresses the accumulator; stage 1: the memory's data
        # and the partial sums enter the integer accumulators; stage 1 + L (L = their
        # latency): the sums are written back (and enter the BFP accumulators).
        out = array.out.payload
        a1_valid = Signal()
        a1_meta = Signal(meta_layout)
        a1_psum = Signal.like(out.data)
        m.d.sync += [a1_valid.eq(array.out.valid), a1_meta.eq(out.meta), a1_psum.eq(out.data)]
        m.d.comb += [acc_read.addr.eq(out.meta.addr), acc_read.en.eq(1)]
        a_metas = [a1_meta]
        aw_valid = a1_valid             # becomes the write-back stage's
        for stage in range(2, 2 + self.int_latency()):
            delayed_valid = Signal(name=f"a{stage}_valid")
            delayed_meta = Signal(meta_layout, name=f"a{stage}_meta")
            m.d.sync += [delayed_valid.eq(aw_valid), delayed_meta.eq(a_metas[-1])]
            aw_valid = delayed_valid
            a_metas.append(delayed_meta)
        aw_meta = a_metas[-1]
        int_accs = []
        for lane in range(lc_max):
            unit = self.int_accumulator()
            m.submodules[f"int_acc_{lane}"] = unit
            int_accs.append(unit)
            m.d.comb += [
                unit.i_stream.valid.eq(a1_valid),
                unit.i_stream.payload.acc.eq(acc_read.data[lane]),
                unit.i_stream.payload.partial.eq(a1_psum[lane]),
                unit.i_stream.payload.first.eq(a1_meta.first),
                unit.o_stream.ready.eq(1),
                acc_write.data[lane].eq(unit.o_stream.payload.acc),
            ]
        m.d.comb += [acc_write.addr.eq(aw_meta.addr), acc_write.en.eq(aw_valid)]
        group_written = self.group_written
        group_bank = self.group_bank
        m.d.comb += [
            group_written.eq(aw_valid & aw_meta.group_end & ~c.mx),
            group_bank.eq(aw_meta.addr[-1]),
        ]
        bfp_busy = self.bfp_busy
        if has_mx:
            m.d.comb += [bfp_read.addr.eq(a_metas[-2].addr), bfp_read.en.eq(1)]
            fraction = Mux(c.mode == Mode.MXINT8,
                           2 * MX_FORMATS["mxint8"].fraction_bits,
                           2 * MX_FORMATS["mxint4"].fraction_bits)
            bfp_in = aw_valid & aw_meta.last_pass & c.mx   # the MX modes only
            codes_b = bscale_fifo.r_data
            m.d.comb += bscale_fifo.r_en.eq(aw_valid & aw_meta.pop_scale)
            bfp_units = []
            for lane in range(lc_max):
                unit = BfpAccumulator(config)
                m.submodules[f"bfp_acc_{lane}"] = unit
                bfp_units.append(unit)
                exponent = (aw_meta.ca + codes_b[8 * lane:8 * lane + 8]
                            - (2 * SCALE_BIAS) - fraction)
                m.d.comb += [
                    unit.i_stream.valid.eq(bfp_in),
                    unit.i_stream.payload.acc.eq(bfp_read.data[lane]),
                    unit.i_stream.payload.partial.eq(int_accs[lane].o_stream.payload.acc),
                    unit.i_stream.payload.partial_exponent.eq(exponent[:BLOCK_EXPONENT_BITS]),
                    unit.i_stream.payload.first.eq(aw_meta.first_block),
                    unit.o_stream.ready.eq(1),
                    bfp_write.data[lane].eq(unit.o_stream.payload),
                ]
            # The row address and group end travel alongside the BFP pipeline.
            delayed_valid, delayed_addr, delayed_end = bfp_in, aw_meta.addr, aw_meta.group_end
            pending = []
            for stage_index in range(bfp_units[0].latency):
                v = Signal(name=f"bfp_valid_{stage_index}")
                a = Signal(len(aw_meta.addr), name=f"bfp_addr_{stage_index}")
                e = Signal(name=f"bfp_end_{stage_index}")
                m.d.sync += [v.eq(delayed_valid), a.eq(delayed_addr), e.eq(delayed_end)]
                delayed_valid, delayed_addr, delayed_end = v, a, e
                pending.append(v)
            m.d.comb += [
                bfp_write.addr.eq(delayed_addr),
                bfp_write.en.eq(delayed_valid),
                bfp_busy.eq(Cat(pending) != 0),
            ]
            with m.If(delayed_valid & delayed_end):
                m.d.comb += [group_written.eq(1), group_bank.eq(delayed_addr[-1])]
