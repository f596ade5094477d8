"""The command decoder: request packets -> checks, work for the other engines, responses.

A one-hot state machine (`hw.fsm.OneHotFSM`, named `decoder`) reads a header, checks it
(opcode, bank, configured, applicable, length; docs/protocol.md "Errors", in the order of
`golden.reference`), waits for the command's precondition, executes it and queues its
response for the output engine. Preconditions: CONFIGURE, LOAD_REQUANT and READ_COUNTERS wait
until everything is idle; LOAD_ACTIVATIONS / LOAD_SCALES until no queued or running job uses
their bank; COMPUTE for a job-FIFO slot. COMPUTE queues the job and its response header,
then passes its payload on (to the `PayloadRouter`); a COMPUTE cut short is finished with
zero words (state FILL) so the job always completes. CONFIGURE stages its two words and waits
for the `ConfigureUnit`'s answer (state CONFIG).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

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
    vector_words,
)

from .configure import CONTROL_SIGNATURE, config_layout
from .control import first_failure
from .fsm import OneHotFSM
from .requant import CHANNEL_PARAMS
from .responder import RESPONSE_LAYOUT, ResponseKind
from .wire import WORD_LAYOUT, view

__all__ = ["CommandDecoder", "PAYLOAD_LAYOUT"]

PAYLOAD_LAYOUT = data.StructLayout({"word": unsigned(64), "first": unsigned(1)})
"""A COMPUTE payload word on its way to the router; `first`: the COMPUTE's first."""

_STATES = ("HEADER", "CHECK", "DISPATCH", "START", "WEIGHTS", "PAYLOAD", "FILL", "CONFIG",
           "RESPOND", "COUNTERS_WAIT", "DISCARD")
_FLAGGED_OPCODES = (Opcode.IDENTIFY, Opcode.READ_COUNTERS, Opcode.CLEAR_COUNTERS,
                    Opcode.COMPUTE, Opcode.CONFIGURE, Opcode.LOAD_REQUANT, Opcode.LOAD_SCALES,
                    Opcode.LOAD_ACTIVATIONS)


class CommandDecoder(wiring.Component):
    """Request packets -> checks, work for the engines and response-queue entries.

    Ports
    -----
    i_stream : In(stream.Signature(WORD_LAYOUT))
        The request packets.
    responses : Out(stream.Signature(RESPONSE_LAYOUT))
        One entry per response (two for a COMPUTE: its start, then its status), in request
        order.
    jobs : Out(stream.Signature(1))
        The activation bank of each COMPUTE.
    payload : Out(stream.Signature(PAYLOAD_LAYOUT))
        The payload words of each COMPUTE (zeros for the missing words of a cut packet),
        the first of each marked `first`.
    act_write, requant_write, scale_write : the activation buffer's, requantization
        memory's and MX activation-scale memory's write ports (the last two where built).
    configure : Out(CONTROL_SIGNATURE)
        The CONFIGURE unit (`hw.configure.ConfigureUnit`).
    config : In(config_layout(config))
        The applied configuration (the payload lengths the commands need).
    all_idle : In(1)
        Nothing is queued, running or being sent (CONFIGURE, LOAD_REQUANT and READ_COUNTERS
        wait for it).
    bank_idle : In(2)
        No queued or running job uses the activation bank (LOAD_ACTIVATIONS and LOAD_SCALES
        wait for theirs).
    clear_counters, snapshot_counters : Out(1)
        One cycle: CLEAR_COUNTERS; READ_COUNTERS.
    counters_sent : In(1)
        The output engine has sent a READ_COUNTERS response's counter words: the decoder
        takes no new command until then.

    Latency: a command without payload is queued 6 cycles after its word is taken (HEADER,
    CHECK, DISPATCH, START, RESPOND and the queue); payload words are taken one per cycle.
    """

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        members = {
            "i_stream": In(stream.Signature(WORD_LAYOUT)),
            "responses": Out(stream.Signature(RESPONSE_LAYOUT)),
            "jobs": Out(stream.Signature(1)),
            "payload": Out(stream.Signature(PAYLOAD_LAYOUT)),
            "act_write": In(WritePort.Signature(
                addr_width=ceil_log2(config.activation_buffer_depth), shape=8 * config.rows)),
            "configure": Out(CONTROL_SIGNATURE),
            "config": In(config_layout(config)),
            "all_idle": In(1),
            "bank_idle": In(2),
            "clear_counters": Out(1),
            "snapshot_counters": Out(1),
            "counters_sent": In(1),
        }
        if config.has_requantizer:
            members["requant_write"] = In(WritePort.Signature(
                addr_width=ceil_log2(config.requant_depth), shape=CHANNEL_PARAMS))
        if config.has_mx:
            members["scale_write"] = In(WritePort.Signature(
                addr_width=ceil_log2(2 * config.scale_bank_words), shape=64))
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config, c = self._config, self.config
        has_mx, has_requant = config.has_mx, config.has_requantizer
        i = self.i_stream
        word = i.payload.data
        header = view(HEADER, word)
        self.opcode = opcode = Signal(8)
        self.tag = Signal(8)
        self.length = length = Signal(LENGTH_BITS)
        self.args = args = Signal(24)
        self.header_last = Signal()
        self.count = count = Signal(LENGTH_BITS)          # payload words taken (or filled)
        self.first_word = Signal()           # no payload word taken yet
        self.count_next = count_next = Signal(LENGTH_BITS + 1)
        self.at_last = Signal()              # count == length - 1: the final payload word
        self.remaining = Signal(LENGTH_BITS)      # length - count
        m.d.comb += count_next.eq(count + 1)
        self.stage = stage = Signal(64)           # first word of a two-word item
        self.final_last = Signal()           # `last` of the packet's final payload word
        self.response = Signal(RESPONSE_LAYOUT)
        self.discard_after = Signal()
        self.counters_pending = Signal()  # a READ_COUNTERS response is queued or being sent
        self.bank = bank = Signal()
        m.d.comb += bank.eq(view(BANK_ARGS, args).bank[0])
        with m.If(self.counters_sent):
            m.d.sync += self.counters_pending.eq(0)

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
            (Status.NOT_CONFIGURED, Field.NONE,
             configured_command & ~self.configure.configured),
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
                m.d.comb += may_start.eq(self.all_idle)
            with m.Case(Opcode.LOAD_SCALES, Opcode.LOAD_ACTIVATIONS):
                m.d.comb += may_start.eq(self.bank_idle.bit_select(bank, 1))
            with m.Case(Opcode.COMPUTE):
                m.d.comb += may_start.eq(self.jobs.ready & self.responses.ready)
            with m.Default():
                m.d.comb += may_start.eq(1)

        # Registered: the opcode is steady from HEADER on, and only the decoder queues work
        # (never in the cycles just before START).
        self.may_start_r = may_start_r = Signal()
        m.d.sync += may_start_r.eq(may_start)

        self.push_entry = push_entry = Signal(RESPONSE_LAYOUT)
        m.d.comb += [
            push_entry.eq(self.response),
            push_entry.opcode.eq(opcode),
            push_entry.tag.eq(self.tag),
            self.responses.payload.eq(push_entry),
            self.configure.word0.eq(stage),
            self.jobs.payload.eq(bank),
        ]

        # Payload writes: address and data always driven, only the enables are decoded.
        # A vector of several words (R > 8) is written with its last word; the words before
        # it wait in `vector_stage`, the latest on top.
        vector_data = view(activation_word(config), word).vector
        self.log_vector_words = log_words = exact_log2(vector_words(config))
        if log_words:
            self.vector_stage = Signal(64 * ((1 << log_words) - 1))
            vector_data = Cat(self.vector_stage, vector_data)
        m.d.comb += [self.act_write.addr.eq(bank * config.activation_bank_depth
                                            + (count >> log_words if log_words else count)),
                     self.act_write.data.eq(vector_data)]
        if has_requant:
            channel_words = view(REQUANT[0], stage), view(REQUANT[1], word)
            m.d.comb += [
                self.requant_write.addr.eq(count[1:]),
                self.requant_write.data.bias.eq(channel_words[0].bias),
                self.requant_write.data.multiplier.eq(channel_words[0].multiplier),
                self.requant_write.data.shift.eq(channel_words[1].shift),
            ]
        if has_mx:
            m.d.comb += [self.scale_write.addr.eq(bank * config.scale_bank_words + count),
                         self.scale_write.data.eq(word)]

        self._fsm(m, header)
        return m

    def respond(self, code: object, kind: int = ResponseKind.SIMPLE, field: object = 0,
                value: object = 0, discard: object = 0) -> list:
        """Statements that set the pending response (pushed in RESPOND)."""
        response = self.response
        return [response.kind.eq(kind), response.code.eq(code), response.field.eq(field),
                response.value.eq(value), self.discard_after.eq(discard)]

    def _fsm(self, m: Module, header: object) -> None:
        # The decoder is one-hot (`hw.fsm`): `ready` and the enables of what a word writes
        # each read a state's register, and a state's next value has only the terms of
        # its own transitions. `taken[state]`: a word is taken in that state (only
        # WEIGHTS' `ready` depends on more than the state).
        i, payload = self.i_stream, self.payload
        decoder = self.fsm = OneHotFSM(m, _STATES, name="decoder")
        in_state = {name: decoder.ongoing(name)
                    for name in ("HEADER", "WEIGHTS", "PAYLOAD", "FILL", "DISCARD")}
        taken = {name: in_state[name] & i.valid for name in ("HEADER", "PAYLOAD", "DISCARD")}
        taken["WEIGHTS"] = in_state["WEIGHTS"] & i.valid & payload.ready
        self.in_state, self.taken = in_state, taken

        # The opcode as one flag per command that DISPATCH, START and PAYLOAD tell apart
        # (registered in CHECK: no 8-bit comparison on their paths).
        self.is_op = {op: Signal(name=f"is_{op.name.lower()}") for op in _FLAGGED_OPCODES}

        word = i.payload.data
        m.d.comb += [
            i.ready.eq(in_state["HEADER"] | in_state["PAYLOAD"] | in_state["DISCARD"]
                       | (in_state["WEIGHTS"] & payload.ready)),
            payload.payload.word.eq(Mux(in_state["WEIGHTS"], word, 0)),
            payload.payload.first.eq(self.first_word),
            payload.valid.eq((in_state["WEIGHTS"] & i.valid) | in_state["FILL"]),
        ]
        # Payload words taken (or filled in), counted in the states that take them.
        with m.If(taken["WEIGHTS"] | taken["PAYLOAD"] | (in_state["FILL"] & payload.ready)):
            m.d.sync += [self.count.eq(self.count_next), self.remaining.eq(self.remaining - 1),
                         self.at_last.eq(self.remaining == 2), self.first_word.eq(0)]

        self._header_states(m, header)
        self._payload_states(m)
        self._response_states(m)

    def _header_states(self, m: Module, header: object) -> None:
        """HEADER, CHECK, DISPATCH, START: a header read, checked and started."""
        decoder, taken, is_op, respond = self.fsm, self.taken, self.is_op, self.respond
        i, c = self.i_stream, self.config
        header_last = self.header_last
        # The payload counters start with the header. In the fast pipeline they load on
        # every HEADER cycle (nothing reads them there), so their enable is the state and
        # the payload-taking strobe, without `valid` (an ECP5 critical path).
        counters = [self.count.eq(0), self.first_word.eq(1),
                    self.at_last.eq(header.length == 1), self.remaining.eq(header.length)]
        every_cycle = self._config.pipeline == "fast"
        with decoder.state("HEADER"):
            if every_cycle:
                m.d.sync += counters
            with m.If(taken["HEADER"]):
                m.d.sync += [
                    self.opcode.eq(header.opcode), self.tag.eq(header.tag),
                    self.length.eq(header.length),
                    self.expected_value.eq(self.expected),
                    self.args.eq(header.args), header_last.eq(i.payload.last),
                    *([] if every_cycle else counters),
                ]
                decoder.goto("CHECK")

        with decoder.state("CHECK"):      # the header checks and the opcode's flags, registered
            m.d.sync += [self.header_flags.eq(Cat(*(bad for _, _, bad in self.header_checks))),
                         *(flag.eq(self.opcode == op) for op, flag in is_op.items())]
            decoder.goto("DISPATCH")

        with decoder.state("DISPATCH"):
            with m.If(is_op[Opcode.CONFIGURE]):
                m.d.comb += self.configure.invalidate.eq(1)
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
                    # may_start_r saw room in both queues, and only the decoder fills them.
                    m.d.comb += [
                        self.jobs.valid.eq(1),
                        self.responses.valid.eq(1),
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

    def _payload_states(self, m: Module) -> None:
        """WEIGHTS, PAYLOAD, FILL, CONFIG: a command's payload taken."""
        config = self._config
        decoder, taken, is_op, respond = self.fsm, self.taken, self.is_op, self.respond
        i, configure = self.i_stream, self.configure
        count, at_last, word = self.count, self.at_last, i.payload.data
        # COMPUTE's payload: the weights (and MX weight scales) on to the router.
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
                        m.d.sync += configure.word1.eq(word)
                with m.If(is_op[Opcode.LOAD_REQUANT]):
                    with m.If(~count[0]):
                        m.d.sync += self.stage.eq(word)
                    if config.has_requantizer:
                        m.d.comb += self.requant_write.en.eq(count[0])
                if config.has_mx:
                    m.d.comb += self.scale_write.en.eq(is_op[Opcode.LOAD_SCALES])
                if self.log_vector_words:
                    log_words = self.log_vector_words
                    vector_end = count[:log_words] == (1 << log_words) - 1
                    m.d.comb += self.act_write.en.eq(is_op[Opcode.LOAD_ACTIVATIONS] & vector_end)
                    stage = self.vector_stage
                    with m.If(is_op[Opcode.LOAD_ACTIVATIONS]):
                        m.d.sync += stage.eq(Cat(stage[64:], word))
                else:
                    m.d.comb += self.act_write.en.eq(is_op[Opcode.LOAD_ACTIVATIONS])
                with m.If(at_last):
                    m.d.sync += self.final_last.eq(i.payload.last)
                    with m.If(is_op[Opcode.CONFIGURE]):
                        m.d.comb += configure.start.eq(1)
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
            with m.If(self.payload.ready & at_last):
                decoder.goto("RESPOND")

        # CONFIGURE: wait for the configuration unit's answer.
        with decoder.state("CONFIG"):
            with m.If(configure.done):
                final_last = self.final_last
                with m.If(configure.code == Status.OK):
                    m.d.sync += respond(Mux(final_last, Status.OK, Status.TOO_LONG),
                                        discard=~final_last)
                with m.Else():
                    m.d.sync += respond(configure.code, field=configure.field,
                                        discard=~final_last)
                decoder.goto("RESPOND")

    def _response_states(self, m: Module) -> None:
        """RESPOND, COUNTERS_WAIT, DISCARD: the response queued, the packet's rest dropped."""
        decoder, taken, i = self.fsm, self.taken, self.i_stream
        with decoder.state("RESPOND"):
            m.d.comb += self.responses.valid.eq(1)
            with m.If(self.responses.ready):
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
