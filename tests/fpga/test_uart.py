"""UartTx and UartRx in the Amaranth simulator: line waveforms bit by bit, baud-rate
tolerance, framing errors, glitches and overruns."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.uart import UartRx, UartTx, uart_divisor
from tests.hw.streams import stream_get, stream_put


def _line_bits(byte: int, stop: int = 1) -> list[int]:
    """The 8N1 character of `byte`: start, data LSB first, stop."""
    return [0, *((byte >> i) & 1 for i in range(8)), stop]


@pytest.mark.parametrize("divisor", [4, 8, 13])
def test_tx_waveform(divisor: int, sim_seed: int) -> None:
    rng = random.Random(sim_seed)
    data = [0x00, 0xFF, 0x55, 0xA5, *(rng.randrange(256) for _ in range(6))]
    dut = UartTx(divisor)
    line: list[int] = []

    async def producer(ctx) -> None:
        for byte in data:
            await stream_put(ctx, dut.data, byte)
            for _ in range(rng.randrange(3)):          # idle gaps between characters
                await ctx.tick()

    async def monitor(ctx) -> None:
        async for _, _, tx in ctx.tick().sample(dut.tx):
            line.append(tx)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(producer)
    sim.run_until(1e-8 * (len(data) * 14 * divisor + 100))

    decoded = []
    position = 0
    while True:
        try:
            start = line.index(0, position)
        except ValueError:
            break
        character = line[start:start + 10 * divisor]
        assert len(character) == 10 * divisor, "a character was cut short"
        bits = character[::divisor]
        # Every bit lasts exactly `divisor` cycles.
        assert character == [bit for bit in bits for _ in range(divisor)]
        assert bits[0] == 0 and bits[9] == 1
        decoded.append(sum(bit << i for i, bit in enumerate(bits[1:9])))
        position = start + 10 * divisor
    assert decoded == data


async def _drive(ctx, port, levels: list[int]) -> None:
    for level in levels:
        ctx.set(port, level)
        await ctx.tick()


def _waveform(characters: list[list[int]], bit_time: float, idle: int = 5) -> list[int]:
    """Line levels per clock cycle for `characters` (lists of bit levels) sent back to back
    with a transmitter whose bit lasts `bit_time` cycles."""
    levels = [1] * idle
    for bits in characters:
        start = len(levels)
        total = round(len(bits) * bit_time)
        levels += [bits[min(int(t / bit_time), len(bits) - 1)] for t in range(total)]
        assert len(levels) == start + total
        levels += [1] * idle
    return levels


def _run_rx(divisor: int, levels: list[int], *, ready: bool = True):
    dut = UartRx(divisor)
    received: list[int] = []
    errors = {"frame": 0, "overrun": 0}

    async def line(ctx) -> None:
        await _drive(ctx, dut.rx, levels)
        await ctx.tick().repeat(4 * divisor)

    async def consumer(ctx) -> None:
        ctx.set(dut.data.ready, ready)
        async for _, _, valid, payload, frame, overrun in ctx.tick().sample(
                dut.data.valid, dut.data.payload, dut.frame_error, dut.overrun):
            if valid and ready:
                received.append(payload)
            errors["frame"] += frame
            errors["overrun"] += overrun

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(consumer, background=True)
    sim.add_testbench(line)
    sim.run()
    return received, errors


@pytest.mark.parametrize("divisor", [8, 16])
@pytest.mark.parametrize("rate_error", [-0.04, 0.0, 0.04])
def test_rx_tolerates_baud_rate_error(divisor: int, rate_error: float, sim_seed: int) -> None:
    rng = random.Random(sim_seed)
    data = [0x00, 0xFF, 0x7E, *(rng.randrange(256) for _ in range(12))]
    levels = _waveform([_line_bits(b) for b in data], divisor * (1 + rate_error), idle=0)
    received, errors = _run_rx(divisor, [1] * 3 + levels)
    assert received == data
    assert errors == {"frame": 0, "overrun": 0}


def test_rx_far_off_rate_is_not_received_as_the_data() -> None:
    data = [0x0F, 0x33, 0x55, 0xF0]
    levels = _waveform([_line_bits(b) for b in data], 8 * 1.25, idle=0)
    received, errors = _run_rx(8, [1] * 3 + levels)
    assert received != data


def test_rx_framing_error_drops_the_byte_and_recovers() -> None:
    characters = [_line_bits(0x41), _line_bits(0x42, stop=0), _line_bits(0x43)]
    levels = _waveform(characters, 8, idle=20)
    received, errors = _run_rx(8, levels)
    assert received == [0x41, 0x43]
    assert errors == {"frame": 1, "overrun": 0}


def test_rx_ignores_a_glitch_shorter_than_half_a_bit() -> None:
    levels = [1] * 10 + [0] * 2 + [1] * 40 + _waveform([_line_bits(0x99)], 8)
    received, errors = _run_rx(8, levels)
    assert received == [0x99]
    assert errors == {"frame": 0, "overrun": 0}


def test_rx_overrun_when_the_consumer_does_not_take_bytes() -> None:
    levels = _waveform([_line_bits(0x11), _line_bits(0x22)], 8)
    received, errors = _run_rx(8, levels, ready=False)
    assert received == []
    assert errors == {"frame": 0, "overrun": 1}


def test_tx_to_rx_loopback(sim_seed: int) -> None:
    rng = random.Random(sim_seed)
    data = [rng.randrange(256) for _ in range(40)]
    m = Module()
    m.submodules.tx = tx = UartTx(11)
    m.submodules.rx = rx = UartRx(11)
    m.d.comb += rx.rx.eq(tx.tx)
    received = []

    async def producer(ctx) -> None:
        for byte in data:
            await stream_put(ctx, tx.data, byte, timeout=200)

    async def consumer(ctx) -> None:
        for _ in data:
            received.append(await stream_get(ctx, rx.data, timeout=400))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert received == data


def test_uart_divisor() -> None:
    assert uart_divisor(36_000_000, 115200) == 312      # 36e6 / 115200 = 312.5 -> 312
    assert uart_divisor(100_000_000, 115200) == 868
    with pytest.raises(ValueError, match="too high"):
        uart_divisor(12_000_000, 4_000_000)
    with pytest.raises(ValueError, match="off"):
        uart_divisor(1_000_000, 115200)                 # 8.68 -> 9: 3.5% off
    with pytest.raises(ValueError, match="divisor"):
        UartRx(3)
