"""The drain: a full accumulator bank, read row by row, one element per cycle.

For each row it reads the group's lc * group columns in order, together with each
channel's requantization parameters and, in the MX modes, the BFP value, and offers them as
the `drained` stream (`drain_layout`: the int32 value, the parameters, the BFP value and
whether the element ends an MX block) to the output units. The bank is released as soon as
its last element has been read, so the sequencer can refill it while the last elements are
still in the units. In the fast pipeline the memories' words pass through a `SkidBuffer`,
then the lane's element through a second one, so neither a memory's output nor the lane
multiplexer sits on a long path, and the units' `ready` only enables the second buffer's
output register.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream

from golden.config import ArrayConfig

from .arith import SkidBuffer
from .banks import AccumulatorBanks
from .configure import ConfigRegisters

__all__ = ["Drain"]


class Drain:
    """Full accumulator banks -> `drained` elements.

    `d1_valid` and `skid_busy`: what is still in flight between the memories and
    `drained`."""

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        self.skid_busy: list[Signal] = []

    def build_reader(self, m: Module, *, banks: AccumulatorBanks, c: ConfigRegisters,
                     acc_drain: object, bfp_drain: object, requant_read: object,
                     lc_max: int) -> None:
        """The drain's counters and the memories' read ports."""
        config = self._config
        cols = config.cols
        block = config.block_size
        acc_half = config.accumulator_bank_depth
        acc_busy, acc_full, acc_last = banks.busy, banks.full, banks.last
        draining = Signal()
        drain_select = Signal()
        drain_last = Signal()
        d_row = Signal.like(c.m_last)
        d_tile = Signal(range(max(2, block // cols + 1)))
        d_lane = Signal(range(lc_max))
        d_tile_base = Signal(range(acc_half + 1))
        channel = Signal(range(config.requant_depth + lc_max * 4 + 1))
        channel_base = Signal(range(config.requant_depth + lc_max * 4 + 1))
        self.d1_valid = d1_valid = Signal()
        self.d1_lane = d1_lane = Signal(range(lc_max))
        self.d1_block_end = d1_block_end = Signal()
        self.d1_ready = d1_ready = Signal()
        d_advance = Signal()
        m.d.comb += d_advance.eq(~d1_valid | d1_ready)
        d_step = Signal()
        m.d.comb += d_step.eq(draining & d_advance)

        # Each drain counter keeps an "at its last value" flag (registered), so the step
        # that ends a bank decodes three flags, not three comparisons, after `d_step`.
        lane_end = Signal()
        tile_end = Signal()
        row_end = Signal()
        with m.If(~draining & acc_full.bit_select(drain_select, 1)):
            m.d.sync += [
                draining.eq(1), drain_last.eq(acc_last.bit_select(drain_select, 1)),
                d_row.eq(0), d_tile.eq(0), d_lane.eq(0), d_tile_base.eq(0),
                channel.eq(channel_base), lane_end.eq(c.lc == 1),
                tile_end.eq(c.group_last == 0), row_end.eq(c.m_last == 0),
            ]
        drain_address = drain_select * acc_half + d_tile_base + d_row
        m.d.comb += [acc_drain.addr.eq(drain_address), acc_drain.en.eq(d_advance)]
        if config.has_mx:
            m.d.comb += [bfp_drain.addr.eq(drain_address), bfp_drain.en.eq(d_advance)]
        if config.has_requantizer:
            m.d.comb += [requant_read.addr.eq(channel), requant_read.en.eq(d_advance)]
        with m.If(d_advance):
            m.d.sync += d1_valid.eq(d_step)
        with m.If(d_step):
            m.d.sync += [d1_lane.eq(d_lane), d1_block_end.eq(lane_end & tile_end)]
            with m.If(~lane_end):
                m.d.sync += [d_lane.eq(d_lane + 1), channel.eq(channel + 1),
                             lane_end.eq(d_lane + 2 == c.lc)]
            with m.Else():
                m.d.sync += [d_lane.eq(0), lane_end.eq(c.lc == 1)]
                with m.If(~tile_end):
                    m.d.sync += [d_tile.eq(d_tile + 1), d_tile_base.eq(d_tile_base + c.m),
                                 channel.eq(channel + 1), tile_end.eq(d_tile + 1 == c.group_last)]
                with m.Else():
                    m.d.sync += [d_tile.eq(0), d_tile_base.eq(0), channel.eq(channel_base),
                                 tile_end.eq(c.group_last == 0)]
                    with m.If(~row_end):
                        m.d.sync += [d_row.eq(d_row + 1), row_end.eq(d_row + 1 == c.m_last)]
                    with m.Else():
                        # Last read issued: the bank may be refilled (the data is latched).
                        m.d.sync += [
                            draining.eq(0),
                            drain_select.eq(~drain_select),
                            acc_busy.bit_select(drain_select, 1).eq(0),
                            acc_full.bit_select(drain_select, 1).eq(0),
                            channel_base.eq(Mux(drain_last, 0,
                                                channel_base + (c.lc << c.group_log2))),
                        ]

    def build_lanes(self, m: Module, *, acc_drain: object, bfp_drain: object,
                    requant_read: object) -> None:
        """The element of the lane at hand, as the `drained` stream."""
        config = self._config
        has_mx, has_requant = config.has_mx, config.has_requantizer
        fast = config.pipeline == "fast"
        d1_valid, d1_ready = self.d1_valid, self.d1_ready
        # d1 holds the memories' read data. In the compact pipeline the output units take
        # the lane's value (with its requantization parameters and BFP value) from there.
        # The fast pipeline hands the memories' whole words to a skid buffer (registers
        # with a registered `ready`: the units' `ready` does not reach the drain counters,
        # and no logic follows a memory's output), then the lane's value through a second
        # one (d2): no lane multiplexer precedes a unit, and the units' `ready`, through the
        # output-kind multiplexer, only enables d2's output register.
        source = {"lane": self.d1_lane, "block_end": self.d1_block_end, "acc": acc_drain.data}
        if has_requant:
            source["params"] = requant_read.data
        if has_mx:
            source["bfp"] = bfp_drain.data
        source_valid, source_ready = d1_valid, d1_ready
        if fast:
            words_skid = SkidBuffer(data.StructLayout(
                {name: value.shape() for name, value in source.items()}))
            m.submodules.words_skid = words_skid
            m.d.comb += [words_skid.i_stream.valid.eq(d1_valid),
                         d1_ready.eq(words_skid.i_stream.ready)]
            m.d.comb += [getattr(words_skid.i_stream.payload, name).eq(value)
                         for name, value in source.items()]
            words = words_skid.o_stream
            source = {name: getattr(words.payload, name) for name in source}
            source_valid, source_ready = words.valid, words.ready
            self.skid_busy.append(words_skid.busy)
        drain_fields: dict[str, object] = {"value": signed(32), "block_end": unsigned(1)}
        if has_requant:
            drain_fields["params"] = requant_read.data.shape()
        if has_mx:
            drain_fields["bfp"] = bfp_drain.data.shape().elem_shape
        drain_layout = data.StructLayout(drain_fields)
        lane_values = Signal(drain_layout)
        m.d.comb += [lane_values.block_end.eq(source["block_end"]),
                     lane_values.value.eq(source["acc"][source["lane"]])]
        if has_requant:
            m.d.comb += lane_values.params.eq(source["params"])
        if has_mx:
            m.d.comb += lane_values.bfp.eq(source["bfp"][source["lane"]])
        if fast:
            lane_skid = SkidBuffer(drain_layout)
            m.submodules.lane_skid = lane_skid
            m.d.comb += [lane_skid.i_stream.valid.eq(source_valid),
                         lane_skid.i_stream.payload.eq(lane_values),
                         source_ready.eq(lane_skid.i_stream.ready)]
            self.skid_busy.append(lane_skid.busy)
            drained = lane_skid.o_stream
        else:       # the units take the lane straight from the memories
            drained = stream.Signature(drain_layout).create()
            m.d.comb += [drained.valid.eq(source_valid), drained.payload.eq(lane_values),
                         source_ready.eq(drained.ready)]
        self.drained = drained
