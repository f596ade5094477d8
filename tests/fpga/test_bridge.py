"""FrameBridge in the Amaranth simulator, at the byte level (no UART): frames built and
checked with `golden.framing` (CRC from binascii), the accelerator replaced by testbenches
that record what the bridge forwards and feed it response words. Also the CRC-16 against
its published check value and binascii, in Python and in the gateware."""

from __future__ import annotations

import binascii
import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from fpga.bridge import FrameBridge, crc16_update
from golden.framing import (
    BOARD_TYPES,
    HEADER_BYTES,
    MAX_FRAME_WORDS,
    WORD_BYTES,
    Frame,
    FrameError,
    FrameType,
    crc16,
    crc16_bitwise,
    decode_frame,
    encode_frame,
    link_words_per_second,
)
from tests.hw.streams import stream_get, stream_put

TIMEOUT = 200


class Bench:
    """Runs `scenario(bench, ctx)` against a FrameBridge. `forwarded` collects the words the
    bridge gives the accelerator (while `accel_ready` is True); `responses` is a list of
    beats the fake accelerator sends back, in order."""

    def __init__(self, responses=(), accel_ready: bool = True) -> None:
        self.dut = FrameBridge(timeout_cycles=TIMEOUT)
        self.forwarded: list[tuple[int, bool]] = []
        self.responses = list(responses)
        self.accel_ready = accel_ready
        self.resets = 0
        self.cycle = 0

    async def send(self, ctx, data: bytes) -> None:
        for byte in data:
            await stream_put(ctx, self.dut.rx_byte, byte)

    async def receive(self, ctx, *, timeout: int = 20 * TIMEOUT) -> Frame:
        header = bytearray()
        for _ in range(HEADER_BYTES):
            header.append(await stream_get(ctx, self.dut.tx_byte, timeout=timeout))
        rest = bytearray()
        for _ in range(WORD_BYTES * header[5] + 2):
            rest.append(await stream_get(ctx, self.dut.tx_byte, timeout=timeout))
        return decode_frame(bytes(header + rest), BOARD_TYPES)

    async def transact(self, ctx, frame: Frame | bytes) -> Frame:
        await self.send(ctx, frame if isinstance(frame, bytes) else frame.encode())
        return await self.receive(ctx)

    def run(self, scenario) -> None:
        dut = self.dut

        async def accelerator_in(ctx) -> None:
            ctx.set(dut.to_accel.ready, self.accel_ready)
            async for _, _, valid, ready, payload, reset in ctx.tick().sample(
                    dut.to_accel.valid, dut.to_accel.ready, dut.to_accel.payload,
                    dut.accel_reset):
                if valid and ready:
                    self.forwarded.append((int(payload.data), bool(payload.last)))
                self.resets += int(reset)
                self.cycle += 1
                ctx.set(dut.to_accel.ready, self.accel_ready)

        async def accelerator_out(ctx) -> None:
            while True:
                if self.responses:
                    word, last = self.responses.pop(0)
                    await stream_put(ctx, dut.from_accel, {"data": word, "last": last},
                                     timeout=10**9)
                else:
                    await ctx.tick()

        async def host(ctx) -> None:
            await scenario(self, ctx)

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(accelerator_in, background=True)
        sim.add_testbench(accelerator_out, background=True)
        sim.add_testbench(host)
        sim.run()


def _words(rng: random.Random, count: int, last_at=()) -> tuple[tuple[int, bool], ...]:
    return tuple((rng.getrandbits(64), index in last_at) for index in range(count))


def test_good_frame_is_forwarded_once_and_acknowledged(sim_seed: int) -> None:
    rng = random.Random(sim_seed)
    words = _words(rng, 5, last_at=(1, 4))
    bench = Bench()

    async def scenario(bench: Bench, ctx) -> None:
        reply = await bench.transact(ctx, Frame(FrameType.DATA, seq=1, ack=0, words=words))
        assert (reply.type, reply.ack, reply.words) == (FrameType.ACK, 1, ())
        await ctx.tick().repeat(50)
        # The same frame again (its answer was lost): acknowledged, not forwarded again.
        reply = await bench.transact(ctx, Frame(FrameType.DATA, seq=1, ack=0, words=words))
        assert (reply.type, reply.ack) == (FrameType.ACK, 1)
        await ctx.tick().repeat(50)

    bench.run(scenario)
    assert bench.forwarded == list(words)


def test_bad_crc_is_answered_with_nak_and_not_forwarded(sim_seed: int) -> None:
    rng = random.Random(sim_seed)
    words = _words(rng, 3, last_at=(2,))
    frame = bytearray(Frame(FrameType.DATA, seq=7, ack=0, words=words).encode())
    position = rng.randrange(1, len(frame))     # any byte after SYNC, CRC bytes included
    bit = rng.randrange(8)
    frame[position] ^= 1 << bit
    print(f"flipped bit {bit} of byte {position}")
    bench = Bench()

    async def scenario(bench: Bench, ctx) -> None:
        await bench.send(ctx, bytes(frame))
        reply = await bench.receive(ctx)
        assert reply.type == FrameType.NAK
        reply = await bench.transact(ctx, Frame(FrameType.DATA, seq=7, ack=0, words=words))
        assert (reply.type, reply.ack) == (FrameType.ACK, 7)
        await ctx.tick().repeat(50)

    bench.run(scenario)
    assert bench.forwarded == list(words)


@pytest.mark.parametrize("keep", [1, 5, 20, 40])
def test_truncated_frame_times_out_with_nak(keep: int) -> None:
    words = tuple((0x0123456789ABCDEF + i, i == 3) for i in range(4))
    frame = Frame(FrameType.DATA, seq=3, ack=0, words=words).encode()
    bench = Bench()

    async def scenario(bench: Bench, ctx) -> None:
        await bench.send(ctx, frame[:keep])
        start = bench.cycle
        reply = await bench.receive(ctx)
        assert reply.type == FrameType.NAK
        waited = bench.cycle - start
        assert TIMEOUT <= waited <= TIMEOUT + 40, waited
        # The link is usable again at once.
        reply = await bench.transact(ctx, frame)
        assert (reply.type, reply.ack) == (FrameType.ACK, 3)
        await ctx.tick().repeat(50)

    bench.run(scenario)
    assert bench.forwarded == list(words)


def test_damaged_length_waits_for_silence_then_naks() -> None:
    words = tuple((i, i == 1) for i in range(2))
    frame = bytearray(Frame(FrameType.DATA, seq=9, ack=0, words=words).encode())
    frame[5] ^= 0x10                        # COUNT no longer matches ~COUNT
    bench = Bench()

    async def scenario(bench: Bench, ctx) -> None:
        await bench.send(ctx, bytes(frame))
        reply = await bench.receive(ctx)
        assert reply.type == FrameType.NAK
        await ctx.tick().repeat(50)

    bench.run(scenario)
    assert bench.forwarded == []


def test_response_chunks_are_kept_until_acknowledged(sim_seed: int) -> None:
    rng = random.Random(sim_seed)
    responses = list(_words(rng, MAX_FRAME_WORDS + 7, last_at=(3, MAX_FRAME_WORDS + 6)))
    bench = Bench(responses=responses)

    async def scenario(bench: Bench, ctx) -> None:
        await ctx.tick().repeat(400)            # the accelerator has answered
        poll = Frame(FrameType.DATA, seq=0, ack=0)
        first = await bench.transact(ctx, poll)
        assert (first.type, first.seq) == (FrameType.ACK, 0)
        assert list(first.words) == responses[:MAX_FRAME_WORDS]
        again = await bench.transact(ctx, poll)     # the answer "was lost": same chunk
        assert again == first
        second = await bench.transact(ctx, Frame(FrameType.DATA, seq=0, ack=1))
        assert second.seq == 1 and list(second.words) == responses[MAX_FRAME_WORDS:]
        third = await bench.transact(ctx, Frame(FrameType.DATA, seq=0, ack=2))
        assert third.seq == 2 and third.words == ()
        # Acknowledging an empty chunk changes nothing; a new word becomes chunk 2.
        bench.responses.append((0xFEED, True))
        await ctx.tick().repeat(20)
        fourth = await bench.transact(ctx, Frame(FrameType.DATA, seq=0, ack=2))
        assert fourth.seq == 2 and fourth.words == ((0xFEED, True),)

    bench.run(scenario)


def test_full_receive_ring_answers_busy_and_keeps_order(sim_seed: int) -> None:
    rng = random.Random(sim_seed)
    frames = [_words(rng, MAX_FRAME_WORDS, last_at=(MAX_FRAME_WORDS - 1,)) for _ in range(3)]
    bench = Bench(accel_ready=False)

    async def scenario(bench: Bench, ctx) -> None:
        for seq, words in enumerate(frames[:2], 1):
            reply = await bench.transact(ctx, Frame(FrameType.DATA, seq=seq, words=words))
            assert (reply.type, reply.ack) == (FrameType.ACK, seq)
        assert reply.info == 0                      # the 64-word ring is full
        reply = await bench.transact(ctx, Frame(FrameType.DATA, seq=3, words=frames[2]))
        assert (reply.type, reply.ack) == (FrameType.BUSY, 2)
        bench.accel_ready = True
        await ctx.tick().repeat(1000)           # the accelerator takes 32 words
        reply = await bench.transact(ctx, Frame(FrameType.DATA, seq=3, words=frames[2]))
        assert (reply.type, reply.ack) == (FrameType.ACK, 3)
        await ctx.tick().repeat(1000)

    bench.run(scenario)
    assert bench.forwarded == [word for words in frames for word in words]


def test_reset_frame_clears_the_link_and_resets_the_accelerator() -> None:
    bench = Bench(responses=[(1, False), (2, True)], accel_ready=False)

    async def scenario(bench: Bench, ctx) -> None:
        await ctx.tick().repeat(30)     # the two response words are collected (10 cycles each)
        reply = await bench.transact(ctx, Frame(FrameType.DATA, seq=5, words=((7, True),)))
        assert reply.type == FrameType.ACK and reply.words == ((1, False), (2, True))
        reply = await bench.transact(ctx, Frame(FrameType.RESET, seq=0, ack=0))
        assert (reply.type, reply.seq, reply.ack, reply.words) == (FrameType.ACK, 0, 0, ())
        assert reply.info == 64
        # Sequence number 5 is new again after the reset: accepted and forwarded.
        bench.accel_ready = True
        reply = await bench.transact(ctx, Frame(FrameType.DATA, seq=5, words=((8, True),)))
        assert (reply.type, reply.ack) == (FrameType.ACK, 5)
        await ctx.tick().repeat(50)

    bench.run(scenario)
    # accel_reset is a register: high in the first cycle out of the bridge's own reset,
    # then for one cycle after the RESET frame.
    assert bench.resets == 2
    assert bench.forwarded == [(8, True)]


def test_encode_frame_matches_the_documented_layout() -> None:
    frame = encode_frame(FrameType.DATA, 0x12, 0x34, 0, [(0x1122334455667788, True)])
    assert frame[:7] == bytes([0x7E, 0x44, 0x12, 0x34, 0x00, 0x01, 0xFE])
    assert frame[7:16] == bytes([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x01])
    assert len(frame) == 18


# --- CRC and frame codec (golden.framing), against published values and binascii ----------

def test_crc16_check_value() -> None:
    # The catalogue check value of CRC-16/CCITT-FALSE (a.k.a. CRC-16/IBM-3740).
    assert crc16(b"123456789") == 0x29B1
    assert crc16_bitwise(b"123456789") == 0x29B1


def test_crc16_bitwise_agrees_with_binascii(sim_seed: int) -> None:
    rng = random.Random(sim_seed)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        assert crc16_bitwise(data) == binascii.crc_hqx(data, 0xFFFF)


def test_gateware_crc_update_agrees_with_binascii(sim_seed: int) -> None:
    rng = random.Random(sim_seed)
    cases = [(rng.randrange(1 << 16), rng.randrange(256)) for _ in range(300)]
    cases += [(0xFFFF, 0x00), (0x0000, 0xFF), (0xFFFF, 0xFF)]
    crc, byte = Signal(16), Signal(8)
    m = Module()
    result = Signal(16)
    m.d.comb += result.eq(crc16_update(crc, byte))
    mismatches = []

    async def bench(ctx) -> None:
        for start, value in cases:
            ctx.set(crc, start)
            ctx.set(byte, value)
            await ctx.delay(1e-9)
            expected = binascii.crc_hqx(bytes([value]), start)
            if ctx.get(result) != expected:
                mismatches.append((start, value))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert mismatches == []


def test_decode_frame_rejects_damage() -> None:
    frame = bytearray(Frame(FrameType.ACK, seq=1, ack=2, info=3, words=((5, True),)).encode())
    assert decode_frame(bytes(frame)).words == ((5, True),)
    for position, match in ((0, "starts with"), (5, "length bytes"), (9, "CRC")):
        damaged = bytearray(frame)
        damaged[position] ^= 0x01
        with pytest.raises(FrameError, match=match):
            decode_frame(bytes(damaged))
    with pytest.raises(FrameError, match="not expected"):
        decode_frame(bytes(frame), types=(FrameType.DATA,))
    with pytest.raises(ValueError, match="at most 32 words"):
        encode_frame(FrameType.DATA, 0, 0, 0, [(0, False)] * 33)


def test_link_throughput_formula() -> None:
    # 32 words: 7 header + 32 * 9 + 2 CRC = 297 bytes, plus a 9-byte answer, 10 bits each.
    assert link_words_per_second(115200) == pytest.approx(32 / (306 * 10 / 115200))
    assert link_words_per_second(115200, words=1, turnaround=1e-3) == pytest.approx(
        1 / (27 * 10 / 115200 + 1e-3))
    with pytest.raises(ValueError, match="words must be from 1 to 32"):
        link_words_per_second(115200, words=0)
