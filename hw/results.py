"""The result path: drained elements -> the output unit of the configured kind -> words.

The output kind selects the unit the drained elements go through: `Requantizer` (uint8,
int8, int4), none (int32), `BfpToFloat32` (fp32) or `MxQuantizer` (mxint8, mxint4; a
group's row is exactly one BK block, and a block's first element carries its scale code).
The `ResultPacker` packs the items (`golden.protocol.item_nibbles` nibbles each) into 64-bit
words and closes each COMPUTE's last word; the words wait in the result FIFO for the output
engine. In the fast pipeline a `SkidBuffer` stands between the output-kind
multiplexer and the packer.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from golden.config import MODE_INFO, ArrayConfig
from golden.protocol import MX_CODE_NIBBLES, item_nibbles

from .arith import SkidBuffer
from .configure import OUT_KIND_CODES, config_layout
from .control import registered_room
from .drain import drain_layout
from .mxout import BfpToFloat32, MxElementFormat, MxQuantizer
from .packer import ResultPacker
from .requant import Requantizer, RequantRounding

__all__ = ["ResultPath"]


class ResultPath(wiring.Component):
    """Output units, packer and result FIFO.

    Ports
    -----
    drained : In(stream.Signature(drain_layout(config)))
        The drained elements (`hw.drain.Drain`).
    results : Out(stream.Signature(64))
        The result words, each COMPUTE's last one padded with zero nibbles.
    config : In(config_layout(config))
    applied : In(1)
        A new configuration has been applied: the next item starts a result of
        `config.items_last + 1` items.
    busy : Out(1)
        An element is in a unit or the packer, or a word in the result FIFO.

    Latency: the units' (`Requantizer` 16, `BfpToFloat32` 7, `MxQuantizer` 11 from a
    block's last element), the packer's 1 and the FIFO's 2; throughput one element per
    cycle (a result's last item can take one more).
    """

    result_fifo_depth = 16

    def __init__(self, config: ArrayConfig, multiplier: str) -> None:
        self._config = config
        self._multiplier = multiplier
        super().__init__({
            "drained": In(stream.Signature(drain_layout(config))),
            "results": Out(stream.Signature(64)),
            "config": In(config_layout(config)),
            "applied": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self._config
        has_mx, has_requant = config.has_mx, config.has_requantizer
        # Without the requantizer and the MX units every item is an int32 (8 nibbles).
        packer = ResultPacker(granule=1 if has_requant or has_mx else 8)
        m.submodules.packer = packer
        item, busy_terms = self._packer_input(m, packer)
        self._units(m, item, busy_terms)
        result_fifo = SyncFIFOBuffered(width=64, depth=self.result_fifo_depth)
        m.submodules.result_fifo = result_fifo
        result_room = registered_room(m, result_fifo, "result_room")
        m.d.comb += [
            result_fifo.w_data.eq(packer.o_stream.payload.data),
            result_fifo.w_en.eq(packer.o_stream.valid & result_room),
            packer.o_stream.ready.eq(result_room),
            self.results.valid.eq(result_fifo.r_rdy),
            self.results.payload.eq(result_fifo.r_data),
            result_fifo.r_en.eq(self.results.ready),
            self.busy.eq((Cat(*busy_terms) != 0) | (result_fifo.level != 0)),
        ]
        return m

    def _packer_input(self, m: Module, packer: ResultPacker) -> tuple[stream.Interface, list]:
        """The stream the units offer items on, with each item's `last` from the item
        counter; in the fast pipeline a skid buffer hands the items to the packer (the
        output-kind multiplexer and the packer's shifter in separate cycles, and the
        packer's `ready` registered)."""
        c = self.config
        busy_terms = [packer.busy]
        if self._config.pipeline == "fast":
            staged = SkidBuffer(packer.i_stream.payload.shape())
            m.submodules.staged = staged
            wiring.connect(m, staged.o_stream, packer.i_stream)
            item = staged.i_stream
            busy_terms.append(staged.busy)
        else:
            item = packer.i_stream
        # Items of the result after the packer's next one, minus one: -1 when the next item
        # ends the result, so `item_last` is the counter's sign bit (no comparison).
        items_rest = Signal(signed(33))
        item_last = items_rest[-1]
        m.d.comb += item.payload.last.eq(item_last)
        with m.If(self.applied):
            m.d.sync += items_rest.eq(c.items_last - 1)
        with m.Elif(item.valid & item.ready):
            with m.If(item_last):
                m.d.sync += items_rest.eq(c.items_last - 1)
            with m.Else():
                m.d.sync += items_rest.eq(items_rest - 1)
        return item, busy_terms

    def _units(self, m: Module, item: stream.Interface, busy_terms: list) -> None:
        """The output units between `drained` and `item`, selected by the output kind."""
        config = self._config
        has_mx, has_requant = config.has_mx, config.has_requantizer
        has_int = any(not MODE_INFO[mode].mx for mode in config.modes)
        kinds = OUT_KIND_CODES
        c, drained = self.config, self.drained
        d2_ready = drained.ready
        int_value = drained.payload.value
        if has_requant:
            # multiplier="lut" keeps every multiplier out of the DSP blocks, this one too.
            requantizer = Requantizer(
                multiplier="lut" if self._multiplier == "lut" else "dsp")
            m.submodules.requantizer = requantizer
            busy_terms.append(requantizer.busy)
            params = drained.payload.params
            lo, hi = c.lo, c.hi
            m.d.comb += [
                requantizer.config.rounding.eq(Mux(c.rounding, RequantRounding.GEMMLOWP,
                                                   RequantRounding.FP32)),
                requantizer.config.zero_point.eq(c.zero_point),
                requantizer.config.lo.eq(lo),
                requantizer.config.hi.eq(hi),
                requantizer.i_stream.payload.acc.eq(int_value),
                requantizer.i_stream.payload.bias.eq(params.bias),
                requantizer.i_stream.payload.multiplier.eq(params.multiplier),
                requantizer.i_stream.payload.shift.eq(params.shift),
            ]
        if has_mx:
            to_float = BfpToFloat32(config)
            quantizer = MxQuantizer(config)
            m.submodules.to_float = to_float
            m.submodules.mx_quantizer = quantizer
            busy_terms += [to_float.busy, quantizer.busy]
            bfp_value_d = drained.payload.bfp
            m.d.comb += [
                to_float.i_stream.payload.eq(bfp_value_d),
                quantizer.i_stream.payload.value.eq(bfp_value_d),
                quantizer.i_stream.payload.last.eq(drained.payload.block_end),
                quantizer.format.eq(Mux(c.out_kind == kinds["mxint8"],
                                        MxElementFormat.MXINT8, MxElementFormat.MXINT4)),
            ]

        def int32_path() -> list:
            return [d2_ready.eq(item.ready), item.valid.eq(drained.valid),
                    item.payload.value.eq(int_value),
                    item.payload.nibbles.eq(item_nibbles("int32"))]

        int32_only = not has_requant and not has_mx
        if int32_only:     # the only output kind this build offers: no selection
            m.d.comb += int32_path()
            return
        with m.Switch(c.out_kind):
            if has_requant:
                with m.Case(kinds["uint8"], kinds["int8"], kinds["int4"]):
                    int4 = c.out_kind == kinds["int4"]
                    m.d.comb += [
                        requantizer.i_stream.valid.eq(drained.valid),
                        d2_ready.eq(requantizer.i_stream.ready),
                        item.valid.eq(requantizer.o_stream.valid),
                        requantizer.o_stream.ready.eq(item.ready),
                        item.payload.value.eq(requantizer.o_stream.payload.value[:8]
                                              & Mux(int4, 0xF, 0xFF)),
                        item.payload.nibbles.eq(Mux(int4, item_nibbles("int4"),
                                                    item_nibbles("int8"))),
                    ]
            if has_int:
                with m.Case(kinds["int32"]):
                    m.d.comb += int32_path()
            if has_mx:
                with m.Case(kinds["fp32"]):
                    m.d.comb += [
                        to_float.i_stream.valid.eq(drained.valid),
                        d2_ready.eq(to_float.i_stream.ready),
                        item.valid.eq(to_float.o_stream.valid),
                        to_float.o_stream.ready.eq(item.ready),
                        item.payload.value.eq(to_float.o_stream.payload.bits),
                        item.payload.nibbles.eq(item_nibbles("fp32")),
                    ]
                with m.Case(kinds["mxint8"], kinds["mxint4"]):
                    q = quantizer.o_stream.payload
                    int8 = c.out_kind == kinds["mxint8"]
                    element = Mux(int8, q.element.as_unsigned(), q.element[:4])
                    m.d.comb += [
                        quantizer.i_stream.valid.eq(drained.valid),
                        d2_ready.eq(quantizer.i_stream.ready),
                        item.valid.eq(quantizer.o_stream.valid),
                        quantizer.o_stream.ready.eq(item.ready),
                        item.payload.value.eq(Mux(q.first, Cat(q.scale, element),
                                                  element)),
                        item.payload.nibbles.eq(
                            Mux(int8, item_nibbles("mxint8"), item_nibbles("mxint4"))
                            + Mux(q.first, MX_CODE_NIBBLES, 0)),
                    ]
