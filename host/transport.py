"""How the host driver talks to an accelerator: one small interface, several transports.

A transport moves protocol beats (`golden.protocol.Beat`: a 64-bit word and the stream's
`last` flag) to the accelerator's input stream and brings back the beats of its output
stream. It knows nothing of GEMMs: `host.tiling` builds the packets and decodes the
responses, so the same tiling and protocol code runs over every transport.

The accelerator answers every request packet with exactly one response packet (also for
malformed packets, docs/protocol.md "Errors"), so `exchange` knows when it is done: when as
many response packets (beats with `last`) came back as request packets went out.

Transports:

* ``golden``: `golden.reference.ReferenceAccelerator`, the protocol executed in Python on the
  golden model (no RTL; no cycle counts).
* ``verilator``: a compiled Verilator C++ harness around the accelerator's Verilog, fed
  through pipes (`sim.fastsim`).
* ``cocotb``: the cocotb testbench on Verilator, one simulator run per exchange (slow; the
  path the tests use).
* ``serial``: a UART link with framing and retries (`host.serial_transport`), to a board or
  to the board-top simulation through a pseudo-terminal.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from golden.protocol import WORD_MASK, Beat

__all__ = ["Transport", "TransportError", "check_beats"]


class TransportError(RuntimeError):
    """The link failed: the accelerator did not answer, the simulation died, a frame could
    not be delivered after the retries. The message is one sentence saying which."""


def check_beats(beats: Sequence[Beat], *, partial: bool = False) -> list[Beat]:
    """`beats` as a list of (word, last) pairs, checked: each word a 64-bit unsigned integer,
    and (unless `partial`) `last` on the final beat, so that every request packet is whole
    and will be answered. One `ValueError` sentence otherwise."""
    checked: list[Beat] = []
    for beat in beats:
        try:
            word, last = beat
            word = int(word)
        except (TypeError, ValueError):
            raise ValueError(f"beats must be (word, last) pairs, not {beat!r}") from None
        if not 0 <= word <= WORD_MASK:
            raise ValueError(f"a beat's word must be a 64-bit unsigned integer, not {word!r}")
        checked.append((word, bool(last)))
    if checked and not checked[-1][1] and not partial:
        raise ValueError("the beats end in the middle of a packet (no `last` on the final "
                         "beat), so its response would never come; send whole packets")
    return checked


class Transport(abc.ABC):
    """A link to one accelerator. Use as a context manager or call `close()`."""

    name: str = "transport"
    """The backend name (`golden`, `verilator`, `cocotb`, `serial`)."""
    paced_by_link: bool = False
    """The link, not the accelerator, sets the pace of a GEMM (a UART): the host then
    sends every weight as few times as it can (M-tiles as tall as the banks allow)."""

    def exchange(self, beats: Sequence[Beat], *, partial: bool = False,
                 **options: object) -> list[Beat]:
        """Send `beats` (whole request packets, each ending with `last`) and return every
        beat of the responses, in order: one response packet per request packet.

        `partial=True` lets the beats end inside a packet: the accelerator then waits for
        the rest, which no exchange sends (a test of a reset in the middle of a packet);
        the complete packets are answered. `options` are the transport's own (a cycle
        budget for the simulators).

        Raises `ValueError` before anything is sent for beats that are not whole packets
        of 64-bit words (`check_beats`), and `TransportError` when the answers do not come
        (a hang is reported, never waited for forever)."""
        return self._exchange(check_beats(beats, partial=partial), **options)

    @abc.abstractmethod
    def _exchange(self, beats: list[Beat], **options: object) -> list[Beat]:
        """`exchange` after the beats have been checked: send them, return the answer."""

    def reset(self) -> None:  # noqa: B027 - optional: transports without a reset line
        """Pulse the accelerator's reset (where the transport has one)."""

    @property
    def simulated_cycles(self) -> int | None:
        """Clock cycles simulated so far by this transport (None where there is no clock
        to count: the golden transport, a real board)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional: transports that hold nothing
        """Release the process, port or files behind the transport."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
