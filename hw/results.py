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

from collections.abc import Callable

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
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
        packer = ResultPacker(granule=1 if has_requant or has_mx else 8,
                              max_nibbles=8 * config.drain_width)
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
        """The output units between `drained` and `item`, selected by the output kind. With
        a paired drain a pair of outputs (`pair`) goes through two units side by side into
        one item; MX elements go through their one quantizer one by one."""
        config = self._config
        has_mx, has_requant = config.has_mx, config.has_requantizer
        has_int = any(not MODE_INFO[mode].mx for mode in config.modes)
        width = config.drain_width
        kinds = OUT_KIND_CODES
        c, drained = self.config, self.drained
        pair = drained.payload.pair if width == 2 else Const(0, 1)

        def used(outputs: list) -> list:
            """The outputs of an item: a pair's second only in a pair (the packer takes the
            item's value as it is, so the unused slot is 0)."""
            return [outputs[0], *(Mux(pair, output, 0) for output in outputs[1:])]

        values = used([drained.payload.values[j] for j in range(width)])
        requantizers, to_floats = [], []
        if has_requant:
            requantizers = self._requantizers(m, busy_terms)
        if has_mx:
            to_floats = [BfpToFloat32(config) for _ in range(width)]
            for j, unit in enumerate(to_floats):
                m.submodules[f"to_float_{j}" if j else "to_float"] = unit
                m.d.comb += unit.i_stream.payload.eq(drained.payload.bfp[j])
            busy_terms += [unit.busy for unit in to_floats]
            quantizer = self._quantizer_input(m, busy_terms, pair)

        def doubled(nibbles: int) -> Value:
            """An item's nibbles: one output's, or a pair's."""
            return Mux(pair, 2 * nibbles, nibbles) if width == 2 else Const(nibbles, 5)

        def side_by_side(units: list, field: str, low: Callable[[list], Value]) -> list:
            """The units (one per output of the pair, in lock step) between `drained` and
            `item`: unit 0's handshake for all, their outputs' `low` bits side by side."""
            outputs = used([getattr(unit.o_stream.payload, field) for unit in units])
            statements = [drained.ready.eq(units[0].i_stream.ready),
                          item.valid.eq(units[0].o_stream.valid)]
            for unit in units:
                statements += [unit.i_stream.valid.eq(drained.valid),
                               unit.o_stream.ready.eq(item.ready)]
            return statements + [item.payload.value.eq(low(outputs))]

        def int32_path() -> list:
            return [drained.ready.eq(item.ready), item.valid.eq(drained.valid),
                    item.payload.value.eq(Cat(*values)),
                    item.payload.nibbles.eq(doubled(item_nibbles("int32")))]

        int32_only = not has_requant and not has_mx
        if int32_only:     # the only output kind this build offers: no selection
            m.d.comb += int32_path()
            return
        with m.Switch(c.out_kind):
            if has_requant:
                with m.Case(kinds["uint8"], kinds["int8"], kinds["int4"]):
                    int4 = c.out_kind == kinds["int4"]
                    m.d.comb += side_by_side(
                        requantizers, "value", lambda ys: Mux(int4, Cat(*(y[:4] for y in ys)),
                                                              Cat(*(y[:8] for y in ys))))
                    m.d.comb += item.payload.nibbles.eq(
                        Mux(int4, doubled(item_nibbles("int4")), doubled(item_nibbles("int8"))))
            if has_int:
                with m.Case(kinds["int32"]):
                    m.d.comb += int32_path()
            if has_mx:
                with m.Case(kinds["fp32"]):
                    m.d.comb += side_by_side(to_floats, "bits", lambda bits: Cat(*bits))
                    m.d.comb += item.payload.nibbles.eq(doubled(item_nibbles("fp32")))
                with m.Case(kinds["mxint8"], kinds["mxint4"]):
                    self._mx_elements(m, item, quantizer, pair)

    def _requantizers(self, m: Module, busy_terms: list) -> list[Requantizer]:
        """One requantizer per output the drain offers a cycle, each fed its channel."""
        c, drained = self.config, self.drained
        units = []
        for j in range(self._config.drain_width):
            # multiplier="lut" keeps every multiplier out of the DSP blocks, this one too; so
            # does "ecp5-mult18", whose DSP blocks are the PEs'.
            unit = Requantizer(multiplier="lut" if self._multiplier in ("lut", "ecp5-mult18")
                               else "dsp")
            m.submodules[f"requantizer_{j}" if j else "requantizer"] = unit
            units.append(unit)
            busy_terms.append(unit.busy)
            params = drained.payload.params[j]
            m.d.comb += [
                unit.config.rounding.eq(Mux(c.rounding, RequantRounding.GEMMLOWP,
                                            RequantRounding.FP32)),
                unit.config.zero_point.eq(c.zero_point),
                unit.config.lo.eq(c.lo),
                unit.config.hi.eq(c.hi),
                unit.i_stream.payload.acc.eq(drained.payload.values[j]),
                unit.i_stream.payload.bias.eq(params.bias),
                unit.i_stream.payload.multiplier.eq(params.multiplier),
                unit.i_stream.payload.shift.eq(params.shift),
            ]
        return units

    def _quantizer_input(self, m: Module, busy_terms: list, pair: Value) -> MxQuantizer:
        """The MX quantizer, fed one BFP value a cycle: a pair's first, then its second
        (`half`), the block's end on the last of the block."""
        c, drained = self.config, self.drained
        quantizer = MxQuantizer(self._config)
        m.submodules.mx_quantizer = quantizer
        busy_terms.append(quantizer.busy)
        block_end = drained.payload.block_end
        if self._config.drain_width == 2:
            self._half = half = Signal()       # the pair's second value is next
            value = Mux(half, drained.payload.bfp[1], drained.payload.bfp[0])
            last = Mux(pair, half & block_end, block_end)
        else:
            value, last = drained.payload.bfp[0], block_end
        m.d.comb += [
            quantizer.i_stream.payload.value.eq(value),
            quantizer.i_stream.payload.last.eq(last),
            quantizer.format.eq(Mux(c.out_kind == OUT_KIND_CODES["mxint8"],
                                    MxElementFormat.MXINT8, MxElementFormat.MXINT4)),
        ]
        return quantizer

    def _mx_elements(self, m: Module, item: stream.Interface, quantizer: MxQuantizer,
                     pair: Value) -> None:
        """MX-element outputs: one element (with its block's code first) per item."""
        c, drained = self.config, self.drained
        q = quantizer.o_stream.payload
        int8 = c.out_kind == OUT_KIND_CODES["mxint8"]
        element = Mux(int8, q.element.as_unsigned(), q.element[:4])
        taken = quantizer.i_stream.valid & quantizer.i_stream.ready
        if self._config.drain_width == 2:
            half = self._half
            m.d.comb += drained.ready.eq(quantizer.i_stream.ready & (half | ~pair))
            with m.If(taken & pair):
                m.d.sync += half.eq(~half)
        else:
            m.d.comb += drained.ready.eq(quantizer.i_stream.ready)
        m.d.comb += [
            quantizer.i_stream.valid.eq(drained.valid),
            item.valid.eq(quantizer.o_stream.valid),
            quantizer.o_stream.ready.eq(item.ready),
            item.payload.value.eq(Mux(q.first, Cat(q.scale, element), element)),
            item.payload.nibbles.eq(
                Mux(int8, item_nibbles("mxint8"), item_nibbles("mxint4"))
                + Mux(q.first, MX_CODE_NIBBLES, 0)),
        ]
