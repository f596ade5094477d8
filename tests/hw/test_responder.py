"""The output engine in the Amaranth simulator: queued response entries and result words
become the response packets of docs/protocol.md (built here with the specification's
codecs), under random gaps on both inputs and stalls on the output."""

from __future__ import annotations

import random

from amaranth.sim import Simulator

from golden.config import ArrayConfig
from golden.protocol import (
    COUNTER_NAMES,
    Header,
    Opcode,
    Status,
    StatusWord,
    identify_words,
    response_length,
)
from hw.responder import Responder, ResponseKind
from tests.hw.streams import stream_get, stream_put

SEED = 5150
CONFIG = ArrayConfig()


def _program(rng: random.Random) -> tuple[list[dict], list[int], list[tuple[int, bool]],
                                          list[int]]:
    """(entries, result words, expected beats, counters) of a random sequence of responses."""
    counters = [rng.getrandbits(CONFIG.counter_bits) for _ in COUNTER_NAMES]
    entries, results, beats = [], [], []

    def packet(opcode: int, tag: int, data: list[int], status: StatusWord) -> None:
        words = [Header(opcode, tag, response_length(len(data))).encode(), *data,
                 status.encode()]
        beats.extend((word, index == len(words) - 1) for index, word in enumerate(words))

    for _ in range(30):
        kind = rng.choice(["simple", "identify", "counters", "compute"])
        tag = rng.randrange(256)
        code, field, value = rng.randrange(9), rng.randrange(12), rng.getrandbits(24)
        if kind == "simple":
            opcode = rng.choice([Opcode.CONFIGURE, Opcode.LOAD_ACTIVATIONS, 0x55])
            entries.append({"kind": ResponseKind.SIMPLE, "opcode": opcode, "tag": tag,
                            "code": code, "field": field, "value": value})
            packet(opcode, tag, [], StatusWord(code, opcode, field, value))
        elif kind == "identify":
            entries.append({"kind": ResponseKind.IDENTIFY, "opcode": Opcode.IDENTIFY,
                            "tag": tag, "code": Status.OK, "field": 0, "value": 0})
            packet(Opcode.IDENTIFY, tag, identify_words(CONFIG),
                   StatusWord(Status.OK, Opcode.IDENTIFY))
        elif kind == "counters":
            entries.append({"kind": ResponseKind.COUNTERS, "opcode": Opcode.READ_COUNTERS,
                            "tag": tag, "code": Status.OK, "field": 0, "value": 0})
            packet(Opcode.READ_COUNTERS, tag, counters,
                   StatusWord(Status.OK, Opcode.READ_COUNTERS))
        else:
            words = [rng.getrandbits(64) for _ in range(rng.randrange(1, 12))]
            results += words
            entries.append({"kind": ResponseKind.COMPUTE_START, "opcode": Opcode.COMPUTE,
                            "tag": tag, "code": 0, "field": 0,
                            "value": response_length(len(words))})
            entries.append({"kind": ResponseKind.COMPUTE_STATUS, "opcode": Opcode.COMPUTE,
                            "tag": tag, "code": code, "field": field, "value": value})
            packet(Opcode.COMPUTE, tag, words, StatusWord(code, Opcode.COMPUTE, field, value))
    return entries, results, beats, counters


def test_responses_in_order_under_gaps_and_stalls() -> None:
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    entries, results, beats, counters = _program(rng)
    dut = Responder(CONFIG)
    got: list[tuple[int, bool]] = []
    sent = []

    async def entries_producer(ctx) -> None:
        for index, value in enumerate(counters):
            ctx.set(dut.counters[index], value)
        for entry in entries:
            while rng.random() < 0.3:
                await ctx.tick()
            await stream_put(ctx, dut.responses, entry)

    async def results_producer(ctx) -> None:
        gaps = random.Random(SEED + 1)
        for word in results:
            while gaps.random() < 0.3:
                await ctx.tick()
            await stream_put(ctx, dut.results, word)

    async def consumer(ctx) -> None:
        stall = random.Random(SEED + 2)
        while len(got) < len(beats):
            while stall.random() < 0.4:
                await ctx.tick()
            payload = await stream_get(ctx, dut.o_stream)
            got.append((payload.data, bool(payload.last)))
        for _ in range(4):
            await ctx.tick()
        assert ctx.get(dut.idle)

    async def strobes(ctx) -> None:
        async for _, _, counters_sent in ctx.tick().sample(dut.counters_sent):
            if counters_sent:
                sent.append(len(got))

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    for testbench in (entries_producer, results_producer, consumer):
        simulator.add_testbench(testbench)
    simulator.add_testbench(strobes, background=True)
    simulator.run()
    for index, (have, want) in enumerate(zip(got, beats, strict=True)):
        assert have == want, f"beat {index}: got {have[0]:#x} {have[1]}, " \
            f"expected {want[0]:#x} {want[1]}"
    assert len(sent) == sum(entry["kind"] == ResponseKind.COUNTERS for entry in entries)
