"""The fast simulation transport: the accelerator's Verilog in a compiled Verilator harness.

`VerilatorTransport(config)` generates the Verilog of `hw.accelerator.Accelerator(config)`,
builds `sim/harness/accelerator_main.cpp` around it (`sim.harness.build_executable`, cached)
and starts the harness as a child process. Each `exchange` sends the request beats through
its stdin in one batch; the harness clocks the design in C++ until the responses are back
and answers with the response beats and the number of simulated cycles (the pipe protocol
is described at the top of the C++ file). No Python runs per clock cycle. The harness reads
a whole request before it writes anything, so writing the request and then reading the
answer cannot deadlock on full pipe buffers.

Cycle counts are exact: between exchanges the design rests between two clock edges, so the
cycles of an exchange are those from the edge that can take its first word to the edge
that transfers its last response beat, and `simulated_cycles` is every edge since the
process started (`RESET_EDGES` per reset, then the exchanges). The accelerator's own
`cycles` counter (READ_COUNTERS) therefore advances by exactly the cycles the harness
reports between two READ_COUNTERS.

A hang cannot hang the host: every exchange has a cycle budget, a generous multiple of the
work its packets describe (words sent, array passes and result words of each COMPUTE); the
harness gives up after it and `exchange` raises `host.transport.TransportError`.

`gaps` and `stalls` (probabilities per cycle, seeded by `seed`) make the harness leave
idle cycles on the input stream and pull `ready` low on the output stream, as the cocotb
tests do, so the fast backend can also be stressed.

The Verilog (about 8 s to generate) is cached on disk next to the builds, keyed by the
configuration and the text of the Python sources that describe the gateware.

Speed (benchmarks/sim_speed.py): about 450,000 simulated cycles per CPU second of the
harness on the default configuration (2-core AMD EPYC VM), 13-15 times the cocotb
testbench. Python, the pipe and the harness's own loop take a few percent; the rest is the
Verilated model, which evaluates all of its logic at every clock edge whatever the mode
(a profile with module inlining off: the 16 BFP accumulator lanes about 35%, the systolic
array 30%, the accelerator's control logic 16%, the integer accumulators 7%, the
requantizer 3.5%).
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from golden.config import ArrayConfig
from golden.protocol import (
    Beat,
    Geometry,
    Header,
    Opcode,
    Status,
    check_accelerator_config,
    check_configure,
    decode_configure,
)
from host.transport import Transport, TransportError

from .build import (
    _CACHE_FORMAT,
    cached_build,
    config_build_name,
    generate_verilog,
    source_closure,
)
from .coverage import STREAM_COVER_VERILOG, coverage_dir, data_file
from .harness import build_executable
from .protocol_coverage import protocol_recorder
from .toolchain import toolchain_env, toolchain_versions

__all__ = ["ACCELERATOR_TOP", "HARNESS_TOP", "HARNESS_SOURCE", "RESET_CYCLES", "RESET_EDGES",
           "accelerator_verilog", "generated_accelerator_verilog", "harness_verilog",
           "harness_executable", "cycle_budget", "VerilatorTransport"]

ACCELERATOR_TOP = "accelerator"
"""Top-level module name of the accelerator's Verilog."""

HARNESS_TOP = "harness_top"
"""Top-level module of the harness build (`harness_verilog`; the C++ harness includes its
`Vharness_top.h`)."""

HARNESS_SOURCE = Path(__file__).resolve().parent / "harness" / "accelerator_main.cpp"

_REPO = Path(__file__).resolve().parent.parent
# The module the accelerator's Verilog is generated from; its Verilog cache key hashes the
# text of this module and of every repository module it imports (directly or not).
_GATEWARE_MODULE = "hw.accelerator"

_HELLO = struct.Struct("<8sII")
_MAGIC = b"LPMACSIM"
_PIPE_VERSION = 1
_REQUEST = struct.Struct("<IIQ")
_ANSWER = struct.Struct("<IIQQQQ")
_EXCHANGE, _RESET, _QUIT = 1, 2, 3
_OK, _TIMEOUT = 0, 1
RESET_CYCLES = 2
"""Rising edges at which the accelerator sees `rst` high in `reset()` (and at start-up)."""
RESET_EDGES = RESET_CYCLES + 1
"""Rising edges a reset takes in the harness: one more, which loads the reset flip-flop of
`harness_verilog`."""

# The accelerator's synchronous reset behind a flip-flop: with `rst` a primary input,
# Verilator evaluates all reset-dependent next-state logic in its input-combinational region
# on every eval (twice per cycle); from a register it is evaluated once per clock edge, about
# 10% faster overall. A board top drives the reset from a register too.
_HARNESS_TOP_VERILOG = """
module harness_top(input clk, input rst_request, input i_stream__valid,
                   output i_stream__ready, input [64:0] i_stream__payload,
                   output o_stream__valid, input o_stream__ready,
                   output [64:0] o_stream__payload);
  reg rst = 1'b0;
  always @(posedge clk) rst <= rst_request;
  accelerator accelerator(
    .clk(clk), .rst(rst),
    .i_stream__valid(i_stream__valid), .i_stream__ready(i_stream__ready),
    .i_stream__payload(i_stream__payload),
    .o_stream__valid(o_stream__valid), .o_stream__ready(o_stream__ready),
    .o_stream__payload(o_stream__payload));
endmodule
"""


# --- Verilog and build ---------------------------------------------------------------------

def _gateware_digest() -> str:
    digest = hashlib.sha256()
    for file in source_closure(_GATEWARE_MODULE, _REPO):
        digest.update(str(file.relative_to(_REPO)).encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


def _check_simulatable(config: ArrayConfig) -> None:
    check_accelerator_config(config)
    if config.multiplier == "ice40-sb-mac16":
        raise ValueError("config.multiplier 'ice40-sb-mac16' instantiates iCE40 primitives; "
                         "simulate the accelerator with multiplier 'split' or 'packed'")
    if config.activation_memory == "ice40-spram":
        raise ValueError("config.activation_memory 'ice40-spram' instantiates iCE40 "
                         "primitives; simulate the accelerator with activation_memory 'block'")


def accelerator_verilog(config: ArrayConfig,
                        progress: Callable[[str], None] | None = None) -> str:
    """The Verilog of `Accelerator(config)` with top module `ACCELERATOR_TOP`.

    Cached on disk (`sim.build.cache_dir()`) by the configuration, the text of the gateware's
    Python sources and the Amaranth / Yosys versions, and in memory per process; `progress`
    hears about a generation that is not cached. With coverage on (`sim.coverage`) the
    stream cover points (`STREAM_COVER_VERILOG`) follow the accelerator's modules."""
    verilog = generated_accelerator_verilog(config, progress)
    return verilog + STREAM_COVER_VERILOG if coverage_dir() is not None else verilog


@functools.cache
def generated_accelerator_verilog(config: ArrayConfig,
                                  progress: Callable[[str], None] | None = None) -> str:
    """The Verilog of `Accelerator(config)` as generated (what `accelerator_verilog` returns
    without coverage), cached on disk and in memory."""
    _check_simulatable(config)
    versions = toolchain_versions()
    key_fields = {
        "format": _CACHE_FORMAT,
        "kind": "verilog",
        "toplevel": ACCELERATOR_TOP,
        "config": config.as_dict(),
        "sources": _gateware_digest(),
        "tools": {tool: versions[tool] for tool in ("amaranth", "yosys")},
    }
    filename = f"{ACCELERATOR_TOP}.v"

    def generate(directory: Path) -> None:
        from hw.accelerator import Accelerator

        if progress is not None:
            progress("generating the accelerator's Verilog (about 10 s)")
        (directory / filename).write_text(
            generate_verilog(Accelerator(config), ACCELERATOR_TOP))

    directory, _key, _cached, _seconds = cached_build(
        config_build_name("verilog-accelerator", config), key_fields, generate)
    return (directory / filename).read_text()


def harness_verilog(config: ArrayConfig,
                    progress: Callable[[str], None] | None = None, models: str = "") -> str:
    """The accelerator's Verilog plus `HARNESS_TOP`, the module the C++ harness drives: the
    accelerator with its reset taken from a flip-flop loaded from the port `rst_request`;
    then `models`, the Verilog of the vendor primitives `config` instantiates, if any (the
    ECP5 MULT18X18D of multiplier "ecp5-mult18": `fpga.build.simulation_models`)."""
    if config.multiplier == "ecp5-mult18" and "module MULT18X18D" not in models:
        raise ValueError("config.multiplier 'ecp5-mult18' instantiates the ECP5 MULT18X18D; "
                         "pass its simulation model (models=fpga.build.simulation_models("
                         "config))")
    verilog = accelerator_verilog(config, progress)
    for port in ("input [64:0] i_stream__payload", "output [64:0] o_stream__payload"):
        if not re.search(rf"^\s*{re.escape(port)};", verilog, re.MULTILINE):
            raise ValueError(f"the accelerator's Verilog has no port `{port}`, which the "
                             "harness expects (64-bit words and `last`)")
    return verilog + _HARNESS_TOP_VERILOG + models


def harness_executable(config: ArrayConfig | None = None, *,
                       progress: Callable[[str], None] | None = None,
                       models: str = "") -> Path:
    """The compiled harness of `Accelerator(config)` (built once, then from the cache);
    `models` as in `harness_verilog`."""
    config = config or ArrayConfig()
    return build_executable(harness_verilog(config, progress, models), HARNESS_TOP,
                            HARNESS_SOURCE,
                            name=config_build_name("harness-accelerator", config),
                            progress=progress)


# --- Cycle budget --------------------------------------------------------------------------

def _packet_work(config: ArrayConfig, words: np.ndarray, lasts: np.ndarray,
                 geometry: Geometry | None) -> tuple[int, Geometry | None]:
    """(cycles of work the packets describe, configuration after them): per COMPUTE its
    array passes and result words; tracks CONFIGURE like the hardware does."""
    ends = np.flatnonzero(lasts)
    starts = np.concatenate([[0], ends + 1])[:len(ends)]
    work = 0
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        header = Header.decode(int(words[start]))
        if header.opcode == Opcode.CONFIGURE:
            geometry = None
            if end - start == 2 and header.length == 2:
                status, _field, geometry = check_configure(
                    config, decode_configure([int(words[start + 1]), int(words[start + 2])]))
                if status != Status.OK:
                    geometry = None
        elif header.opcode == Opcode.COMPUTE and geometry is not None:
            work += geometry.vectors + geometry.result_words + geometry.compute_words
    return work, geometry


def cycle_budget(words: int, work: int, *, gaps: float = 0.0, stalls: float = 0.0) -> int:
    """Cycles after which an exchange of `words` request words and `work` cycles of
    described work counts as hung: 8 times the work plus a margin, stretched by the
    throughput the input gaps and output stalls leave."""
    slowdown = 1.0 / ((1.0 - gaps) * (1.0 - stalls))
    return int(slowdown * (8 * (words + work) + 50_000))


# --- The transport -------------------------------------------------------------------------

def _stop(process: subprocess.Popen, errors: IO[bytes], timeout: float) -> None:
    if process.poll() is None:
        try:
            process.stdin.write(_REQUEST.pack(_QUIT, 0, 0))
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()
        except OSError:
            pass
    errors.close()


def _probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), not {value!r}")
    return float(value)


def prepare_request(config: ArrayConfig, beats: Sequence[Beat], geometry: Any,
                    timeout_cycles: int | None, *, gaps: float = 0.0, stalls: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray, int, Any]:
    """(words, lasts, cycle budget, geometry after the request) of one exchange: the beats
    as arrays for the simulator, checked, and the budget after which it counts as hung
    (`timeout_cycles`, or `cycle_budget` of the work the packet headers describe)."""
    count = len(beats)
    try:
        words = np.fromiter((beat[0] for beat in beats), dtype=np.uint64, count=count)
    except (OverflowError, TypeError, ValueError, IndexError):
        raise ValueError("beats must be (word, last) pairs with 64-bit unsigned integer "
                         "words") from None
    lasts = np.fromiter((bool(beat[1]) for beat in beats), dtype=np.uint8, count=count)
    work, geometry = _packet_work(config, words, lasts, geometry)
    if timeout_cycles is None:
        budget = cycle_budget(count, work, gaps=gaps, stalls=stalls)
    elif isinstance(timeout_cycles, int) and timeout_cycles > 0:
        budget = timeout_cycles
    else:
        raise ValueError(f"timeout_cycles must be a positive integer, not {timeout_cycles!r}")
    return words, lasts, budget, geometry


class VerilatorTransport(Transport):
    """The accelerator in a compiled Verilator harness (see the module docstring).

    `config` defaults to `ArrayConfig()`. `progress` (a callable taking a message) hears
    what a first build is doing. `gaps` / `stalls`: probability per cycle of an idle input
    cycle / a ready-low output cycle, from a generator seeded with `seed`.
    """

    name = "verilator"

    def __init__(self, config: ArrayConfig | None = None, *,
                 progress: Callable[[str], None] | None = None, gaps: float = 0.0,
                 stalls: float = 0.0, seed: int = 1, models: str = "") -> None:
        self.config = config if config is not None else ArrayConfig()
        self.gaps = _probability("gaps", gaps)
        self.stalls = _probability("stalls", stalls)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an integer in [0, 2**64), not {seed!r}")
        self.seed = seed
        self.executable = harness_executable(self.config, progress=progress, models=models)
        self._errors = tempfile.TemporaryFile()
        # A coverage build (sim.coverage) writes its counters when the harness exits.
        coverage = []
        if coverage_dir() is not None:
            label = config_build_name(ACCELERATOR_TOP, self.config)
            coverage = ["--coverage-file", str(data_file("verilator", "harness", ".dat",
                                                         label=label))]
        self._process = subprocess.Popen(
            [str(self.executable), "--gaps", repr(self.gaps), "--stalls", repr(self.stalls),
             "--seed", str(seed), *coverage],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors,
            env=toolchain_env())
        # A coverage build writes tens of megabytes as it exits: give it time to (a killed
        # harness leaves a truncated file that the report cannot read).
        self._finalizer = weakref.finalize(self, _stop, self._process, self._errors,
                                           600.0 if coverage else 5.0)
        self._recorder = protocol_recorder(self.config, "harness")
        self._geometry: Geometry | None = None
        self._total_cycles = 0
        self.last_cycles = 0
        """Cycles simulated by the most recent `exchange` or `reset`."""
        magic, version, _reserved = _HELLO.unpack(self._read(_HELLO.size, "starting"))
        if magic != _MAGIC or version != _PIPE_VERSION:
            self.close()
            raise TransportError(f"{self.executable} is not an lpmac harness of pipe "
                                 f"version {_PIPE_VERSION}.")
        self._total_cycles = RESET_EDGES

    # --- Transport ---------------------------------------------------------------------

    @property
    def simulated_cycles(self) -> int:
        """Rising clock edges simulated since the harness started (resets included)."""
        return self._total_cycles

    @property
    def process_id(self) -> int:
        """Process id of the harness (for measuring its CPU time)."""
        return self._process.pid

    def _exchange(self, beats: list[Beat], *, timeout_cycles: int | None = None
                  ) -> list[Beat]:
        """Send `beats`, return the response beats (see `Transport.exchange`).

        `timeout_cycles` overrides the cycle budget (`cycle_budget`) after which the
        exchange counts as hung and raises `TransportError`."""
        count = len(beats)
        words, lasts, budget, geometry = prepare_request(
            self.config, beats, self._geometry, timeout_cycles, gaps=self.gaps,
            stalls=self.stalls)
        self._write(_REQUEST.pack(_EXCHANGE, count, budget) + words.astype("<u8").tobytes()
                    + lasts.tobytes())
        status, out_words, out_lasts, accepted = self._answer()
        self._geometry = geometry
        if status == _TIMEOUT:
            self._geometry = None
            if self._recorder is not None:
                self._recorder.reset()
            raise TransportError(
                f"the accelerator did not answer within {budget} simulated cycles "
                f"(it took {accepted} of {count} request words and returned "
                f"{int(out_lasts.sum())} of {int(lasts.sum())} response packets); reset() "
                "before the next exchange")
        answer = list(zip(out_words.tolist(), (out_lasts != 0).tolist(), strict=True))
        if self._recorder is not None:
            self._recorder.exchange(beats, answer)
        return answer

    def reset(self) -> None:
        """Pulse `rst` for `RESET_CYCLES` cycles (`RESET_EDGES` simulated edges): the
        accelerator returns to its initial state (unconfigured, counters zero)."""
        self._write(_REQUEST.pack(_RESET, RESET_CYCLES, 0))
        self._answer()
        self._geometry = None
        if self._recorder is not None:
            self._recorder.reset()

    def close(self) -> None:
        """Stop the harness process (idempotent)."""
        self._finalizer()

    # --- Pipe ----------------------------------------------------------------------------

    def _answer(self) -> tuple[int, np.ndarray, np.ndarray, int]:
        status, count, cycles, total, accepted, _reserved = _ANSWER.unpack(
            self._read(_ANSWER.size, "answering"))
        words = np.frombuffer(self._read(8 * count, "answering"), dtype="<u8")
        lasts = np.frombuffer(self._read(count, "answering"), dtype=np.uint8)
        self.last_cycles = cycles
        self._total_cycles = total
        return status, words, lasts, accepted

    def _write(self, data: bytes) -> None:
        if not self._finalizer.alive:
            raise TransportError("the Verilator transport is closed.")
        try:
            self._process.stdin.write(data)
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            raise TransportError(self._death("receiving a request")) from None

    def _read(self, size: int, doing: str) -> bytes:
        if not self._finalizer.alive:
            raise TransportError("the Verilator transport is closed.")
        try:
            data = self._process.stdout.read(size) if size else b""
        except (ValueError, OSError):
            data = b""
        if len(data) != size:
            raise TransportError(self._death(doing))
        return data

    def _death(self, doing: str) -> str:
        """One sentence: the harness process died while `doing`, with its exit status and
        the last line it wrote to stderr."""
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._errors.seek(0)
        lines = self._errors.read().decode(errors="replace").strip().splitlines()
        said = f" ({lines[-1].strip().rstrip('.')})" if lines else ""
        self.close()
        return (f"the Verilator harness process died while {doing} with exit status "
                f"{code}{said}.")
