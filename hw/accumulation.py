"""Accumulation: the array's column sums into the accumulator memory (never stalls).

The column sums of a vector read their row of the accumulator memory (lc lanes of int32 in
one wide word), are added in one `IntAccumulator` per lane and written back two cycles later
(three in the fast pipeline, which registers the memory's data first). In the MX modes the
int32 row holds the exact block partial p_b; on the last pass of a block, p_b goes with its
exponent x_b = ca + cb_lane - 254 - fa - fb (cb from the head of the weight-scale stream,
taken after the block's last row) into one `BfpAccumulator` per lane, which reads and
writes a second memory of (mantissa, exponent) lanes; the row address and `group_end`
travel alongside its pipeline.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.config import MODE_INFO, MODES, ArrayConfig
from golden.mx import MX_FORMATS, SCALE_BIAS

from .accumulate import (
    ACC_EXPONENT_BITS,
    BLOCK_EXPONENT_BITS,
    BfpAccumulator,
    IntAccumulator,
    bfp_layout,
    unit_latency,
)
from .configure import config_layout
from .pe import Mode

__all__ = ["Accumulation", "accumulator_row", "bfp_row", "scale_row_words"]


def accumulator_row(config: ArrayConfig) -> data.ArrayLayout:
    """A row of the accumulator memory: one int32 per lane."""
    return data.ArrayLayout(signed(32), config.lane_columns)


def bfp_row(config: ArrayConfig) -> data.ArrayLayout:
    """A row of the BFP memory (MX builds): one (mantissa, exponent) per lane."""
    return data.ArrayLayout(bfp_layout(config.acc_bits, ACC_EXPONENT_BITS), config.lane_columns)


def scale_row_words(config: ArrayConfig) -> int:
    """Words of weight scale codes per (N-tile, K-block): one code per lane, 8 per word."""
    return -(-config.lane_columns // 8)


class Accumulation(wiring.Component):
    """Read-modify-write of the accumulator memories.

    Ports
    -----
    columns : In(the array's output stream)
        The column sums of each vector and its `meta` tag; always taken.
    acc_read, acc_write : the accumulator memory's read-modify-write ports.
    bfp_read, bfp_write : the BFP memory's (MX builds).
    scales : In(stream.Signature(64 * scale_row_words))
        MX builds: each K-block's weight scale codes, one per lane; taken after the block's
        last row has been added (the payload is read when it is taken; it is there by then).
    config : In(config_layout(config))
    written, written_bank : Out(1)
        One cycle: a group's last row was written into that bank (the bank is full).
    busy : Out(1)
        BFP updates are in flight.

    Latency: a vector's sums are written back `int_latency + 1` cycles after the array
    offers them (and `bfp_latency` cycles later into the BFP memory)."""

    def __init__(self, config: ArrayConfig, columns: stream.Signature) -> None:
        self._config = config
        addr_width = ceil_log2(config.accumulator_depth)
        members = {
            "columns": In(columns),
            "acc_read": In(ReadPort.Signature(addr_width=addr_width,
                                              shape=accumulator_row(config))),
            "acc_write": In(WritePort.Signature(addr_width=addr_width,
                                                shape=accumulator_row(config))),
            "config": In(config_layout(config)),
            "written": Out(1),
            "written_bank": Out(1),
            "busy": Out(1),
        }
        if config.has_mx:
            members.update({
                "bfp_read": In(ReadPort.Signature(addr_width=addr_width, shape=bfp_row(config))),
                "bfp_write": In(WritePort.Signature(addr_width=addr_width,
                                                    shape=bfp_row(config))),
                "scales": In(stream.Signature(64 * scale_row_words(config))),
            })
        super().__init__(members)

    def int_accumulator(self) -> IntAccumulator:
        return IntAccumulator(registered=self._config.registered_acc_reads)

    @property
    def int_latency(self) -> int:
        """Cycles of one integer accumulator."""
        return unit_latency(self.int_accumulator())

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config, c = self._config, self.config
        lc_max = config.lane_columns
        acc_read, acc_write = self.acc_read, self.acc_write
        meta_layout = self.columns.payload.meta.shape()
        # Stage 0: the array's output addresses the accumulator; stage 1: the memory's data
        # and the partial sums enter the integer accumulators; stage 1 + L (L = their
        # latency): the sums are written back (and enter the BFP accumulators).
        out = self.columns.payload
        m.d.comb += self.columns.ready.eq(1)
        a1_valid = Signal()
        a1_meta = Signal(meta_layout)
        a1_psum = Signal.like(out.data)
        m.d.sync += [a1_valid.eq(self.columns.valid), a1_meta.eq(out.meta),
                     a1_psum.eq(out.data)]
        m.d.comb += [acc_read.addr.eq(out.meta.addr), acc_read.en.eq(1)]
        a_metas = [a1_meta]
        aw_valid = a1_valid             # becomes the write-back stage's
        for stage in range(2, 2 + self.int_latency):
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
        m.d.comb += [
            self.written.eq(aw_valid & aw_meta.group_end & ~c.mx),
            self.written_bank.eq(aw_meta.addr[-1]),
        ]
        if config.has_mx:
            self._bfp(m, aw_valid, aw_meta, a_metas[-2], int_accs)
        return m

    def _bfp(self, m: Module, aw_valid: Signal, aw_meta: data.View, read_meta: data.View,
             int_accs: list[IntAccumulator]) -> None:
        """The BFP update of each lane on the last pass of a K-block."""
        config, c = self._config, self.config
        bfp_read, bfp_write = self.bfp_read, self.bfp_write
        m.d.comb += [bfp_read.addr.eq(read_meta.addr), bfp_read.en.eq(1)]
        # fa + fb of the MX mode at hand: its two formats' fraction bits.
        mx_modes = [name for name in MODES if MODE_INFO[name].mx]
        fractions = {name: sum(MX_FORMATS[fmt].fraction_bits
                               for fmt in MODE_INFO[name].mx_formats) for name in mx_modes}
        fraction = fractions[mx_modes[-1]]
        for name in reversed(mx_modes[:-1]):
            fraction = Mux(c.mode == Mode.from_name(name), fractions[name], fraction)
        offset = None
        if config.pipeline == "fast":
            # -2 bias - (fa + fb) registered: the mode's multiplexer and the configuration
            # register, wherever it sits, off the lanes' exponent adders (an ECP5 critical
            # path). The mode only changes while the accelerator is idle, many cycles
            # before a block; the exponent is taken modulo 2^BLOCK_EXPONENT_BITS.
            offset = Signal(signed(BLOCK_EXPONENT_BITS + 2), name="exponent_offset",
                            reset_less=True)
            m.d.sync += offset.eq(-(2 * SCALE_BIAS) - fraction)
        bfp_in = aw_valid & aw_meta.last_pass & c.mx   # the MX modes only
        codes_b = self.scales.payload
        m.d.comb += self.scales.ready.eq(aw_valid & aw_meta.pop_scale)
        bfp_units = []
        for lane in range(config.lane_columns):
            unit = BfpAccumulator(config)
            m.submodules[f"bfp_acc_{lane}"] = unit
            bfp_units.append(unit)
            if offset is None:
                exponent = (aw_meta.ca + codes_b[8 * lane:8 * lane + 8]
                            - (2 * SCALE_BIAS) - fraction)
            else:
                exponent = aw_meta.ca + codes_b[8 * lane:8 * lane + 8] + offset
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
            self.busy.eq(Cat(pending) != 0),
        ]
        with m.If(delayed_valid & delayed_end):
            m.d.comb += [self.written.eq(1), self.written_bank.eq(delayed_addr[-1])]
