"""The result packer: variable-width result items -> 64-bit words of the output stream."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.utils import exact_log2

from .arith import unit_members

__all__ = ["ResultPacker"]


class ResultPacker(wiring.Component):
    """Append items of 1 to `max_nibbles` (8 or 16) nibbles to a nibble stream and cut it
    into 64-bit words.

    `i_stream` payload: `value` (the item, least significant nibble first), `nibbles` (its
    width) and `last` (the final item of a result: the partial word it leaves is
    emitted, padded with zero nibbles, and the next item starts a new word). `o_stream`
    payload: `data`, one word; nibble i of the stream is bits 4i+3..4i of a word (the order
    `golden.protocol.words_to_nibbles` reads).

    Latency 1 cycle from the item that completes a word to the word. Throughput one item per
    cycle, except that a `last` item that both completes a word and leaves a partial one
    takes two cycles (two words). `busy` is high while a partial word or a word is held.
    """

    output_layout = data.StructLayout({"data": unsigned(64)})

    def __init__(self, granule: int = 1, max_nibbles: int = 8) -> None:
        if granule not in (1, 2, 4, 8):
            self._MustUse__silence = True     # refused: no "created but never used" warning
            raise ValueError(f"granule must be 1, 2, 4 or 8 nibbles, not {granule!r}")
        if max_nibbles not in (8, 16):
            self._MustUse__silence = True
            raise ValueError(f"max_nibbles must be 8 or 16, not {max_nibbles!r}")
        self._granule = granule
        self._max = max_nibbles
        self.input_layout = self.item_layout(max_nibbles)
        super().__init__(unit_members(self.input_layout, self.output_layout))

    @staticmethod
    def item_layout(max_nibbles: int = 8) -> data.StructLayout:
        """An item: its value, its width in nibbles, and whether it ends a result."""
        return data.StructLayout({
            "value": unsigned(4 * max_nibbles),
            "nibbles": unsigned(max_nibbles.bit_length()),
            "last": unsigned(1),
        })

    @property
    def granule(self) -> int:
        """Every item's width is a multiple of this many nibbles (1, 2, 4 or 8): the word
        is then only ever cut at such boundaries, which makes the packer smaller (an
        accelerator with int32 outputs only packs two whole items per word)."""
        return self._granule

    @property
    def latency(self) -> int:
        """Cycles from accepting the item that completes a word to presenting the word."""
        return 1

    def elaborate(self, platform: object) -> Module:
        m = Module()
        i, o = self.i_stream, self.o_stream
        g = self._granule
        shift = exact_log2(g)
        # Between items `buffer` holds fewer than 16 nibbles (at most 16 - g); with the next
        # item appended, at most 16 - g + max_nibbles.
        most = 16 - g + self._max
        buffer = Signal(4 * (16 - g))     # nibbles not yet emitted, the oldest lowest
        units = Signal(range(most // g + 1))    # granules in `buffer`
        fill = units << shift             # nibbles in `buffer`
        flush = Signal()                  # a partial word must still be emitted
        free = ~o.valid | o.ready         # the output register can take a word this cycle

        m.d.comb += [
            i.ready.eq(free & ~flush),
            self.busy.eq(o.valid | (units != 0) | flush),
        ]
        appended = Signal(4 * most)
        new_units = Signal(range(most // g + 1))
        new_fill = new_units << shift
        m.d.comb += [
            appended.eq(buffer | (i.payload.value << (fill * 4))[:len(appended)]),
            new_units.eq(units + (i.payload.nibbles >> shift)),
        ]
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(i.valid & i.ready):
            with m.If(new_fill >= 16):
                m.d.sync += [
                    o.valid.eq(1),
                    o.payload.data.eq(appended[:64]),
                    buffer.eq(appended[64:]),
                    units.eq(new_units - (16 >> shift)),
                    flush.eq(i.payload.last & (new_fill > 16)),
                ]
            with m.Elif(i.payload.last):
                m.d.sync += [
                    o.valid.eq(1),
                    o.payload.data.eq(appended[:64]),
                    buffer.eq(0),
                    units.eq(0),
                ]
            with m.Else():
                m.d.sync += [buffer.eq(appended), units.eq(new_units)]
        with m.Elif(flush & free):
            m.d.sync += [
                o.valid.eq(1),
                o.payload.data.eq(buffer[:64]),
                buffer.eq(0),
                units.eq(0),
                flush.eq(0),
            ]
        return m
