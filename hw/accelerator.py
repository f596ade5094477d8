"""The lpmac accelerator: one packet stream in, one packet stream out (docs/protocol.md).

Inside (docs/architecture.md, "Accelerator"):

    i_stream -> command decoder --+--> activation buffer (2 banks) --+
                  |               +--> MX activation scales (2 banks)+--> sequencer --> array
                  |               +--> weight FIFO --------------------------------> (shadow)
                  |               +--> MX weight-scale FIFO ---------------+
                  |               +--> requantization parameters           |
                  |                                                        v
                  |        array columns -> IntAccumulator (+ BfpAccumulator) <-> accumulator
                  |                                                     SRAM (2 banks)
                  |                                                        |
                  +--> response queue --> output engine <-- result FIFO <-- packer <-- drain
                                               |                 (Requantizer / int32 /
                                           o_stream               BfpToFloat32 / MxQuantizer)

The decoder parses packets and validates them; LOAD_ACTIVATIONS / LOAD_SCALES write the bank
named in the header (waiting while a queued or running COMPUTE reads it); COMPUTE queues a
job and streams its payload (weights, and in MX modes the weight scales) into FIFOs that the
job consumes at the pace of computation. The sequencer runs one job at a time: for every
N-tile and every K-tile (R rows of K) it sends the M-tile's activation vectors through the
array while the next weight tile loads into the shadow registers. Column sums are added into
the accumulator SRAM (address = row m) by read-modify-write; in the MX modes the integer sums
of a K-block are completed first and then added into the BFP accumulators with the block's
exponent. After the last K-tile of an N-tile (a group of BK / lc N-tiles for MX outputs), the
bank is drained through the output unit while the next N-tile computes in the other bank.
Every response is queued in order and sent by the output engine.

Performance: one activation vector per cycle (R * C MACs, twice that in 4-bit-weight modes)
whenever the weight FIFO holds the next tile and the accumulator bank is free; bubbles only
pad array passes shorter than `pass_min(mode)` vectors (read-modify-write hazards).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from golden.config import MODE_INFO, MODES, ArrayConfig
from golden.mx import MX_FORMATS, SCALE_BIAS
from golden.protocol import (
    BANK_ARGS,
    CONFIGURE,
    COUNTER_NAMES,
    HEADER,
    IDENTIFY,
    LENGTH_BITS,
    MAX_LENGTH,
    MX_CODE_NIBBLES,
    OUT_KINDS,
    REQUANT,
    STATUS,
    Field,
    Opcode,
    Status,
    activation_word,
    check_accelerator_config,
    identify_words,
    item_nibbles,
    response_length,
    weight_word,
)

from .accumulate import ACC_EXPONENT_BITS, BLOCK_EXPONENT_BITS, BfpAccumulator, IntAccumulator
from .accumulate import bfp_layout as _bfp_layout
from .actbuffer import ActivationBuffer
from .arith import SerialMultiplier, SkidBuffer
from .array import SystolicArray
from .fsm import OneHotFSM
from .mxout import BfpToFloat32, MxElementFormat, MxQuantizer
from .packer import ResultPacker
from .pe import Mode
from .requant import Requantizer, RequantRounding
from .wire import WORD_LAYOUT, pack, view

__all__ = ["Accelerator"]

_KIND = {name: index for index, name in enumerate(OUT_KINDS)}


def _latency(unit: wiring.Component) -> int:
    """The `latency` of a unit instantiated only to ask for it."""
    unit._MustUse__used = True  # not elaborated on purpose: no UnusedElaboratable warning
    return unit.latency


class _Response:
    """Kinds of response-queue entries (what the output engine sends for each)."""

    SIMPLE = 0          # header, status
    IDENTIFY = 1        # header, 4 identification words, status
    COUNTERS = 2        # header, 5 counters, status
    COMPUTE_START = 3   # header, then the job's result words
    COMPUTE_STATUS = 4  # the status word that ends a COMPUTE response


_RESPONSE_LAYOUT = data.StructLayout({
    "kind": unsigned(3),
    "opcode": unsigned(8),
    "tag": unsigned(8),
    "code": unsigned(4),                # `Status` (< 16)
    "field": unsigned(4),               # `Field` (< 16)
    # The status word's value (a length or a word count); for COMPUTE_START the response
    # length (the other kinds' lengths are fixed: `_RESPONSE_LENGTHS`).
    "value": unsigned(LENGTH_BITS),
})
_RESPONSE_LENGTHS = {
    _Response.SIMPLE: response_length(0),
    _Response.IDENTIFY: response_length(len(IDENTIFY)),
    _Response.COUNTERS: response_length(len(COUNTER_NAMES)),
}


class Accelerator(wiring.Component):
    """The lpmac GEMM accelerator with its packet protocol (docs/protocol.md, version 1.0).

    Parameters
    ----------
    config
        The `ArrayConfig`; protocol 1.0 needs stream_width 64 and rows, cols <= 8.
    multiplier
        PE multiplier variant (see `hw.pe`); `config.multiplier` when not given.

    Ports
    -----
    i_stream : In(stream.Signature(WORD_LAYOUT))
        Request packets: `data` a 64-bit word, `last` on the final word of each packet.
    o_stream : Out(stream.Signature(WORD_LAYOUT))
        Response packets, one per request, in request order.

    Throughput: the array takes one activation vector per cycle while a job runs, as long as
    the input stream delivers the next weight tile (R words) within an array pass (M_tile
    cycles) and the output stream takes the previous N-tile's results within an N-tile's
    compute time; `pass_min(mode)` is the shortest pass without bubbles. A command without
    payload (IDENTIFY, CLEAR_COUNTERS) is answered `command_latency` cycles after its word
    is accepted, when nothing is queued before it.
    """

    def __init__(self, config: ArrayConfig, *, multiplier: str | None = None) -> None:
        check_accelerator_config(config)
        self._config = config
        self._multiplier = config.multiplier if multiplier is None else multiplier
        super().__init__({
            "i_stream": In(stream.Signature(WORD_LAYOUT)),
            "o_stream": Out(stream.Signature(WORD_LAYOUT)),
        })

    @property
    def config(self) -> ArrayConfig:
        return self._config

    @property
    def command_latency(self) -> int:
        """Cycles from accepting the only word of a command without payload (IDENTIFY,
        CLEAR_COUNTERS) to its response header on `o_stream` (nothing queued before it):
        decode, check, dispatch, execute, queue the response (a buffered FIFO: 2), output
        engine, output register."""
        return 8

    def _pass_mins(self) -> tuple[int, int]:
        """(integer modes, MX modes) shortest pass; 1 where no such mode is built."""
        config = self._config
        int_modes = [n for n in config.modes if not MODE_INFO[n].mx]
        mx_modes = [n for n in config.modes if MODE_INFO[n].mx]
        return (self.pass_min(int_modes[0]) if int_modes else 1,
                self.pass_min(mx_modes[0]) if mx_modes else 1)

    def _int_accumulator(self) -> IntAccumulator:
        return IntAccumulator(registered=self._config.registered_acc_reads)

    def pass_min(self, mode: str) -> int:
        """Shortest array pass (vectors per weight tile) the sequencer issues in `mode`;
        shorter M-tiles are padded with bubbles. The accumulator read-modify-write of a row
        must have been written back before the next pass reads it: IntAccumulator latency
        + 2 cycles, and in the MX modes BfpAccumulator latency + 2 cycles between the last
        passes of consecutive K-blocks (`passes_per_block` passes apart)."""
        int_gap = _latency(self._int_accumulator()) + 2
        if not self._config.mode(mode).mx:
            return int_gap
        bfp_gap = _latency(BfpAccumulator(self._config)) + 2
        return max(int_gap, -(-bfp_gap // self._config.passes_per_block))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self._config
        rows, cols = config.rows, config.cols
        has_mx = config.has_mx
        has_int = any(not MODE_INFO[mode].mx for mode in config.modes)
        has_requant = config.has_requantizer   # requant_depth 0: int32 outputs only
        array = SystolicArray(config, multiplier=self._multiplier,
                              meta_shape=self._meta_layout())
        m.submodules.array = array
        lanes_max = array.lanes
        lc_max = cols * lanes_max
        act_half = config.activation_bank_depth
        acc_half = config.accumulator_bank_depth
        block = config.block_size
        ppb = config.passes_per_block if has_mx else 1
        scale_bank = config.scale_bank_words

        # --- Configuration registers (written by a successful CONFIGURE) ------------------
        c = _ConfigRegisters(config, lc_max, self)
        configured = Signal()

        # --- Memories and FIFOs -----------------------------------------------------------
        m.submodules.act_buffer = act_buffer = ActivationBuffer(config)

        weight_fifo = SyncFIFOBuffered(width=cols * 8, depth=config.weight_buffer_depth)
        m.submodules.weight_fifo = weight_fifo
        job_fifo = SyncFIFOBuffered(width=1, depth=3)   # (depth 2 has a 0-bit address)
        m.submodules.job_fifo = job_fifo
        response_fifo = SyncFIFOBuffered(width=_RESPONSE_LAYOUT.size, depth=4)
        m.submodules.response_fifo = response_fifo
        result_fifo = SyncFIFOBuffered(width=64, depth=16)
        m.submodules.result_fifo = result_fifo

        acc_layout = data.ArrayLayout(signed(32), lc_max)
        acc_mem = Memory(shape=acc_layout, depth=config.accumulator_depth, init=[])
        m.submodules.acc_mem = acc_mem
        acc_write = acc_mem.write_port()
        acc_read = acc_mem.read_port()
        acc_drain = acc_mem.read_port()

        if has_requant:
            requant_layout = data.StructLayout({
                "bias": signed(32), "multiplier": unsigned(32), "shift": signed(6)})
            requant_mem = Memory(shape=requant_layout, depth=config.requant_depth, init=[])
            m.submodules.requant_mem = requant_mem
            requant_write = requant_mem.write_port()
            requant_read = requant_mem.read_port()
        if has_mx:
            scale_mem = Memory(shape=unsigned(64), depth=2 * scale_bank, init=[])
            m.submodules.scale_mem = scale_mem
            scale_write = scale_mem.write_port()
            scale_read = scale_mem.read_port()
            scale_row_words = -(-lc_max // 8)
            # + 3: the slots `scale_room` keeps spare. The inner FIFO (one slot less) gets
            # a power-of-two depth: its pointers then wrap without a comparison, which keeps
            # its level's loop short (an 8 x 8 ECP5 build's critical path).
            scale_slots = max(4, config.weight_buffer_depth // block + 2) + 3
            bscale_fifo = SyncFIFOBuffered(
                width=64 * scale_row_words, depth=1 + (1 << ceil_log2(scale_slots - 1)))
            m.submodules.bscale_fifo = bscale_fifo
            bfp_value = _bfp_layout(config.acc_bits, ACC_EXPONENT_BITS)
            bfp_mem = Memory(shape=data.ArrayLayout(bfp_value, lc_max),
                             depth=config.accumulator_depth, init=[])
            m.submodules.bfp_mem = bfp_mem
            bfp_write = bfp_mem.write_port()
            bfp_read = bfp_mem.read_port()
            bfp_drain = bfp_mem.read_port()

        # --- Shared state between the engines ---------------------------------------------
        bank_uses = Array(Signal(3, name=f"bank_uses_{b}") for b in range(2))  # jobs per bank
        bank_use_inc = Signal(2)
        bank_use_dec = Signal(2)
        # A finished job releases its bank one cycle late (a shorter path; releasing late
        # only makes a LOAD into that bank wait a cycle longer).
        bank_use_dec_r = Signal(2)
        m.d.sync += bank_use_dec_r.eq(bank_use_dec)
        for b in range(2):
            m.d.sync += bank_uses[b].eq(bank_uses[b] + bank_use_inc[b] - bank_use_dec_r[b])
        acc_busy = Signal(2)        # bank being filled or drained
        acc_full = Signal(2)        # bank complete, waiting for (or in) the drain
        acc_last = Signal(2)        # bank holds the job's last group
        clear_counters = Signal()
        snapshot_counters = Signal()
        counters_pending = Signal()     # a READ_COUNTERS response is queued or being sent
        # Items of the result after the packer's next one, minus one: -1 when the next item
        # ends the result, so `item_last` is the counter's sign bit (no comparison).
        items_rest = Signal(signed(33))
        item_last = items_rest[-1]
        all_idle = Signal()

        # ======================================================================================
        # Command decoder
        # ======================================================================================
        i = self.i_stream
        word = i.payload.data
        header = view(HEADER, word)
        opcode = Signal(8)
        tag = Signal(8)
        length = Signal(LENGTH_BITS)
        args = Signal(24)
        header_last = Signal()
        count = Signal(LENGTH_BITS)          # payload words taken (or filled)
        count_next = Signal(LENGTH_BITS + 1)
        at_last = Signal()                   # count == length - 1: the final payload word
        remaining = Signal(LENGTH_BITS)      # length - count
        m.d.comb += count_next.eq(count + 1)
        stage = Signal(64)                   # first word of a two-word item
        config_word1 = Signal(64)
        final_last = Signal()                # `last` of the packet's final payload word
        response = Signal(_RESPONSE_LAYOUT)
        discard_after = Signal()
        bank = Signal()
        m.d.comb += bank.eq(view(BANK_ARGS, args).bank[0])

        # Header checks (DISPATCH), in the order of golden.reference.
        legal = Signal()
        m.d.comb += legal.eq((opcode >= Opcode.IDENTIFY) & (opcode <= Opcode.CLEAR_COUNTERS))
        bank_command = Signal()
        configured_command = Signal()
        m.d.comb += [
            bank_command.eq((opcode == Opcode.LOAD_SCALES) | (opcode == Opcode.LOAD_ACTIVATIONS)
                            | (opcode == Opcode.COMPUTE)),
            configured_command.eq(bank_command | (opcode == Opcode.LOAD_REQUANT)),
        ]
        # The payload length each command needs, for the opcode of the incoming header word
        # (registered with the header as `expected_value`).
        expected = Signal(LENGTH_BITS)
        expected_value = Signal(LENGTH_BITS)
        with m.Switch(header.opcode):
            with m.Case(Opcode.CONFIGURE):
                m.d.comb += expected.eq(2)
            with m.Case(Opcode.LOAD_REQUANT):
                if has_requant:
                    m.d.comb += expected.eq(c.requant_words)
            with m.Case(Opcode.LOAD_SCALES):
                if has_mx:   # (otherwise refused as NOT_APPLICABLE before the length)
                    m.d.comb += expected.eq(c.scale_words)
            with m.Case(Opcode.LOAD_ACTIVATIONS):
                m.d.comb += expected.eq(c.act_words)
            with m.Case(Opcode.COMPUTE):
                m.d.comb += expected.eq(c.compute_words)
        # The header checks in the order of golden.reference: (status, field, failed). CHECK
        # registers each as one flag (and `expected`), DISPATCH answers the first failure.
        header_checks = [
            (Status.BAD_OPCODE, Field.NONE, ~legal),
            (Status.BAD_FIELD, Field.BANK, bank_command & (view(BANK_ARGS, args).bank > 1)),
            (Status.NOT_CONFIGURED, Field.NONE, configured_command & ~configured),
            (Status.NOT_APPLICABLE, Field.NONE, ((opcode == Opcode.LOAD_REQUANT) & ~c.requant)
             | ((opcode == Opcode.LOAD_SCALES) & ~c.mx)),
            (Status.BAD_LENGTH, Field.NONE, length != expected_value),
        ]
        header_flags = Signal(len(header_checks))
        check_code, check_field = _first_failure(m, header_checks, header_flags)

        # Wait condition of an accepted command before it executes.
        may_start = Signal()
        with m.Switch(opcode):
            with m.Case(Opcode.CONFIGURE, Opcode.LOAD_REQUANT, Opcode.READ_COUNTERS):
                m.d.comb += may_start.eq(all_idle)
            with m.Case(Opcode.LOAD_SCALES, Opcode.LOAD_ACTIVATIONS):
                m.d.comb += may_start.eq(bank_uses[bank] == 0)
            with m.Case(Opcode.COMPUTE):
                m.d.comb += may_start.eq(job_fifo.w_rdy & response_fifo.w_rdy)
            with m.Default():
                m.d.comb += may_start.eq(1)

        # Registered: the opcode is steady from HEADER on, and only the decoder queues work
        # (never in the cycles just before START).
        may_start_r = Signal()
        m.d.sync += may_start_r.eq(may_start)

        # COMPUTE payload routing: per (N-tile, K-block) in MX modes `block_scale_words`
        # words of weight scale codes, then BK weight rows; in integer modes weight rows.
        weight_room = _registered_room(m, weight_fifo, "weight_room")
        route_word = Signal(64)
        route_offer = Signal()
        route_ready = Signal()
        position = Signal(range(2 + block + 1))
        position_restart = []       # what restarts the routing at a COMPUTE header
        m.d.comb += weight_fifo.w_data.eq(view(weight_word(config), route_word).row)
        if has_mx:
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

            position_restart = position_is(Const(0, len(position)))
            if scale_row_words == 2:
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
            scale_room = _registered_room(m, bscale_fifo, "scale_room", spare=3)
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

        def respond(code: object, kind: int = _Response.SIMPLE, field: object = 0,
                    value: object = 0, discard: object = 0) -> list:
            """Statements that set the pending response (pushed in RESPOND)."""
            return [response.kind.eq(kind), response.code.eq(code), response.field.eq(field),
                    response.value.eq(value), discard_after.eq(discard)]

        push_entry = Signal(_RESPONSE_LAYOUT)
        m.d.comb += [
            push_entry.eq(response),
            push_entry.opcode.eq(opcode),
            push_entry.tag.eq(tag),
            response_fifo.w_data.eq(push_entry),
        ]

        # CONFIGURE: the staged fields and what follows from them.
        f = _ConfigFields(m, config, stage, config_word1, lc_max)
        m.submodules.config_multiplier = multiplier = SerialMultiplier(16, 18)
        product = multiplier.product
        act_words_calc = Signal(32)
        compute_words_calc = Signal(34)
        result_words_calc = Signal(40)      # result nibbles, then result words
        items = product[:32]                 # M * N, from the last product
        # CONFIGURE's checks in the order of golden.reference: (status, field, failed).
        checks = [
            (Status.BAD_FIELD, Field.MODE, ~f.mode_ok),
            (Status.BAD_FIELD, Field.OUT_KIND, ~f.out_ok),
            (Status.BAD_FIELD, Field.ZERO_POINT, ~f.zero_point_ok),
            (Status.BAD_FIELD, Field.M, f.m == 0),
            (Status.BAD_FIELD, Field.K, ~f.k_ok),
            (Status.BAD_FIELD, Field.N, ~f.n_ok),
            (Status.TOO_LARGE, Field.ACTIVATIONS, act_words_calc > act_half),
            (Status.TOO_LARGE, Field.ACCUMULATORS, f.m > (acc_half >> f.group_log2)),
            (Status.TOO_LARGE, Field.REQUANT, f.requant & (f.n > config.requant_depth)),
            # compute words > MAX_LENGTH, or result words + 1 > MAX_LENGTH (= 2^24 - 1)
            (Status.TOO_LARGE, Field.LENGTH, (compute_words_calc[LENGTH_BITS:] != 0)
             | (result_words_calc[LENGTH_BITS:] != 0)
             | (result_words_calc[:LENGTH_BITS] == MAX_LENGTH)),
        ]
        config_flags = Signal(len(checks))
        config_phase = Signal(7)        # one-hot: CONFIGURE's step in the state CONFIG
        error, which = _first_failure(m, checks, config_flags)

        def multiply(a: object, b: object) -> list:
            return [multiplier.start.eq(1), multiplier.a.eq(a), multiplier.b.eq(b)]

        # Payload writes: address and data always driven, only the enables are decoded.
        m.d.comb += [act_buffer.w_addr.eq(bank * act_half + count),
                     act_buffer.w_data.eq(view(activation_word(config), word).vector)]
        if has_requant:
            channel_words = view(REQUANT[0], stage), view(REQUANT[1], word)
            m.d.comb += [
                requant_write.addr.eq(count[1:]),
                requant_write.data.bias.eq(channel_words[0].bias),
                requant_write.data.multiplier.eq(channel_words[0].multiplier),
                requant_write.data.shift.eq(channel_words[1].shift),
            ]
        if has_mx:
            m.d.comb += [scale_write.addr.eq(bank * scale_bank + count),
                         scale_write.data.eq(word)]

        # The decoder is one-hot (`hw.fsm`): `ready` and the enables of what a word writes
        # each read a state's register, and a state's next value has only the terms of
        # its own transitions. `taken[state]`: a word is taken in that state (only
        # WEIGHTS' `ready` depends on more than the state).
        decoder = OneHotFSM(m, ("HEADER", "CHECK", "DISPATCH", "START", "WEIGHTS", "PAYLOAD",
                                "FILL", "CONFIG", "RESPOND", "COUNTERS_WAIT", "DISCARD"),
                            name="decoder")
        in_state = {name: decoder.ongoing(name)
                    for name in ("HEADER", "WEIGHTS", "PAYLOAD", "FILL", "DISCARD")}
        taken = {name: in_state[name] & i.valid for name in ("HEADER", "PAYLOAD", "DISCARD")}
        taken["WEIGHTS"] = in_state["WEIGHTS"] & i.valid & route_ready

        # The opcode as one flag per command that DISPATCH, START and PAYLOAD tell apart
        # (registered in CHECK: no 8-bit comparison on their paths).
        is_op = {op: Signal(name=f"is_{op.name.lower()}")
                 for op in (Opcode.IDENTIFY, Opcode.READ_COUNTERS, Opcode.CLEAR_COUNTERS,
                            Opcode.COMPUTE, Opcode.CONFIGURE, Opcode.LOAD_REQUANT,
                            Opcode.LOAD_SCALES, Opcode.LOAD_ACTIVATIONS)}

        m.d.comb += [
            i.ready.eq(in_state["HEADER"] | in_state["PAYLOAD"] | in_state["DISCARD"]
                       | (in_state["WEIGHTS"] & route_ready)),
            route_word.eq(Mux(in_state["WEIGHTS"], word, 0)),
            route_offer.eq((in_state["WEIGHTS"] & i.valid) | in_state["FILL"]),
        ]
        # Payload words taken (or filled in), counted in the states that take them.
        with m.If(taken["WEIGHTS"] | taken["PAYLOAD"] | (in_state["FILL"] & route_ready)):
            m.d.sync += [count.eq(count_next), remaining.eq(remaining - 1),
                         at_last.eq(remaining == 2)]

        with decoder.state("HEADER"):
            with m.If(taken["HEADER"]):
                m.d.sync += [
                    opcode.eq(header.opcode), tag.eq(header.tag), length.eq(header.length),
                    expected_value.eq(expected),
                    args.eq(header.args), header_last.eq(i.payload.last), count.eq(0),
                    at_last.eq(header.length == 1), remaining.eq(header.length),
                    position.eq(0), *position_restart,
                ]
                decoder.goto("CHECK")

        with decoder.state("CHECK"):      # the header checks and the opcode's flags, registered
            m.d.sync += [header_flags.eq(Cat(*(bad for _, _, bad in header_checks))),
                         *(flag.eq(opcode == op) for op, flag in is_op.items())]
            decoder.goto("DISPATCH")

        with decoder.state("DISPATCH"):
            with m.If(is_op[Opcode.CONFIGURE]):
                m.d.sync += configured.eq(0)
            with m.If(header_flags != 0):
                m.d.sync += respond(check_code, field=check_field,
                                    value=Mux(check_code == Status.BAD_LENGTH,
                                              expected_value, 0),
                                    discard=~header_last)
                decoder.goto("RESPOND")
            with m.Else():
                decoder.goto("START")

        with decoder.state("START"):
            with m.If(may_start_r):
                with m.If(is_op[Opcode.IDENTIFY] | is_op[Opcode.READ_COUNTERS]
                          | is_op[Opcode.CLEAR_COUNTERS]):
                    kind = Mux(is_op[Opcode.IDENTIFY], _Response.IDENTIFY,
                               Mux(is_op[Opcode.READ_COUNTERS], _Response.COUNTERS,
                                   _Response.SIMPLE))
                    m.d.comb += [
                        clear_counters.eq(is_op[Opcode.CLEAR_COUNTERS]),
                        snapshot_counters.eq(is_op[Opcode.READ_COUNTERS]),
                    ]
                    m.d.sync += respond(Mux(header_last, Status.OK, Status.TOO_LONG),
                                        kind=kind, discard=~header_last)
                    decoder.goto("RESPOND")
                with m.Elif(is_op[Opcode.COMPUTE]):
                    m.d.comb += [
                        job_fifo.w_en.eq(1),
                        job_fifo.w_data.eq(bank),
                        bank_use_inc.eq(Mux(bank, 0b10, 0b01)),
                        response_fifo.w_en.eq(1),
                        push_entry.kind.eq(_Response.COMPUTE_START),
                        push_entry.value.eq(response_length(c.result_words)),
                    ]
                    with m.If(header_last):
                        m.d.sync += respond(Status.TRUNCATED,
                                            kind=_Response.COMPUTE_STATUS)
                        decoder.goto("FILL")
                    with m.Else():
                        decoder.goto("WEIGHTS")
                with m.Else():
                    with m.If(header_last):
                        m.d.sync += respond(Status.TRUNCATED)
                        decoder.goto("RESPOND")
                    with m.Else():
                        decoder.goto("PAYLOAD")

        # COMPUTE's payload: the weights (and MX weight scales) into their FIFOs.
        with decoder.state("WEIGHTS"):
            with m.If(taken["WEIGHTS"]):
                with m.If(at_last):
                    m.d.sync += respond(Mux(i.payload.last, Status.OK, Status.TOO_LONG),
                                        kind=_Response.COMPUTE_STATUS,
                                        discard=~i.payload.last)
                    decoder.goto("RESPOND")
                with m.Elif(i.payload.last):
                    m.d.sync += respond(Status.TRUNCATED, kind=_Response.COMPUTE_STATUS,
                                        value=count_next)
                    decoder.goto("FILL")

        # The payload of the other commands.
        with decoder.state("PAYLOAD"):
            with m.If(taken["PAYLOAD"]):
                with m.If(is_op[Opcode.CONFIGURE]):
                    with m.If(count == 0):
                        m.d.sync += stage.eq(word)
                    with m.Else():
                        m.d.sync += config_word1.eq(word)
                with m.If(is_op[Opcode.LOAD_REQUANT]):
                    with m.If(~count[0]):
                        m.d.sync += stage.eq(word)
                    if has_requant:
                        m.d.comb += requant_write.en.eq(count[0])
                if has_mx:
                    m.d.comb += scale_write.en.eq(is_op[Opcode.LOAD_SCALES])
                m.d.comb += act_buffer.w_en.eq(is_op[Opcode.LOAD_ACTIVATIONS])
                with m.If(at_last):
                    m.d.sync += final_last.eq(i.payload.last)
                    with m.If(is_op[Opcode.CONFIGURE]):
                        m.d.sync += config_phase.eq(1)
                        decoder.goto("CONFIG")
                    with m.Else():
                        m.d.sync += respond(
                            Mux(i.payload.last, Status.OK, Status.TOO_LONG),
                            discard=~i.payload.last)
                        decoder.goto("RESPOND")
                with m.Elif(i.payload.last):
                    m.d.sync += respond(Status.TRUNCATED, value=count_next)
                    decoder.goto("RESPOND")

        with decoder.state("FILL"):
            # A truncated COMPUTE: the job runs on, with zeros for the missing words.
            with m.If(route_ready & at_last):
                decoder.goto("RESPOND")

        # CONFIGURE: three products with one serial multiplier, then the checks, each
        # registered as one flag, then taken in priority order (a short path per cycle:
        # CONFIGURE is rare, the clock is not). One state, its steps one-hot in
        # `config_phase` (fewer decoder states, a shallower next-state logic).
        with decoder.state("CONFIG"):
            def next_phase() -> list:
                return [config_phase.eq(config_phase << 1)]

            with m.If(config_phase[0]):
                m.d.comb += multiply(f.m, f.k_tiles)
                m.d.sync += next_phase()
            with m.If(config_phase[1] & ~multiplier.busy):
                m.d.comb += multiply(f.n_tiles, f.tile_words)
                m.d.sync += [act_words_calc.eq(product), *next_phase()]
            with m.If(config_phase[2] & ~multiplier.busy):
                m.d.comb += multiply(f.m, f.n)
                m.d.sync += [compute_words_calc.eq(product), *next_phase()]
            with m.If(config_phase[3] & ~multiplier.busy):
                m.d.sync += [result_words_calc.eq(f.result_nibbles(items)), *next_phase()]
            with m.If(config_phase[4]):
                m.d.sync += [result_words_calc.eq(f.result_words(result_words_calc)),
                             *next_phase()]
            with m.If(config_phase[5]):
                m.d.sync += [config_flags.eq(Cat(*(bad for _, _, bad in checks))),
                             *next_phase()]
            with m.If(config_phase[6]):
                with m.If(config_flags == 0):
                    m.d.sync += [
                        configured.eq(1),
                        items_rest.eq(items - 2),
                        *c.apply(f, act_words_calc, compute_words_calc, items,
                                 result_words_calc),
                        *respond(Mux(final_last, Status.OK, Status.TOO_LONG),
                                 discard=~final_last),
                    ]
                with m.Else():
                    m.d.sync += respond(error, field=which, discard=~final_last)
                decoder.goto("RESPOND")

        with decoder.state("RESPOND"):
            with m.If(response_fifo.w_rdy):
                m.d.comb += response_fifo.w_en.eq(1)
                with m.If(response.kind == _Response.COUNTERS):
                    m.d.sync += counters_pending.eq(1)
                    decoder.goto("COUNTERS_WAIT")
                with m.Elif(discard_after):
                    decoder.goto("DISCARD")
                with m.Else():
                    decoder.goto("HEADER")

        # READ_COUNTERS: nothing new starts until the counter words are out, so the
        # counters other than `cycles` (idle since the fence) need no snapshot.
        with decoder.state("COUNTERS_WAIT"):
            with m.If(~counters_pending):
                with m.If(discard_after):
                    decoder.goto("DISCARD")
                with m.Else():
                    decoder.goto("HEADER")

        with decoder.state("DISCARD"):
            with m.If(taken["DISCARD"] & i.payload.last):
                decoder.goto("HEADER")

        # ======================================================================================
        # Sequencer: jobs -> activation vectors for the array
        # ======================================================================================
        running = Signal()
        job_bank = Signal()
        row = Signal.like(c.pass_last)      # i: row of the M-tile (>= M: a bubble)
        k_tile = Signal.like(c.k_last)
        k_next = Signal.like(c.k_last)      # k_tile + 1, a register: no adder on the path
        #                                     into last_k (the same for group_next)
        tile = Signal(range(max(2, block // cols + 1)))   # N-tile within the group
        group_next = Signal(16)     # the group's index + 1
        pass_base = Signal(range(act_half + 1))           # k_tile * M
        # The activation read address job_bank * act_half + pass_base + row, kept as a
        # register updated with row and pass_base (no adder between it and the buffer's
        # address pins, which fan out to every block RAM of a deep buffer).
        act_addr = Signal.like(act_buffer.r_addr)
        log_act_half = exact_log2(act_half)
        tile_base = Signal(range(acc_half + 1))           # tile * M
        acc_select = Signal()
        block_pass = Signal(range(max(2, ppb)))
        first_block = Signal()
        code_base = Signal(range(scale_bank * 8 + 1))     # block * M

        s1_valid = Signal()
        s1_swap = Signal()
        s1_meta = Signal(self._meta_layout())
        s1_byte = Signal(3)
        advance = Signal()
        m.d.comb += advance.eq(~s1_valid | array.a.ready)

        # row, k_tile and tile are all 0: a flag kept with them (a short path into
        # waiting_bank, step and every sequencer register).
        group_start = Signal()
        bank_busy = Signal()        # the bank of the group at hand is busy (see below)
        waiting_bank = Signal()
        m.d.comb += waiting_bank.eq(running & group_start & bank_busy)
        step = Signal()
        m.d.comb += step.eq(running & advance & ~waiting_bank)
        # Each loop counter's "at its last value" is a flag kept with it (the counters'
        # comparisons are then off the paths through step, group_start and the counters).
        last_row = Signal()         # row == c.pass_last
        last_k = Signal()           # k_tile == c.k_last
        last_tile = Signal()        # tile == c.group_last
        last_group = Signal()       # group_next == c.groups_last + 1
        # `bank_busy` is a register (a short path into step): acc_busy's bit for the bank
        # `acc_select` names in the next cycle. Only the sequencer sets a bit (its own bank's,
        # at a group's first step, which is never the step before another group's start), and
        # the drain's releases are seen a cycle late: the flag is never low for a busy bank.
        m.d.sync += bank_busy.eq(Mux(step & last_row & last_k & last_tile,
                                     acc_busy.bit_select(~acc_select, 1),
                                     acc_busy.bit_select(acc_select, 1)))

        with m.If(~running & job_fifo.r_rdy):
            m.d.comb += job_fifo.r_en.eq(1)
            m.d.sync += [
                running.eq(1), job_bank.eq(job_fifo.r_data[0]), row.eq(0), k_tile.eq(0),
                k_next.eq(1), group_next.eq(1),
                last_row.eq(c.pass_last == 0), last_k.eq(c.k_last == 0),
                last_tile.eq(c.group_last == 0), last_group.eq(c.groups_last == 0),
                group_start.eq(1),
                tile.eq(0), pass_base.eq(0), tile_base.eq(0), block_pass.eq(0),
                first_block.eq(1), code_base.eq(0),
                act_addr.eq(Cat(Const(0, log_act_half), job_fifo.r_data[0])),
            ]

        m.d.comb += [
            act_buffer.r_addr.eq(act_addr),
            act_buffer.r_en.eq(advance),
        ]
        if has_mx:
            code_index = Signal(range(2 * scale_bank * 8))
            m.d.comb += [
                code_index.eq(job_bank * (scale_bank * 8) + code_base + row),
                scale_read.addr.eq(code_index[3:]),
                scale_read.en.eq(advance),
            ]
        with m.If(advance):
            m.d.sync += s1_valid.eq(step & (row < c.m))
        with m.If(step):
            meta = s1_meta
            m.d.sync += [
                s1_swap.eq(row == 0),
                meta.addr.eq(acc_select * acc_half + tile_base + row),
                meta.first.eq(Mux(c.mx, block_pass == 0, k_tile == 0)),
                meta.group_end.eq(last_tile & last_k & (row == c.m_last)),
            ]
            if has_mx:
                last_pass = block_pass == ppb - 1
                m.d.sync += [
                    meta.last_pass.eq(last_pass),
                    meta.first_block.eq(first_block),
                    meta.pop_scale.eq(last_pass & (row == c.m_last)),
                    s1_byte.eq(code_index[:3]),
                ]
            with m.If(group_start):
                m.d.sync += [
                    acc_busy.bit_select(acc_select, 1).eq(1),
                    acc_last.bit_select(acc_select, 1).eq(last_group),
                ]
            # Advance i -> k_tile -> tile -> group.
            m.d.sync += group_start.eq(last_row & last_k & last_tile)
            pass_next = pass_base + c.m
            with m.If(~last_row):
                m.d.sync += [row.eq(row + 1), last_row.eq(row + 1 == c.pass_last),
                             act_addr.eq(act_addr + 1)]
            with m.Else():
                m.d.sync += [row.eq(0), last_row.eq(c.pass_last == 0),
                             # pass_next < act_half unless last_k: the bank is the top bit
                             act_addr.eq(Cat(Mux(last_k, 0, pass_next)[:log_act_half],
                                             job_bank))]
                if has_mx:
                    with m.If(block_pass == ppb - 1):
                        m.d.sync += [block_pass.eq(0), first_block.eq(0),
                                     code_base.eq(code_base + c.m)]
                    with m.Else():
                        m.d.sync += block_pass.eq(block_pass + 1)
                with m.If(~last_k):
                    m.d.sync += [k_tile.eq(k_next), k_next.eq(k_next + 1),
                                 pass_base.eq(pass_next), last_k.eq(k_next == c.k_last)]
                with m.Else():
                    m.d.sync += [k_tile.eq(0), k_next.eq(1), pass_base.eq(0), block_pass.eq(0),
                                 first_block.eq(1), code_base.eq(0), last_k.eq(c.k_last == 0)]
                    with m.If(~last_tile):
                        m.d.sync += [tile.eq(tile + 1), tile_base.eq(tile_base + c.m),
                                     last_tile.eq(tile + 1 == c.group_last)]
                    with m.Else():
                        m.d.sync += [tile.eq(0), tile_base.eq(0), acc_select.eq(~acc_select),
                                     last_tile.eq(c.group_last == 0)]
                        with m.If(~last_group):
                            m.d.sync += [group_next.eq(group_next + 1),
                                         last_group.eq(group_next == c.groups_last)]
                        with m.Else():
                            m.d.sync += running.eq(0)
                            m.d.comb += bank_use_dec.eq(Mux(job_bank, 0b10, 0b01))

        m.d.comb += [
            array.a.valid.eq(s1_valid),
            array.a.payload.data.eq(act_buffer.r_data),
            array.a.payload.swap.eq(s1_swap),
            array.a.payload.meta.eq(s1_meta),
            array.w.payload.mode.eq(c.mode),
            array.out.ready.eq(1),
        ]
        # The weight FIFO's output is its block RAM's read register (on the ECP5 about 6 ns
        # to the data) and the array's weight bus reaches every PE: in the fast pipeline a
        # skid buffer sits between them. It takes the next tile's words while the shadow
        # registers are full, so a load still starts right after a swap.
        weights = stream.Signature(cols * 8).create()
        m.d.comb += [weights.valid.eq(weight_fifo.r_rdy), weights.payload.eq(weight_fifo.r_data),
                     weight_fifo.r_en.eq(weights.ready)]
        if config.pipeline == "fast":
            weight_skid = SkidBuffer(cols * 8)
            m.submodules.weight_skid = weight_skid
            wiring.connect(m, weights, weight_skid.i_stream)
            weights = weight_skid.o_stream
        m.d.comb += [array.w.valid.eq(weights.valid), array.w.payload.data.eq(weights.payload),
                     weights.ready.eq(array.w.ready)]
        if has_mx:
            m.d.comb += array.a.payload.meta.ca.eq(scale_read.data.word_select(s1_byte, 8))

        # ======================================================================================
        # Accumulation: read-modify-write of the accumulator SRAM (never stalls)
        # ======================================================================================
        # Stage 0: the array's output addresses the accumulator; stage 1: the memory's data
        # and the partial sums enter the integer accumulators; stage 1 + L (L = their
        # latency): the sums are written back (and enter the BFP accumulators).
        out = array.out.payload
        a1_valid = Signal()
        a1_meta = Signal(self._meta_layout())
        a1_psum = Signal.like(out.data)
        m.d.sync += [a1_valid.eq(array.out.valid), a1_meta.eq(out.meta), a1_psum.eq(out.data)]
        m.d.comb += [acc_read.addr.eq(out.meta.addr), acc_read.en.eq(1)]
        a_metas = [a1_meta]
        aw_valid = a1_valid             # becomes the write-back stage's
        for stage in range(2, 2 + _latency(self._int_accumulator())):
            delayed_valid = Signal(name=f"a{stage}_valid")
            delayed_meta = Signal(self._meta_layout(), name=f"a{stage}_meta")
            m.d.sync += [delayed_valid.eq(aw_valid), delayed_meta.eq(a_metas[-1])]
            aw_valid = delayed_valid
            a_metas.append(delayed_meta)
        aw_meta = a_metas[-1]
        int_accs = []
        for lane in range(lc_max):
            unit = self._int_accumulator()
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
        group_written = Signal()
        group_bank = Signal()
        m.d.comb += [
            group_written.eq(aw_valid & aw_meta.group_end & ~c.mx),
            group_bank.eq(aw_meta.addr[-1]),
        ]
        bfp_busy = Signal()
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

        # ======================================================================================
        # Drain: a full accumulator bank -> output unit -> packer, row by row
        # ======================================================================================
        draining = Signal()
        drain_select = Signal()
        drain_last = Signal()
        d_row = Signal.like(c.m_last)
        d_tile = Signal(range(max(2, block // cols + 1)))
        d_lane = Signal(range(lc_max))
        d_tile_base = Signal(range(acc_half + 1))
        channel = Signal(range(config.requant_depth + lc_max * 4 + 1))
        channel_base = Signal(range(config.requant_depth + lc_max * 4 + 1))
        d1_valid = Signal()
        d1_lane = Signal(range(lc_max))
        d1_block_end = Signal()
        d1_ready = Signal()
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
        if has_mx:
            m.d.comb += [bfp_drain.addr.eq(drain_address), bfp_drain.en.eq(d_advance)]
        if has_requant:
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
        with m.If(group_written):
            m.d.sync += acc_full.bit_select(group_bank, 1).eq(1)

        # Output units and the packer.
        # Without the requantizer and the MX units every item is an int32 (8 nibbles).
        packer = ResultPacker(granule=1 if has_requant or has_mx else 8)
        m.submodules.packer = packer
        # The output units offer items on `item`; in the fast pipeline a skid buffer hands
        # them to the packer (the output-kind multiplexer and the packer's shifter in
        # separate cycles, and the packer's `ready` registered).
        fast = config.pipeline == "fast"
        extra_busy = []
        if fast:
            staged = SkidBuffer(packer.i_stream.payload.shape())
            m.submodules.staged = staged
            wiring.connect(m, staged.o_stream, packer.i_stream)
            item = staged.i_stream
            extra_busy.append(staged.busy)
        else:
            item = packer.i_stream
        m.d.comb += item.payload.last.eq(item_last)
        with m.If(item.valid & item.ready):
            with m.If(item_last):
                m.d.sync += items_rest.eq(c.items_last - 1)
            with m.Else():
                m.d.sync += items_rest.eq(items_rest - 1)
        # d1 holds the memories' read data. In the compact pipeline the output units take
        # the lane's value (with its requantization parameters and BFP value) from there.
        # The fast pipeline hands the memories' whole words to a skid buffer (registers
        # with a registered `ready`: the units' `ready` does not reach the drain counters,
        # and no logic follows a memory's output), then the lane's value through a second
        # one (d2): no lane multiplexer precedes a unit, and the units' `ready`, through the
        # output-kind multiplexer, only enables d2's output register.
        source = {"lane": d1_lane, "block_end": d1_block_end, "acc": acc_drain.data}
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
            extra_busy.append(words_skid.busy)
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
            extra_busy.append(lane_skid.busy)
            drained = lane_skid.o_stream
        else:       # the units take the lane straight from the memories
            drained = stream.Signature(drain_layout).create()
            m.d.comb += [drained.valid.eq(source_valid), drained.payload.eq(lane_values),
                         source_ready.eq(drained.ready)]
        d2_ready = drained.ready
        d2_block_end = drained.payload.block_end
        int_value = drained.payload.value
        units_busy = Signal()
        busy_terms = [d1_valid, *extra_busy, packer.busy]
        if has_requant:
            # multiplier="lut" keeps every multiplier out of the DSP blocks, this one too.
            requantizer = Requantizer(
                multiplier="lut" if self._multiplier == "lut" else "dsp")
            m.submodules.requantizer = requantizer
            busy_terms.append(requantizer.busy)
            params = drained.payload.params
            lo, hi = c.requant_bounds
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
                quantizer.i_stream.payload.last.eq(d2_block_end),
                quantizer.format.eq(Mux(c.out_kind == _KIND["mxint8"],
                                        MxElementFormat.MXINT8, MxElementFormat.MXINT4)),
            ]
        def int32_path() -> list:
            return [d2_ready.eq(item.ready), item.valid.eq(drained.valid),
                    item.payload.value.eq(int_value),
                    item.payload.nibbles.eq(item_nibbles("int32"))]

        int32_only = not has_requant and not has_mx
        if int32_only:     # the only output kind this build offers: no selection
            m.d.comb += int32_path()
        with m.Switch(Const(0, 1) if int32_only else c.out_kind):
            if has_requant:
                with m.Case(_KIND["uint8"], _KIND["int8"], _KIND["int4"]):
                    int4 = c.out_kind == _KIND["int4"]
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
            if has_int and not int32_only:
                with m.Case(_KIND["int32"]):
                    m.d.comb += int32_path()
            if has_mx:
                with m.Case(_KIND["fp32"]):
                    m.d.comb += [
                        to_float.i_stream.valid.eq(drained.valid),
                        d2_ready.eq(to_float.i_stream.ready),
                        item.valid.eq(to_float.o_stream.valid),
                        to_float.o_stream.ready.eq(item.ready),
                        item.payload.value.eq(to_float.o_stream.payload.bits),
                        item.payload.nibbles.eq(item_nibbles("fp32")),
                    ]
                with m.Case(_KIND["mxint8"], _KIND["mxint4"]):
                    q = quantizer.o_stream.payload
                    int8 = c.out_kind == _KIND["mxint8"]
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
        m.d.comb += units_busy.eq(Cat(busy_terms) != 0)
        result_room = _registered_room(m, result_fifo, "result_room")
        m.d.comb += [
            result_fifo.w_data.eq(packer.o_stream.payload.data),
            result_fifo.w_en.eq(packer.o_stream.valid & result_room),
            packer.o_stream.ready.eq(result_room),
        ]

        # ======================================================================================
        # Output engine: responses in request order
        # ======================================================================================
        # The engine offers words on `o` (valid, payload, ready as a stream); a register
        # slice drives `o_stream` from them, so its payload is a register that holds while
        # the stream stalls (and the output logic is off the consumer's paths).
        o = stream.Signature(WORD_LAYOUT).create()
        out = self.o_stream
        m.d.comb += o.ready.eq(~out.valid | out.ready)
        with m.If(o.ready):
            m.d.sync += [out.valid.eq(o.valid), out.payload.eq(o.payload)]
        entry = Signal(_RESPONSE_LAYOUT)   # the queue's head, taken off when it is sent
        m.d.comb += entry.eq(response_fifo.r_data)
        out_index = Signal(LENGTH_BITS)
        counters = {name: Signal(config.counter_bits, name=f"counter_{name}")
                    for name in COUNTER_NAMES}
        cycles_snapshot = Signal(config.counter_bits)
        counter_words = Array([cycles_snapshot, *(counters[name] for name in COUNTER_NAMES[1:])])
        identity = Array(Const(w, 64) for w in identify_words(config))
        entry_length = Signal(LENGTH_BITS)
        with m.Switch(entry.kind):
            for kind, words in _RESPONSE_LENGTHS.items():
                with m.Case(kind):
                    m.d.comb += entry_length.eq(words)
            with m.Default():
                m.d.comb += entry_length.eq(entry.value)
        header_word = pack(HEADER, opcode=entry.opcode, tag=entry.tag, length=entry_length)
        status_word = pack(STATUS, code=entry.code, opcode=entry.opcode, field=entry.field,
                           value=entry.value)
        out_idle = Signal()
        out_at_end = Signal()     # RESULTS: out_index == 0, the response's last result word
        o_transfer = o.valid & o.ready
        with m.FSM(name="output"):
            with m.State("IDLE"):
                m.d.comb += out_idle.eq(response_fifo.level == 0)
                with m.If(response_fifo.r_rdy):
                    m.d.sync += out_index.eq(0)
                    with m.If(entry.kind == _Response.COMPUTE_STATUS):
                        m.next = "STATUS"
                    with m.Else():
                        m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [o.valid.eq(1), o.payload.data.eq(header_word)]
                with m.If(o.ready):
                    with m.Switch(entry.kind):
                        with m.Case(_Response.IDENTIFY):
                            m.next = "IDENTIFY"
                        with m.Case(_Response.COUNTERS):
                            m.next = "COUNTERS"
                        with m.Case(_Response.COMPUTE_START):
                            # out_index counts the result words down to the last one.
                            m.d.sync += [out_index.eq(entry.value - 2),
                                         out_at_end.eq(entry.value == 2)]
                            m.next = "RESULTS"
                        with m.Default():
                            m.next = "STATUS"
            with m.State("IDENTIFY"):
                m.d.comb += [o.valid.eq(1), o.payload.data.eq(identity[out_index[:2]])]
                with m.If(o.ready):
                    m.d.sync += out_index.eq(out_index + 1)
                    with m.If(out_index == len(identify_words(config)) - 1):
                        m.next = "STATUS"
            with m.State("COUNTERS"):
                m.d.comb += [o.valid.eq(1), o.payload.data.eq(counter_words[out_index[:3]])]
                with m.If(o.ready):
                    m.d.sync += out_index.eq(out_index + 1)
                    with m.If(out_index == len(COUNTER_NAMES) - 1):
                        m.d.sync += counters_pending.eq(0)
                        m.next = "STATUS"
            with m.State("RESULTS"):
                m.d.comb += [
                    o.valid.eq(result_fifo.r_rdy),
                    o.payload.data.eq(result_fifo.r_data),
                    result_fifo.r_en.eq(o.ready),
                ]
                with m.If(o_transfer):
                    m.d.sync += [out_index.eq(out_index - 1), out_at_end.eq(out_index == 1)]
                    with m.If(out_at_end):
                        m.d.comb += response_fifo.r_en.eq(1)
                        m.next = "IDLE"
            with m.State("STATUS"):
                m.d.comb += [o.valid.eq(1), o.payload.data.eq(status_word),
                             o.payload.last.eq(1)]
                with m.If(o.ready):
                    m.d.comb += response_fifo.r_en.eq(1)
                    m.next = "IDLE"

        # Registered: only the decoder starts work, and it spends several cycles (header,
        # check, dispatch) between queueing one command and testing this for the next.
        m.d.sync += all_idle.eq(
            ~running & (job_fifo.level == 0) & (acc_busy == 0) & ~units_busy & ~bfp_busy
            & (result_fifo.level == 0) & out_idle)

        # ======================================================================================
        # Performance counters
        # ======================================================================================
        accepted = array.a.valid & array.a.ready
        increments = {
            "cycles": Const(1, 1),
            "busy": accepted,
            "input_stall": s1_valid & ~array.a.ready,
            "output_stall": waiting_bank,
            "macs": Mux(accepted, Mux(c.double_macs, 2 * rows * cols, rows * cols), 0),
        }
        assert COUNTER_NAMES[0] == "cycles"
        with m.If(snapshot_counters):
            m.d.sync += cycles_snapshot.eq(counters["cycles"])
        for name in COUNTER_NAMES:
            # Events are registered before they are added (a short path into the adder);
            # CLEAR_COUNTERS drops the pending ones, as it drops the events of its own cycle.
            if name == "cycles":
                with m.If(clear_counters):
                    m.d.sync += counters[name].eq(0)
                with m.Else():
                    m.d.sync += counters[name].eq(counters[name] + 1)
                continue
            pending = Signal(len(Value.cast(increments[name])), name=f"pending_{name}")
            with m.If(clear_counters):
                m.d.sync += [counters[name].eq(0), pending.eq(0)]
            with m.Else():
                m.d.sync += [counters[name].eq(counters[name] + pending),
                             pending.eq(increments[name])]
        return m

    def _meta_layout(self) -> data.StructLayout:
        """Tag carried by every activation vector through the array to the accumulators."""
        fields = {
            "addr": unsigned(ceil_log2(self._config.accumulator_depth)),
            "first": unsigned(1),       # overwrite instead of add (first pass of K / block)
            "group_end": unsigned(1),   # last vector of an accumulator bank's group
        }
        if self._config.has_mx:
            fields.update({
                "last_pass": unsigned(1),    # last pass of a K-block: update the BFP acc
                "first_block": unsigned(1),  # the BFP accumulator starts from zero
                "pop_scale": unsigned(1),    # last vector of the block: next weight scales
                "ca": unsigned(8),           # the row's activation scale code for the block
            })
        return data.StructLayout(fields)


def _registered_room(m: Module, fifo: SyncFIFOBuffered, name: str, spare: int = 2) -> Signal:
    """A register that is high when `fifo` can take a word: one cycle late, and the
    buffered FIFO's output register aside, so it keeps `spare` slots spare (two; three for
    a writer whose words go through one more register). A writer gated by it has a short
    path to its `ready` (no FIFO level arithmetic)."""
    room = Signal(name=name)
    m.d.sync += room.eq(fifo.level < fifo.depth - spare)
    return room


def _first_failure(m: Module, checks: list, flags: Signal) -> tuple[Signal, Signal]:
    """(status, field) of the first of `checks` ((status, field, condition) in priority
    order) whose flag is set in `flags`; OK and NONE when none is."""
    code = Signal(4)
    field = Signal(4)
    for index, (status, which, _) in reversed(list(enumerate(checks))):
        with m.If(flags[index]):
            m.d.comb += [code.eq(status), field.eq(which)]
    return code, field


class _ConfigFields:
    """The fields of a staged CONFIGURE payload and what follows from them (combinational)."""

    def __init__(self, m: Module, config: ArrayConfig, word0: Signal, word1: Signal,
                 lc_max: int) -> None:
        rows, cols, block = config.rows, config.cols, config.block_size
        fields0, fields1 = view(CONFIGURE[0], word0), view(CONFIGURE[1], word1)
        self.mode = fields0.mode
        self.rounding = fields0.rounding
        self.relu = fields0.relu
        self.out_kind = fields0.out_kind
        self.zero_point = fields0.zero_point
        self.m = fields1.m
        self.k = fields1.k
        self.n = fields1.n
        built = [Mode.from_name(name).value for name in config.modes]
        self.mode_ok = Signal()
        m.d.comb += self.mode_ok.eq(self.mode.matches(*built))
        # A mode of a kind the build lacks fails `mode_ok`, the first check, so these flags
        # are constant 0 when no such mode is built (what follows from them is only used
        # by the later checks and by a successful CONFIGURE).
        self.mx = Signal()
        self.lanes2 = Signal()
        if config.has_mx:
            m.d.comb += self.mx.eq(self.mode.matches(*(Mode.from_name(n).value for n in MODES
                                                        if MODE_INFO[n].mx)))
        two_lane_modes = [n for n in config.modes if config.mode(n).lanes == 2]
        if two_lane_modes:
            m.d.comb += self.lanes2.eq(self.mode.matches(
                *(Mode.from_name(n).value for n in two_lane_modes)))
        # Two MACs per PE per cycle: the two-lane modes, and A4W4 with K-pairs.
        self.double_macs = self.lanes2
        if config.k_pairs:
            self.double_macs = Signal()
            m.d.comb += self.double_macs.eq(self.lanes2 | (self.mode == Mode.A4W4.value))
        kinds = _KIND
        self.requant = self.out_kind.matches(kinds["uint8"], kinds["int8"], kinds["int4"])
        # MX output kinds fail `out_ok` (the second check) unless an MX mode is configured.
        self.mx_out = self.out_kind.matches(kinds["mxint8"], kinds["mxint4"]) & self.mx
        self.out_ok = Mux(self.mx, self.out_kind.matches(kinds["fp32"], kinds["mxint8"],
                                                         kinds["mxint4"]),
                          self.out_kind.matches(kinds["uint8"], kinds["int8"], kinds["int4"],
                                                kinds["int32"]))
        zp = self.zero_point
        with_range = Mux(self.out_kind == kinds["uint8"], (zp >= 0) & (zp <= 255),
                         Mux(self.out_kind == kinds["int8"], (zp >= -128) & (zp <= 127),
                             (zp >= -8) & (zp <= 7)))
        self.zero_point_ok = ~self.requant | with_range
        log_rows, log_cols, log_block = exact_log2(rows), exact_log2(cols), exact_log2(block)
        k_granule_bits = Mux(self.mx, log_block, log_rows)
        self.k_ok = (self.k != 0) & ((self.k & ((Const(1, 17) << k_granule_bits) - 1)) == 0)
        lc_log2 = log_cols + self.lanes2
        n_granule_bits = Mux(self.mx_out, log_block, lc_log2)
        self.n_ok = (self.n != 0) & ((self.n & ((Const(1, 17) << n_granule_bits) - 1)) == 0)
        self.k_tiles = self.k >> log_rows
        self.n_tiles = self.n >> lc_log2
        self.k_blocks = self.k >> log_block
        # group = BK / lc N-tiles for MX outputs (lc <= 16 <= BK), else 1.
        self.group_log2 = Mux(self.mx_out, log_block - lc_log2, 0)[:3]
        # Words per N-tile of the COMPUTE payload: K weight rows (+ scale words per block).
        # (1 or 2 scale words per block: a shift, not a multiplication.)
        two_scale_words = self.lanes2 & (lc_max > 8)
        self.tile_words = self.k + Mux(self.mx, self.k_blocks << two_scale_words, 0)
        self.lc = Mux(self.lanes2, 2 * cols, cols)
        # log2 of each kind's item nibbles (8, 1 or 2), and MX_CODE_NIBBLES per MX block.
        by_nibbles = {count: [kinds[kind] for kind in OUT_KINDS if item_nibbles(kind) == count]
                      for count in (8, 1, 2)}
        assert sum(map(len, by_nibbles.values())) == len(OUT_KINDS)
        self._nibble_log2 = Mux(self.out_kind.matches(*by_nibbles[8]), 3,
                                Mux(self.out_kind.matches(*by_nibbles[1]), 0, 1))
        self._log_block = log_block

    def result_nibbles(self, items: object) -> Value:
        """Nibbles of one COMPUTE's results for `items` = M * N elements."""
        return (items << self._nibble_log2) \
            + Mux(self.mx_out, (items >> self._log_block) << exact_log2(MX_CODE_NIBBLES), 0)

    @staticmethod
    def result_words(nibbles: object) -> Value:
        """Words that carry `nibbles` nibbles."""
        return ((nibbles + 15) >> 4)[:36]


class _ConfigRegisters:
    """The applied configuration, as registers the engines read."""

    def __init__(self, config: ArrayConfig, lc_max: int, accelerator: Accelerator) -> None:
        self._config = config
        self._accelerator = accelerator
        self.mode = Signal(Mode)
        self.out_kind = Signal(3)
        self.rounding = Signal()
        self.relu = Signal()
        self.zero_point = Signal(signed(9))
        # Loop bounds are kept as their last index: a counter compares with a register.
        # A CONFIGURE is refused unless M fits an accumulator bank and M * K-tiles an
        # activation bank, so the registers (and the counters that compare with them) are
        # only as wide as those bounds.
        acc_half = config.accumulator_bank_depth
        act_half = config.activation_bank_depth
        self.m = Signal(range(acc_half + 1))
        self.m_last = Signal(range(max(2, acc_half)))
        self.k_last = Signal(range(max(2, act_half)))
        self.groups_last = Signal(16)
        self.group_last = Signal(range(max(2, config.block_size // config.cols + 1)))
        self.group_log2 = Signal(3)
        self.lc = Signal(range(lc_max + 1))
        self.pass_last = Signal(range(max(2, acc_half, *accelerator._pass_mins())))
        # Flags that no CONFIGURE of this build can change are constants, so that the
        # logic of the units the build leaves out disappears in synthesis.
        built = [config.mode(name) for name in config.modes]
        self.mx = self._flag([info.mx for info in built])
        self.lanes2 = self._flag([info.lanes == 2 for info in built])
        # Two MACs per PE per cycle (two lanes, or K-pairs).
        self.double_macs = self._flag([info.macs_per_pe == 2 for info in built]) \
            if config.k_pairs else self.lanes2
        self.requant = Signal() if config.has_requantizer else Const(0, 1)
        self.act_words = Signal(LENGTH_BITS)
        self.scale_words = Signal(LENGTH_BITS)
        self.requant_words = Signal(LENGTH_BITS)
        self.compute_words = Signal(LENGTH_BITS)
        self.result_words = Signal(LENGTH_BITS)
        self.items_last = Signal(32)
        self.lo = Signal(signed(9))
        self.hi = Signal(signed(9))

    @staticmethod
    def _flag(values: list[bool]) -> Signal | Const:
        """A flag register, or a constant when every built mode has the same value."""
        return Const(int(values[0]), 1) if len(set(values)) == 1 else Signal()

    def _flags(self, f: _ConfigFields) -> list[tuple[Value, Value]]:
        """(register, decoded field) of each mode flag; `double_macs` is `lanes2` itself
        unless K-pairs are built."""
        flags = [(self.mx, f.mx), (self.lanes2, f.lanes2)]
        if self._config.k_pairs:
            flags.append((self.double_macs, f.double_macs))
        return [*flags, (self.requant, f.requant)]

    @property
    def requant_bounds(self) -> tuple[Signal, Signal]:
        return self.lo, self.hi

    def apply(self, f: _ConfigFields, act_words: Signal, compute_words: Signal,
              items: object, result_words: Signal) -> list:
        config = self._config
        int_min, mx_min = self._accelerator._pass_mins()
        pass_min = Mux(f.mx, mx_min, int_min)
        ppb_log2 = exact_log2(config.passes_per_block) if config.has_mx else 0
        kinds = _KIND
        lo = Mux(f.out_kind == kinds["uint8"], 0,
                 Mux(f.out_kind == kinds["int8"], -128, -8))
        hi = Mux(f.out_kind == kinds["uint8"], 255, Mux(f.out_kind == kinds["int8"], 127, 7))
        return [
            self.mode.eq(f.mode),
            self.out_kind.eq(f.out_kind),
            self.rounding.eq(f.rounding),
            self.relu.eq(f.relu),
            self.zero_point.eq(f.zero_point),
            self.m.eq(f.m),
            self.m_last.eq(f.m - 1),
            self.k_last.eq(f.k_tiles - 1),
            self.groups_last.eq((f.n_tiles >> f.group_log2) - 1),
            self.group_last.eq((Const(1, 8) << f.group_log2) - 1),
            self.group_log2.eq(f.group_log2),
            self.lc.eq(f.lc),
            self.pass_last.eq(Mux(f.m > pass_min, f.m, pass_min) - 1),
            *(flag.eq(value) for flag, value in self._flags(f) if isinstance(flag, Signal)),
            self.act_words.eq(act_words),
            self.scale_words.eq(((act_words >> ppb_log2) + 7) >> 3),
            self.requant_words.eq(f.n << 1),
            self.compute_words.eq(compute_words),
            self.result_words.eq(result_words),
            self.items_last.eq(items - 1),
            self.lo.eq(Mux(f.relu & (f.zero_point > lo), f.zero_point, lo)),
            self.hi.eq(hi),
        ]

