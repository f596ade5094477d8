"""The serial link layer of lpmac: frames, CRC-16 and the sequence-number rules
(docs/protocol.md, "Serial link").

This module is the only Python description of the frame format; the serial transport
(`host.serial_transport`), the board-top simulation and the tests all use it, and the
gateware (`fpga.bridge`) takes its constants from here.

A frame is

    SYNC  TYPE  SEQ  ACK  INFO  COUNT  ~COUNT  COUNT x (8 data bytes, flag byte)  CRC_HI CRC_LO

* SYNC = 0x7E, not covered by the CRC; every other byte is.
* Words are 64-bit protocol words, little-endian; the flag byte carries the stream's `last`
  in bit 0 (bits 7..1 are 0).
* CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final
  XOR; check value 0x29B1 for b"123456789"), sent most significant byte first, so running
  the CRC over everything after SYNC including the CRC gives 0.
* COUNT is at most `MAX_FRAME_WORDS`; ~COUNT (its complement) guards the length before the
  CRC can be checked.

Host frames (host -> board): TYPE is DATA or RESET; SEQ numbers DATA frames that carry
words; ACK is the sequence number of the response chunk the host expects next; INFO is 0.
Board frames (board -> host): TYPE is ACK, NAK or BUSY; SEQ numbers the response chunk the
frame carries; ACK is the sequence number of the last DATA frame the board accepted; INFO is
how many words the board's receive buffer can take (at most 255).
"""

from __future__ import annotations

import binascii
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from .protocol import WORD_MASK, Beat

__all__ = [
    "SYNC", "FRAME_HEADER", "header_byte", "HEADER_BYTES", "WORD_BYTES", "CRC_BYTES",
    "MAX_FRAME_WORDS", "FrameType",
    "HOST_TYPES", "BOARD_TYPES", "Frame", "FrameError", "crc16", "crc16_bitwise",
    "encode_frame", "decode_frame", "frame_bytes", "seq_next", "link_words_per_second",
]

SYNC = 0x7E
FRAME_HEADER = ("sync", "type", "seq", "ack", "info", "count", "count_complement")
"""A frame's header bytes, in order (the gateware and the host take positions from here)."""
HEADER_BYTES = len(FRAME_HEADER)


def header_byte(name: str) -> int:
    """Position of header byte `name` (`FRAME_HEADER`) in a frame; SYNC is byte 0."""
    return FRAME_HEADER.index(name)


WORD_BYTES = 9
"""Eight data bytes and the flag byte."""
CRC_BYTES = 2
MAX_FRAME_WORDS = 32
"""Most words one frame carries (32 words: 297 bytes on the line)."""
CRC_INIT = 0xFFFF
CRC_POLY = 0x1021


class FrameType(enum.IntEnum):
    DATA = 0x44     # host: words for the accelerator (COUNT may be 0: a poll)
    RESET = 0x52    # host: reset the accelerator and the link state
    ACK = 0x41      # board: the host frame was good (accepted, or a duplicate)
    NAK = 0x4E      # board: the host frame was damaged or incomplete: send it again
    BUSY = 0x42     # board: a good DATA frame found no room in the receive buffer


HOST_TYPES = (FrameType.DATA, FrameType.RESET)
BOARD_TYPES = (FrameType.ACK, FrameType.NAK, FrameType.BUSY)


class FrameError(ValueError):
    """Bytes that are not a valid frame (the message says why)."""


def crc16(data: bytes | bytearray, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE of `data`, continuing from `crc`."""
    return binascii.crc_hqx(bytes(data), crc)


def crc16_bitwise(data: bytes | bytearray, crc: int = CRC_INIT) -> int:
    """The same CRC, one bit at a time, as the gateware computes it (a cross-check)."""
    for byte in data:
        for bit in range(7, -1, -1):
            feedback = ((crc >> 15) ^ (byte >> bit)) & 1
            crc = ((crc << 1) & 0xFFFF) ^ (CRC_POLY if feedback else 0)
    return crc


def seq_next(seq: int) -> int:
    return (seq + 1) & 0xFF


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int = 0
    ack: int = 0
    info: int = 0
    words: tuple[Beat, ...] = ()

    def encode(self) -> bytes:
        return encode_frame(self.type, self.seq, self.ack, self.info, self.words)


def frame_bytes(count: int) -> int:
    """Length on the line of a frame with `count` words."""
    return HEADER_BYTES + WORD_BYTES * count + CRC_BYTES


def encode_frame(frame_type: int, seq: int, ack: int, info: int,
                 words: Sequence[Beat]) -> bytes:
    """The bytes of one frame."""
    if len(words) > MAX_FRAME_WORDS:
        raise ValueError(f"a frame carries at most {MAX_FRAME_WORDS} words, not {len(words)}")
    for name, value in (("frame_type", frame_type), ("seq", seq), ("ack", ack),
                        ("info", info)):
        if not 0 <= value <= 0xFF:
            raise ValueError(f"{name} must fit one byte, not {value!r}")
    header = {"sync": SYNC, "type": frame_type, "seq": seq, "ack": ack, "info": info,
              "count": len(words), "count_complement": len(words) ^ 0xFF}
    body = bytearray(header[name] for name in FRAME_HEADER[1:])
    for word, last in words:
        if not 0 <= word <= WORD_MASK:
            raise ValueError(f"a word must fit 64 bits, not {word!r}")
        body += word.to_bytes(8, "little")
        body.append(1 if last else 0)
    return bytes([SYNC]) + bytes(body) + crc16(body).to_bytes(2, "big")


def decode_frame(data: bytes | bytearray, types: Sequence[int] = BOARD_TYPES) -> Frame:
    """Decode exactly one frame (SYNC to CRC) whose TYPE is one of `types`."""
    if len(data) < HEADER_BYTES + CRC_BYTES:
        raise FrameError(f"a frame has at least {HEADER_BYTES + CRC_BYTES} bytes, not "
                         f"{len(data)}")
    header = {name: data[index] for index, name in enumerate(FRAME_HEADER)}
    if header["sync"] != SYNC:
        raise FrameError(f"a frame starts with {SYNC:#04x}, not {data[0]:#04x}")
    count = header["count"]
    if count ^ header["count_complement"] != 0xFF or count > MAX_FRAME_WORDS:
        raise FrameError(f"the length bytes {count:#04x} {header['count_complement']:#04x} "
                         "are damaged")
    if len(data) != frame_bytes(count):
        raise FrameError(f"a frame of {count} words has {frame_bytes(count)} bytes, not "
                         f"{len(data)}")
    if crc16(data[1:]) != 0:
        raise FrameError("the CRC does not match")
    if header["type"] not in types:
        raise FrameError(f"frame type {header['type']:#04x} is not expected here")
    words = []
    for index in range(count):
        start = HEADER_BYTES + WORD_BYTES * index
        words.append((int.from_bytes(data[start:start + 8], "little"),
                      bool(data[start + 8] & 1)))
    return Frame(header["type"], header["seq"], header["ack"], header["info"], tuple(words))


def link_words_per_second(baudrate: int, *, words: int = MAX_FRAME_WORDS,
                          turnaround: float = 0.0) -> float:
    """Protocol words per second one direction of the link carries when every frame holds
    `words` words: stop-and-wait, so each frame costs its own bytes, the bytes of the
    (empty) frame that answers or polls it, 10 bit times per byte (8N1), and `turnaround`
    seconds of latency per round trip (USB serial adapters add about 1 ms, or up to 16 ms
    with the FTDI driver's default latency timer)."""
    if not 1 <= words <= MAX_FRAME_WORDS:
        raise ValueError(f"words must be from 1 to {MAX_FRAME_WORDS}, not {words!r}")
    seconds = (frame_bytes(words) + frame_bytes(0)) * 10 / baudrate + turnaround
    return words / seconds
