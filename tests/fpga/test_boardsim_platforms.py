"""Board tops: PLL parameters against the vendor-independent calculators icepll and ecppll
(YoWASP builds), and elaboration of `BoardTop` for both platforms (no place and route)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fpga.top import BoardTop, ecp5_pll, ice40_pll, make_platform
from golden.config import ArrayConfig

ICEBREAKER_CONFIG = ArrayConfig(rows=4, cols=4, modes=("a8w8", "a8w4", "a4w4"),
                                weight_buffer_depth=64, activation_buffer_depth=256,
                                accumulator_depth=64, requant_depth=64)


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def _fields(text: str) -> dict[str, str]:
    return {key.strip(): value.strip() for key, value in
            re.findall(r"^([A-Za-z_ 0-9]+):[ \t]*(.+)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("mhz", [36, 37, 42, 48])
def test_ice40_pll_matches_icepll(mhz: int) -> None:
    output = subprocess.run([_tool("yowasp-icepll"), "-i", "12", "-o", str(mhz)],
                            capture_output=True, text=True, timeout=300, check=True).stdout
    achieved = float(re.search(r"F_PLLOUT:\s*([\d.]+) MHz \(achieved\)", output)[1]) * 1e6
    fields = _fields(output)
    setting = ice40_pll(12e6, mhz * 1_000_000)
    p = setting.parameters
    # The parameters make the frequency claimed (the SB_PLL40 SIMPLE feedback formula).
    assert setting.output_hz == 12e6 * (p["DIVF"] + 1) / ((p["DIVR"] + 1) * 2 ** p["DIVQ"])
    assert setting.output_hz <= mhz * 1e6
    if achieved <= mhz * 1e6:       # icepll picks the nearest; ours the nearest below
        assert setting.output_hz == pytest.approx(achieved, abs=1e3)
        assert p["FILTER_RANGE"] == int(fields["FILTER_RANGE"].split()[0])


@pytest.mark.parametrize("mhz", [50, 73, 100, 120])
def test_ecp5_pll_matches_ecppll(mhz: int, tmp_path: Path) -> None:
    output = subprocess.run(
        [_tool("yowasp-ecppll"), "-i", "25", "-o", str(mhz), "-f", "pll.v"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
        check=True).stdout
    fields = _fields(output)
    setting = ecp5_pll(25e6, mhz * 1_000_000)
    p = setting.parameters
    assert setting.output_hz == 25e6 * p["CLKFB_DIV"] / p["CLKI_DIV"]
    assert (p["CLKI_DIV"], p["CLKFB_DIV"], p["CLKOP_DIV"]) == (
        int(fields["Refclk divisor"]), int(fields["Feedback divisor"]),
        int(fields["clkout0 divisor"]))
    assert setting.output_hz == pytest.approx(float(fields["clkout0 frequency"].split()[0])
                                              * 1e6)


def test_pll_refuses_a_frequency_below_its_range() -> None:
    with pytest.raises(ValueError, match="cannot make 1000000 Hz"):
        ice40_pll(12e6, 1_000_000)


@pytest.mark.parametrize("board, clock_hz, pll, pins", [
    ("icebreaker", 36_000_000, "SB_PLL40_PAD", ("set_io uart_0__rx__io 6",
                                                 "set_io uart_0__tx__io 9")),
    ("ulx3s-85f", 100_000_000, "EHXPLLL", ('LOCATE COMP "uart_0__rx__io" SITE "M1"',
                                           'LOCATE COMP "uart_0__tx__io" SITE "L4"')),
])
def test_board_top_elaborates(board: str, clock_hz: int, pll: str, pins) -> None:
    top = BoardTop(board, ICEBREAKER_CONFIG, clock_hz=clock_hz)
    print(top.describe())
    assert top.achieved_clock_hz == clock_hz
    assert top.divisor == round(clock_hz / 115200)
    plan = make_platform(board).prepare(top, name="lpmac_top")
    rtlil = plan.files["lpmac_top.il"]
    constraints = next(text for name, text in plan.files.items()
                       if name.endswith((".pcf", ".lpf")))
    assert pll in rtlil
    for pin in pins:
        assert pin in constraints, pin


def test_board_top_refuses_unknown_board() -> None:
    with pytest.raises(ValueError, match="board must be one of icebreaker, ulx3s-85f"):
        BoardTop("de10-nano", ICEBREAKER_CONFIG, clock_hz=50_000_000)
