"""cocotb tests of the whole accelerator on Verilator (started by tests/accel/test_accel.py).

Every test drives packets built by the host packer (`host.tiling`) or by hand, checks every
response word against the protocol reference (`golden.reference`) and every GEMM result
against the golden model directly. Seeds are cocotb's (printed by the pytest side).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from golden.protocol import (
    COUNTER_NAMES,
    PROTOCOL_VERSION,
    Opcode,
    Packet,
    Status,
    decode_identify,
    parse_responses,
)
from tests.accel.harness import Harness, encode_beat
from tests.accel.scenarios import (
    fuzz_streams,
    gemm_cases,
    malformed_cases,
    mx_case,
    qlinear_case,
    run_case,
)


def _seed() -> int:
    return cocotb.RANDOM_SEED


@cocotb.test()
async def identify(dut):
    """IDENTIFY returns the protocol version and the ArrayConfig; the response header
    leaves `Accelerator.command_latency` cycles after the request's only word."""
    harness = Harness(dut)
    await harness.start()
    version, config = decode_identify(parse_responses(await harness.transact(
        Packet.make(Opcode.IDENTIFY, 7).beats()))[0].data)
    # docs/protocol.md: arrays of at most 8 x 8 speak 2.0 (their packets unchanged), larger
    # ones the current version.
    small = harness.config.rows <= 8 and harness.config.cols <= 8
    assert version == ((2, 0) if small else PROTOCOL_VERSION) and config == harness.config
    await ClockCycles(dut.clk, 10)
    sent_at = harness.in_monitor.cycle
    harness.send(Packet.make(Opcode.IDENTIFY, 8).beats())
    await harness.receive(6, timeout_cycles=100)
    first_out = harness.out_cycles[-6]
    latency = first_out - harness.in_cycles[-1]
    dut._log.info("IDENTIFY: response header %d cycles after the request", latency)
    assert latency == int(os.environ["LPMAC_ACCEL_COMMAND_LATENCY"]), latency
    assert harness.in_cycles[-1] > sent_at
    await harness.finish()


@cocotb.test()
async def gemms(dut):
    """GEMMs of the cases selected by LPMAC_ACCEL_CASES (see scenarios.gemm_cases), with
    the input gaps / output stalls of LPMAC_ACCEL_GAPS / LPMAC_ACCEL_STALLS."""
    gaps = float(os.environ.get("LPMAC_ACCEL_GAPS", "0"))
    stalls = float(os.environ.get("LPMAC_ACCEL_STALLS", "0"))
    harness = Harness(dut, gaps=gaps, stalls=stalls, seed=_seed())
    await harness.start()
    rng = np.random.default_rng(_seed())
    names = os.environ.get("LPMAC_ACCEL_CASES", "").split(",")
    macs = 0
    for case in gemm_cases(harness.config, rng, names):
        started = time.monotonic()
        mismatches = await run_case(harness, case)
        dut._log.info("%s: %d mismatches (%.1f s)", case.name, mismatches,
                      time.monotonic() - started)
        assert mismatches == 0, f"{case.name}: {mismatches} mismatches against golden"
        macs += sum(geometry.macs for _, geometry, _, _ in case.program.computes)
    counters = dict(zip(COUNTER_NAMES, parse_responses(await harness.transact(
        Packet.make(Opcode.READ_COUNTERS, 0).beats()))[0].data, strict=True))
    dut._log.info("counters: %s", counters)
    # The MAC counter counts every COMPUTE's MACs, padding included (`Geometry.macs`).
    assert counters["macs"] == macs, (counters["macs"], macs)
    await harness.finish()


@cocotb.test()
async def malformed(dut):
    """Each malformed packet gets the documented error response, then a GEMM is correct."""
    harness = Harness(dut, seed=_seed())
    await harness.start()
    rng = np.random.default_rng(_seed())
    follow_up = gemm_cases(harness.config, rng, ["a8w8_small"])[0]
    for name, beats in malformed_cases(harness.config, rng):
        got = await harness.transact(beats)
        dut._log.info("%s -> %s", name, [r.status.describe() for r in parse_responses(got)])
        mismatches = await run_case(harness, follow_up)
        assert mismatches == 0, f"after {name}: {mismatches} mismatches"
    await harness.finish()



@cocotb.test()
async def reset_mid_gemm(dut):
    """Reset while a GEMM streams in (during its loads, its compute and its result drain):
    the accelerator comes back unconfigured and idle, and the next GEMMs are correct."""
    harness = Harness(dut, seed=_seed())
    await harness.start()
    rng = np.random.default_rng(_seed())
    config = harness.config
    big = qlinear_case(config, rng, mode="a8w4", rounding="fp32", out_dtype="int8",
                       shape=(48, 256, 64))
    after = gemm_cases(config, rng, ["a8w8_small"]) + [
        mx_case(config, rng, mode=mode, out="fp32", shape=(9, 64, 24))
        for mode in config.modes if mode.startswith("mx")][:1]
    for delay in (300, 1500, 3000, 5200, int(rng.integers(100, 8_000))):
        harness.source.send_all(encode_beat(beat) for beat in big.program.beats())
        await ClockCycles(dut.clk, delay)
        dut._log.info("reset after %d cycles (%d response beats so far)", delay,
                      len(harness.sink.items))
        await harness.reset()
        response = parse_responses(await harness.transact(
            Packet.make(Opcode.LOAD_ACTIVATIONS, 0, [0]).beats()))[0]
        assert response.status.code == Status.NOT_CONFIGURED
        for case in after:
            assert await run_case(harness, case) == 0, f"{case.name} after reset"
    await harness.finish()


@cocotb.test()
async def utilization(dut):
    """256 x 256 x 256 in the modes of LPMAC_ACCEL_UTIL_MODES, no gaps, no stalls:
    CLEAR_COUNTERS, the GEMM, READ_COUNTERS. Writes the measured figures as JSON to
    LPMAC_ACCEL_REPORT; asserts the results and the utilization floors of
    LPMAC_ACCEL_UTIL_FLOORS (mode=fraction,...)."""
    harness = Harness(dut, seed=_seed(), monitors=False)
    await harness.start()
    rng = np.random.default_rng(_seed())
    config = harness.config
    floors = dict(item.split("=") for item in
                  os.environ.get("LPMAC_ACCEL_UTIL_FLOORS", "").split(",") if item)
    report = {}
    for mode in os.environ.get("LPMAC_ACCEL_UTIL_MODES", "a8w8").split(","):
        case = qlinear_case(config, rng, mode=mode, rounding="fp32", out_dtype="int8",
                            shape=(256, 256, 256), uint8=False)
        program = case.program
        beats = (Packet.make(Opcode.CLEAR_COUNTERS, 1).beats() + program.beats()
                 + Packet.make(Opcode.READ_COUNTERS, 2).beats())
        started = time.monotonic()
        got = await harness.transact(beats, timeout_cycles=2_000_000)
        seconds = time.monotonic() - started
        responses = parse_responses(got)
        result = program.decode(responses[1:-1])
        mismatches = case.mismatches(case.expected, result)
        counters = dict(zip(COUNTER_NAMES, responses[-1].data, strict=True))
        peak = config.peak_macs_per_cycle(mode)
        figures = {
            **counters,
            "useful_macs": program.plan.macs,
            "utilization": counters["macs"] / (counters["cycles"] * peak),
            "macs_per_cycle": counters["macs"] / counters["cycles"],
            "peak_macs_per_cycle": peak,
            "mismatches": mismatches,
            "input_words": program.word_count,
            "simulation_seconds": round(seconds, 1),
        }
        report[mode] = figures
        dut._log.info("%s: %s", mode, figures)
        assert mismatches == 0, f"{mode}: {mismatches} mismatches against golden"
        assert counters["macs"] == program.plan.macs
    path = os.environ.get("LPMAC_ACCEL_REPORT")
    if path:
        Path(path).write_text(json.dumps(report, indent=1))
    for mode, floor in floors.items():
        assert report[mode]["utilization"] >= float(floor), (
            f"{mode}: utilization {report[mode]['utilization']:.4f} below {floor}")
    await harness.finish()




@cocotb.test()
async def fuzz(dut):
    """Valid GEMM programs with random corruptions (packets cut short, `last` dropped,
    lengths, opcodes and bank fields changed), MX first, then integer modes, under random
    gaps and backpressure: every response word as the reference says (so nothing hangs,
    is lost or is duplicated), then a correct GEMM."""
    harness = Harness(dut, gaps=0.2, stalls=0.3, seed=_seed())
    await harness.start()
    rng = np.random.default_rng(_seed())
    count = int(os.environ.get("LPMAC_ACCEL_FUZZ", "30"))
    statuses: dict[str, int] = {}
    for mx in (True, False):
        for index, (beats, what) in enumerate(fuzz_streams(harness.config, rng, count, mx)):
            try:
                got = await harness.transact(beats)
            except AssertionError as error:
                raise AssertionError(f"stream {index} ({what}): {error}") from None
            for response in parse_responses(got):
                name = Status(response.status.code).name
                statuses[name] = statuses.get(name, 0) + 1
    dut._log.info("fuzz responses by status: %s", statuses)
    for case in gemm_cases(harness.config, rng, ["a8w8_small"]):
        assert await run_case(harness, case) == 0
    await harness.finish()

