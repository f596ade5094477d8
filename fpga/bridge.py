"""The link-layer bridge between a byte stream (the UART) and the accelerator's word streams.

`FrameBridge` speaks the frame protocol of docs/protocol.md, "Serial link" (`golden.framing`
is the Python side and the source of every constant): it answers every host frame with one
board frame; good DATA frames with a new sequence number are stored in a receive ring and
forwarded to the accelerator only after their CRC has been checked; the accelerator's
response words are collected in a transmit ring and sent in numbered chunks, each kept until
the host acknowledges it, so a lost chunk is sent again and never twice to the accelerator.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from golden.framing import (
    CRC_INIT,
    CRC_POLY,
    FRAME_HEADER,
    MAX_FRAME_WORDS,
    SYNC,
    FrameType,
    header_byte,
)
from hw.fsm import OneHotFSM
from hw.wire import WORD_LAYOUT

__all__ = ["FrameBridge", "crc16_update"]


def crc16_update(crc: Value, byte: Value) -> Value:
    """CRC-16/CCITT-FALSE register after shifting in `byte`, most significant bit first
    (combinational; the same computation as `golden.framing.crc16_bitwise`)."""
    bits = [crc[i] for i in range(16)]
    for position in range(7, -1, -1):
        feedback = bits[15] ^ byte[position]
        bits = [feedback if i == 0 else
                (bits[i - 1] ^ feedback if (CRC_POLY >> i) & 1 else bits[i - 1])
                for i in range(16)]
    return Cat(*bits)


class FrameBridge(wiring.Component):
    """Frames, CRC, sequence numbers and retransmission between bytes and protocol words.

    Parameters
    ----------
    timeout_cycles
        Silence (cycles without a received byte) after which a partly received frame is
        abandoned and answered with NAK; also how long the bridge waits for the line to go
        quiet after a frame with damaged length bytes before it answers NAK.
    ring_words
        Depth of the receive and the transmit ring, a power of two of at least
        2 * `MAX_FRAME_WORDS` (one chunk kept for retransmission while the next fills).

    Ports
    -----
    rx_byte : In(stream.Signature(8))
        Bytes from the host (always taken; bytes arriving while a reply is sent are
        dropped: the host sends nothing until it has the reply).
    tx_byte : Out(stream.Signature(8))
        Bytes to the host.
    to_accel : Out(stream.Signature(WORD_LAYOUT))
        Request words (with `last`) for the accelerator, in order, each exactly once.
    from_accel : In(stream.Signature(WORD_LAYOUT))
        Response words from the accelerator (taken while the transmit ring has room).
    accel_reset : Out(1)
        High for one cycle when a RESET frame is accepted: reset the accelerator with it.
        A register (also high while the bridge itself is in reset), so the accelerator's
        reset net starts at a flip-flop.
    frame_good, frame_bad : Out(1)
        One-cycle pulses: a host frame passed its CRC / was answered with NAK.

    Latency: the reply to a frame starts the cycle after its last CRC byte is received
    (NAK after `timeout_cycles` of silence for an incomplete frame). Throughput: a word is
    forwarded every 13 cycles and collected every 10, far more than the UART needs (a word
    is 90 bit times on the line).
    """

    def __init__(self, *, timeout_cycles: int, ring_words: int = 64) -> None:
        self.check_parameters(timeout_cycles=timeout_cycles, ring_words=ring_words)
        self._timeout_cycles = timeout_cycles
        self._ring_words = ring_words
        super().__init__({
            "rx_byte": In(stream.Signature(8)),
            "tx_byte": Out(stream.Signature(8)),
            "to_accel": Out(stream.Signature(WORD_LAYOUT)),
            "from_accel": In(stream.Signature(WORD_LAYOUT)),
            "accel_reset": Out(1, init=1),
            "frame_good": Out(1),
            "frame_bad": Out(1),
        })

    @staticmethod
    def check_parameters(*, timeout_cycles: int, ring_words: int = 64) -> None:
        """Raise ValueError for parameters `FrameBridge` refuses."""
        if isinstance(timeout_cycles, bool) or not isinstance(timeout_cycles, int) \
                or timeout_cycles < 16:
            raise ValueError(f"timeout_cycles must be an integer of at least 16, not "
                             f"{timeout_cycles!r}")
        if isinstance(ring_words, bool) or not isinstance(ring_words, int) \
                or ring_words < 2 * MAX_FRAME_WORDS or ring_words & (ring_words - 1):
            raise ValueError(f"ring_words must be a power of two of at least "
                             f"{2 * MAX_FRAME_WORDS}, not {ring_words!r}")

    @property
    def timeout_cycles(self) -> int:
        return self._timeout_cycles

    @property
    def ring_words(self) -> int:
        return self._ring_words

    def elaborate(self, platform) -> Module:
        m = Module()
        rings = _Rings(m, self._ring_words)
        _Forwarder(rings).build(m, self.to_accel)
        _Collector(rings).build(m, self.from_accel)
        _Link(rings, self._timeout_cycles).build(m, self)
        return m


class _Rings:
    """The receive and transmit rings (byte memories, in block RAM) and their pointers.

    Word slot s is bytes 16 s .. 16 s + 8 of a ring: the word least significant byte first
    and then its flag byte (bit 0 = `last`), as on the line. (A separate `last` register per
    slot would cost more logic than the unused bytes cost RAM.) Pointers count words, with
    one more bit than the address to tell a full ring from an empty one; their differences
    are taken modulo 2 ** that width."""

    def __init__(self, m: Module, ring: int) -> None:
        self.ring = ring
        self.address_bits = address_bits = exact_log2(ring)
        pointer = address_bits + 1          # one more bit tells a full ring from an empty one

        m.submodules.rx_ring = rx_ring = Memory(shape=8, depth=16 * ring, init=[])
        m.submodules.tx_ring = tx_ring = Memory(shape=8, depth=16 * ring, init=[])
        self.rx_write = rx_ring.write_port()
        self.rx_read = rx_ring.read_port()
        self.tx_write_port = tx_ring.write_port()
        self.tx_read = tx_ring.read_port()

        self.rx_head = rx_head = Signal(pointer)   # end of the accepted words
        self.rx_tail = rx_tail = Signal(pointer)   # next word for the accelerator
        self.tx_ack = tx_ack = Signal(pointer)     # first word of the chunk awaiting its ack
        self.tx_seal = tx_seal = Signal(pointer)   # end of that chunk
        self.tx_fill = tx_fill = Signal(pointer)   # end of the words collected
        self.last_seq = Signal(8)       # sequence number of the last accepted DATA frame
        self.chunk_seq = chunk_seq = Signal(8)    # sequence number of [tx_ack, tx_seal)
        self.clear = Signal()           # RESET frame accepted: empty everything

        # Differences of ring pointers are taken modulo 2 ** pointer (signal widths).
        rx_used = Signal(pointer)
        self.rx_free = rx_free = Signal(pointer + 1)
        self.sealed = sealed = Signal(pointer)    # words in the chunk awaiting its ack
        self.waiting = waiting = Signal(pointer)  # words collected and not yet acknowledged
        self.next_chunk_seq = next_chunk_seq = Signal(8)
        # rx_free is registered (one cycle behind the pointers): it is read when a frame's
        # header arrives and when a reply's header goes out, never in the cycle after a
        # pointer moves.
        m.d.sync += rx_free.eq(ring - rx_used)
        m.d.comb += [rx_used.eq(rx_head - rx_tail),
                     sealed.eq(tx_seal - tx_ack), waiting.eq(tx_fill - tx_ack),
                     next_chunk_seq.eq(chunk_seq + 1)]
        self.free_info = rx_free if ring <= 255 else Mux(rx_free > 255, 255, rx_free)


class _Forwarder:
    """Receive ring -> accelerator: a word is read byte by byte, then offered; a RESET
    frame (`clear`) abandons it."""

    def __init__(self, rings: _Rings) -> None:
        self._rings = rings

    def build(self, m: Module, to_accel: stream.Interface) -> None:
        r = self._rings
        rx_read, rx_tail, clear = r.rx_read, r.rx_tail, r.clear
        forward_word = Signal(64)
        forward_last = Signal()
        fetch = Signal(4)                   # byte being read (the data arrives a cycle later)
        m.d.comb += [rx_read.addr.eq(Cat(fetch, rx_tail[:r.address_bits])),
                     to_accel.payload.data.eq(forward_word),
                     to_accel.payload.last.eq(forward_last)]
        # Whether the ring holds a word, as a register (off the state machine's path): it
        # is one cycle behind the pointers, so WAIT trusts it only from its second cycle
        # (`armed`), when it reflects the pointers WAIT found (and a RESET disarms).
        rx_pending = Signal()
        armed = Signal()
        m.d.sync += rx_pending.eq(rx_tail != r.rx_head)
        forward = OneHotFSM(m, ("WAIT", "FETCH", "SHOW"), name="forward")
        with forward.state("WAIT"):
            m.d.sync += [fetch.eq(0), armed.eq(~clear)]
            with m.If(armed & rx_pending & ~clear):
                m.d.sync += armed.eq(0)
                forward.goto("FETCH")
        with forward.state("FETCH"):
            m.d.sync += fetch.eq(fetch + 1)
            with m.If((fetch != 0) & (fetch != 9)):
                m.d.sync += forward_word.eq(Cat(forward_word[8:], rx_read.data))
            with m.If(clear):
                forward.goto("WAIT")
            with m.Elif(fetch == 9):
                m.d.sync += forward_last.eq(rx_read.data[0])
                forward.goto("SHOW")
        with forward.state("SHOW"):
            # (Not gated by `clear`: a word taken in a RESET cycle is dropped by the
            # accelerator's reset in that same cycle.)
            m.d.comb += to_accel.valid.eq(1)
            with m.If(clear):
                forward.goto("WAIT")
            with m.Elif(to_accel.ready):
                m.d.sync += rx_tail.eq(rx_tail + 1)
                forward.goto("WAIT")


class _Collector:
    """Accelerator -> transmit ring.

    The accelerator's output payload is a register that holds while the stream waits
    (`hw.accelerator`), so the word is written from it, one byte per cycle, then its flag
    byte, and only then taken: `take` (the stream's `ready`) is a register, high in the
    cycle of the flag byte. A word starts while the ring has room for it; `room` is
    registered (the accelerator's output logic sees neither ring arithmetic nor the byte
    counter) and one cycle late, so it keeps a slot to spare."""

    def __init__(self, rings: _Rings) -> None:
        self._rings = rings

    def build(self, m: Module, from_accel: stream.Interface) -> None:
        r = self._rings
        tx_write_port, tx_fill, clear = r.tx_write_port, r.tx_fill, r.clear
        room = Signal()
        take = Signal()
        writing = Signal()
        collect = Signal(4)                 # byte of the offered word being written
        word = from_accel.payload
        m.d.comb += [
            tx_write_port.addr.eq(Cat(collect, tx_fill[:r.address_bits])),
            tx_write_port.data.eq(Mux(collect == 8, word.last,
                                      word.data.word_select(collect[:3], 8))),
            tx_write_port.en.eq(writing & ~clear),
            from_accel.ready.eq(take),
        ]
        m.d.sync += room.eq(r.waiting < r.ring - 2)
        with m.If(clear):
            m.d.sync += [writing.eq(0), collect.eq(0), take.eq(0)]
        with m.Elif(writing):
            m.d.sync += [collect.eq(collect + 1), take.eq(collect == 7)]
            with m.If(collect == 8):
                m.d.sync += [writing.eq(0), collect.eq(0), tx_fill.eq(tx_fill + 1)]
        with m.Elif(from_accel.valid & room):
            m.d.sync += [writing.eq(1), collect.eq(0)]


class _Link:
    """The frame receiver and replier: one-hot state machine `link`.

    It hunts for SYNC, takes a frame's header (deciding what it can byte by byte), stores
    the payload of a DATA frame with a new sequence number in the receive ring, checks the
    CRC, then commits (accepts the words, releases the acknowledged chunk, resets on a RESET
    frame) and replies: a header, the chunk of response words, the CRC. A frame that stops
    for `timeout_cycles` or arrives damaged is answered with NAK."""

    def __init__(self, rings: _Rings, timeout_cycles: int) -> None:
        self._rings = rings
        self._timeout_cycles = timeout_cycles

    def build(self, m: Module, bridge: FrameBridge) -> None:
        r = self._rings
        self.bridge = bridge
        self.crc = crc = Signal(16)
        self.crc_next = crc_next = Signal(16)
        m.d.comb += crc_next.eq(crc16_update(crc, bridge.rx_byte.payload))
        self.frame_type = Signal(8)
        self.frame_seq = Signal(8)
        self.frame_ack = Signal(8)
        self.count = Signal(8)
        self.count_last = Signal(8)      # count - 1: the index of the frame's last word
        self.type_data = Signal()        # the header's type is DATA
        self.type_ok = Signal()          # ... DATA or RESET
        self.seq_new = Signal()          # its sequence number differs from the last accepted
        self.count_ok = Signal()         # its word count is at most MAX_FRAME_WORDS
        self.count_fits = Signal()       # ... and fits the receive ring
        self.header_index = Signal(range(8))
        self.word_index = word_index = Signal(8)
        self.byte_index = byte_index = Signal(range(9))
        self.store = Signal()
        silence = Signal(range(self._timeout_cycles + 1))

        self.reply_type = Signal(8)
        self.reply_count = Signal(8)
        self.tx_byte = tx_byte = Signal(8)
        self.tx_data = Signal(8)         # the reply byte read from the ring
        self.tx_crc = tx_crc = Signal(16)
        m.d.comb += [bridge.tx_byte.payload.eq(tx_byte),
                     r.tx_read.addr.eq(Cat(byte_index,
                                           (r.tx_ack + word_index)[:r.address_bits]))]
        self.sent = sent = Signal()
        m.d.comb += sent.eq(bridge.tx_byte.valid & bridge.tx_byte.ready)
        # The receiver takes bytes in every state but VERIFY, COMMIT, RESET and SEAL (from a
        # complete frame to its reply): `listening` is a register low exactly there, so
        # `got` decodes no state.
        self.listening = listening = Signal(init=1)
        self.got = got = Signal()
        m.d.comb += [bridge.rx_byte.ready.eq(listening),
                     got.eq(bridge.rx_byte.valid & listening)]

        # timed_out is a register equal to (silence == timeout_cycles), so the comparison
        # is off the receive state machine's paths.
        self.timed_out = timed_out = Signal()
        with m.If(got):
            m.d.sync += [silence.eq(0), timed_out.eq(0)]
        with m.Else():
            m.d.sync += [silence.eq(silence + (silence != self._timeout_cycles)),
                         timed_out.eq(silence >= self._timeout_cycles - 1)]
        self.silence = silence

        # The receiver and replier state machine, one-hot (`hw.fsm`): the receive path's
        # decisions each read one state register.
        self.fsm = OneHotFSM(m, ("HUNT", "HEADER", "PAYLOAD", "CRC", "VERIFY", "COMMIT",
                                 "DISCARD", "RESET", "SEAL", "REPLY_HEADER", "REPLY_NEXT",
                                 "REPLY_LOAD", "REPLY_FETCH", "REPLY_BYTE", "REPLY_CRC"),
                             name="link")

        # A sent byte enters the reply's CRC one cycle later (off the byte multiplexer's
        # path); REPLY_NEXT lies between the last data byte and the CRC bytes.
        self.crc_byte = crc_byte = Signal(8)
        self.crc_take = crc_take = Signal()
        self.verdict_bad = Signal()
        self.verdict_release = Signal()
        self.verdict_busy = Signal()
        self.verdict_accept = Signal()
        m.d.sync += crc_take.eq(0)
        with m.If(crc_take):
            m.d.sync += tx_crc.eq(crc16_update(tx_crc, crc_byte))

        m.d.sync += bridge.accel_reset.eq(0)      # unless COMMIT accepts a RESET frame
        self._receive_states(m)
        self._decide_states(m)
        self._reply_states(m)

    def _nak(self, m: Module) -> None:
        """Answer with NAK (the frame was damaged or incomplete)."""
        m.d.sync += [self.reply_type.eq(FrameType.NAK), self.reply_count.eq(0),
                     self.header_index.eq(0), self.tx_crc.eq(CRC_INIT),
                     self.listening.eq(1)]
        m.d.comb += self.bridge.frame_bad.eq(1)
        self.fsm.goto("REPLY_HEADER")

    def _receive_states(self, m: Module) -> None:
        """HUNT, HEADER, PAYLOAD, CRC: a frame's bytes taken."""
        r, link, got = self._rings, self.fsm, self.got
        crc, crc_next, header_index = self.crc, self.crc_next, self.header_index
        word_index, byte_index = self.word_index, self.byte_index
        count, timed_out = self.count, self.timed_out
        rx_byte = self.bridge.rx_byte
        with link.state("HUNT"):
            with m.If(got & (rx_byte.payload == SYNC)):
                m.d.sync += [crc.eq(CRC_INIT), header_index.eq(0), self.silence.eq(0)]
                link.goto("HEADER")

        with link.state("HEADER"):
            byte = rx_byte.payload
            with m.If(got):
                m.d.sync += [crc.eq(crc_next), header_index.eq(header_index + 1)]
                # header_index counts the bytes after SYNC.
                with m.Switch(header_index):
                    # What the header decides is worked out byte by byte, so that
                    # the last header byte only combines registered flags.
                    with m.Case(header_byte("type") - 1):
                        m.d.sync += [self.frame_type.eq(byte),
                                     self.type_data.eq(byte == FrameType.DATA),
                                     self.type_ok.eq((byte == FrameType.DATA)
                                                     | (byte == FrameType.RESET))]
                    with m.Case(header_byte("seq") - 1):
                        m.d.sync += [self.frame_seq.eq(byte),
                                     self.seq_new.eq(byte != r.last_seq)]
                    with m.Case(header_byte("ack") - 1):
                        m.d.sync += self.frame_ack.eq(byte)
                    with m.Case(header_byte("count") - 1):
                        m.d.sync += [count.eq(byte), self.count_last.eq(byte - 1),
                                     self.count_ok.eq(byte <= MAX_FRAME_WORDS),
                                     self.count_fits.eq(byte <= r.rx_free)]
                    with m.Case(header_byte("count_complement") - 1):
                        good_header = ((count ^ byte) == 0xFF) & self.count_ok & self.type_ok
                        m.d.sync += [
                            word_index.eq(0), byte_index.eq(0), header_index.eq(0),
                            self.store.eq(self.type_data & self.seq_new & self.count_fits),
                        ]
                        with m.If(~good_header):
                            link.goto("DISCARD")
                        with m.Elif(count == 0):
                            link.goto("CRC")
                        with m.Else():
                            link.goto("PAYLOAD")
            with m.Elif(timed_out):
                self._nak(m)

        with link.state("PAYLOAD"):
            slot = (r.rx_head + word_index)[:r.address_bits]
            m.d.comb += [r.rx_write.addr.eq(Cat(byte_index, slot)),
                         r.rx_write.data.eq(rx_byte.payload)]
            with m.If(got):
                m.d.comb += r.rx_write.en.eq(self.store)
                m.d.sync += crc.eq(crc_next)
                with m.If(byte_index != 8):
                    m.d.sync += byte_index.eq(byte_index + 1)
                with m.Else():
                    m.d.sync += [byte_index.eq(0), word_index.eq(word_index + 1)]
                    with m.If(word_index == self.count_last):
                        m.d.sync += header_index.eq(0)
                        link.goto("CRC")
            with m.Elif(timed_out):
                self._nak(m)

        with link.state("CRC"):
            with m.If(got):
                m.d.sync += [crc.eq(crc_next), header_index.eq(header_index + 1)]
                with m.If(header_index == 1):
                    m.d.sync += self.listening.eq(0)
                    link.goto("VERIFY")
            with m.Elif(timed_out):
                self._nak(m)

    def _decide_states(self, m: Module) -> None:
        """VERIFY, COMMIT, DISCARD, RESET, SEAL: a whole frame judged and its reply chosen."""
        r, link, bridge = self._rings, self.fsm, self.bridge
        count = self.count
        # VERIFY registers the decisions about the received frame, COMMIT applies them.
        with link.state("VERIFY"):             # the frame's CRC, over all its bytes, is 0
            m.d.sync += [
                self.verdict_bad.eq(self.crc != 0),
                self.verdict_release.eq((self.frame_ack == r.next_chunk_seq)
                                        & (r.sealed != 0)),
                self.verdict_busy.eq((count != 0) & (self.frame_seq != r.last_seq)
                                     & ~self.store),
                self.verdict_accept.eq((count != 0) & self.store),
            ]
            link.goto("COMMIT")

        with link.state("COMMIT"):
            with m.If(self.verdict_bad):
                self._nak(m)
            with m.Elif(self.frame_type == FrameType.RESET):
                m.d.comb += bridge.frame_good.eq(1)
                m.d.sync += bridge.accel_reset.eq(1)      # a register: high in RESET
                link.goto("RESET")
            with m.Else():
                m.d.comb += bridge.frame_good.eq(1)
                # The host has the chunk it acknowledges: release it.
                with m.If(self.verdict_release):
                    m.d.sync += [r.tx_ack.eq(r.tx_seal), r.chunk_seq.eq(r.next_chunk_seq)]
                m.d.sync += self.reply_type.eq(Mux(self.verdict_busy, FrameType.BUSY,
                                                   FrameType.ACK))
                with m.If(self.verdict_accept):
                    m.d.sync += [r.rx_head.eq(r.rx_head + count), r.last_seq.eq(self.frame_seq)]
                link.goto("SEAL")

        with link.state("DISCARD"):            # damaged length: wait for silence, then NAK
            with m.If(self.timed_out):
                self._nak(m)

        with link.state("RESET"):
            m.d.comb += r.clear.eq(1)
            m.d.sync += [r.rx_head.eq(0), r.rx_tail.eq(0), r.tx_ack.eq(0), r.tx_seal.eq(0),
                         r.tx_fill.eq(0), r.last_seq.eq(self.frame_seq),
                         r.chunk_seq.eq(self.frame_ack), self.reply_type.eq(FrameType.ACK)]
            link.goto("SEAL")

        with link.state("SEAL"):
            # Choose the words of the reply: the unacknowledged chunk again, or a new
            # chunk of whatever the accelerator has sent so far.
            with m.If(r.sealed != 0):
                m.d.sync += self.reply_count.eq(r.sealed)
            with m.Elif(r.waiting > MAX_FRAME_WORDS):
                m.d.sync += [r.tx_seal.eq(r.tx_ack + MAX_FRAME_WORDS),
                             self.reply_count.eq(MAX_FRAME_WORDS)]
            with m.Else():
                m.d.sync += [r.tx_seal.eq(r.tx_fill), self.reply_count.eq(r.waiting)]
            m.d.sync += [self.header_index.eq(0), self.tx_crc.eq(CRC_INIT),
                         self.listening.eq(1)]
            link.goto("REPLY_HEADER")

    def _reply_states(self, m: Module) -> None:
        """REPLY_HEADER .. REPLY_CRC: the reply frame sent byte by byte."""
        r, link, bridge = self._rings, self.fsm, self.bridge
        header_index, word_index, byte_index = self.header_index, self.word_index, \
            self.byte_index
        tx_byte, sent, reply_count = self.tx_byte, self.sent, self.reply_count
        crc_byte, crc_take, tx_data, tx_read = self.crc_byte, self.crc_take, self.tx_data, \
            r.tx_read
        with link.state("REPLY_HEADER"):
            m.d.comb += bridge.tx_byte.valid.eq(1)
            reply_header = {"sync": SYNC, "type": self.reply_type, "seq": r.chunk_seq,
                            "ack": r.last_seq, "info": r.free_info, "count": reply_count}
            assert FRAME_HEADER[-1] == "count_complement"
            with m.Switch(header_index):        # here: the position in the frame
                for name, value in reply_header.items():
                    with m.Case(header_byte(name)):
                        m.d.comb += tx_byte.eq(value)
                with m.Default():
                    m.d.comb += tx_byte.eq(~reply_count)
            with m.If(sent):
                m.d.sync += header_index.eq(header_index + 1)
                m.d.sync += [crc_byte.eq(tx_byte), crc_take.eq(header_index != 0)]
                with m.If(header_index == header_byte("count_complement")):
                    m.d.sync += [word_index.eq(0), header_index.eq(0), byte_index.eq(0)]
                    link.goto("REPLY_NEXT")

        with link.state("REPLY_NEXT"):
            with m.If(word_index == reply_count):
                link.goto("REPLY_CRC")
            with m.Else():
                link.goto("REPLY_LOAD")

        with link.state("REPLY_LOAD"):         # tx_read.addr is the byte's address
            m.d.comb += tx_read.en.eq(1)
            link.goto("REPLY_FETCH")

        # The block RAM's output is slow (about 6 ns on the ECP5): it goes into a
        # register, not straight into the transmitter and the CRC.
        with link.state("REPLY_FETCH"):        # the read data is valid (and held: en low)
            m.d.comb += tx_read.en.eq(0)
            m.d.sync += tx_data.eq(tx_read.data)
            link.goto("REPLY_BYTE")

        with link.state("REPLY_BYTE"):
            m.d.comb += [bridge.tx_byte.valid.eq(1), tx_read.en.eq(0), tx_byte.eq(tx_data)]
            with m.If(sent):
                m.d.sync += [crc_byte.eq(tx_byte), crc_take.eq(1)]
                with m.If(byte_index == 8):
                    m.d.sync += [word_index.eq(word_index + 1), byte_index.eq(0)]
                    link.goto("REPLY_NEXT")
                with m.Else():
                    m.d.sync += byte_index.eq(byte_index + 1)
                    link.goto("REPLY_LOAD")

        with link.state("REPLY_CRC"):
            m.d.comb += [bridge.tx_byte.valid.eq(1),
                         tx_byte.eq(Mux(header_index == 0, self.tx_crc[8:],
                                        self.tx_crc[:8]))]
            with m.If(sent):
                m.d.sync += header_index.eq(header_index + 1)
                with m.If(header_index == 1):
                    link.goto("HUNT")
