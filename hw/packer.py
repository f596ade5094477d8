"""The result packer: variable-width result items -> 64-bit words of the output stream."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, wiring

from .arith import unit_members

__all__ = ["ResultPacker"]


class ResultPacker(wiring.Component):
    """Append items of 1 to 8 nibbles to a nibble stream and cut it into 64-bit words.

    `i_stream` payload: `value` (the item, least significant nibble first), `nibbles` (its
    width, 1..8) and `last` (the final item of a result: the partial word it leaves is
    emitted, padded with zero nibbles, and the next item starts a new word). `o_stream`
    payload: `data`, one word; nibble i of the stream is bits 4i+3..4i of a word (the order
    `host.protocol.words_to_nibbles` reads).

    Latency 1 cycle from the item that completes a word to the word. Throughput one item per
    cycle, except that a `last` item that both completes a word and leaves a partial one
    takes two cycles (two words). `busy` is high while a partial word or a word is held.
    """

    input_layout = data.StructLayout({
        "value": unsigned(32),
        "nibbles": unsigned(4),
        "last": unsigned(1),
    })
    output_layout = data.StructLayout({"data": unsigned(64)})

    def __init__(self) -> None:
        super().__init__(unit_members(self.input_layout, self.output_layout))

    @property
    def latency(self) -> int:
        """Cycles from accepting the item that completes a word to presenting the word."""
        return 1

    def elaborate(self, platform: object) -> Module:
        m = Module()
        i, o = self.i_stream, self.o_stream
        buffer = Signal(96)               # nibbles not yet emitted, the oldest lowest
        fill = Signal(range(24))          # nibbles in `buffer` (< 16 between items)
        flush = Signal()                  # a partial word must still be emitted
        free = ~o.valid | o.ready         # the output register can take a word this cycle

        m.d.comb += [
            i.ready.eq(free & ~flush),
            self.busy.eq(o.valid | (fill != 0) | flush),
        ]
        appended = Signal(96)
        new_fill = Signal(range(24))
        m.d.comb += [
            appended.eq(buffer | (i.payload.value << (fill * 4))[:96]),
            new_fill.eq(fill + i.payload.nibbles),
        ]
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(i.valid & i.ready):
            with m.If(new_fill >= 16):
                m.d.sync += [
                    o.valid.eq(1),
                    o.payload.data.eq(appended[:64]),
                    buffer.eq(appended[64:]),
                    fill.eq(new_fill - 16),
                    flush.eq(i.payload.last & (new_fill > 16)),
                ]
            with m.Elif(i.payload.last):
                m.d.sync += [
                    o.valid.eq(1),
                    o.payload.data.eq(appended[:64]),
                    buffer.eq(0),
                    fill.eq(0),
                ]
            with m.Else():
                m.d.sync += [buffer.eq(appended), fill.eq(new_fill)]
        with m.Elif(flush & free):
            m.d.sync += [
                o.valid.eq(1),
                o.payload.data.eq(buffer[:64]),
                buffer.eq(0),
                fill.eq(0),
                flush.eq(0),
            ]
        return m
