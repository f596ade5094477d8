"""The boards lpmac builds for: the part, its capacity, the accelerator configuration that
fits it and the clock it runs at.

Every board is one `Board`; `BOARDS` maps the names `lpmac build --board` accepts.
`board.config` is the `ArrayConfig` the bitstream is built with (the command line may
override fields) and `board.clock_hz` the accelerator clock the build asks timing for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from golden.config import ArrayConfig

__all__ = ["Board", "BOARDS", "board", "ULX3S_85F_DSP_CONFIG"]


@dataclass(frozen=True)
class Board:
    """One FPGA board.

    name
        What `lpmac build --board` takes.
    family
        "ice40" or "ecp5": selects the toolchain (nextpnr-ice40 + icepack, nextpnr-ecp5 +
        ecppack) and the cell names of the report.
    device, package
        The FPGA part, as nextpnr names it.
    capacity
        Cells of the part, by report name: "logic" (LUT4s), "dsp" (multiplier blocks),
        "block_ram" (block RAMs) and, on the iCE40 UltraPlus, "spram" (SB_SPRAM256KA).
    config
        The accelerator built by default.
    clock_hz
        Default accelerator clock (a PLL derives it from the board oscillator).
    baudrate
        Default UART baud rate of the board's host link.
    """

    name: str
    description: str
    family: str
    device: str
    package: str
    capacity: dict[str, int]
    config: ArrayConfig
    clock_hz: int
    baudrate: int = 115200

    def platform(self) -> Any:
        """A fresh amaranth-boards platform object of this board."""
        from .top import make_platform

        return make_platform(self.name)


# iCE40UP5K: 5280 LUT4s, 8 SB_MAC16, 30 SB_RAM40_4K (4 kbit each), 4 SB_SPRAM256KA (256 kbit).
# A 4 x 4 array uses all 8 SB_MAC16 blocks in their dual 8x8 mode: 16 int8 MACs per
# cycle (the blocks also hold the weight operand and first-row product registers). A4W4
# packs two K-elements per byte (`int4_packing="k-pairs"`: each SB_MAC16 half adds a LUT
# product of the high nibbles to its product of the low ones), 32 4-bit MACs per cycle
# with one accumulator lane; with A8W8 in the same bitstream and the UART bridge that
# fills 98% of the logic cells and closes 38.56 MHz (docs/fpga.md). 4-bit weights in
# columns (A8W4) need a second lane and twice the accumulators (8 x 2 with A8W8 and A4W4:
# 6,828 logic cells), and the MX modes (BFP accumulator, FP32 and MX output units) about
# 2,700 LUT4s: neither fits. The activation buffer lives in the four SPRAM blocks
# (2 x 16384 vectors); 128 accumulator rows (M_tile up to 64; 256 rows missed 36 MHz). The
# requantization unit is left out (requant_depth=0): int32 outputs, requantized on the
# host (`host.tiling.qlinear_program`), bit-identical. 40-bit counters.
ICEBREAKER = Board(
    name="icebreaker",
    description="1BitSquared iCEBreaker, Lattice iCE40UP5K-SG48",
    family="ice40",
    device="iCE40UP5K",
    package="SG48",
    capacity={"logic": 5280, "dsp": 8, "block_ram": 30, "spram": 4},
    config=ArrayConfig(
        rows=4, cols=4, block_size=16, modes=("a8w8", "a4w4"), int4_packing="k-pairs",
        multiplier="ice40-sb-mac16", weight_buffer_depth=64, activation_buffer_depth=32768,
        activation_memory="ice40-spram", accumulator_depth=128, requant_depth=0,
        counter_bits=40),
    clock_hz=36_000_000,
)

# ECP5 LFE5U-85F: 83,640 LUT4s, 156 MULT18X18D, 208 DP16KD (18 kbit each). The default
# is the 8 x 8 array with every mode and shift-and-add PEs (101.56 MHz with the bridge,
# docs/fpga.md); the DSP variant below doubles the MACs per cycle. Its link is a UART
# (115,200 baud), which paces every GEMM far below the array's rate, so the board leaves
# out what only a fast link needs: the deep activation buffer (1,024 vectors: 2 x 512,
# 16 DP16KD fewer) and the paired drain (`drain_pairs`: a second requantizer and FP32
# converter: 5,181 logic cells, docs/fpga.md).
ULX3S_85F = Board(
    name="ulx3s-85f",
    description="Radiona ULX3S, Lattice ECP5 LFE5U-85F-6BG381C",
    family="ecp5",
    device="LFE5U-85F",
    package="BG381",
    capacity={"logic": 83640, "dsp": 156, "block_ram": 208},
    config=ArrayConfig(rows=8, cols=8, multiplier="lut", pipeline="fast",
                       activation_buffer_depth=1024, drain_pairs=False),
    clock_hz=100_000_000,
)

# The ULX3S with its DSP blocks (`lpmac build --board ulx3s-85f --rows 16 --cols 8
# --multiplier ecp5-mult18`): 128 PEs, each on one MULT18X18D with its three registers (128
# of 156 blocks), 128 int8 and 256 4-bit MACs per cycle, twice the 8 x 8 default. Protocol
# 2.1 carries its 16-byte activation vectors in two words. An opt-in variant until a place
# and route shows it closing the board's 100 MHz (docs/fpga.md has its figures).
ULX3S_85F_DSP_CONFIG = ULX3S_85F.config.replace(rows=16, cols=8, multiplier="ecp5-mult18")

BOARDS: dict[str, Board] = {board.name: board for board in (ICEBREAKER, ULX3S_85F)}


def board(name: str) -> Board:
    """The `Board` called `name`, refusing unknown names with the known ones."""
    if name not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {name!r}")
    return BOARDS[name]
