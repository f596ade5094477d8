"""`lpmac bench`: simulation speed, accelerator utilization and golden GEMM speed.

Measures, on this machine:

* the Verilator backend: time to open it (a Verilator build on the first run, a cache hit
  after), simulated cycles per second and wall time of a 256 x 256 x 256 A8W8 GEMM;
* the cocotb path on a smaller GEMM (128^3), and the Verilator backend on the same GEMM
  (the ratio of their simulated cycles per second, with and without the fixed cost of
  starting a cocotb run);
* utilization (counted MACs / (cycles * peak)) from the accelerator's counters over a sweep
  of shapes and modes on the Verilator backend (deterministic);
* the golden model's GEMM speed: int8 (exact int32) and MXINT8 on the same shape, and
  their ratio.

Writes `bench.md` (tables), `bench.json` (every figure) and `bench.png` (utilization per
shape and mode) into the output directory.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import golden
from golden.config import MODE_INFO, MODES
from golden.protocol import Opcode, Packet

from .driver import Accelerator

FULL_SHAPES = [(256, 256, 256), (128, 768, 384), (128, 1536, 384), (128, 3072, 384),
               (64, 4096, 128), (64, 256, 128), (128, 64, 256), (100, 1000, 130),
               (37, 515, 29)]
QUICK_SHAPES = [(64, 64, 64), (37, 100, 29)]
FULL_MODES = MODES
QUICK_MODES = ("a8w8", "a8w4", "mxint8")


def _formats(mode: str) -> dict[str, str]:
    """fmt_a and fmt_b of an MX mode."""
    return dict(zip(("fmt_a", "fmt_b"), MODE_INFO[mode].mx_formats, strict=True))


def _operands(mode: str, m: int, k: int, n: int, rng: np.random.Generator):
    if MODE_INFO[mode].mx:
        return (rng.standard_normal((m, k)).astype(np.float32),
                rng.standard_normal((k, n)).astype(np.float32))
    a_bits, w_bits = {"a8w8": (8, 8), "a8w4": (8, 4), "a4w4": (4, 4)}[mode]
    a_top, w_top = 2 ** (a_bits - 1), 2 ** (w_bits - 1)
    return (rng.integers(-a_top, a_top, (m, k)).astype(np.int8),
            rng.integers(-w_top, w_top, (k, n)).astype(np.int8))


def _run(accelerator: Accelerator, mode: str, a: np.ndarray, b: np.ndarray):
    if MODE_INFO[mode].mx:
        return accelerator.mx_matmul(a, b, **_formats(mode))
    return accelerator.matmul(a, b, mode=mode)


def describe_machine() -> str:
    """Cores, CPU model (from /proc/cpuinfo where there is one), Python and NumPy versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, " \
           f"NumPy {np.__version__}"


def _best_of(function: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _cold_open_seconds() -> float:
    """Seconds to open the Verilator backend with an empty build cache (a fresh machine):
    Verilog generation, the Verilator build and the harness start, in a child process."""
    with tempfile.TemporaryDirectory(prefix="lpmac-cold-") as directory:
        env = {**os.environ, "LPMAC_BUILD_DIR": directory}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from sim.fastsim import VerilatorTransport\n"
                        "VerilatorTransport().close()\n"], env=env, check=True)
        return time.perf_counter() - start


def _speed(stats) -> float:
    """Simulated cycles per second of one call: the accelerator's cycle counter over the
    wall time of the exchange (which includes the transport's own work on the host)."""
    return stats.cycles / stats.exchange_s


def run_bench(out_dir: Path, *, quick: bool = False, cocotb: bool = True,
              cold_build: bool = False,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the measurements and write bench.md / bench.json / bench.png to `out_dir`.
    `cold_build` also times a first build in an empty cache (a minute or more)."""
    say = progress or (lambda message: None)
    count = getattr(progress, "count", None)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = 2026
    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {"machine": describe_machine(), "quick": quick, "seed": seed,
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    if cold_build:
        say("a first build of the verilator backend in an empty cache (Verilog + C++)")
        report["verilator_cold_open_s"] = _cold_open_seconds()
    say("opening the verilator backend (builds the simulator unless it is cached)")
    start = time.perf_counter()
    verilator = Accelerator(backend="verilator", progress=say)
    report["verilator_open_s"] = time.perf_counter() - start
    with verilator:
        size = 64 if quick else 256
        a, b = _operands("a8w8", size, size, size, rng)
        say(f"simulation speed: {size}^3 A8W8 on the verilator backend")
        result = verilator.matmul(a, b, mode="a8w8")
        stats = verilator.last_stats
        report["speed"] = {
            "shape": [size] * 3, "mode": "a8w8", "cycles": stats.cycles,
            "utilization": stats.utilization, "wall_s": stats.wall_s,
            "exchange_s": stats.exchange_s, "cycles_per_s": _speed(stats),
            "transport_sim_cycles_per_s": stats.sim_cycles_per_s,
            "mismatches": golden.mismatches(golden.matmul(a, b), result)}

        small = (16, 32, 16) if quick else (128, 128, 128)
        a_small, b_small = _operands("a8w8", *small, rng)
        verilator.matmul(a_small, b_small, mode="a8w8")
        small_stats = verilator.last_stats
        report["ratio"] = {"shape": list(small), "verilator_cycles": small_stats.cycles,
                           "verilator_cycles_per_s": _speed(small_stats),
                           "verilator_exchange_s": small_stats.exchange_s}
        if cocotb:
            say(f"the cocotb path on {small[0]} x {small[1]} x {small[2]} A8W8")
            start = time.perf_counter()
            with Accelerator(backend="cocotb", progress=say) as slow:
                report["ratio"]["cocotb_open_s"] = time.perf_counter() - start
                # The fixed cost of one cocotb run (simulator start, replay of earlier
                # exchanges), measured with a one-packet exchange.
                start = time.perf_counter()
                slow.transport.exchange(Packet.make(Opcode.IDENTIFY, 0).beats())
                fixed_s = time.perf_counter() - start
                slow_result = slow.matmul(a_small, b_small, mode="a8w8")
                slow_stats = slow.last_stats
            ratio = report["ratio"]
            ratio.update(cocotb_cycles=slow_stats.cycles,
                         cocotb_cycles_per_s=_speed(slow_stats),
                         cocotb_exchange_s=slow_stats.exchange_s,
                         cocotb_mismatches=golden.mismatches(
                             golden.matmul(a_small, b_small), slow_result))
            ratio["cocotb_run_fixed_s"] = fixed_s
            ratio["cocotb_cycles_per_s_without_fixed"] = slow_stats.cycles / max(
                slow_stats.exchange_s - fixed_s, 1e-9)
            ratio["speedup"] = _speed(small_stats) / _speed(slow_stats)
            ratio["speedup_without_fixed"] = \
                _speed(small_stats) / ratio["cocotb_cycles_per_s_without_fixed"]

        shapes = QUICK_SHAPES if quick else FULL_SHAPES
        modes = QUICK_MODES if quick else FULL_MODES
        sweep = []
        total = len(shapes) * len(modes)
        for m, k, n in shapes:
            for mode in modes:
                a_s, b_s = _operands(mode, m, k, n, rng)
                got = _run(verilator, mode, a_s, b_s)
                s = verilator.last_stats
                if MODE_INFO[mode].mx:
                    expected = golden.mx_matmul(a_s, b_s, **_formats(mode))
                else:
                    expected = golden.matmul(a_s, b_s)
                mismatches = golden.mismatches(expected, got)
                sweep.append({"shape": [m, k, n], "mode": mode, "cycles": s.cycles,
                              "busy": s.busy, "input_stall": s.input_stall,
                              "output_stall": s.output_stall, "macs": s.macs,
                              "useful_macs": s.useful_macs, "utilization": s.utilization,
                              "useful_utilization": s.useful_macs / (
                                  s.cycles * s.peak_macs_per_cycle),
                              "mismatches": mismatches})
                if count:
                    count(len(sweep), total, f"{m}x{k}x{n} {mode}")
                else:
                    say(f"sweep {len(sweep)}/{total}: {m}x{k}x{n} {mode}")
        report["sweep"] = sweep

    say("golden model GEMM speed")
    size = 128 if quick else 512
    a_g, b_g = _operands("a8w8", size, size, size, rng)
    af, bf = _operands("mxint8", size, size, size, rng)
    repeats = 3 if quick else 10
    int8_s = _best_of(lambda: golden.matmul(a_g, b_g), repeats)
    mxint8_s = _best_of(lambda: golden.mx_matmul(af, bf), repeats)
    report["golden"] = {"int8_shape": [size] * 3, "int8_s": int8_s,
                        "mxint8_shape": [size] * 3, "mxint8_s": mxint8_s,
                        "mxint8_over_int8": mxint8_s / int8_s}

    markdown = out_dir / "bench.md"
    plot = out_dir / "bench.png"
    markdown.write_text(_markdown(report))
    _plot(report, plot)
    report["markdown"] = str(markdown)
    report["plot"] = str(plot)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2))
    return report


def _markdown(report: dict[str, Any]) -> str:
    speed, ratio, gold = report["speed"], report["ratio"], report["golden"]
    size = "x".join(map(str, speed["shape"]))
    lines = [
        f"Machine: {report['machine']}; {report['date']}; seed {report['seed']}"
        + (" (quick sweep)" if report["quick"] else ""),
        "",
        "| Verilator backend | value |",
        "|---|---|",
        *([f"| open, first build in an empty cache | {report['verilator_cold_open_s']:.1f} s |"]
          if "verilator_cold_open_s" in report else []),
        f"| open, cached build | {report['verilator_open_s']:.2f} s |",
        f"| {size} A8W8: cycles | {speed['cycles']:,} |",
        f"| {size} A8W8: utilization | {speed['utilization']:.2%} |",
        f"| {size} A8W8: wall time (pack, simulate, decode) | {speed['wall_s']:.3f} s |",
        f"| {size} A8W8: exchange time (transport only) | {speed['exchange_s']:.3f} s |",
        f"| {size} A8W8: simulated cycles/s (cycles / exchange time) | "
        f"{speed['cycles_per_s']:,.0f} |",
        f"| {size} A8W8: mismatches vs golden | {speed['mismatches']} |",
        "",
    ]
    small = "x".join(map(str, ratio["shape"]))
    if "cocotb_cycles" in ratio:
        lines += [
            f"| {small} A8W8 | cycles | exchange time | cycles/s |",
            "|---|---|---|---|",
            f"| verilator backend | {ratio['verilator_cycles']:,} | "
            f"{ratio['verilator_exchange_s']:.3f} s | {ratio['verilator_cycles_per_s']:,.0f} |",
            f"| cocotb path | {ratio['cocotb_cycles']:,} | {ratio['cocotb_exchange_s']:.3f} s | "
            f"{ratio['cocotb_cycles_per_s']:,.0f} |",
            f"| cocotb path without the fixed cost of a run "
            f"({ratio['cocotb_run_fixed_s']:.2f} s) | | | "
            f"{ratio['cocotb_cycles_per_s_without_fixed']:,.0f} |",
            f"| ratio verilator / cocotb | | | **{ratio['speedup']:.0f}x** "
            f"({ratio['speedup_without_fixed']:.0f}x without the fixed cost) |",
            "",
        ]
    lines += ["| shape M x K x N | mode | cycles | busy | input stall | output stall | "
              "counted MACs | utilization | useful MACs / (cycles * peak) | mismatches |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["sweep"]:
        lines.append(
            f"| {'x'.join(map(str, row['shape']))} | {row['mode']} | {row['cycles']:,} | "
            f"{row['busy']:,} | {row['input_stall']:,} | {row['output_stall']:,} | "
            f"{row['macs']:,} | {row['utilization']:.2%} | {row['useful_utilization']:.2%} | "
            f"{row['mismatches']} |")
    lines += ["", "| golden model | time |", "|---|---|",
              f"| `golden.matmul` int8 {'x'.join(map(str, gold['int8_shape']))} | "
              f"{gold['int8_s'] * 1e3:.2f} ms |",
              f"| `golden.mx_matmul` MXINT8 {'x'.join(map(str, gold['mxint8_shape']))} "
              f"(W = 32, FP32 out) | {gold['mxint8_s'] * 1e3:.2f} ms "
              f"({gold['mxint8_over_int8']:.1f}x `golden.matmul`) |", ""]
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = report["sweep"]
    shapes = list(dict.fromkeys("x".join(map(str, row["shape"])) for row in sweep))
    modes = list(dict.fromkeys(row["mode"] for row in sweep))
    figure, axes = plt.subplots(figsize=(max(6, 1.4 * len(shapes)), 4))
    width = 0.8 / len(modes)
    for index, mode in enumerate(modes):
        values = [next(row["utilization"] for row in sweep if row["mode"] == mode
                       and "x".join(map(str, row["shape"])) == shape) * 100
                  for shape in shapes]
        axes.bar(np.arange(len(shapes)) + index * width, values, width, label=mode)
    axes.set_xticks(np.arange(len(shapes)) + width * (len(modes) - 1) / 2, shapes)
    axes.set_ylabel("utilization (%)")
    axes.set_ylim(0, 105)
    axes.set_title("lpmac utilization per shape and mode (hardware counters, Verilator)")
    axes.legend(fontsize="small", ncol=len(modes))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
