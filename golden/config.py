"""The one parameter source of lpmac.

`ArrayConfig` is read by the gateware (hw/), the golden model (golden/), the simulation
infrastructure (sim/), the host driver (host/) and the board builds (fpga/). Nobody
re-derives a width or a depth by hand: they ask the config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

__all__ = ["ACTIVATION_MEMORIES", "INT4_PACKINGS", "ArrayConfig", "Mode", "MODES", "MODE_INFO",
           "ModeInfo", "mode_info", "mx_mode", "MULTIPLIERS", "MULT18_PE_STAGES", "PE_STAGES",
           "PIPELINES",
           "SPRAM_BLOCKS", "SPRAM_DEPTH", "SPRAM_WIDTH"]

Mode = Literal["a8w8", "a8w4", "a4w4", "mxint8", "mxint4", "mxint8w4"]


@dataclass(frozen=True)
class ModeInfo:
    """Operand formats of one compute mode."""

    name: str
    activation_bits: int
    weight_bits: int
    mx: bool
    k_pack: int = 1
    """K-elements per operand byte: 2 for A4W4 with `int4_packing` "k-pairs" (the byte
    holds the int4 operands of K-elements 2j and 2j + 1), else 1."""

    @property
    def lanes(self) -> int:
        """Output lanes of one PE: two columns' products per cycle for 4-bit weights packed
        in columns, else one."""
        return 2 if self.weight_bits == 4 and self.k_pack == 1 else 1

    @property
    def mx_formats(self) -> tuple[str, str]:
        """(activation, weight) MX element formats of an MX mode ("mxint8" / "mxint4")."""
        if not self.mx:
            raise ValueError(f"{self.name} is not an MX mode")
        return (f"mxint{self.activation_bits}", f"mxint{self.weight_bits}")

    @property
    def macs_per_pe(self) -> int:
        """MACs one PE performs per cycle: one 8-bit product, or two 4-bit-weight products
        (two columns, or two K-elements of one column)."""
        return self.lanes * self.k_pack


MODE_INFO: dict[str, ModeInfo] = {
    "a8w8": ModeInfo("a8w8", 8, 8, mx=False),
    "a8w4": ModeInfo("a8w4", 8, 4, mx=False),
    "a4w4": ModeInfo("a4w4", 4, 4, mx=False),
    "mxint8": ModeInfo("mxint8", 8, 8, mx=True),
    "mxint4": ModeInfo("mxint4", 4, 4, mx=True),
    "mxint8w4": ModeInfo("mxint8w4", 8, 4, mx=True),
}
MODES: tuple[str, ...] = tuple(MODE_INFO)

ACC_ROUNDINGS = ("nearest", "truncate")
STREAM_WIDTHS = (32, 64, 128)
BLOCK_SIZES = (16, 32)
# PE multiplier implementations (see hw/pe.py): three behavioural ones that any synthesis
# tool maps to LUTs or infers DSP blocks for, and two that instantiate vendor DSP blocks
# (iCE40 SB_MAC16, ECP5 MULT18X18D).
MULTIPLIERS = ("split", "packed", "lut", "ice40-sb-mac16", "ecp5-mult18")
# Register stages of a PE: multiply and add in one cycle, or the product registered first.
PE_STAGES = (1, 2)
MULT18_PE_STAGES = 5
"""Register stages of a PE with multiplier "ecp5-mult18": the MULT18X18D's input, pipeline
and output registers, the two lanes separated, the partial sum."""
# How deeply the accelerator is pipelined (ArrayConfig.pipeline).
PIPELINES = ("compact", "fast")
# Where the activation buffer lives (ArrayConfig.activation_memory; see hw/actbuffer.py).
ACTIVATION_MEMORIES = ("block", "ice40-spram")
# How a 4-bit-weight mode puts two int4 weights in a PE's weight byte (ArrayConfig.int4_packing).
INT4_PACKINGS = ("columns", "k-pairs")


def mx_mode(fmt_a: str, fmt_b: str) -> str | None:
    """The MX mode that multiplies `fmt_a` activations by `fmt_b` weights, if there is one."""
    for name, info in MODE_INFO.items():
        if info.mx and info.mx_formats == (fmt_a, fmt_b):
            return name
    return None


def mode_info(name: str, int4_packing: str = "columns") -> ModeInfo:
    """The `ModeInfo` of mode `name` as built with `int4_packing` (K-pairs pack A4W4's
    K-elements two per byte)."""
    info = MODE_INFO[name]
    if int4_packing == "k-pairs" and name == "a4w4":
        return dataclasses.replace(info, k_pack=2)
    return info


# The iCE40 UltraPlus single-port RAMs: SB_SPRAM256KA blocks of 16384 x 16 bits, 4 per part.
SPRAM_DEPTH = 16384
SPRAM_WIDTH = 16
SPRAM_BLOCKS = 4


def _is_power_of_two(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        and value & (value - 1) == 0


@dataclass(frozen=True)
class ArrayConfig:
    """Every elaboration parameter of the accelerator.

    rows, cols
        Size of the weight-stationary systolic array; K runs along the rows, N along the
        columns. Powers of two from 1 to 64 (the packet protocol carries up to 32, and an
        activation vector or weight row of more than 8 bytes spans several words). With an
        MX mode, one array pass of that mode (C columns, or 2C with 4-bit weights) must fit
        one MX block of N (`block_size`): a 32 x 32 array builds MXINT8 but not the 4-bit MX
        modes.
    block_size
        K-elements sharing one E8M0 scale in the MX modes (BK): 16 or 32. A multiple of
        `rows`, so that a K-block is a whole number of array passes.
    acc_bits
        Mantissa width W of the block-floating-point accumulator, 16 to 32. The integer
        modes always accumulate in exact 32-bit two's complement.
    acc_rounding
        "nearest" (round half to even) or "truncate" (toward minus infinity) for the BFP
        accumulator.
    weight_buffer_depth, activation_buffer_depth, accumulator_depth
        Entries of each on-chip buffer, in array-wide vectors; powers of two.
    requant_depth
        Entries of the per-output-channel requantization parameter memory (bias,
        multiplier, shift): the largest N of one accelerator configuration with an 8- or
        4-bit output (the host splits wider GEMMs); a power of two. 0 builds the
        accelerator without the requantization unit: it offers int32 outputs only (a
        CONFIGURE asking for an 8- or 4-bit output is refused like any N above
        `requant_depth`), and `host.tiling.qlinear_program` computes int32 on the
        accelerator and requantizes on the host with `golden.requantize`.
    stream_width
        Bits per beat of the host input and output streams: 32, 64 or 128.
    modes
        Compute modes the hardware is built with (a subset of `MODES`).
    counter_bits
        Width of the hardware performance counters (READ_COUNTERS), 40 to 64: they count
        modulo 2 ** counter_bits and are sent zero-extended to 64 bits. 40 bits last 3
        hours at 100 MHz; small FPGAs save the flip-flops of wider ones.
    multiplier
        How each PE multiplies (`hw.pe`). Behavioural, for any target: "split" (two 8x4
        partial products sharing one 8x8 array; smallest on LUT fabric), "packed" (one
        8x16 product per PE; one inferred DSP block per PE) or "lut" (the split products
        written as shift-and-add sums, which synthesis keeps in LUTs and carry chains next
        to the partial-sum adders instead of DSP blocks far away; the requantizer's 32 x 32
        multiplier is then shift-and-add too, so no DSP block is used). "ice40-sb-mac16":
        every PE uses one half of an iCE40 UltraPlus SB_MAC16 in its dual 8x8 mode (two
        PEs per block, so an R x C array takes R * C / 2 blocks) plus a small LUT
        multiplier for the second 4-bit-weight lane; it only builds for iCE40 UltraPlus
        parts and simulates on Verilator with Yosys's SB_MAC16 model, not in the Amaranth
        simulator. "ecp5-mult18": every PE multiplies on one ECP5 MULT18X18D with its
        input, pipeline and output registers (the "packed" product: a * w, or in the 4-bit
        modes both lanes from a * (4096 h + l)), its two lanes separated in a register of
        the fabric before the partial-sum adder (`pe_stages` 5); the requantizer's
        multiplier is shift-and-add ("lut"). It only builds for ECP5 parts and simulates on
        Verilator with lpmac's MULT18X18D model (`fpga.build.primitive_model`).
    pipeline
        "compact" (fewest registers, for small FPGAs at tens of MHz) or "fast" (for clocks
        near 100 MHz): every PE registers its products before the partial-sum adder
        (`pe_stages` 2 instead of 1, one more cycle of array latency), and the accumulator
        memory's words are registered before the integer accumulators add them and before
        the drain picks a lane (one more cycle of read-modify-write and of drain). The
        throughput and the results are the same.
    activation_memory
        Where the activation buffer is built (`hw.actbuffer`): "block" (an inferred memory:
        block RAM on an FPGA) or "ice40-spram" (the iCE40 UltraPlus SB_SPRAM256KA blocks,
        one bank per half of them: 16384 vectors per bank at most, rows at most 4; it
        only builds for iCE40 UltraPlus parts and simulates on Verilator with Yosys's
        model, not in the Amaranth simulator).
    int4_packing
        How the 4-bit-weight modes use a PE's two int4 products per cycle. "columns" (the
        default): the weight byte holds the weights of two output columns and every PE has
        two output lanes (A8W4, A4W4, MXINT4). "k-pairs" (A4W4 only, with
        multiplier "ice40-sb-mac16"): the activation byte and the weight byte each hold the
        int4 operands of two consecutive K-elements, the PE adds both products into its one
        partial sum (the SB_MAC16 half multiplies the low nibbles and its adder adds a LUT
        product of the high ones), so A4W4 needs no second lane, no second accumulator and
        half the words of "columns". The protocol's K then counts K-element pairs.
    drain_pairs
        In the two-lane modes (4-bit weights in columns) the drain reads, converts and
        packs two outputs per cycle (a second requantizer and FP32 converter). An N-tile of
        M rows computes in M * K / R cycles and leaves M * 2C outputs, so one output per
        cycle keeps up only for K >= 2 C R; two per cycle halve that (MX-element outputs
        still go through their quantizer one per cycle). False: one per cycle, less logic.
        The results are the same either way; IDENTIFY does not carry it.
    """

    rows: int = 8
    cols: int = 8
    block_size: int = 32
    acc_bits: int = 32
    acc_rounding: str = "nearest"
    weight_buffer_depth: int = 256
    activation_buffer_depth: int = 16384
    accumulator_depth: int = 256
    requant_depth: int = 256
    stream_width: int = 64
    modes: tuple[str, ...] = MODES
    multiplier: str = "split"
    counter_bits: int = 64
    pipeline: str = "compact"
    activation_memory: str = "block"
    int4_packing: str = "columns"
    drain_pairs: bool = True

    def __post_init__(self) -> None:
        self._modes()
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not _is_power_of_two(value) or value > 64:
                raise ValueError(f"{name} must be a power of two from 1 to 64, not {value!r}")
        if self.block_size not in BLOCK_SIZES:
            raise ValueError(f"block_size must be 16 or 32, not {self.block_size!r}")
        if self.block_size % self.rows != 0 and any(MODE_INFO[m].mx for m in self._modes()):
            raise ValueError(
                f"block_size ({self.block_size}) must be a multiple of rows ({self.rows}) "
                "when an MX mode is built")
        if not isinstance(self.acc_bits, int) or not 16 <= self.acc_bits <= 32:
            raise ValueError(f"acc_bits must be an integer from 16 to 32, not {self.acc_bits!r}")
        if self.acc_rounding not in ACC_ROUNDINGS:
            raise ValueError(
                f"acc_rounding must be 'nearest' or 'truncate', not {self.acc_rounding!r}")
        for name in ("weight_buffer_depth", "activation_buffer_depth", "accumulator_depth"):
            value = getattr(self, name)
            if not _is_power_of_two(value) or value < 2:
                raise ValueError(f"{name} must be a power of two of at least 2, not {value!r}")
        if self.requant_depth != 0 and (not _is_power_of_two(self.requant_depth)
                                        or self.requant_depth < 2):
            raise ValueError("requant_depth must be a power of two of at least 2, or 0 (no "
                             f"requantization unit), not {self.requant_depth!r}")
        if self.stream_width not in STREAM_WIDTHS:
            raise ValueError(f"stream_width must be 32, 64 or 128, not {self.stream_width!r}")
        if isinstance(self.counter_bits, bool) or not isinstance(self.counter_bits, int) \
                or not 40 <= self.counter_bits <= 64:
            raise ValueError(
                f"counter_bits must be an integer from 40 to 64, not {self.counter_bits!r}")
        if not isinstance(self.drain_pairs, bool):
            raise ValueError(f"drain_pairs must be True or False, not {self.drain_pairs!r}")
        if self.pipeline not in PIPELINES:
            raise ValueError(f"pipeline must be 'compact' or 'fast', not {self.pipeline!r}")
        if self.activation_memory not in ACTIVATION_MEMORIES:
            raise ValueError(f"activation_memory must be 'block' or 'ice40-spram', not "
                             f"{self.activation_memory!r}")
        if self.activation_memory == "ice40-spram":
            blocks = self.spram_blocks_per_bank
            if 2 * blocks > SPRAM_BLOCKS:
                raise ValueError(
                    f"activation_memory 'ice40-spram' holds vectors of at most "
                    f"{SPRAM_BLOCKS // 2 * SPRAM_WIDTH} bits (rows at most "
                    f"{SPRAM_BLOCKS // 2 * SPRAM_WIDTH // 8}), not rows={self.rows}")
            if self.activation_buffer_depth > 2 * SPRAM_DEPTH:
                raise ValueError(
                    f"activation_buffer_depth must be at most {2 * SPRAM_DEPTH} with "
                    f"activation_memory 'ice40-spram', not {self.activation_buffer_depth}")
        if self.multiplier not in MULTIPLIERS:
            raise ValueError(
                f"multiplier must be one of {', '.join(map(repr, MULTIPLIERS))}, "
                f"not {self.multiplier!r}")
        if self.int4_packing not in INT4_PACKINGS:
            raise ValueError(f"int4_packing must be 'columns' or 'k-pairs', not "
                             f"{self.int4_packing!r}")
        if self.int4_packing == "k-pairs":
            if self.multiplier != "ice40-sb-mac16":
                raise ValueError(f"int4_packing 'k-pairs' needs multiplier 'ice40-sb-mac16', "
                                 f"not {self.multiplier!r}")
            other = [m for m in self.modes if MODE_INFO[m].weight_bits == 4 and m != "a4w4"]
            if other:
                raise ValueError(f"int4_packing 'k-pairs' packs A4W4 only; leave "
                                 f"{', '.join(other)} out of modes, or pack in 'columns'")
        wide = [m for m in self.modes
                if MODE_INFO[m].mx and self.cols * self.mode(m).lanes > self.block_size]
        if wide:
            columns = self.cols * self.mode(wide[0]).lanes
            larger = " or use block_size 32" if columns <= max(BLOCK_SIZES) else ""
            raise ValueError(
                f"an MX mode's N-tile must not be wider than block_size ({self.block_size}): "
                f"with cols={self.cols}, {', '.join(wide)} would have {columns} output "
                f"columns per pass; leave {', '.join(wide)} out of modes{larger}")

    def _modes(self) -> tuple[str, ...]:
        modes = self.modes
        if isinstance(modes, str) or not isinstance(modes, tuple) or not modes:
            raise ValueError(f"modes must be a non-empty tuple of mode names, not {modes!r}")
        for mode in modes:
            if mode not in MODE_INFO:
                raise ValueError(f"modes contains {mode!r}; known modes are {', '.join(MODES)}")
        if len(set(modes)) != len(modes):
            raise ValueError(f"modes lists a mode twice: {modes!r}")
        return modes

    # Derived quantities: every consumer asks for these instead of computing them.

    def mode(self, name: str) -> ModeInfo:
        """The `ModeInfo` of `name`, refusing a mode this configuration is not built with."""
        if name not in self._modes():
            raise ValueError(
                f"mode must be one of {', '.join(self.modes)} for this configuration, "
                f"not {name!r}")
        return mode_info(name, self.int4_packing)

    def peak_macs_per_cycle(self, mode: str) -> int:
        """MACs the array performs per cycle in `mode` when nothing stalls."""
        return self.rows * self.cols * self.mode(mode).macs_per_pe

    @property
    def k_pairs(self) -> bool:
        """A4W4 is built with its K-elements packed in pairs (`int4_packing`)."""
        return self.int4_packing == "k-pairs" and "a4w4" in self.modes

    @property
    def pe_stages(self) -> int:
        """Register stages of each PE (`hw.pe`): 2 in the fast pipeline, else 1;
        `MULT18_PE_STAGES` with the ECP5 MULT18X18D multiplier."""
        if self.multiplier == "ecp5-mult18":
            return MULT18_PE_STAGES
        return 2 if self.pipeline == "fast" else 1

    @property
    def registered_acc_reads(self) -> bool:
        """The accumulator memory's words are registered before use (fast)."""
        return self.pipeline == "fast"

    @property
    def spram_blocks_per_bank(self) -> int:
        """SB_SPRAM256KA blocks side by side in one activation bank ("ice40-spram")."""
        return -(-self.rows * 8 // SPRAM_WIDTH)

    @property
    def has_mx(self) -> bool:
        return any(MODE_INFO[m].mx for m in self._modes())

    @property
    def passes_per_block(self) -> int:
        """Array passes (groups of `rows` K-elements) per MX K-block."""
        return self.block_size // self.rows

    @property
    def lanes(self) -> int:
        """Output lanes per PE the hardware is built with: 2 when a mode with 4-bit weights
        packed in columns is built (two columns' products per PE), else 1."""
        return max(self.mode(name).lanes for name in self._modes())

    @property
    def lane_columns(self) -> int:
        """Accumulator lanes: output columns of one array pass in the widest built mode
        (C, or 2C with two lanes)."""
        return self.cols * self.lanes

    @property
    def drain_width(self) -> int:
        """Outputs the drain handles per cycle in the two-lane modes: 2 with `drain_pairs`
        and a two-lane mode built, else 1."""
        return 2 if self.drain_pairs and self.lanes == 2 else 1

    @property
    def activation_bank_depth(self) -> int:
        """Vectors of one of the two activation banks (M_tile * K / R at most)."""
        return self.activation_buffer_depth // 2

    @property
    def accumulator_bank_depth(self) -> int:
        """Rows of one of the two accumulator banks (M_tile at most, M_tile * BK / lc for
        MX outputs)."""
        return self.accumulator_depth // 2

    @property
    def scale_bank_words(self) -> int:
        """64-bit words of one bank of the MX activation-scale memory (8 codes per word): a
        code per (row, K-block) of the largest M-tile an activation bank holds."""
        codes = self.activation_bank_depth // self.passes_per_block
        return max(1, -(-codes // 8))

    @property
    def has_requantizer(self) -> bool:
        """The hardware requantizes (an integer mode is built and `requant_depth` > 0)."""
        return self.requant_depth > 0 and any(not MODE_INFO[m].mx for m in self._modes())

    @property
    def stream_bytes(self) -> int:
        return self.stream_width // 8

    def replace(self, **changes: object) -> ArrayConfig:
        """A copy with some fields changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)
