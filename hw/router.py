"""COMPUTE's payload routing: weight rows into the weight FIFO, MX weight scales into theirs.

Per (N-tile, K-block) in the MX modes the payload holds `scale_row_words` words of weight
scale codes, then BK weight rows; in the integer modes only weight rows. The router keeps
its position in that pattern (with flags kept beside it, so no comparison sits on the paths
through `ready`), stages the first of two scale words, and writes a block's scale codes into
their FIFO from registers a cycle after their last word is taken (the FIFO's level logic is
then off the paths from the link).
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from golden.config import ArrayConfig
from golden.protocol import weight_row_words, weight_word

from .accumulation import scale_row_words
from .configure import config_layout
from .control import registered_room
from .decoder import PAYLOAD_LAYOUT
from .wire import view

__all__ = ["PayloadRouter"]


class PayloadRouter(wiring.Component):
    """COMPUTE payload words -> buffered weight rows and weight scale codes.

    Ports
    -----
    words : In(stream.Signature(PAYLOAD_LAYOUT))
        The payload words of COMPUTEs, in order; a COMPUTE's `first` word starts the
        pattern.
    weights : Out(stream.Signature(8 * C))
        The weight rows, from a FIFO of `weight_buffer_depth` rows.
    scales : Out(stream.Signature(64 * scale_row_words))
        MX builds: each (N-tile, K-block)'s weight scale codes, one per lane (8 per word).
    config : In(config_layout(config))

    Throughput one word per cycle while the FIFOs have room; a word reaches its FIFO's
    output 2 cycles after it is taken (3 for scale codes)."""

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        members = {
            "words": In(stream.Signature(PAYLOAD_LAYOUT)),
            "weights": Out(stream.Signature(8 * config.cols)),
            "config": In(config_layout(config)),
        }
        if config.has_mx:
            members["scales"] = Out(stream.Signature(64 * scale_row_words(config)))
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self._config
        weight_fifo = SyncFIFOBuffered(width=8 * config.cols, depth=config.weight_buffer_depth)
        m.submodules.weight_fifo = weight_fifo
        wiring.connect(m, wiring.flipped(self.weights), weight_fifo.r_stream)
        weight_room = registered_room(m, weight_fifo, "weight_room")
        words = self.words
        if weight_row_words(config) > 1:
            self._route_rows(m, weight_fifo, weight_room)
            return m
        m.d.comb += weight_fifo.w_data.eq(view(weight_word(config), words.payload.word).row)
        if config.has_mx:
            self._route_with_scales(m, weight_fifo, weight_room)
        else:
            m.d.comb += [words.ready.eq(weight_room),
                         weight_fifo.w_en.eq(words.valid & weight_room)]
        return m

    def _scale_fifo(self, m: Module, rows: int) -> SyncFIFOBuffered:
        """The MX weight-scale FIFO (rows of `rows` words), its output on `scales`."""
        config = self._config
        # + 3: the slots `scale_room` keeps spare. The inner FIFO (one slot less) gets a
        # power-of-two depth: its pointers then wrap without a comparison, which keeps its
        # level's loop short (an 8 x 8 ECP5 build's critical path).
        scale_slots = max(4, config.weight_buffer_depth // config.block_size + 2) + 3
        scale_fifo = SyncFIFOBuffered(width=64 * rows,
                                      depth=1 + (1 << ceil_log2(scale_slots - 1)))
        m.submodules.scale_fifo = scale_fifo
        wiring.connect(m, wiring.flipped(self.scales), scale_fifo.r_stream)
        return scale_fifo

    def _route_with_scales(self, m: Module, weight_fifo: SyncFIFOBuffered,
                           weight_room: Signal) -> None:
        config, c, words = self._config, self.config, self.words
        block = config.block_size
        rows = scale_row_words(config)
        scale_fifo = self._scale_fifo(m, rows)
        scale_count = Signal(2)
        m.d.comb += scale_count.eq(Mux(c.lanes2 & (config.lane_columns > 8), 2, 1))
        position, at, scale_now, push_now, position_is = self._position(
            m, range(2 + block + 1), scale_count)
        word = words.payload.word
        if rows == 2:
            first_word = Signal(64)     # the first of a block's two scale words
            scale_codes = Mux(scale_count == 2, Cat(first_word, word),
                              Cat(word, Const(0, 64)))
        else:
            scale_codes = word
        # A block's scale codes enter the FIFO from registers, a cycle after their last
        # word is taken: the FIFO's level logic is then off the paths from the link.
        # They are still readable no later than the block's first weight row, which
        # enters the weight FIFO in that cycle at the earliest. One more slot is kept
        # spare for the word in the register.
        # The codes register takes the codes whenever the block's last scale word is at
        # hand, taken or not (only `scale_push` waits for the transfer): its wide enable
        # then depends on the position alone, not on the link's `valid`.
        self._push_scales(m, scale_fifo, scale_codes, scale_now, push_now, weight_fifo,
                          weight_room, words.valid & weight_room)
        with m.If(words.valid & words.ready):
            if rows == 2:
                with m.If(scale_now & ~push_now):
                    m.d.sync += first_word.eq(word)
            with m.If(c.mx & (at == scale_count + block - 1)):
                m.d.sync += position_is(Const(0, len(position)))
            with m.Else():
                m.d.sync += position_is((at + 1)[:len(position)])

    def _position(self, m: Module, shape: range, scale_count: Value
                  ) -> tuple[Signal, Signal, Signal, Signal, Callable[[Value], list]]:
        """The place of the word at hand in a COMPUTE's payload (a block's `scale_count`
        scale words, then its weight words): the register `position`, `at` (0 at a
        COMPUTE's first word, whatever came before), whether the word is a scale word
        (`scale_now`) and its block's last (`push_now`), and `position_is(value)`, the
        statements that move the position to `value`. The flags are kept with the
        position, so no comparison sits on the paths through `ready`."""
        c, first = self.config, self.words.payload.first
        position = Signal(shape)
        is_scale = Signal()
        push_scale = Signal()

        def position_is(value: Value) -> list:
            scale = c.mx & (value < scale_count)
            return [position.eq(value), is_scale.eq(scale),
                    push_scale.eq(scale & (value == scale_count - 1))]

        at = Signal.like(position)
        scale_now = Signal()
        push_now = Signal()
        m.d.comb += [at.eq(Mux(first, 0, position)),
                     scale_now.eq(Mux(first, c.mx, is_scale)),
                     push_now.eq(Mux(first, c.mx & (scale_count == 1), push_scale))]
        return position, at, scale_now, push_now, position_is

    def _push_scales(self, m: Module, scale_fifo: SyncFIFOBuffered, scale_codes: Value,
                     scale_now: Value, push_now: Value, weight_fifo: SyncFIFOBuffered,
                     weight_room: Value, weight_write: Value) -> None:
        """The link's `ready` and the two FIFOs' writes: a block's scale codes into
        `scale_fifo` from registers, a cycle after its last scale word is taken (while
        `scale_now`; `push_now` at its last word), else a weight word (`weight_write`: into
        the weight FIFO, when there is room)."""
        words = self.words
        scale_push = Signal()
        scale_data = Signal.like(scale_fifo.w_data)
        m.d.comb += [scale_fifo.w_en.eq(scale_push), scale_fifo.w_data.eq(scale_data)]
        m.d.sync += scale_push.eq(0)
        scale_room = registered_room(m, scale_fifo, "scale_room", spare=3)
        with m.If(push_now & ~scale_push):
            m.d.sync += scale_data.eq(scale_codes)
        with m.If(scale_now):
            m.d.comb += words.ready.eq(~push_now | scale_room)
            with m.If(words.valid & push_now & scale_room):
                m.d.sync += scale_push.eq(1)
        with m.Else():
            m.d.comb += [words.ready.eq(weight_room), weight_fifo.w_en.eq(weight_write)]

    def _route_rows(self, m: Module, weight_fifo: SyncFIFOBuffered,
                    weight_room: Signal) -> None:
        """C > 8: a weight row is `weight_row_words` words, and in the MX modes a block's
        scale codes `scale_count` words (C / 8, or C / 4 with two lanes; a multiple of the
        row's words, so a weight word's place in its row is the low bits of the position).
        The words of a row or of a block's codes before its last wait in `stage` (the latest
        on top); the last one completes the row, written into the weight FIFO, or the
        codes, written into theirs from registers a cycle later (as `_route_with_scales`)."""
        config, c, words = self._config, self.config, self.words
        row_words = weight_row_words(config)
        log_row = exact_log2(row_words)
        block = config.block_size
        rows = scale_row_words(config) if config.has_mx else 0
        stage_words = max(row_words - 1, rows - 1)
        stage = Signal(64 * stage_words)

        def latest(count: int) -> list[Value]:
            """The last `count` words taken, oldest first (as parts of a `Cat`)."""
            return [stage[64 * (stage_words - count):]] if count else []

        first, word = words.payload.first, words.payload.word
        m.d.comb += weight_fifo.w_data.eq(Cat(*latest(row_words - 1), word))
        taken = words.valid & words.ready
        with m.If(taken):
            m.d.sync += stage.eq(Cat(stage[64:], word))
        if not config.has_mx:
            position = Signal(log_row)       # the word's place in its row
            at = Mux(first, 0, position)
            m.d.comb += [words.ready.eq(weight_room),
                         weight_fifo.w_en.eq(words.valid & weight_room
                                             & (at == row_words - 1))]
            with m.If(taken):
                m.d.sync += position.eq(at + 1)
            return

        scale_fifo = self._scale_fifo(m, rows)
        scale_count = Signal(range(rows + 1))
        m.d.comb += scale_count.eq(Mux(c.lanes2, rows, rows // 2) if config.lanes == 2
                                   else rows)
        position, at, scale_now, push_now, position_is = self._position(
            m, range(rows + block * row_words + 1), scale_count)
        scale_codes = Cat(*latest(rows - 1), word)
        if config.lanes == 2:
            scale_codes = Mux(scale_count == rows, scale_codes,
                              Cat(*latest(rows // 2 - 1), word, Const(0, 64 * (rows // 2))))
        self._push_scales(m, scale_fifo, scale_codes, scale_now, push_now, weight_fifo,
                          weight_room,
                          words.valid & weight_room & (at[:log_row] == row_words - 1))
        with m.If(taken):
            with m.If(c.mx & (at == scale_count + block * row_words - 1)):
                m.d.sync += position_is(Const(0, len(position)))
            with m.Else():
                m.d.sync += position_is((at + 1)[:len(position)])
