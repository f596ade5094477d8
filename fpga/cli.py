"""The `lpmac build` subcommand: bitstreams and reports for the lpmac boards.

`register(subparsers)` adds it to the `lpmac` command line (host/cli.py). Exit codes: 0
built and met timing, 1 built but some clock misses its target (report still written),
2 bad usage, a missing tool, or a design that does not fit the part. See docs/fpga.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from golden.config import ACTIVATION_MEMORIES, MODES, MULTIPLIERS, PIPELINES

__all__ = ["register", "cmd_build"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `build` to the `lpmac` subcommands."""
    from .boards import BOARDS

    parser = subparsers.add_parser(
        "build", help="build an FPGA bitstream and its resource/Fmax report",
        description="Synthesize, place and route the accelerator for a board with the "
                    "YoWASP tools of this Python environment (yosys, nextpnr, icepack/"
                    "ecppack), write the bitstream, the tool logs and a report (cells, "
                    "Fmax, MACs per cycle and GOPS per mode). Exit code 0: built and met "
                    "timing; 1: built, timing missed (report written); 2: bad usage, a "
                    "missing tool, or the design does not fit the part.")
    parser.add_argument("--board", required=True, metavar="NAME",
                        help=f"the board: {', '.join(BOARDS)}")
    parser.add_argument("--rows", type=int, help="array rows (default: the board's)")
    parser.add_argument("--cols", type=int, help="array columns (default: the board's)")
    parser.add_argument("--modes", help=f"comma-separated modes among {', '.join(MODES)}")
    parser.add_argument("--multiplier", help=f"PE multiplier: {', '.join(MULTIPLIERS)}")
    parser.add_argument("--pipeline",
                        help=f"{' or '.join(PIPELINES)}: few registers for small FPGAs, or "
                             "more for 100 MHz clocks (default: the board's)")
    parser.add_argument("--requant-depth", type=int,
                        help="requantization parameter entries (a power of two)")
    parser.add_argument("--weight-depth", type=int,
                        help="weight FIFO rows (a power of two; default: the board's)")
    parser.add_argument("--activation-depth", type=int,
                        help="activation buffer vectors, both banks (a power of two)")
    parser.add_argument("--accumulator-depth", type=int,
                        help="accumulator rows, both banks (a power of two)")
    parser.add_argument("--activation-memory",
                        help=f"where the activation buffer lives: "
                             f"{' or '.join(ACTIVATION_MEMORIES)} (default: the board's)")
    parser.add_argument("--int4-packing",
                        help="how A4W4 packs int4 operands: columns or k-pairs "
                             "(default: the board's)")
    parser.add_argument("--clock-mhz", type=float,
                        help="accelerator clock to meet (default: the board's)")
    parser.add_argument("--baudrate", type=int, help="UART baud rate (default: the board's)")
    parser.add_argument("--out", metavar="DIR",
                        help="build directory (default: build/fpga/<board>)")
    parser.add_argument("--top", choices=("board", "accelerator", "array"), default="board",
                        help="what to build: the board top level (UART bridge, PLL, "
                             "accelerator; default), or the accelerator or the array alone "
                             "behind an LFSR stimulus (to measure their own cells and Fmax; "
                             "that bitstream does nothing useful)")
    parser.add_argument("--seed", type=int,
                        help="nextpnr's placement seed (Fmax varies with placement)")
    parser.add_argument("--synth-only", action="store_true",
                        help="stop after synthesis and the packing fit check (cell counts, no "
                             "bitstream)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=cmd_build)
    return parser


# Options that set an `ArrayConfig` field: option (argparse dest) -> field.
_CONFIG_OPTIONS = {
    **{name: name for name in ("rows", "cols", "multiplier", "pipeline", "requant_depth",
                               "accumulator_depth", "activation_memory",
                               "int4_packing")},
    "weight_depth": "weight_buffer_depth",
    "activation_depth": "activation_buffer_depth",
}


def _config_changes(args: argparse.Namespace) -> dict[str, object]:
    changes: dict[str, object] = {}
    for name, field in _CONFIG_OPTIONS.items():
        value = getattr(args, name)
        if value is not None:
            changes[field] = value
    if args.modes is not None:
        changes["modes"] = tuple(mode.strip() for mode in args.modes.split(",") if mode.strip())
    return changes


def cmd_build(args: argparse.Namespace) -> int:
    """Run `lpmac build`; bad usage raises ValueError (exit code 2 in `lpmac`)."""
    from .boards import board as find_board
    from .build import BuildError, build_board, format_report

    board = find_board(args.board)
    config = board.config.replace(**_config_changes(args))
    clock_hz = None
    if args.clock_mhz is not None:
        if not args.clock_mhz > 0:
            raise ValueError(f"--clock-mhz must be positive, not {args.clock_mhz!r}")
        clock_hz = round(args.clock_mhz * 1e6)

    def say(message: str) -> None:
        print(f"... {message}", file=sys.stderr, flush=True)

    try:
        report = build_board(board, config, clock_hz=clock_hz, baudrate=args.baudrate,
                             out_dir=args.out, synth_only=args.synth_only,
                             top=args.top, seed=args.seed, say=say)
    except BuildError as error:
        if args.json and error.report is not None:
            print(json.dumps(error.report.as_dict(), indent=1))
        print(f"lpmac build: {error}", file=sys.stderr)
        return error.exit_code
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print(format_report(report))
    if report.timing_met is False:
        print(f"lpmac build: timing not met at {report.clock_hz / 1e6:g} MHz "
              f"(Fmax {', '.join(f'{v:.2f} MHz' for v in report.fmax_mhz.values())}); the "
              f"bitstream and report are in {report.out_dir}", file=sys.stderr)
        return 1
    return 0
