"""UART 8N1 transmitter and receiver with `amaranth.lib.stream` byte interfaces.

A character is a start bit (0), eight data bits least significant first and a stop bit (1),
each `divisor` clock cycles long (divisor = clock frequency / baud rate, rounded to the
nearest integer: `uart_divisor`). The line idles high.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartTx", "UartRx", "uart_divisor", "check_divisor", "MIN_DIVISOR"]

MIN_DIVISOR = 4
"""Fewest clock cycles per bit: the receiver needs a middle sample away from both edges."""


def check_divisor(divisor: int) -> int:
    """Refuse a divisor the receiver cannot work with (ValueError); return it."""
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer of at least {MIN_DIVISOR}, not "
                         f"{divisor!r}")
    return divisor


def uart_divisor(clock_hz: int | float, baudrate: int) -> int:
    """Clock cycles per bit for `baudrate` at `clock_hz`, refusing a rate error above 2%
    (8N1 tolerates about 4.5% in total between both ends)."""
    if not isinstance(baudrate, int) or isinstance(baudrate, bool) or baudrate <= 0:
        raise ValueError(f"baudrate must be a positive integer, not {baudrate!r}")
    if clock_hz <= 0:
        raise ValueError(f"clock_hz must be positive, not {clock_hz!r}")
    divisor = round(clock_hz / baudrate)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baudrate {baudrate} is too high for a {clock_hz} Hz clock (needs "
                         f"at least {MIN_DIVISOR} cycles per bit)")
    error = abs(clock_hz / divisor - baudrate) / baudrate
    if error > 0.02:
        raise ValueError(f"baudrate {baudrate} cannot be made from a {clock_hz} Hz clock: "
                         f"divisor {divisor} is {error:.1%} off")
    return divisor


class _UartComponent(wiring.Component):
    """What the transmitter and the receiver share: the divisor, checked on construction."""

    def __init__(self, divisor: int) -> None:
        try:
            self._divisor = check_divisor(divisor)
        except ValueError:
            self._MustUse__used = True      # refused: no "never elaborated" warning
            raise
        super().__init__()

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor


class UartTx(_UartComponent):
    """UART 8N1 transmitter.

    Ports
    -----
    data : In(stream.Signature(8))
        Bytes to send; one is taken when the previous character's stop bit has ended.
    tx : Out(1)
        The serial line (idle high).
    busy : Out(1)
        A character is on the line.

    Throughput: one byte per 10 * divisor cycles. The first bit starts the cycle after a
    byte is accepted.
    """

    data: In(stream.Signature(8))
    tx: Out(1, init=1)
    busy: Out(1)

    def elaborate(self, platform) -> Module:
        m = Module()
        shift = Signal(10, init=0x3FF)     # stop bit, data, start bit; LSB on the line
        bits_left = Signal(range(11))
        timer = Signal(range(self._divisor))

        m.d.comb += [self.busy.eq(bits_left != 0), self.tx.eq(shift[0])]
        with m.If(bits_left == 0):
            m.d.comb += self.data.ready.eq(1)
            with m.If(self.data.valid):
                m.d.sync += [shift.eq((self.data.payload << 1) | (1 << 9)),
                             bits_left.eq(10), timer.eq(self._divisor - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shift.eq((shift >> 1) | (1 << 9)), bits_left.eq(bits_left - 1),
                         timer.eq(self._divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UartRx(_UartComponent):
    """UART 8N1 receiver.

    The line passes a two-flip-flop synchronizer. A falling edge starts a character; the
    start bit is checked at its middle (a shorter low pulse is a glitch and ignored), the
    data bits and the stop bit are sampled at their middles. A character whose stop bit is
    low is a framing error: it is dropped and `frame_error` pulses (the receiver then waits
    for the line to return high before it looks for the next start bit). A byte that the
    consumer has not taken when the next one completes is lost and `overrun` pulses.

    Ports
    -----
    rx : In(1)
        The serial line (idle high), asynchronous to the clock.
    data : Out(stream.Signature(8))
        Received bytes; `valid` stays high until taken.
    frame_error, overrun : Out(1)
        One-cycle pulses.

    Tolerance: the sample of the stop bit lands inside it while the transmitter's bit time
    is within about +-4.5% of `divisor` cycles (less the synchronizer's 2-3 cycles).
    Latency: a byte is valid 2-3 cycles plus half a bit after the middle of its stop bit.
    """

    rx: In(1, init=1)
    data: Out(stream.Signature(8))
    frame_error: Out(1)
    overrun: Out(1)

    def elaborate(self, platform) -> Module:
        m = Module()
        divisor = self._divisor
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(divisor))
        bit = Signal(range(9))
        shift = Signal(8)
        held = Signal(8)
        valid = Signal()
        m.d.comb += [self.data.payload.eq(held), self.data.valid.eq(valid)]
        with m.If(self.data.ready):
            m.d.sync += valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):          # high again at the middle: a glitch
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq((shift >> 1) | (line << 7)), bit.eq(bit + 1),
                                 timer.eq(divisor - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.d.sync += [held.eq(shift), valid.eq(1)]
                    m.d.comb += self.overrun.eq(valid & ~self.data.ready)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.frame_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):               # wait for the line to go idle again
                with m.If(line):
                    m.next = "IDLE"
        return m
