"""Compiled Verilator executables: a design's Verilog plus a C++ `main`, cached like every
other build (`sim.build.cached_build`).

cocotb drives a Verilated model from Python, one coroutine switch per clock edge; a C++
harness drives it from C++ and talks to Python only in batches, which is one to two orders
of magnitude faster. `build_executable` turns (Verilog, top module, C++ main) into such a
program: `verilator --cc --exe --build`, compiled for speed, stored under
`sim.build.cache_dir()` by a hash of everything that determines the binary.

Writing a harness
-----------------
The generated model class is `V<top>` (header `V<top>.h`); each top-level port is a public
member. Verilator mangles a double underscore, so Amaranth's `i_stream__valid` is
`i_stream___05Fvalid` in C++. Ports up to 64 bits are plain integers; wider ones are
`VlWide<n>` arrays of 32-bit words, least significant word first. Amaranth's `sync` clock
and reset are `clk` and `rst` (synchronous, active high). `sim/harness/accelerator_main.cpp`
is the harness of the accelerator (`sim.fastsim`).

The default flags (`FAST_FLAGS`) were chosen by measuring the accelerator harness on a
256 x 256 x 256 A8W8 GEMM (CPU time of the harness process, best of 5): Verilator's `-O3`
and fast X handling, no assertions, the C++ compiled with `-O2`. Measured against it: C++
`-O3` and `-O3 -march=native` the same, `-O1` 15% slower, `-Os` 20% slower, Verilator
`-fno-dfg` 45% slower, `--output-split-cfuncs 1000` the same, module inlining off (`-fno-inline`)
20% slower; GCC profile-guided optimisation (`-fprofile-generate`, a training run,
`-fprofile-use`) 10% faster, but it doubles the first build, so it is not used. Nearly all
the time is the model's own evaluation (`_eval` of the Verilated design); see
`sim.fastsim` for where it goes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from .build import (
    _CACHE_FORMAT,
    MAKE_OVERRIDES,
    VerilatorBuildError,
    _diagnostics,
    cached_build,
    lint_waiver_flags,
    verilog_fingerprint,
)
from .coverage import code_coverage_flags, prepare_verilog
from .toolchain import ensure_toolchain, toolchain_env, toolchain_versions

__all__ = ["FAST_FLAGS", "SHARED_HEADERS", "build_executable", "executable_name"]

SHARED_HEADERS: tuple[Path, ...] = (Path(__file__).resolve().parent / "harness" / "splitmix64.h",)
"""Headers every harness may include (`#include "splitmix64.h"`: the seeded generator of
stalls and line faults); `build_executable` copies them into each build."""

FAST_FLAGS: tuple[str, ...] = (
    "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-CFLAGS", "-O2",
)
"""Verilator and C++ flags of every executable built here (before the caller's `flags`)."""

_BUILD_JOBS = 2


def executable_name(top: str) -> str:
    """File name of the executable `build_executable` makes for top module `top`."""
    return f"{top}_harness"


def _source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_executable(verilog: str, top: str, cpp_main: Path, *, name: str,
                     flags: Sequence[str] = (), extra_sources: Sequence[Path] = (),
                     progress: Callable[[str], None] | None = None) -> Path:
    """Path of a Verilator `--cc --exe --build` binary of `verilog` (top module `top`) and
    the C++ `cpp_main`, built once per hash and cached. With coverage on (`sim.coverage`)
    it is a coverage build (`CODE_COVERAGE_FLAGS`), cached apart; writing the counters is
    the harness's job (`VerilatedCov`, under `#if VM_COVERAGE`).

    The hash covers the Verilog without its `src` attributes, `top`, the text of `cpp_main`,
    `SHARED_HEADERS` and `extra_sources` (further C++ files, or headers they include), the
    flags and the tool versions. `flags` are added after `FAST_FLAGS` and
    `sim.build.lint_waiver_flags()`. `name` labels the cache entry for people browsing it.
    `progress`, when given, is called with one message before a build that is not in the
    cache starts (a first build takes a minute or more). Concurrent callers wanting the
    same build wait for one compilation.
    Raises `VerilatorBuildError` quoting the compiler's diagnostics when the build fails.
    """
    if not isinstance(top, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top):
        raise ValueError(f"top must be a Verilog identifier, not {top!r}")
    if f"module {top}" not in verilog:
        raise ValueError(f"the Verilog text has no module named {top!r}")
    sources = [Path(cpp_main), *SHARED_HEADERS, *map(Path, extra_sources)]
    for source in sources:
        if not source.is_file():
            raise ValueError(f"C++ source {str(source)!r} does not exist")
    if len({source.name for source in sources}) != len(sources):
        raise ValueError("the C++ sources must have different file names, not "
                         f"{[source.name for source in sources]}")
    ensure_toolchain()
    if code_coverage_flags():
        verilog = prepare_verilog(verilog)
    all_flags = [*lint_waiver_flags(), *FAST_FLAGS, *code_coverage_flags(), *flags]
    versions = toolchain_versions()
    key_fields = {
        "format": _CACHE_FORMAT,
        "kind": "executable",
        "toplevel": top,
        "verilog": verilog_fingerprint(verilog),
        "sources": {source.name: _source_digest(source) for source in sources},
        "flags": all_flags,
        "make_overrides": list(MAKE_OVERRIDES),
        "tools": {tool: versions[tool] for tool in ("verilator", "c++")},
    }
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", name)

    def build(directory: Path) -> None:
        if progress is not None:
            progress(f"building the Verilator harness {label} (a first build takes a minute "
                     "or more; later runs use the cache)")
        design = directory / f"{top}.v"
        design.write_text(verilog)
        copies = []
        for source in sources:
            copy = directory / source.name
            shutil.copyfile(source, copy)
            copies.append(copy)
        compiled = [copy for copy in copies if copy.suffix in (".cpp", ".cc", ".cxx", ".c")]
        command = [
            str(ensure_toolchain()), "--cc", "--exe", "--build", "--top-module", top,
            "--Mdir", str(directory / "obj"), "-o", str(directory / executable_name(top)),
            "--build-jobs", str(_BUILD_JOBS), "-MAKEFLAGS", " ".join(MAKE_OVERRIDES),
            "-CFLAGS", f"-I{directory}", *all_flags, str(design), *map(str, compiled)]
        log = directory / "build.log"
        with open(log, "w") as handle:
            handle.write(" ".join(command) + "\n")
            handle.flush()
            result = subprocess.run(command, cwd=directory, stdout=handle,
                                    stderr=subprocess.STDOUT, env=toolchain_env(),
                                    check=False)
        executable = directory / executable_name(top)
        if result.returncode != 0 or not executable.is_file():
            raise VerilatorBuildError(
                f"Verilator build of {top!r} with {Path(cpp_main).name} failed:\n"
                f"{_diagnostics(log.read_text(errors='replace'))}\n(full log: {log})")
        # The object files are only needed to rebuild; the executable is what is kept.
        shutil.rmtree(directory / "obj", ignore_errors=True)
        os.chmod(executable, 0o755)

    directory, _key, _cached, _seconds = cached_build(label, key_fields, build)
    return directory / executable_name(top)
