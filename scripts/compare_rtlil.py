"""Compare the RTLIL of a matrix of builds between a base revision and the work tree.

    .venv/bin/python scripts/compare_rtlil.py                  # against HEAD
    .venv/bin/python scripts/compare_rtlil.py --base a40ff65   # against any revision
    .venv/bin/python scripts/compare_rtlil.py --list           # the builds compared

A refactor that should not change the hardware is proven by this script: it checks the base
revision out into a temporary worktree, converts every build of `BUILDS` to RTLIL in both
trees (Amaranth's `rtlil.convert` with `emit_src=False`, so source locations do not count)
and compares the texts. Exit 0 when every build is identical, 1 when one differs (the first
differing lines are shown), 2 for bad usage.

The builds: the default accelerator, the requantizer left out, an MX-only and an
integer-only build, a small second configuration, and the three board builds with their UART
bridge (the iCEBreaker default, its K-pair A4W4 build, the ULX3S).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs inside a tree (its packages first on sys.path): prints {build: rtlil} as JSON. Only
# constructors that exist in every revision this script is meant for are used.
_GENERATOR = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from amaranth.back import rtlil
from golden.config import ArrayConfig
from hw.accelerator import Accelerator
from fpga.boards import BOARDS
from fpga.top import BridgedAccelerator

def bridged(config, board=None):
    # As the board top builds it: on the ECP5 the accelerator's reset through a global
    # buffer, where the revision has that option.
    import inspect
    extra = {}
    if (board is not None and BOARDS[board].family == "ecp5"
            and "global_reset" in inspect.signature(BridgedAccelerator).parameters):
        extra["global_reset"] = True
    return BridgedAccelerator(config, divisor=16, **extra)

icebreaker = BOARDS["icebreaker"].config
builds = {
    "default": lambda: Accelerator(ArrayConfig()),
    "no-requantizer": lambda: Accelerator(ArrayConfig(requant_depth=0)),
    "mx-only": lambda: Accelerator(ArrayConfig(modes=("mxint8", "mxint4"))),
    "integer-only": lambda: Accelerator(ArrayConfig(modes=("a8w8", "a8w4", "a4w4"))),
    "small-4x4": lambda: Accelerator(ArrayConfig(
        rows=4, cols=4, block_size=16, acc_bits=16, acc_rounding="truncate",
        weight_buffer_depth=64, activation_buffer_depth=256, accumulator_depth=64,
        requant_depth=64)),
    "icebreaker": lambda: bridged(icebreaker),
    "icebreaker-a8w8": lambda: bridged(icebreaker.replace(modes=("a8w8",),
                                                          int4_packing="columns")),
    "icebreaker-k-pairs": lambda: bridged(icebreaker.replace(
        modes=("a4w4",), int4_packing="k-pairs")),
    "ulx3s-85f": lambda: bridged(BOARDS["ulx3s-85f"].config, "ulx3s-85f"),
}
wanted = sys.argv[1:] or list(builds)
print(json.dumps({name: rtlil.convert(builds[name](), emit_src=False) for name in wanted}))
"""

BUILDS = ("default", "no-requantizer", "mx-only", "integer-only", "small-4x4", "icebreaker",
          "icebreaker-a8w8", "icebreaker-k-pairs", "ulx3s-85f")


def rtlil_of(tree: Path, builds: list[str]) -> dict[str, str]:
    """{build: RTLIL text} generated from the sources in `tree`."""
    environment = dict(os.environ, PYTHONPATH=str(tree))
    result = subprocess.run([sys.executable, "-c", _GENERATOR, *builds], cwd=tree,
                            env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"generating RTLIL in {tree} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def base_rtlil(commit: str, builds: list[str]) -> dict[str, str]:
    """{build: RTLIL text} of a commit, generated in a temporary worktree; kept under
    build/rtlil/<commit>/ so that comparing against the same base again is quick."""
    cache = REPO / "build" / "rtlil" / commit
    missing = [name for name in builds if not (cache / f"{name}.il").exists()]
    if missing:
        with tempfile.TemporaryDirectory(prefix="rtlil-base-") as scratch:
            tree = Path(scratch) / "base"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit],
                           cwd=REPO, capture_output=True, check=True)
            try:
                generated = rtlil_of(tree, missing)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO,
                               capture_output=True)
        cache.mkdir(parents=True, exist_ok=True)
        for name, text in generated.items():
            (cache / f"{name}.il").write_text(text)
    return {name: (cache / f"{name}.il").read_text() for name in builds}


def compare(base: dict[str, str], work: dict[str, str], context: int) -> list[str]:
    """Names of the builds whose RTLIL differs; prints one line per build."""
    differing = []
    for name in base:
        same = base[name] == work[name]
        digest = hashlib.sha256(work[name].encode()).hexdigest()[:16]
        print(f"{name:20s} {'identical' if same else 'DIFFERS':10s} {digest} "
              f"({len(work[name].splitlines()):,} lines)")
        if not same:
            differing.append(name)
            diff = difflib.unified_diff(base[name].splitlines(), work[name].splitlines(),
                                        "base", "work", lineterm="", n=1)
            for line in list(diff)[:context]:
                print(f"    {line}")
    return differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="base revision (default HEAD)")
    parser.add_argument("--build", action="append", choices=BUILDS,
                        help="compare only this build (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the builds and exit")
    parser.add_argument("--context", type=int, default=40,
                        help="diff lines shown per differing build")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(BUILDS))
        return 0
    builds = args.build or list(BUILDS)
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{args.base}^{{commit}}"],
                            cwd=REPO, capture_output=True, text=True)
    if commit.returncode != 0:
        print(f"cannot find revision {args.base!r}: {commit.stderr.strip()}", file=sys.stderr)
        return 2
    base = base_rtlil(commit.stdout.strip(), builds)
    work = rtlil_of(REPO, builds)
    print(f"base {args.base} against the work tree of {REPO}:")
    differing = compare(base, work, args.context)
    print("identical" if not differing else f"{len(differing)} of {len(builds)} differ")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
