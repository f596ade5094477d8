"""Every transport checks its beats in one place, the `Transport` base class: a request
that ends in the middle of a packet is refused the same way by all of them, before
anything is sent."""

from __future__ import annotations

import pytest

from golden.protocol import Opcode, Packet, parse_responses
from host.driver import GoldenTransport
from host.serial_transport import SerialTransport
from host.transport import Transport, check_beats
from sim.cocotb_transport import CocotbTransport
from sim.fastsim import VerilatorTransport

TRANSPORTS = (GoldenTransport, VerilatorTransport, CocotbTransport, SerialTransport)


def test_every_transport_takes_the_base_class_check() -> None:
    for transport in TRANSPORTS:
        assert issubclass(transport, Transport)
        assert "exchange" not in vars(transport), \
            f"{transport.__name__} overrides exchange: its beats would skip the check"


@pytest.mark.parametrize("transport", [GoldenTransport, CocotbTransport])
def test_a_half_packet_is_refused_before_anything_is_sent(transport: type) -> None:
    link = transport()
    try:
        half = Packet.make(Opcode.IDENTIFY, 1, [1, 2]).beats()[:2]
        with pytest.raises(ValueError, match="end in the middle of a packet"):
            link.exchange(half)
        whole = Packet.make(Opcode.IDENTIFY, 2).beats()
        if transport is GoldenTransport:      # (the cocotb path is exercised elsewhere)
            assert parse_responses(link.exchange(whole))[0].header.tag == 2
            # A partial request is allowed on purpose: the complete packets are answered.
            answer = link.exchange(whole + half, partial=True)
            assert len(parse_responses(answer)) == 1
    finally:
        link.close()


def test_beats_are_checked_words() -> None:
    assert check_beats([(5, 1), (6, True)]) == [(5, True), (6, True)]
    with pytest.raises(ValueError, match="64-bit unsigned integer"):
        check_beats([(1 << 64, True)])
    with pytest.raises(ValueError, match=r"\(word, last\) pairs"):
        check_beats([7])
