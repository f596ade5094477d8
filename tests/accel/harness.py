"""cocotb side of the accelerator tests: Driver -> Monitor -> Model -> Checker.

`Harness` drives request beats into `i_stream` with a `StreamSource` (optional random idle
gaps), drains `o_stream` with a `StreamSink` (optional random backpressure), checks the
stream rules of both streams with `StreamMonitor`s, and compares every response beat with
the protocol reference executor (`golden.reference.ReferenceAccelerator`), which computes the
expected words with the golden model. GEMM results are also decoded by the host packer and
compared with `golden.*` by the tests themselves.

The accelerator's `ArrayConfig` arrives as JSON in LPMAC_ACCEL_CONFIG.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cocotb.triggers import ClockCycles, RisingEdge

from golden.config import ArrayConfig
from golden.protocol import Beat, parse_responses
from golden.reference import ReferenceAccelerator, compare_responses
from host.tiling import GemmProgram
from sim.cocotb_streams import (
    StreamMonitor,
    StreamSink,
    StreamSource,
    no_pauses,
    random_pauses,
    reset_dut,
    start_clock,
)
from sim.protocol_coverage import protocol_recorder

LAST_BIT = 1 << 64


def config_from_env() -> ArrayConfig:
    fields = json.loads(os.environ["LPMAC_ACCEL_CONFIG"])
    fields["modes"] = tuple(fields["modes"])
    return ArrayConfig(**fields)


def config_to_env(config: ArrayConfig) -> str:
    return json.dumps(config.as_dict())


def encode_beat(beat: Beat) -> int:
    word, last = beat
    return word | (LAST_BIT if last else 0)


def decode_beat(item: int) -> Beat:
    return item & (LAST_BIT - 1), bool(item & LAST_BIT)


class Harness:
    """One accelerator under test, its reference model and the stream components."""

    def __init__(self, dut: Any, *, gaps: float = 0.0, stalls: float = 0.0, seed: int = 0,
                 monitors: bool = True) -> None:
        self.dut = dut
        self.config = config_from_env()
        self.reference = ReferenceAccelerator(self.config)
        self.gaps, self.stalls, self.seed = gaps, stalls, seed
        self.monitors = monitors
        self.recorder = protocol_recorder(self.config, "cocotb")
        self.expected_total = 0
        self._components: list[Any] = []

    async def start(self) -> None:
        start_clock(self.dut)
        await self.reset()

    async def reset(self, cycles: int = 2) -> None:
        """Reset the design (and the reference) and restart the stream components."""
        for component in self._components:
            component.stop()
        await reset_dut(self.dut, cycles)
        self.reference.reset()
        if self.recorder is not None:
            self.recorder.reset()
        dut, clk = self.dut, self.dut.clk
        pauses_in = random_pauses(self.gaps, self.seed + 1) if self.gaps else no_pauses()
        pauses_out = random_pauses(self.stalls, self.seed + 2) if self.stalls else no_pauses()
        self.source = StreamSource(dut, "i_stream", clk, pauses=pauses_in)
        self.sink = StreamSink(dut, "o_stream", clk, pauses=pauses_out)
        self._components = [self.source, self.sink]
        if self.monitors:
            self.in_cycles: list[int] = []     # monitor cycle of every transfer
            self.out_cycles: list[int] = []
            self.in_monitor = StreamMonitor(
                dut, "i_stream", clk, reset=dut.rst,
                callback=lambda _: self.in_cycles.append(self.in_monitor.cycle))
            self.out_monitor = StreamMonitor(
                dut, "o_stream", clk, reset=dut.rst,
                callback=lambda _: self.out_cycles.append(self.out_monitor.cycle))
            self._components += [self.in_monitor, self.out_monitor]
        for component in self._components:
            component.start()
        self.expected_total = 0

    def send(self, beats: list[Beat]) -> list:
        """Queue request beats; return the expected response beats (reference model)."""
        expected = self.reference.run(beats)
        if self.recorder is not None:
            self.recorder.requests(beats)
        self.source.send_all(encode_beat(beat) for beat in beats)
        self.expected_total += len(expected)
        return expected

    async def receive(self, count: int, timeout_cycles: int) -> list[Beat]:
        """Wait until `count` more response beats than already taken have arrived."""
        start = self.expected_total - count
        await self.sink.wait_for(self.expected_total, timeout_cycles=timeout_cycles)
        got = [decode_beat(item) for item in self.sink.items[start:self.expected_total]]
        if self.recorder is not None:
            self.recorder.responses(got)
            self.recorder.save()
        return got

    async def transact(self, beats: list[Beat], *, timeout_cycles: int | None = None
                       ) -> list[Beat]:
        """Send `beats`, wait for all their responses and check them word for word."""
        expected = self.send(beats)
        if timeout_cycles is None:
            timeout_cycles = self.timeout(len(beats) + len(expected))
        got = await self.receive(len(expected), timeout_cycles)
        problems = compare_responses(expected, got)
        assert not problems, "responses differ from the reference:\n" + "\n".join(problems[:8])
        return got

    async def run_program(self, program: GemmProgram, *, timeout_cycles: int | None = None):
        """Run a GEMM program; check its responses against the reference; return the
        decoded result (as `program.decode`)."""
        if timeout_cycles is None:
            vectors = sum(geometry.vectors for _, geometry, _, _ in program.computes)
            timeout_cycles = self.timeout(program.word_count + 4 * vectors)
        got = await self.transact(program.beats(), timeout_cycles=timeout_cycles)
        return program.decode(parse_responses(got))

    def timeout(self, work: int) -> int:
        slowdown = 1 / max(1e-3, (1 - self.gaps) * (1 - self.stalls))
        return int(4 * slowdown * work) + 20_000

    async def finish(self, idle_cycles: int = 200) -> None:
        """Check that nothing else arrives and that both streams kept the rules."""
        await ClockCycles(self.dut.clk, idle_cycles)
        extra = len(self.sink.items) - self.expected_total
        assert extra == 0, f"{extra} unexpected response beats arrived"
        if self.monitors:
            self.in_monitor.check()
            self.out_monitor.check()

    async def cycles(self, count: int) -> None:
        for _ in range(count):
            await RisingEdge(self.dut.clk)
