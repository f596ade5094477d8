"""The command decoder: request packets -> checks, work for the other engines, responses.

A one-hot state machine (`hw.fsm.OneHotFSM`, named `decoder`) reads a header, checks it
(opcode, bank, configured, applicable, length; docs/protocol.md "Errors", in the order of
`golden.reference`), waits for the command's precondition, executes it and queues its
response for the output engine. Preconditions: CONFIGURE, LOAD_REQUANT and READ_COUNTERS wait
until everything is idle; LOAD_ACTIVATIONS / LOAD_SCALES until no queued or running job uses
their bank; COMPUTE for a job-FIFO slot. COMPUTE queues the job and its response header,
then routes its payload through the `PayloadRouter`; a COMPUTE cut short is finished with
zero words (state FILL) so the job always completes. CONFIGURE stages its two words and runs
the `ConfigureUnit`'s steps (state CONFIG).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream
from amaranth.lib.fifo import SyncFIFOBuffered

from golden.config import ArrayConfig
from golden.protocol import (
    BANK_ARGS,
    HEADER,
    LENGTH_BITS,
    REQUANT,
    Field,
    Opcode,
    Status,
    activation_word,
    response_length,
)

from .actbuffer import ActivationBuffer
from .banks import ActivationBankUses
from .configure import ConfigureUnit
from .control import first_failure
from .fsm import OneHotFSM
from .responder import RESPONSE_LAYOUT, ResponseKind
from .router import PayloadRouter
from .wire import view

__all__ = ["CommandDecoder"]

_STATES = ("HEADER", "CHECK", "DISPATCH", "START", "WEIGHTS", "PAYLOAD", "FILL", "CONFIG",
           "RESPOND", "COUNTERS_WAIT", "DISCARD")
_FLAGGED_OPCODES = (Opcode.IDENTIFY, Opcode.READ_COUNTERS, Opcode.CLEAR_COUNTERS,
                    Opcode.COMPUTE, Opcode.CONFIGURE, Opcode.LOAD_REQUANT, Opcode.LOAD_SCALES,
                    Opcode.LOAD_ACTIVATIONS)


class CommandDecoder:
    """The decoder's registers and state machine.

    Strobes it drives: `clear_counters`, `snapshot_counters` (READ_COUNTERS);
    `counters_pending` is high from queueing a READ_COUNTERS response until the output
    engine has sent its counter words."""

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        self.clear_counters = Signal()
        self.snapshot_counters = Signal()
        self.counters_pending = Signal()  # a READ_COUNTERS response is queued or being sent

    def build(self, m: Module, *, i_stream: stream.Interface, configure: ConfigureUnit,
              router: PayloadRouter, act_buffer: ActivationBuffer, requant_write: object,
              scale_write: object, weight_fifo: SyncFIFOBuffered,
              bscale_fifo: SyncFIFOBuffered | None, job_fifo: SyncFIFOBuffered,
              response_fifo: SyncFIFOBuffered, bank_uses: ActivationBankUses,
              all_idle: Signal, items_rest: Signal, lc_max: int) -> None:
        config = self._config
        self.items_rest = items_rest
        c = configure.registers
        has_mx, has_requant = config.has_mx, config.has_requantizer
        i = i_stream
        word = i.payload.data
        header = view(HEADER, word)
        self.opcode = opcode = Signal(8)
        self.tag = tag = Signal(8)
        self.length = length = Signal(LENGTH_BITS)
        self.args = args = Signal(24)
        self.header_last = Signal()
        self.count = count = Signal(LENGTH_BITS)          # payload words taken (or filled)
        self.count_next = count_next = Signal(LENGTH_BITS + 1)
        self.at_last = Signal()              # count == length - 1: the final payload word
        self.remaining = Signal(LENGTH_BITS)      # length - count
        m.d.comb += count_next.eq(count + 1)
        self.stage = stage = Signal(64)           # first word of a two-word item
        self.config_word1 = Signal(64)
        self.final_last = Signal()           # `last` of the packet's final payload word
        self.response = response = Signal(RESPONSE_LAYOUT)
        self.discard_after = Signal()
        self.bank = bank = Signal()
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
        self.expected = expected = Signal(LENGTH_BITS)
        self.expected_value = expected_value = Signal(LENGTH_BITS)
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
        self.header_checks = header_checks = [
            (Status.BAD_OPCODE, Field.NONE, ~legal),
            (Status.BAD_FIELD, Field.BANK, bank_command & (view(BANK_ARGS, args).bank > 1)),
            (Status.NOT_CONFIGURED, Field.NONE, configured_command & ~configure.configured),
            (Status.NOT_APPLICABLE, Field.NONE, ((opcode == Opcode.LOAD_REQUANT) & ~c.requant)
             | ((opcode == Opcode.LOAD_SCALES) & ~c.mx)),
            (Status.BAD_LENGTH, Field.NONE, length != expected_value),
        ]
        self.header_flags = header_flags = Signal(len(header_checks))
        self.check_code, self.check_field = first_failure(m, header_checks, header_flags)

        # Wait condition of an accepted command before it executes.
        may_start = Signal()
        with m.Switch(opcode):
            with m.Case(Opcode.CONFIGURE, Opcode.LOAD_REQUANT, Opcode.READ_COUNTERS):
                m.d.comb += may_start.eq(all_idle)
            with m.Case(Opcode.LOAD_SCALES, Opcode.LOAD_ACTIVATIONS):
                m.d.comb += may_start.eq(bank_uses.uses[bank] == 0)
            with m.Case(Opcode.COMPUTE):
                m.d.comb += may_start.eq(job_fifo.w_rdy & response_fifo.w_rdy)
            with m.Default():
                m.d.comb += may_start.eq(1)

        # Registered: the opcode is steady from HEADER on, and only the decoder queues work
        # (never in the cycles just before START).
        self.may_start_r = may_start_r = Signal()
        m.d.sync += may_start_r.eq(may_start)

        router.build(m, weight_fifo=weight_fifo, bscale_fifo=bscale_fifo, c=c, stage=stage,
                     lc_max=lc_max)

        self.push_entry = push_entry = Signal(RESPONSE_LAYOUT)
        m.d.comb += [
            push_entry.eq(response),
            push_entry.opcode.eq(opcode),
            push_entry.tag.eq(tag),
            response_fifo.w_data.eq(push_entry),
        ]

        # CONFIGURE: the staged fields and what follows from them.
        configure.build(m, stage, self.config_word1)

        # Payload writes: address and data always driven, only the enables are decoded.
        m.d.comb += [act_buffer.w_addr.eq(bank * config.activation_bank_depth + count),
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
            m.d.comb += [scale_write.addr.eq(bank * config.scale_bank_words + count),
                         scale_write.data.eq(word)]

        self._fsm(m, i, header, configure, router, act_buffer, requant_write, scale_write,
                  job_fifo, response_fifo, bank_uses)

    def respond(self, code: object, kind: int = ResponseKind.SIMPLE, field: object = 0,
                value: object = 0, discard: object = 0) -> list:
        """Statements that set the pending response (pushed in RESPOND)."""
        response = self.response
        return [response.kind.eq(kind), response.code.eq(code), response.field.eq(field),
                response.value.eq(value), self.discard_after.eq(discard)]

    def _fsm(self, m: Module, i: stream.Interface, header: object, configure: ConfigureUnit,
             router: PayloadRouter, act_buffer: ActivationBuffer, requant_write: object,
             scale_write: object, job_fifo: SyncFIFOBuffered, response_fifo: SyncFIFOBuffered,
             bank_uses: ActivationBankUses) -> None:
        # The decoder is one-hot (`hw.fsm`): `ready` and the enables of what a word writes
        # each read a state's register, and a state's next value has only the terms of
        # its own transitions. `taken[state]`: a word is taken in that state (only
        # WEIGHTS' `ready` depends on more than the state).
        decoder = self.fsm = OneHotFSM(m, _STATES, name="decoder")
        in_state = {name: decoder.ongoing(name)
                    for name in ("HEADER", "WEIGHTS", "PAYLOAD", "FILL", "DISCARD")}
        taken = {name: in_state[name] & i.valid for name in ("HEADER", "PAYLOAD", "DISCARD")}
        taken["WEIGHTS"] = in_state["WEIGHTS"] & i.valid & router.route_ready
        self.in_state, self.taken = in_state, taken

        # The opcode as one flag per command that DISPATCH, START and PAYLOAD tell apart
        # (registered in CHECK: no 8-bit comparison on their paths).
        self.is_op = {op: Signal(name=f"is_{op.name.lower()}") for op in _FLAGGED_OPCODES}

        word = i.payload.data
        m.d.comb += [
            i.ready.eq(in_state["HEADER"] | in_state["PAYLOAD"] | in_state["DISCARD"]
                       | (in_state["WEIGHTS"] & router.route_ready)),
            router.route_word.eq(Mux(in_state["WEIGHTS"], word, 0)),
            router.route_offer.eq((in_state["WEIGHTS"] & i.valid) | in_state["FILL"]),
        ]
        # Payload words taken (or filled in), counted in the states that take them.
        with m.If(taken["WEIGHTS"] | taken["PAYLOAD"] | (in_state["FILL"] & router.route_ready)):
            m.d.sync += [self.count.eq(self.count_next), self.remaining.eq(self.remaining - 1),
                         self.at_last.eq(self.remaining == 2)]

        self._header_states(m, i, header, configure, router, job_fifo, response_fifo,
                            bank_uses)
        self._payload_states(m, i, configure, router, act_buffer, requant_write, scale_write)
        self._response_states(m, i, response_fifo)

    def _header_states(self, m: Module, i: stream.Interface, header: object,
                       configure: ConfigureUnit, router: PayloadRouter,
                       job_fifo: SyncFIFOBuffered, response_fifo: SyncFIFOBuffered,
                       bank_uses: ActivationBankUses) -> None:
        """HEADER, CHECK, DISPATCH, START: a header read, checked and started."""
        decoder, taken, is_op, respond = self.fsm, self.taken, self.is_op, self.respond
        c = configure.registers
        header_last, bank = self.header_last, self.bank
        with decoder.state("HEADER"):
            with m.If(taken["HEADER"]):
                m.d.sync += [
                    self.opcode.eq(header.opcode), self.tag.eq(header.tag),
                    self.length.eq(header.length),
                    self.expected_value.eq(self.expected),
                    self.args.eq(header.args), header_last.eq(i.payload.last),
                    self.count.eq(0),
                    self.at_last.eq(header.length == 1), self.remaining.eq(header.length),
                    router.position.eq(0), *router.restart,
                ]
                decoder.goto("CHECK")

        with decoder.state("CHECK"):      # the header checks and the opcode's flags, registered
            m.d.sync += [self.header_flags.eq(Cat(*(bad for _, _, bad in self.header_checks))),
                         *(flag.eq(self.opcode == op) for op, flag in is_op.items())]
            decoder.goto("DISPATCH")

        with decoder.state("DISPATCH"):
            with m.If(is_op[Opcode.CONFIGURE]):
                m.d.sync += configure.configured.eq(0)
            with m.If(self.header_flags != 0):
                m.d.sync += respond(self.check_code, field=self.check_field,
                                    value=Mux(self.check_code == Status.BAD_LENGTH,
                                              self.expected_value, 0),
                                    discard=~header_last)
                decoder.goto("RESPOND")
            with m.Else():
                decoder.goto("START")

        with decoder.state("START"):
            with m.If(self.may_start_r):
                with m.If(is_op[Opcode.IDENTIFY] | is_op[Opcode.READ_COUNTERS]
                          | is_op[Opcode.CLEAR_COUNTERS]):
                    kind = Mux(is_op[Opcode.IDENTIFY], ResponseKind.IDENTIFY,
                               Mux(is_op[Opcode.READ_COUNTERS], ResponseKind.COUNTERS,
                                   ResponseKind.SIMPLE))
                    m.d.comb += [
                        self.clear_counters.eq(is_op[Opcode.CLEAR_COUNTERS]),
                        self.snapshot_counters.eq(is_op[Opcode.READ_COUNTERS]),
                    ]
                    m.d.sync += respond(Mux(header_last, Status.OK, Status.TOO_LONG),
                                        kind=kind, discard=~header_last)
                    decoder.goto("RESPOND")
                with m.Elif(is_op[Opcode.COMPUTE]):
                    m.d.comb += [
                        job_fifo.w_en.eq(1),
                        job_fifo.w_data.eq(bank),
                        bank_uses.increment.eq(Mux(bank, 0b10, 0b01)),
                        response_fifo.w_en.eq(1),
                        self.push_entry.kind.eq(ResponseKind.COMPUTE_START),
                        self.push_entry.value.eq(response_length(c.result_words)),
                    ]
                    with m.If(header_last):
                        m.d.sync += respond(Status.TRUNCATED,
                                            kind=ResponseKind.COMPUTE_STATUS)
                        decoder.goto("FILL")
                    with m.Else():
                        decoder.goto("WEIGHTS")
                with m.Else():
                    with m.If(header_last):
                        m.d.sync += respond(Status.TRUNCATED)
                        decoder.goto("RESPOND")
                    with m.Else():
                        decoder.goto("PAYLOAD")

    def _payload_states(self, m: Module, i: stream.Interface, configure: ConfigureUnit,
                        router: PayloadRouter, act_buffer: ActivationBuffer,
                        requant_write: object, scale_write: object) -> None:
        """WEIGHTS, PAYLOAD, FILL, CONFIG: a command's payload taken."""
        config = self._config
        decoder, taken, is_op, respond = self.fsm, self.taken, self.is_op, self.respond
        count, at_last, word = self.count, self.at_last, i.payload.data
        # COMPUTE's payload: the weights (and MX weight scales) into their FIFOs.
        with decoder.state("WEIGHTS"):
            with m.If(taken["WEIGHTS"]):
                with m.If(at_last):
                    m.d.sync += respond(Mux(i.payload.last, Status.OK, Status.TOO_LONG),
                                        kind=ResponseKind.COMPUTE_STATUS,
                                        discard=~i.payload.last)
                    decoder.goto("RESPOND")
                with m.Elif(i.payload.last):
                    m.d.sync += respond(Status.TRUNCATED, kind=ResponseKind.COMPUTE_STATUS,
                                        value=self.count_next)
                    decoder.goto("FILL")

        # The payload of the other commands.
        with decoder.state("PAYLOAD"):
            with m.If(taken["PAYLOAD"]):
                with m.If(is_op[Opcode.CONFIGURE]):
                    with m.If(count == 0):
                        m.d.sync += self.stage.eq(word)
                    with m.Else():
                        m.d.sync += self.config_word1.eq(word)
                with m.If(is_op[Opcode.LOAD_REQUANT]):
                    with m.If(~count[0]):
                        m.d.sync += self.stage.eq(word)
                    if config.has_requantizer:
                        m.d.comb += requant_write.en.eq(count[0])
                if config.has_mx:
                    m.d.comb += scale_write.en.eq(is_op[Opcode.LOAD_SCALES])
                m.d.comb += act_buffer.w_en.eq(is_op[Opcode.LOAD_ACTIVATIONS])
                with m.If(at_last):
                    m.d.sync += self.final_last.eq(i.payload.last)
                    with m.If(is_op[Opcode.CONFIGURE]):
                        m.d.sync += configure.phase.eq(1)
                        decoder.goto("CONFIG")
                    with m.Else():
                        m.d.sync += respond(
                            Mux(i.payload.last, Status.OK, Status.TOO_LONG),
                            discard=~i.payload.last)
                        decoder.goto("RESPOND")
                with m.Elif(i.payload.last):
                    m.d.sync += respond(Status.TRUNCATED, value=self.count_next)
                    decoder.goto("RESPOND")

        with decoder.state("FILL"):
            # A truncated COMPUTE: the job runs on, with zeros for the missing words.
            with m.If(router.route_ready & at_last):
                decoder.goto("RESPOND")

        # CONFIGURE: the configuration unit's steps, one state (its steps one-hot in the
        # unit's `phase`: fewer decoder states, a shallower next-state logic).
        with decoder.state("CONFIG"):
            configure.steps(m, respond, self.final_last, self.items_rest,
                            finish=lambda: decoder.goto("RESPOND"))

    def _response_states(self, m: Module, i: stream.Interface,
                         response_fifo: SyncFIFOBuffered) -> None:
        """RESPOND, COUNTERS_WAIT, DISCARD: the response queued, the packet's rest dropped."""
        decoder, taken = self.fsm, self.taken
        with decoder.state("RESPOND"):
            with m.If(response_fifo.w_rdy):
                m.d.comb += response_fifo.w_en.eq(1)
                with m.If(self.response.kind == ResponseKind.COUNTERS):
                    m.d.sync += self.counters_pending.eq(1)
                    decoder.goto("COUNTERS_WAIT")
                with m.Elif(self.discard_after):
                    decoder.goto("DISCARD")
                with m.Else():
                    decoder.goto("HEADER")

        # READ_COUNTERS: nothing new starts until the counter words are out, so the
        # counters other than `cycles` (idle since the fence) need no snapshot.
        with decoder.state("COUNTERS_WAIT"):
            with m.If(~self.counters_pending):
                with m.If(self.discard_after):
                    decoder.goto("DISCARD")
                with m.Else():
                    decoder.goto("HEADER")

        with decoder.state("DISCARD"):
            with m.If(taken["DISCARD"] & i.payload.last):
                decoder.goto("HEADER")
