"""The drain: a full accumulator bank, read row by row, one element per cycle.

For each row it reads the group's lc * group columns in order, together with each
channel's requantization parameters and, in the MX modes, the BFP value, and offers them on
`drained` (`drain_layout`) to the output units. The bank is released as soon as its last
element has been read, so the sequencer can refill it while the last elements are still on
their way. In the fast pipeline the memories' words pass through a `SkidBuffer`, then the
lane's element through a second one, so neither a memory's output nor the lane multiplexer
sits on a long path, and the units' `ready` only enables the second buffer's output
register.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.config import ArrayConfig

from .accumulate import ACC_EXPONENT_BITS, bfp_layout
from .accumulation import accumulator_row, bfp_row
from .arith import SkidBuffer
from .configure import config_layout
from .requant import CHANNEL_PARAMS

__all__ = ["Drain", "drain_layout"]


def drain_layout(config: ArrayConfig) -> data.StructLayout:
    """What the drain offers per cycle: `drain_width` elements of adjacent output columns
    (`pair`: both are outputs, in a two-lane mode with a paired drain), each its int32
    accumulator and, where built, its channel's requantization parameters and its BFP
    value; and whether the last of them ends an MX block."""
    width = config.drain_width
    fields: dict[str, object] = {"values": data.ArrayLayout(signed(32), width),
                                 "block_end": unsigned(1), "pair": unsigned(1)}
    if config.has_requantizer:
        fields["params"] = data.ArrayLayout(CHANNEL_PARAMS, width)
    if config.has_mx:
        fields["bfp"] = data.ArrayLayout(bfp_layout(config.acc_bits, ACC_EXPONENT_BITS), width)
    return data.StructLayout(fields)


class Drain(wiring.Component):
    """Full accumulator banks -> `drained` elements.

    Ports
    -----
    full, last : In(2)
        The banks' state (`hw.banks.AccumulatorBanks`): complete; holding the job's last
        group (after it the channels start again from 0).
    release, release_bank : Out(1)
        One cycle: the last element of the bank has been read (in the fast pipeline, in
        the cycle after that read).
    acc_read, bfp_read, requant_read : the memories' drain read ports.
    drained : Out(stream.Signature(drain_layout(config)))
        The elements, row by row, each row's lc * group columns in order, in pairs of
        adjacent columns in the two-lane modes with a paired drain.
    config : In(config_layout(config))
    busy : Out(1)
        An element is on its way from the memories to `drained`.
    """

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        addr_width = ceil_log2(config.accumulator_depth)
        members = {
            "full": In(2),
            "last": In(2),
            "release": Out(1),
            "release_bank": Out(1),
            "acc_read": In(ReadPort.Signature(addr_width=addr_width,
                                              shape=accumulator_row(config))),
            "drained": Out(stream.Signature(drain_layout(config))),
            "config": In(config_layout(config)),
            "busy": Out(1),
        }
        if config.has_mx:
            members["bfp_read"] = In(ReadPort.Signature(addr_width=addr_width,
                                                        shape=bfp_row(config)))
        if config.has_requantizer:
            members["requant_read"] = In(ReadPort.Signature(
                addr_width=ceil_log2(config.requant_depth // config.drain_width),
                shape=data.ArrayLayout(CHANNEL_PARAMS, config.drain_width)))
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        self._reader(m)
        skid_busy = self._lanes(m)
        m.d.comb += self.busy.eq(Cat(self._d1_valid, *skid_busy) != 0)
        return m

    def _reads(self) -> list:
        """The read ports of the memories this build has."""
        config = self._config
        ports = [self.acc_read]
        if config.has_mx:
            ports.append(self.bfp_read)
        return ports

    def _reader(self, m: Module) -> None:
        """The drain's counters and the memories' read ports."""
        config, c = self._config, self.config
        lc_max = config.lane_columns
        acc_half = config.accumulator_bank_depth
        paired = config.drain_width == 2
        # Lanes per step: 2 in the two-lane modes with a paired drain (lc is then even).
        step_lanes = Mux(c.lanes2, 2, 1) if paired else 1
        draining = Signal()
        drain_select = Signal()
        drain_last = Signal()
        d_row = Signal.like(c.m_last)
        d_tile = Signal(range(max(2, config.block_size // config.cols + 1)))
        d_lane = Signal(range(lc_max))
        d_tile_base = Signal(range(acc_half + 1))
        channel = Signal(range(config.requant_depth + lc_max * 4 + 1))
        channel_base = Signal(range(config.requant_depth + lc_max * 4 + 1))
        self._d1_valid = d1_valid = Signal()
        self._d1_lane = d1_lane = Signal(range(lc_max))
        self._d1_block_end = d1_block_end = Signal()
        self._d1_odd = d1_odd = Signal()      # the channel is odd (its parameters' bank)
        self._d1_ready = d1_ready = Signal()
        d_advance = Signal()
        m.d.comb += d_advance.eq(~d1_valid | d1_ready)
        d_step = Signal()
        m.d.comb += d_step.eq(draining & d_advance)

        # Each drain counter keeps an "at its last value" flag (registered), so the step
        # that ends a bank decodes three flags, not three comparisons, after `d_step`.
        lane_end = Signal()
        tile_end = Signal()
        row_end = Signal()
        with m.If(~draining & self.full.bit_select(drain_select, 1)):
            m.d.sync += [
                draining.eq(1), drain_last.eq(self.last.bit_select(drain_select, 1)),
                d_row.eq(0), d_tile.eq(0), d_lane.eq(0), d_tile_base.eq(0),
                channel.eq(channel_base), lane_end.eq(c.lc == step_lanes),
                tile_end.eq(c.group_last == 0), row_end.eq(c.m_last == 0),
            ]
        # In the fast pipeline the release strobe is registered (one cycle after the last
        # read), so the drain's flow control does not reach the banks' state in the same
        # cycle (an ECP5 critical path); the bank stays busy one cycle longer.
        delayed_release = config.pipeline == "fast"
        bank_done = Signal()
        if delayed_release:
            m.d.sync += [self.release.eq(bank_done), self.release_bank.eq(drain_select)]
        drain_address = drain_select * acc_half + d_tile_base + d_row
        for port in self._reads():
            m.d.comb += [port.addr.eq(drain_address), port.en.eq(d_advance)]
        if config.has_requantizer:
            m.d.comb += [self.requant_read.addr.eq(channel[1:] if paired else channel),
                         self.requant_read.en.eq(d_advance)]
        with m.If(d_advance):
            m.d.sync += d1_valid.eq(d_step)
        with m.If(d_step):
            m.d.sync += [d1_lane.eq(d_lane), d1_block_end.eq(lane_end & tile_end),
                         d1_odd.eq(channel[0])]
            with m.If(~lane_end):
                m.d.sync += [d_lane.eq(d_lane + step_lanes), channel.eq(channel + step_lanes),
                             lane_end.eq(d_lane + 2 * step_lanes == c.lc)]
            with m.Else():
                m.d.sync += [d_lane.eq(0), lane_end.eq(c.lc == step_lanes)]
                with m.If(~tile_end):
                    m.d.sync += [d_tile.eq(d_tile + 1), d_tile_base.eq(d_tile_base + c.m),
                                 channel.eq(channel + step_lanes),
                                 tile_end.eq(d_tile + 1 == c.group_last)]
                with m.Else():
                    m.d.sync += [d_tile.eq(0), d_tile_base.eq(0), channel.eq(channel_base),
                                 tile_end.eq(c.group_last == 0)]
                    with m.If(~row_end):
                        m.d.sync += [d_row.eq(d_row + 1), row_end.eq(d_row + 1 == c.m_last)]
                    with m.Else():
                        # Last read issued: the bank may be refilled (the data is latched).
                        if delayed_release:
                            m.d.comb += bank_done.eq(1)
                        else:
                            m.d.comb += [self.release.eq(1),
                                         self.release_bank.eq(drain_select)]
                        m.d.sync += [
                            draining.eq(0),
                            drain_select.eq(~drain_select),
                            channel_base.eq(Mux(drain_last, 0,
                                                channel_base + (c.lc << c.group_log2))),
                        ]

    def _lanes(self, m: Module) -> list[Signal]:
        """The element of the lane at hand onto `drained`; the skid buffers' busy flags."""
        config = self._config
        has_mx, has_requant = config.has_mx, config.has_requantizer
        fast = config.pipeline == "fast"
        skid_busy = []
        d1_valid, d1_ready = self._d1_valid, self._d1_ready
        # d1 holds the memories' read data. In the compact pipeline `drained` takes the
        # lane's value (with its requantization parameters and BFP value) from there. The
        # fast pipeline hands the memories' whole words to a skid buffer (registers with a
        # registered `ready`: the units' `ready` does not reach the drain counters, and no
        # logic follows a memory's output), then the lane's value through a second one:
        # no lane multiplexer precedes a unit, and the units' `ready`, through the
        # output-kind multiplexer, only enables that buffer's output register.
        source = {"lane": self._d1_lane, "block_end": self._d1_block_end,
                  "odd": self._d1_odd, "acc": self.acc_read.data}
        if has_requant:
            source["params"] = self.requant_read.data
        if has_mx:
            source["bfp"] = self.bfp_read.data
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
            skid_busy.append(words_skid.busy)
        layout = drain_layout(config)
        lane_values = Signal(layout)
        lane = source["lane"]
        m.d.comb += [lane_values.block_end.eq(source["block_end"]),
                     lane_values.values[0].eq(source["acc"][lane])]
        if has_requant:
            params = source["params"]
            m.d.comb += lane_values.params[0].eq(
                Mux(source["odd"], params[1], params[0]) if config.drain_width == 2
                else params[0])
        if has_mx:
            m.d.comb += lane_values.bfp[0].eq(source["bfp"][lane])
        if config.drain_width == 2:
            # The pair's second column: lane + 1 (the lane is even in pairs).
            partner = lane | 1
            m.d.comb += [lane_values.pair.eq(self.config.lanes2),
                         lane_values.values[1].eq(source["acc"][partner])]
            if has_requant:
                m.d.comb += lane_values.params[1].eq(source["params"][1])
            if has_mx:
                m.d.comb += lane_values.bfp[1].eq(source["bfp"][partner])
        if fast:
            lane_skid = SkidBuffer(layout)
            m.submodules.lane_skid = lane_skid
            m.d.comb += [lane_skid.i_stream.valid.eq(source_valid),
                         lane_skid.i_stream.payload.eq(lane_values),
                         source_ready.eq(lane_skid.i_stream.ready)]
            skid_busy.append(lane_skid.busy)
            wiring.connect(m, lane_skid.o_stream, wiring.flipped(self.drained))
        else:       # the units take the lane straight from the memories
            m.d.comb += [self.drained.valid.eq(source_valid),
                         self.drained.payload.eq(lane_values),
                         source_ready.eq(self.drained.ready)]
        return skid_busy
