"""COMPUTE's payload routing: weight rows into the weight FIFO, MX weight scales into theirs.

Per (N-tile, K-block) in the MX modes the payload holds `block_scale_words` words of weight
scale codes, then BK weight rows; in the integer modes only weight rows. The router keeps
its position in that pattern (with flags kept beside it, so no comparison sits on the paths
through `ready`), stages the first of two scale words, and writes a block's scale codes into
their FIFO from registers a cycle after their last word is taken (the FIFO's level logic is
then off the paths from the link).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib.fifo import SyncFIFOBuffered

from golden.config import ArrayConfig
from golden.protocol import weight_word

from .configure import ConfigRegisters
from .control import registered_room
from .wire import view

__all__ = ["PayloadRouter"]


class PayloadRouter:
    """`route_word` offered (`route_offer`) is taken when `route_ready`; `restart` (a list
    of statements) returns to the start of the pattern at a COMPUTE header."""

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        self.route_word = Signal(64)
        self.route_offer = Signal()
        self.route_ready = Signal()
        self.position = Signal(range(2 + config.block_size + 1))
        self.restart: list = []      # what restarts the routing at a COMPUTE header

    def build(self, m: Module, *, weight_fifo: SyncFIFOBuffered,
              bscale_fifo: SyncFIFOBuffered | None, c: ConfigRegisters, stage: Signal,
              lc_max: int) -> None:
        config = self._config
        block = config.block_size
        route_word, route_offer = self.route_word, self.route_offer
        route_ready, position = self.route_ready, self.position
        # COMPUTE payload routing: per (N-tile, K-block) in MX modes `block_scale_words`
        # words of weight scale codes, then BK weight rows; in integer modes weight rows.
        weight_room = registered_room(m, weight_fifo, "weight_room")
        m.d.comb += weight_fifo.w_data.eq(view(weight_word(config), route_word).row)
        if config.has_mx:
            scale_count = Signal(2)
            m.d.comb += scale_count.eq(Mux(c.lanes2 & (lc_max > 8), 2, 1))
            # Whether the word at `position` is a scale word, and the last one: flags kept
            # with the position, so no comparison sits on the paths through `ready`.
            is_scale = Signal()
            push_scale = Signal()

            def position_is(value: Value) -> list:
                scale = c.mx & (value < scale_count)
                return [position.eq(value), is_scale.eq(scale),
                        push_scale.eq(scale & (value == scale_count - 1))]

            self.restart = position_is(Const(0, len(position)))
            if -(-lc_max // 8) == 2:
                scale_codes = Mux(scale_count == 2, Cat(stage, route_word),
                                  Cat(route_word, Const(0, 64)))
            else:
                scale_codes = route_word
            # A block's scale codes enter the FIFO from registers, a cycle after their last
            # word is taken: the FIFO's level logic is then off the paths from the link.
            # They are still readable no later than the block's first weight row, which
            # enters the weight FIFO in that cycle at the earliest. One more slot is kept
            # spare for the word in the register.
            scale_push = Signal()
            scale_data = Signal.like(bscale_fifo.w_data)
            m.d.comb += [bscale_fifo.w_en.eq(scale_push), bscale_fifo.w_data.eq(scale_data)]
            m.d.sync += scale_push.eq(0)
            scale_room = registered_room(m, bscale_fifo, "scale_room", spare=3)
            with m.If(is_scale):
                m.d.comb += route_ready.eq(~push_scale | scale_room)
                with m.If(route_offer & push_scale & scale_room):
                    m.d.sync += [scale_push.eq(1), scale_data.eq(scale_codes)]
            with m.Else():
                m.d.comb += [route_ready.eq(weight_room),
                             weight_fifo.w_en.eq(route_offer & weight_room)]
            with m.If(route_offer & route_ready):
                with m.If(is_scale & ~push_scale):
                    m.d.sync += stage.eq(route_word)
                with m.If(c.mx & (position == scale_count + block - 1)):
                    m.d.sync += position_is(Const(0, len(position)))
                with m.Else():
                    m.d.sync += position_is((position + 1)[:len(position)])
        else:
            m.d.comb += [route_ready.eq(weight_room),
                         weight_fifo.w_en.eq(route_offer & weight_room)]
