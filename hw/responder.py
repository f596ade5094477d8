"""The output engine: the queued responses, in request order, onto the output stream.

The decoder queues one entry per response (`RESPONSE_LAYOUT`) in the response FIFO; the
output engine sends each: the header, then the identification words, the counters or the
job's result words (from the result FIFO), then the status word with `last`. A COMPUTE's
status is an entry of its own, queued when the COMPUTE packet has ended, so results flow
before the weights have all arrived.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from golden.config import ArrayConfig
from golden.protocol import (
    COUNTER_NAMES,
    HEADER,
    IDENTIFY,
    LENGTH_BITS,
    STATUS,
    identify_words,
    response_length,
)

from .wire import WORD_LAYOUT, pack

__all__ = ["ResponseKind", "RESPONSE_LAYOUT", "RESPONSE_LENGTHS", "Responder"]


class ResponseKind:
    """Kinds of response-queue entries (what the output engine sends for each)."""

    SIMPLE = 0          # header, status
    IDENTIFY = 1        # header, 4 identification words, status
    COUNTERS = 2        # header, 5 counters, status
    COMPUTE_START = 3   # header, then the job's result words
    COMPUTE_STATUS = 4  # the status word that ends a COMPUTE response


RESPONSE_LAYOUT = data.StructLayout({
    "kind": unsigned(3),
    "opcode": unsigned(8),
    "tag": unsigned(8),
    "code": unsigned(4),                # `Status` (< 16)
    "field": unsigned(4),               # `Field` (< 16)
    # The status word's value (a length or a word count); for COMPUTE_START the response
    # length (the other kinds' lengths are fixed: `RESPONSE_LENGTHS`).
    "value": unsigned(LENGTH_BITS),
})
"""One entry of the response queue."""

RESPONSE_LENGTHS = {
    ResponseKind.SIMPLE: response_length(0),
    ResponseKind.IDENTIFY: response_length(len(IDENTIFY)),
    ResponseKind.COUNTERS: response_length(len(COUNTER_NAMES)),
}
"""Header length of the responses whose length is fixed."""


class Responder(wiring.Component):
    """The output engine (state machine `output`), with the response queue.

    Ports
    -----
    responses : In(stream.Signature(RESPONSE_LAYOUT))
        Response entries, queued in a FIFO of `queue_depth` (the decoder pushes an entry
        when it may: `ready` is the queue's room).
    results : In(stream.Signature(64))
        The result words of the COMPUTEs, in order.
    counters : In(ArrayLayout(counter_bits, 5))
        What READ_COUNTERS sends (`hw.counters.PerformanceCounters.words`).
    o_stream : Out(stream.Signature(WORD_LAYOUT))
        The response packets; its payload is a register that holds while the stream
        stalls.
    counters_sent : Out(1)
        One cycle: a READ_COUNTERS response's counter words have been sent.
    idle : Out(1)
        No response is queued or being sent.

    Throughput one word per cycle; a response's header leaves 3 cycles after its entry is
    queued (the queue's 2, the output register's 1) when nothing is queued before it."""

    queue_depth = 4

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        super().__init__({
            "responses": In(stream.Signature(RESPONSE_LAYOUT)),
            "results": In(stream.Signature(64)),
            "counters": In(data.ArrayLayout(config.counter_bits, len(COUNTER_NAMES))),
            "o_stream": Out(stream.Signature(WORD_LAYOUT)),
            "counters_sent": Out(1),
            "idle": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self._config
        m.submodules.response_fifo = response_fifo = SyncFIFOBuffered(
            width=RESPONSE_LAYOUT.size, depth=self.queue_depth)
        m.d.comb += [response_fifo.w_data.eq(self.responses.payload),
                     response_fifo.w_en.eq(self.responses.valid),
                     self.responses.ready.eq(response_fifo.w_rdy)]
        results = self.results
        # The engine offers words on `o` (valid, payload, ready as a stream); a register
        # slice drives `o_stream` from them, so its payload is a register that holds while
        # the stream stalls (and the output logic is off the consumer's paths).
        o = stream.Signature(WORD_LAYOUT).create()
        out = self.o_stream
        m.d.comb += o.ready.eq(~out.valid | out.ready)
        with m.If(o.ready):
            m.d.sync += [out.valid.eq(o.valid), out.payload.eq(o.payload)]
        entry = Signal(RESPONSE_LAYOUT)   # the queue's head, taken off when it is sent
        m.d.comb += entry.eq(response_fifo.r_data)
        out_index = Signal(LENGTH_BITS)
        counter_words = Array(self.counters[index] for index in range(len(COUNTER_NAMES)))
        identity = Array(Const(w, 64) for w in identify_words(config))
        entry_length = Signal(LENGTH_BITS)
        with m.Switch(entry.kind):
            for kind, words in RESPONSE_LENGTHS.items():
                with m.Case(kind):
                    m.d.comb += entry_length.eq(words)
            with m.Default():
                m.d.comb += entry_length.eq(entry.value)
        header_word = pack(HEADER, opcode=entry.opcode, tag=entry.tag, length=entry_length)
        status_word = pack(STATUS, code=entry.code, opcode=entry.opcode, field=entry.field,
                           value=entry.value)
        out_at_end = Signal()     # RESULTS: out_index == 0, the response's last result word
        o_transfer = o.valid & o.ready
        with m.FSM(name="output"):
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(response_fifo.level == 0)
                with m.If(response_fifo.r_rdy):
                    m.d.sync += out_index.eq(0)
                    with m.If(entry.kind == ResponseKind.COMPUTE_STATUS):
                        m.next = "STATUS"
                    with m.Else():
                        m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [o.valid.eq(1), o.payload.data.eq(header_word)]
                with m.If(o.ready):
                    with m.Switch(entry.kind):
                        with m.Case(ResponseKind.IDENTIFY):
                            m.next = "IDENTIFY"
                        with m.Case(ResponseKind.COUNTERS):
                            m.next = "COUNTERS"
                        with m.Case(ResponseKind.COMPUTE_START):
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
                    # (out_index counts from 0 here: its low bits tell the last word)
                    with m.If(out_index[:2] == len(IDENTIFY) - 1):
                        m.next = "STATUS"
            with m.State("COUNTERS"):
                m.d.comb += [o.valid.eq(1), o.payload.data.eq(counter_words[out_index[:3]])]
                with m.If(o.ready):
                    m.d.sync += out_index.eq(out_index + 1)
                    with m.If(out_index[:3] == len(COUNTER_NAMES) - 1):
                        m.d.comb += self.counters_sent.eq(1)
                        m.next = "STATUS"
            with m.State("RESULTS"):
                m.d.comb += [
                    o.valid.eq(results.valid),
                    o.payload.data.eq(results.payload),
                    results.ready.eq(o.ready),
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
        return m
