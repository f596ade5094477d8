"""The coverage switch: `LPMAC_COVERAGE=<directory>` turns on code and protocol coverage.

With the variable set (`make coverage` sets it), every Verilator build made by this
process and its children is a coverage build, cached apart from the normal one (the flags
are part of the cache key), and every simulation writes what it saw under the directory:

* `verilator/*.dat`: Verilator's line, toggle and user coverage counters in its own
  `coverage.dat` format (`sim.code_coverage` reads them), one file per simulator run: the
  cocotb runs (`sim.build.run_cocotb` names the file with Verilator's
  `+verilator+coverage+file+` plusarg) and the compiled harness (`--coverage-file`);
* `protocol/*.json`: the protocol bins counted from the request and response beats of the
  tests (`sim.protocol_coverage`), one file per process and traffic source.

Coverage builds of the accelerator also carry `STREAM_COVER_VERILOG`: SystemVerilog cover
points bound to the accelerator's two stream ports (the protocol's, not internal names),
which count the input gaps and output stalls the RTL actually saw. A coverage build
compiles the Verilog as `prepare_verilog` leaves it (the same lines, two Yosys idioms out
of the measurement).

Without the variable nothing changes: same builds, same speed, nothing written.
`python -m sim.coverage_report <directory>` merges the data and writes the report.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

__all__ = ["COVERAGE_VARIABLE", "CODE_COVERAGE_FLAGS", "STREAM_COVER_MODULE",
           "STREAM_COVER_VERILOG", "STREAM_COVER_POINTS", "coverage_dir",
           "code_coverage_flags", "data_file", "data_label", "prepare_verilog"]

COVERAGE_VARIABLE = "LPMAC_COVERAGE"

CODE_COVERAGE_FLAGS: tuple[str, ...] = (
    "--coverage-line", "--coverage-toggle", "--coverage-user",
    # The harness builds pass --noassert for speed; cover statements need assertions on.
    "--assert",
    # The coverage model of the accelerator is tens of megabytes of C++ (a toggle point per
    # signal bit and direction): compiled with -O1, not the harness's -O2.
    "-CFLAGS", "-O1",
)
"""Verilator flags of a coverage build: line (and branch) points on every statement block,
a toggle point per signal bit and direction, and the `cover` statements."""

STREAM_COVER_MODULE = "lpmac_stream_cover"

STREAM_COVER_POINTS: dict[str, str] = {
    "i_stream_gap_in_packet": "input stream: valid low between two beats of one request "
                              "packet (the host paused mid-packet)",
    "i_stream_backpressure": "input stream: valid high, ready low (the accelerator held "
                             "the host off)",
    "o_stream_stall": "output stream: valid high, ready low (the host held a response "
                      "beat back)",
    "o_stream_gap_in_packet": "output stream: valid low between two beats of one response "
                              "packet (the accelerator paused mid-response)",
}
"""The stream cover points by label, each with what it counts (cycles, reset excluded)."""

STREAM_COVER_VERILOG = f"""
// Coverage builds only (sim.coverage): what the accelerator's stream ports saw.
module {STREAM_COVER_MODULE}(input clk, input rst,
    input i_valid, input i_ready, input i_last,
    input o_valid, input o_ready, input o_last);
  // Between the first and the last beat of a packet, per stream.
  reg i_inside = 1'b0;
  reg o_inside = 1'b0;
  always @(posedge clk) begin
    if (rst) begin
      i_inside <= 1'b0;
      o_inside <= 1'b0;
    end else begin
      if (i_valid && i_ready) i_inside <= !i_last;
      if (o_valid && o_ready) o_inside <= !o_last;
    end
  end
  i_stream_gap_in_packet: cover property (@(posedge clk) disable iff (rst) i_inside && !i_valid);
  i_stream_backpressure: cover property (@(posedge clk) disable iff (rst) i_valid && !i_ready);
  o_stream_stall: cover property (@(posedge clk) disable iff (rst) o_valid && !o_ready);
  o_stream_gap_in_packet: cover property (@(posedge clk) disable iff (rst) o_inside && !o_valid);
endmodule
bind accelerator {STREAM_COVER_MODULE} stream_cover(
    .clk(clk), .rst(rst),
    .i_valid(i_stream__valid), .i_ready(i_stream__ready), .i_last(i_stream__payload[64]),
    .o_valid(o_stream__valid), .o_ready(o_stream__ready), .o_last(o_stream__payload[64]));
"""
"""Appended to the accelerator's Verilog in coverage builds (`sim.fastsim.accelerator_verilog`):
the cover points of `STREAM_COVER_POINTS` on the ports of protocol 1.0 (64-bit words, `last`
in payload bit 64)."""


def coverage_dir() -> Path | None:
    """The directory of `LPMAC_COVERAGE` (absolute), or None when coverage is off."""
    value = os.environ.get(COVERAGE_VARIABLE, "").strip()
    if not value:
        return None
    return Path(value).expanduser().resolve()


def code_coverage_flags() -> tuple[str, ...]:
    """`CODE_COVERAGE_FLAGS` when coverage is on, else nothing."""
    return CODE_COVERAGE_FLAGS if coverage_dir() is not None else ()


def data_file(kind: str, source: str, suffix: str, *, label: str = "") -> Path:
    """A new file `<coverage dir>/<kind>/<source>+<label>+<pid>-<random><suffix>` (its
    directory created); `label` names the design (`DATA_LABEL` reads it back). Raises
    RuntimeError when coverage is off."""
    root = coverage_dir()
    if root is None:
        raise RuntimeError(f"coverage is off: set {COVERAGE_VARIABLE} to a directory")
    directory = root / kind
    directory.mkdir(parents=True, exist_ok=True)
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
    return directory / f"{source}+{label}+{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def data_label(path: Path) -> str:
    """The design label in the name of a file from `data_file` ("" if none)."""
    parts = path.name.split("+")
    return parts[1] if len(parts) == 3 else ""


# Lines of Yosys's Verilog that a coverage build leaves out (each wrapped in Verilator's
# coverage_off / coverage_on metacomments on its own line, so line numbers stay):
_NOT_MEASURED = re.compile(
    # the declaration of an anonymous net, `wire [3:0] \$12 ;`: Yosys's name for the value
    # of one Amaranth expression, a function of named signals (whose toggles are measured);
    r"^\s*(?:wire|reg)\b[^;]*?\\\$\S*\s*(?:=[^;]*)?;\s*$"
    # the first statement of every combinational always block, `if (\$auto$...dump_module$1 )
    # begin end`: a simulation idiom of Yosys's Verilog backend on a register that is never
    # set, whose empty branch no stimulus can take.
    r"|^\s*if \(\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ \) begin end\s*$")


def prepare_verilog(verilog: str) -> str:
    """The Verilog a coverage build compiles: `verilog` with Yosys's anonymous nets and its
    dump-trigger branches out of coverage (see `_NOT_MEASURED`), line numbers unchanged.
    Toggle coverage then counts the signals the gateware names (ports, registers, every
    Amaranth `Signal`), and line coverage only statements a test can reach."""
    lines = verilog.split("\n")
    for index, line in enumerate(lines):
        if _NOT_MEASURED.match(line):
            lines[index] = f"/*verilator coverage_off*/ {line} /*verilator coverage_on*/"
    return "\n".join(lines)
