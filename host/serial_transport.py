"""The serial transport: protocol beats over a UART with framing, CRC and retries.

`SerialTransport(port)` opens a serial port with pyserial (a board's FTDI, e.g.
/dev/ttyUSB1, or the pseudo-terminal of the board-top simulation, `fpga.boardsim`) and
speaks the link layer of docs/protocol.md, "Serial link" (`golden.framing`): stop-and-wait,
one board frame answering every host frame. Request words travel in DATA frames numbered
by a sequence number; response words come back in numbered chunks inside the answers,
fetched by polls (DATA frames without words) while the accelerator works.

Every damaged, lost or late frame is repaired by sending the host frame again: the board
executes a DATA frame once (it recognises a repeated sequence number) and keeps a chunk
until the host asks for the next one, so nothing is lost or delivered twice. After
`retries` failed attempts in a row, or when the board stops answering, `exchange` raises
`TransportError` with one sentence.

Opening the transport resets the board's link state and the accelerator (a RESET frame),
so responses left over from an earlier session cannot be mistaken for new ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from golden.framing import (
    CRC_BYTES,
    HEADER_BYTES,
    MAX_FRAME_WORDS,
    SYNC,
    WORD_BYTES,
    Frame,
    FrameError,
    FrameType,
    decode_frame,
    header_byte,
    seq_next,
)
from golden.protocol import Beat

from .transport import Transport, TransportError

__all__ = ["SerialTransport", "LinkStats"]


@dataclass
class LinkStats:
    """What the link saw (counts since the transport was opened)."""

    frames: int = 0            # host frames written, retransmissions included
    retransmissions: int = 0   # host frames written again after a failed attempt
    naks: int = 0              # NAK answers (the board found a damaged or incomplete frame)
    timeouts: int = 0          # no complete answer within the timeout
    bad_frames: int = 0        # an answer with damaged length, CRC or fields
    stale: int = 0             # a valid answer to an earlier frame (read past and retried)
    busy: int = 0              # BUSY answers (the receive buffer was full; not an error)

    @property
    def errors(self) -> int:
        """Detected link faults: NAKs, timeouts and damaged answers."""
        return self.naks + self.timeouts + self.bad_frames


class _Failure(Exception):
    """One failed attempt: kind is "nak", "timeout", "bad" or "stale"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class SerialTransport(Transport):
    """A `Transport` over a serial port.

    Parameters
    ----------
    port
        The serial device (or pseudo-terminal) path.
    baudrate
        UART rate; must match the bitstream's (8N1).
    timeout
        Seconds of silence after which an answer counts as lost.
    retries
        Attempts after the first before a frame is given up (`TransportError`).
    """

    name = "serial"
    paced_by_link = True

    def __init__(self, port: str, *, baudrate: int = 115200, timeout: float = 0.5,
                 retries: int = 8) -> None:
        import serial

        if not isinstance(baudrate, int) or isinstance(baudrate, bool) or baudrate <= 0:
            raise ValueError(f"baudrate must be a positive integer, not {baudrate!r}")
        if not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        self._port_name = port
        self._timeout = float(timeout)
        self._retries = retries
        self._serial_error = serial.SerialException
        self.stats = LinkStats()
        self._seq = 0
        self._expect = 0
        self._free = 0
        try:
            self._serial = serial.Serial(port, baudrate=baudrate, timeout=self._timeout,
                                         write_timeout=max(self._timeout, 1.0))
        except (serial.SerialException, OSError) as error:
            raise TransportError(f"cannot open serial port {port!r}: {error}") from None
        try:
            self.reset()
        except TransportError:
            self._serial.close()
            raise

    @property
    def port(self) -> str:
        return self._port_name

    # --- Frames on the wire -------------------------------------------------------------

    def _read_exactly(self, count: int) -> bytes:
        """`count` bytes, or fewer when the line stays silent for `timeout`."""
        data = bytearray()
        while len(data) < count:
            chunk = self._serial.read(count - len(data))
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def _drain(self) -> None:
        """Discard what arrives until the line is quiet (the rest of a damaged answer)."""
        quiet = min(self._timeout / 4, 0.1)
        self._serial.timeout = quiet
        try:
            while self._serial.read(4096):
                pass
        finally:
            self._serial.timeout = self._timeout
        self._serial.reset_input_buffer()

    def _read_frame(self) -> Frame:
        while True:                     # skip anything before SYNC
            byte = self._serial.read(1)
            if not byte:
                raise _Failure("timeout", "no answer")
            if byte[0] == SYNC:
                break
        header = self._read_exactly(HEADER_BYTES - 1)
        if len(header) < HEADER_BYTES - 1:
            raise _Failure("timeout", "an incomplete answer")
        count = header[header_byte("count") - 1]
        if count ^ header[header_byte("count_complement") - 1] != 0xFF \
                or count > MAX_FRAME_WORDS:
            raise _Failure("bad", "an answer with damaged length bytes")
        rest = self._read_exactly(WORD_BYTES * count + CRC_BYTES)
        if len(rest) < WORD_BYTES * count + CRC_BYTES:
            raise _Failure("timeout", "an incomplete answer")
        try:
            return decode_frame(bytes([SYNC]) + header + rest)
        except FrameError as error:
            raise _Failure("bad", f"a damaged answer ({error})") from None

    def _attempt(self, frame: Frame) -> Frame:
        self._serial.write(frame.encode())
        self._serial.flush()
        self.stats.frames += 1
        reply = self._read_frame()
        if reply.type == FrameType.NAK:
            raise _Failure("nak", "the board reported a damaged frame")
        if frame.type == FrameType.RESET:
            if reply.type != FrameType.ACK or (reply.seq, reply.ack) != (frame.ack, frame.seq):
                raise _Failure("stale", "an answer to an earlier frame")
        elif frame.words and reply.ack != frame.seq and reply.type == FrameType.ACK:
            raise _Failure("stale", "an answer to an earlier frame")
        return reply

    def _transact(self, frame: Frame) -> Frame:
        """Send `frame` until a valid answer comes back; return the answer."""
        problem = ""
        for attempt in range(self._retries + 1):
            if attempt:
                self.stats.retransmissions += 1
            try:
                try:
                    return self._attempt(frame)
                except _Failure as failure:
                    problem = str(failure)
                    if failure.kind == "nak":
                        self.stats.naks += 1
                    elif failure.kind == "timeout":
                        self.stats.timeouts += 1
                    elif failure.kind == "bad":
                        self.stats.bad_frames += 1
                    else:
                        self.stats.stale += 1
                    self._drain()
            except (self._serial_error, OSError) as error:
                raise TransportError(
                    f"the serial link on {self._port_name} failed: {error}") from None
        raise TransportError(
            f"the serial link on {self._port_name} is dead: {self._retries + 1} attempts to "
            f"send a frame ended with {problem}")

    # --- Transport interface ------------------------------------------------------------

    def reset(self) -> None:
        """Reset the accelerator and the link state of the board (a RESET frame)."""
        try:
            self._serial.reset_input_buffer()
        except (self._serial_error, OSError) as error:
            raise TransportError(f"the serial link on {self._port_name} failed: {error}") \
                from None
        reply = self._transact(Frame(FrameType.RESET, seq=0, ack=0))
        self._seq = 0
        self._expect = 0
        self._free = reply.info

    def _exchange(self, beats: list[Beat]) -> list[Beat]:
        packets = sum(1 for _, last in beats if last)
        frames = [beats[i:i + MAX_FRAME_WORDS] for i in range(0, len(beats), MAX_FRAME_WORDS)]
        received: list[Beat] = []
        done = 0
        next_frame = 0
        stall_limit = max(20 * self._timeout, 5.0)
        progress_at = time.monotonic()
        while next_frame < len(frames) or done < packets:
            words = frames[next_frame] if next_frame < len(frames) else []
            data = bool(words) and len(words) <= self._free
            seq = seq_next(self._seq) if data else self._seq
            reply = self._transact(Frame(FrameType.DATA, seq=seq, ack=self._expect,
                                         words=tuple(words) if data else ()))
            self._free = reply.info
            progressed = False
            if data:
                if reply.type == FrameType.BUSY:
                    self.stats.busy += 1
                else:
                    self._seq = seq
                    next_frame += 1
                    progressed = True
            if reply.words and reply.seq == self._expect:
                received.extend(reply.words)
                done += sum(1 for _, last in reply.words if last)
                self._expect = seq_next(self._expect)
                progressed = True
            now = time.monotonic()
            if progressed:
                progress_at = now
            elif now - progress_at > stall_limit:
                raise TransportError(
                    f"the accelerator behind {self._port_name} sent nothing for "
                    f"{stall_limit:g} s with {packets - done} responses outstanding")
        return received

    def close(self) -> None:
        if self._serial.is_open:
            self._serial.close()
