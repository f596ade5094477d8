"""`sim.harness.build_executable` on a tiny design: a Verilog counter and a C++ main that
clocks it (the accelerator harness itself is exercised by test_fastsim.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sim.build import VerilatorBuildError
from sim.harness import build_executable

COUNTER = """
module counter(input clk, input rst, output reg [7:0] count);
  always @(posedge clk) count <= rst ? 8'd0 : count + 8'd3;
endmodule
"""

MAIN = """
#include <cstdio>
#include "Vcounter.h"
#include "verilated.h"
int main() {
    VerilatedContext context;
    Vcounter top(&context);
    top.rst = 1; top.clk = 0; top.eval(); top.clk = 1; top.eval();
    top.rst = 0;
    for (int edge = 0; edge < EDGES; ++edge) { top.clk = 0; top.eval(); top.clk = 1; top.eval(); }
    std::printf("%d\\n", top.count);
    top.final();
    return 0;
}
"""


def _main(directory: Path, edges: int, name: str = "counter_main.cpp") -> Path:
    path = directory / name
    path.write_text(f"#define EDGES {edges}\n{MAIN}")
    return path


def _run(executable: Path) -> int:
    return int(subprocess.run([executable], capture_output=True, text=True, check=True,
                              timeout=30).stdout)


def test_builds_runs_and_is_cached(tmp_path: Path) -> None:
    """The binary clocks the design; a second request is a cache hit (no progress message)
    and gives the same file."""
    main = _main(tmp_path, 10)
    executable = build_executable(COUNTER, "counter", main, name="counter-test")
    assert _run(executable) == 30
    heard: list[str] = []
    again = build_executable(COUNTER, "counter", main, name="other-label", progress=heard.append)
    assert again == executable and heard == []


def test_bad_input_is_refused_with_one_sentence(tmp_path: Path) -> None:
    main = _main(tmp_path, 1)
    with pytest.raises(ValueError, match="no module named 'timer'"):
        build_executable(COUNTER, "timer", main, name="bad")
    with pytest.raises(ValueError, match="does not exist"):
        build_executable(COUNTER, "counter", tmp_path / "missing.cpp", name="bad")
    with pytest.raises(ValueError, match="Verilog identifier"):
        build_executable(COUNTER, "count er", main, name="bad")


@pytest.mark.slow
def test_fresh_builds_report_progress_and_follow_the_sources(tmp_path: Path,
                                                             monkeypatch) -> None:
    """In an empty cache a build says so through `progress`; a different C++ text or flag
    is a different build; a C++ error is reported with the compiler's diagnostics."""
    monkeypatch.setenv("LPMAC_BUILD_DIR", str(tmp_path / "cache"))
    heard: list[str] = []
    first = build_executable(COUNTER, "counter", _main(tmp_path, 10), name="counter",
                             progress=heard.append)
    assert len(heard) == 1 and "building" in heard[0]
    second = build_executable(COUNTER, "counter", _main(tmp_path, 11), name="counter")
    assert second != first and _run(second) == 33 and _run(first) == 30
    third = build_executable(COUNTER, "counter", _main(tmp_path, 11), name="counter",
                             flags=["-CFLAGS", "-O1"])
    assert third != second and _run(third) == 33
    broken = tmp_path / "broken_main.cpp"
    broken.write_text("int main() { return undefined_name; }\n")
    with pytest.raises(VerilatorBuildError, match="undefined_name"):
        build_executable(COUNTER, "counter", broken, name="broken")
