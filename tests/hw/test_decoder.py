"""The command decoder (with the CONFIGURE unit) in the Amaranth simulator, against the
protocol's reference executor: for the malformed-packet cases and randomly corrupted GEMM
programs, every response's header and status, every job, every COMPUTE payload word and
every activation written, under random input gaps, consumer stalls and waits."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from golden.config import ArrayConfig
from golden.protocol import Header, Opcode, Status, StatusWord, split_packets
from golden.reference import ReferenceAccelerator
from hw.configure import ConfigureUnit
from hw.decoder import CommandDecoder
from hw.responder import RESPONSE_LENGTHS, ResponseKind
from tests.accel.scenarios import fuzz_streams, malformed_cases
from tests.hw.streams import stream_get, stream_put

SEED = 2718
CONFIG = ArrayConfig()      # the malformed cases are written for the default geometry


class _Bench(wiring.Component):
    def __init__(self, config: ArrayConfig) -> None:
        self.decoder = CommandDecoder(config)
        self.configure = ConfigureUnit(config)
        super().__init__({})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.decoder = self.decoder
        m.submodules.configure = self.configure
        wiring.connect(m, self.decoder.configure, self.configure.control)
        m.d.comb += self.decoder.config.eq(self.configure.registers)
        return m


def _expected(beats: list) -> tuple[list[tuple], list[int], list[int], dict[int, int]]:
    """From the reference: each response's (opcode, tag, length, code, field, value), the
    banks of the COMPUTEs, their payload words as the decoder passes them on, and the
    activation buffer's final words."""
    reference = ReferenceAccelerator(CONFIG)
    responses, jobs, payload = [], [], []
    for packet in split_packets(beats):
        if not packet[-1][1]:
            continue
        header = Header.decode(packet[0][0])
        geometry = reference.geometry
        answer = reference.packet(packet)
        head, status = Header.decode(answer[0].word), StatusWord.decode(answer[-1].word)
        responses.append((head.opcode, head.tag, head.length, status.code, status.field,
                          status.value))
        if header.opcode == Opcode.COMPUTE and status.code in (
                Status.OK, Status.TRUNCATED, Status.TOO_LONG):
            expected_length = geometry.compute_words
            jobs.append(header.bank & 1)
            words = [word for word, _ in packet[1:1 + expected_length]]
            words += [0] * (expected_length - len(words))
            payload += [(word, index == 0) for index, word in enumerate(words)]
    activations = {address: int.from_bytes(row.tobytes(), "little")
                   for address, row in enumerate(reference.activations)}
    return responses, jobs, payload, activations


def _streams(rng: np.random.Generator) -> list:
    streams = [beats for _, beats in malformed_cases(CONFIG, rng)]
    streams += [beats for beats, _ in fuzz_streams(CONFIG, rng, 4, mx=False)]
    streams += [beats for beats, _ in fuzz_streams(CONFIG, rng, 2, mx=True)]
    return [beat for stream in streams for beat in stream]


@pytest.mark.parametrize("round_", range(2))
def test_decoder_answers_like_the_reference(round_: int) -> None:
    seed = SEED + round_
    print(f"seed {seed}")
    beats = _streams(np.random.default_rng(seed))
    responses, jobs, payload, activations = _expected(beats)
    rng = random.Random(seed)
    bench = _Bench(CONFIG)
    dut = bench.decoder
    entries: list[dict] = []
    got_jobs: list[int] = []
    got_payload: list[int] = []
    memory = {address: 0 for address in range(CONFIG.activation_buffer_depth)}
    pending_counters = []

    async def producer(ctx) -> None:
        for word, last in beats:
            while rng.random() < 0.2:
                await ctx.tick()
            await stream_put(ctx, dut.i_stream, {"data": word, "last": last}, timeout=20_000)

    async def response_consumer(ctx) -> None:
        stall = random.Random(seed + 1)
        while True:
            while stall.random() < 0.3:
                await ctx.tick()
            entry = await stream_get(ctx, dut.responses, timeout=20_000)
            entries.append({key: int(getattr(entry, key))
                            for key in ("kind", "opcode", "tag", "code", "field", "value")})
            if entry.kind == ResponseKind.COUNTERS:
                pending_counters.append(True)
            if sum(entry["kind"] != ResponseKind.COMPUTE_START for entry in entries) \
                    == len(responses):
                break

    async def job_consumer(ctx) -> None:
        stall = random.Random(seed + 2)
        while len(got_jobs) < len(jobs):
            while stall.random() < 0.5:
                await ctx.tick()
            got_jobs.append(await stream_get(ctx, dut.jobs, timeout=20_000))

    async def payload_consumer(ctx) -> None:
        stall = random.Random(seed + 3)
        while len(got_payload) < len(payload):
            while stall.random() < 0.3:
                await ctx.tick()
            word = await stream_get(ctx, dut.payload, timeout=20_000)
            got_payload.append((word.word, bool(word.first)))

    async def environment(ctx) -> None:
        """Waits (everything idle, bank idle), the counters' answer, the memory writes."""
        waits = random.Random(seed + 4)
        async for _, _, en, addr, data in ctx.tick().sample(
                dut.act_write.en, dut.act_write.addr, dut.act_write.data):
            if en:
                memory[addr] = data
            ctx.set(dut.all_idle, waits.random() < 0.7)
            ctx.set(dut.bank_idle, waits.getrandbits(2) | (3 if waits.random() < 0.5 else 0))
            ctx.set(dut.counters_sent, 0)
            if pending_counters and waits.random() < 0.2:
                pending_counters.pop()
                ctx.set(dut.counters_sent, 1)

    simulator = Simulator(bench)
    simulator.add_clock(1e-8)
    for testbench in (producer, response_consumer, job_consumer, payload_consumer):
        simulator.add_testbench(testbench)
    simulator.add_testbench(environment, background=True)
    simulator.run()

    got = []
    start = None
    for entry in entries:
        if entry["kind"] == ResponseKind.COMPUTE_START:
            start = entry
            continue
        length = start["value"] if entry["kind"] == ResponseKind.COMPUTE_STATUS \
            else RESPONSE_LENGTHS[entry["kind"]]
        got.append((entry["opcode"], entry["tag"], length, entry["code"], entry["field"],
                    entry["value"]))
    for index, (have, want) in enumerate(zip(got, responses, strict=True)):
        assert have == want, f"response {index}: got {have}, expected {want}"
    assert got_jobs == jobs
    assert got_payload == payload
    assert memory == activations
