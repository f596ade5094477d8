"""Simulation speed: the Verilator harness transport versus the cocotb transport.

Measures, on the default configuration:

* the Verilator harness (`sim.fastsim.VerilatorTransport`) on a 256 x 256 x 256 A8W8 GEMM
  (int8 outputs): simulated cycles per second of wall time for the whole exchange (Python
  packing, the pipe and the simulation);
* the cocotb transport (`sim.cocotb_transport.CocotbTransport`) on a smaller GEMM (default
  128 x 256 x 128 A8W8), scaled to cycles per second: the simulator start is measured with an
  IDENTIFY-only run and left out, so the figure is the cocotb testbench's own speed;
* the harness build: the compilation time recorded in the cache entry when it was built,
  the time a new process needs to find the Verilog and the build in the cache, and with
  `--fresh` a first build (Verilog generation and compilation) in an empty cache directory.

Every GEMM result is checked against the golden model. Targets (design brief): >= 1,000,000
cycles/s for the harness on a 2-core machine, >= 50x the cocotb path.

Usage: .venv/bin/python benchmarks/sim_speed.py [--json] [--fresh] [--no-cocotb]
       [--repeats 3] [--cocotb-shape 128x256x128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_CYCLES_PER_SECOND = 1_000_000
TARGET_SPEEDUP = 50


def _shape(text: str) -> tuple[int, int, int]:
    try:
        m, k, n = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a shape is MxKxN, e.g. 64x128x64, not {text!r}") from None
    if min(m, k, n) < 1:
        raise argparse.ArgumentTypeError(f"shape dimensions must be positive, not {text!r}")
    return m, k, n


def _gemm(config, shape: tuple[int, int, int], seed: int = 0):
    """An A8W8 qlinear GEMM with int8 outputs: (program, golden result)."""
    import golden
    from host import tiling

    m, k, n = shape
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (m, k)).astype(np.int8)
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    arguments = dict(x_scale=0.02, x_zero_point=3, w_scale=0.01, y_scale=0.5 * np.sqrt(k),
                     y_zero_point=-2, bias=rng.integers(-5000, 5000, n).astype(np.int32),
                     rounding="fp32", out_dtype="int8")
    program = tiling.qlinear_program(config, x, w, mode="a8w8", **arguments)
    return program, golden.qlinear(x, w, **arguments)


def _mismatches(program, expected, beats) -> int:
    from golden.protocol import parse_responses

    return int(np.count_nonzero(program.decode(parse_responses(beats)) != expected))


def _timed_exchange(transport, beats) -> tuple[list, float]:
    start = time.perf_counter()
    got = transport.exchange(beats)
    return got, time.perf_counter() - start


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_build(config, fresh: bool) -> dict[str, float | None]:
    from sim.fastsim import generated_accelerator_verilog, harness_executable

    start = time.perf_counter()
    executable = harness_executable(config, progress=lambda message: print(
        f"  {message}", file=sys.stderr))
    prepare_seconds = time.perf_counter() - start
    generated_accelerator_verilog.cache_clear()   # what a new process pays: both caches on disk
    start = time.perf_counter()
    harness_executable(config)
    cached_seconds = time.perf_counter() - start
    marker = json.loads((executable.parent / "lpmac-build.json").read_text())
    figures: dict[str, float | None] = {
        "recorded_first_build_seconds": marker.get("seconds"),
        "prepare_seconds": prepare_seconds,
        "cached_build_seconds": cached_seconds,
        "fresh_build_seconds": None,
    }
    if fresh:
        import subprocess

        with tempfile.TemporaryDirectory(prefix="lpmac-fresh-build-") as scratch:
            code = ("from golden.config import ArrayConfig\n"
                    "from sim.fastsim import harness_executable\n"
                    "harness_executable(ArrayConfig())\n")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True,
                           env={**os.environ, "LPMAC_BUILD_DIR": scratch},
                           cwd=Path(__file__).resolve().parent.parent)
            figures["fresh_build_seconds"] = time.perf_counter() - start
    return figures


def measure_verilator(config, repeats: int) -> dict[str, float | int]:
    from sim.fastsim import VerilatorTransport

    program, expected = _gemm(config, (256, 256, 256))
    beats = program.beats()
    best = None
    with VerilatorTransport(config) as transport:
        for _ in range(repeats):
            transport.reset()
            cpu = _process_cpu_seconds(transport.process_id)
            got, seconds = _timed_exchange(transport, beats)
            cpu = _process_cpu_seconds(transport.process_id) - cpu
            if best is None or seconds < best[1]:
                best = (transport.last_cycles, seconds, cpu,
                        _mismatches(program, expected, got))
    cycles, seconds, cpu, mismatches = best
    return {"shape": "256x256x256", "cycles": cycles, "seconds": seconds,
            "cycles_per_second": cycles / seconds, "cpu_seconds": cpu,
            "cycles_per_cpu_second": cycles / max(cpu, 1e-9), "mismatches": mismatches}


def measure_cocotb(config, shape: tuple[int, int, int]) -> dict[str, float | int | str]:
    from golden.protocol import Opcode, Packet
    from sim.cocotb_transport import CocotbTransport

    program, expected = _gemm(config, shape)
    transport = CocotbTransport(config, progress=lambda message: print(
        f"  {message}", file=sys.stderr))
    cpu = _children_cpu_seconds()
    _, start_seconds = _timed_exchange(transport, Packet.make(Opcode.IDENTIFY, 0).beats())
    start_cpu = _children_cpu_seconds() - cpu
    start_cycles = transport.last_cycles
    transport.reset()
    cpu = _children_cpu_seconds()
    got, seconds = _timed_exchange(transport, program.beats())
    cpu = _children_cpu_seconds() - cpu
    cycles = transport.last_cycles
    transport.close()
    return {"shape": "x".join(map(str, shape)), "cycles": cycles, "seconds": seconds,
            "simulator_start_seconds": start_seconds,
            "cycles_per_second": (cycles - start_cycles) / max(1e-9, seconds - start_seconds),
            "cycles_per_second_with_start": cycles / seconds,
            "cpu_seconds": cpu, "simulator_start_cpu_seconds": start_cpu,
            "cycles_per_cpu_second": (cycles - start_cycles) / max(1e-9, cpu - start_cpu),
            "mismatches": _mismatches(program, expected, got)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--fresh", action="store_true",
                        help="also time a first build in an empty cache (a minute or more)")
    parser.add_argument("--no-cocotb", action="store_true", help="skip the cocotb transport")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of the 256^3 GEMM on the harness; the fastest counts")
    parser.add_argument("--cocotb-shape", type=_shape, default=(128, 256, 128), metavar="MxKxN",
                        help="GEMM for the cocotb transport (default 128x256x128)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, not {args.repeats}")
    from golden.config import ArrayConfig

    config = ArrayConfig()
    print("building (or finding) the harness ...", file=sys.stderr)
    build = measure_build(config, args.fresh)
    print("running 256x256x256 A8W8 on the Verilator harness ...", file=sys.stderr)
    verilator = measure_verilator(config, args.repeats)
    cocotb = None
    if not args.no_cocotb:
        print(f"running {'x'.join(map(str, args.cocotb_shape))} A8W8 on cocotb ...",
              file=sys.stderr)
        cocotb = measure_cocotb(config, args.cocotb_shape)
    speedup = verilator["cycles_per_second"] / cocotb["cycles_per_second"] if cocotb else None
    cpu_speedup = (verilator["cycles_per_cpu_second"] / cocotb["cycles_per_cpu_second"]
                   if cocotb else None)
    report = {
        "verilator": verilator, "cocotb": cocotb, "build": build,
        "speedup_over_cocotb": speedup, "cpu_speedup_over_cocotb": cpu_speedup,
        "targets": {"cycles_per_second": TARGET_CYCLES_PER_SECOND,
                    "speedup_over_cocotb": TARGET_SPEEDUP},
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "load_average": os.getloadavg()[0],
                    "python": platform.python_version()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    rows = [("Verilator harness, 256x256x256 A8W8", verilator)]
    if cocotb:
        rows.append((f"cocotb, {cocotb['shape']} A8W8", cocotb))
    print(f"{'backend':<38} {'cycles':>9} {'seconds':>8} {'cycles/s':>11} "
          f"{'cycles/CPU s':>12} {'mismatches':>10}")
    for label, figures in rows:
        print(f"{label:<38} {figures['cycles']:>9} {figures['seconds']:>8.2f} "
              f"{figures['cycles_per_second']:>11,.0f} {figures['cycles_per_cpu_second']:>12,.0f} "
              f"{figures['mismatches']:>10}")
    if cocotb:
        print(f"cocotb simulator start {cocotb['simulator_start_seconds']:.1f} s (left out of "
              f"its cycles/s; with it {cocotb['cycles_per_second_with_start']:,.0f})")
        print(f"speedup over cocotb: {speedup:.0f}x wall, {cpu_speedup:.0f}x CPU "
              f"(target {TARGET_SPEEDUP}x)")
    print(f"target: {TARGET_CYCLES_PER_SECOND:,} cycles/s: "
          f"{'met' if verilator['cycles_per_second'] >= TARGET_CYCLES_PER_SECOND else 'missed'}")
    recorded = build["recorded_first_build_seconds"]
    print(f"harness build: {recorded} s to compile when it was built, "
          f"{build['cached_build_seconds']:.2f} s from the cache"
          + (f", {build['fresh_build_seconds']:.0f} s fresh (Verilog + compile)"
             if build["fresh_build_seconds"] is not None else ""))
    print(f"load average {report['machine']['load_average']:.1f} on "
          f"{report['machine']['cores']} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
