"""Accumulation units: exact int32 accumulation and the W-bit block-floating-point adder.

Both are streaming datapaths that sit between the array's column outputs and the
accumulator SRAM: the accelerator reads an accumulator value, sends it through the unit
together with the new partial sum, and writes the result back (read-modify-write). A
`first` flag in the payload means "the accumulator is zero", so the SRAM never needs
clearing.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.utils import bits_for

from golden.config import ArrayConfig
from golden.mx import MX_FORMATS

from .arith import (
    StalledPipeline,
    count_leading_zeros,
    register,
    staged_shift_right_rounding,
    unit_members,
    zero_extend,
)

__all__ = [
    "ACC_EXPONENT_BITS", "BLOCK_EXPONENT_BITS", "BfpAccumulator", "IntAccumulator",
    "bfp_layout", "block_partial_bits", "pass_min", "pass_mins", "unit_latency",
]

# Exponent widths of the BFP datapath. Block exponents x_b = (ca - 127) + (cb - 127) - fa - fb
# lie in [-266, 254] (E8M0 codes 0..254, fraction bits 6 or 2): 10 signed bits. Accumulator
# exponents stay within [-296, ~310] for any MX GEMM (x_b - (W - 2) at the bottom, 254 plus
# the bits of K * 127 * 127 at the top); 12 signed bits leave a margin of 4x.
BLOCK_EXPONENT_BITS = 10
ACC_EXPONENT_BITS = 12


def block_partial_bits(config: ArrayConfig) -> int:
    """Width of a signed block dot product p_b: |p_b| <= block_size * 127 * 127."""
    largest_code = max(spec.max_code for spec in MX_FORMATS.values())
    return bits_for(config.block_size * largest_code * largest_code) + 1


def bfp_layout(mantissa_bits: int, exponent_bits: int = ACC_EXPONENT_BITS) -> data.StructLayout:
    """A block-floating-point value mantissa * 2^exponent, both two's complement."""
    return data.StructLayout({
        "mantissa": signed(mantissa_bits),
        "exponent": signed(exponent_bits),
    })


# --- Integer accumulation ----------------------------------------------------------------

class IntAccumulator(wiring.Component):
    """Exact two's-complement int32 accumulation: acc' = wrap32(acc + partial).

    `i_stream` carries the accumulator value read from the SRAM, the partial sum to add and
    `first` (the accumulator is zero: acc' = partial); `o_stream` the new accumulator value.
    Wraps modulo 2^32 like ONNX MatMulInteger and `torch._int_mm`. Latency 1 cycle, or 2
    with `registered=True` (the operands are registered before the adder, for an
    accumulator that comes straight from a memory at a fast clock); throughput one element
    per cycle.
    """

    input_layout = data.StructLayout({
        "acc": signed(32),
        "partial": signed(32),
        "first": unsigned(1),
    })
    output_layout = data.StructLayout({"acc": signed(32)})

    def __init__(self, *, registered: bool = False) -> None:
        self._registered = registered
        super().__init__(unit_members(self.input_layout, self.output_layout))

    @property
    def latency(self) -> int:
        """Cycles from accepting an input to presenting its result (no backpressure)."""
        return 2 if self._registered else 1

    def elaborate(self, platform: object) -> Module:
        m = Module()
        dp, pipe = StalledPipeline.for_unit(m, self, self.latency)
        payload = self.i_stream.payload
        base = Mux(payload.first, 0, payload.acc)
        partial = payload.partial
        if self._registered:
            base, partial = register(dp, base, "base_1"), register(dp, partial, "partial_1")
        dp.d.sync += self.o_stream.payload.acc.eq((base + partial)[:32])
        pipe.insert_datapath(m, dp)
        return m


# --- Block-floating-point accumulation ---------------------------------------------------

class BfpAccumulator(wiring.Component):
    """The W-bit block-floating-point accumulator update of the MX modes:

        (m', e') = round_W(m * 2^e + p * 2^x)

    bit-exact with `golden.mx.bfp_add(m, e, p, x, acc_bits=W, rounding=...)`: the exact sum
    rounded onto the W-bit-mantissa grid, to nearest with ties to even ("nearest") or
    toward minus infinity ("truncate"), returned in canonical form (no redundant sign bit:
    m' in [2^(W-2), 2^(W-1)) or [-2^(W-1), -2^(W-2)); zero is (0, 0)).

    `i_stream` payload: `acc` (mantissa, exponent) as read from the accumulator SRAM,
    `partial` p (the block dot product), `partial_exponent` x and `first` (ignore `acc`,
    the accumulator is zero). `o_stream` payload: the new (mantissa, exponent). Any `acc`
    with |m| <= 2^(W-1) is accepted, canonical or not. Exponents must stay inside the
    exponent width (they do for every MX GEMM with the default widths); they wrap otherwise.

    Latency `latency` (15) cycles, throughput one element per cycle. An accumulator that
    is read, updated and written back may not be updated again before its previous update
    has left the unit: schedule at least `latency` other accumulators in between.

    Parameters
    ----------
    config
        W = `config.acc_bits`; p is `block_partial_bits(config)` bits wide.
    rounding
        "nearest" or "truncate"; defaults to `config.acc_rounding`.
    exponent_bits, partial_exponent_bits
        Widths of e and x.
    """

    def __init__(self, config: ArrayConfig, *, rounding: str | None = None,
                 exponent_bits: int = ACC_EXPONENT_BITS,
                 partial_exponent_bits: int = BLOCK_EXPONENT_BITS) -> None:
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        rounding = config.acc_rounding if rounding is None else rounding
        if rounding not in ("nearest", "truncate"):
            raise ValueError(f"rounding must be 'nearest' or 'truncate', not {rounding!r}")
        for name, value in (("exponent_bits", exponent_bits),
                            ("partial_exponent_bits", partial_exponent_bits)):
            if not isinstance(value, int) or not 4 <= value <= 16:
                raise ValueError(f"{name} must be an integer from 4 to 16, not {value!r}")
        self._config = config
        self._rounding = rounding
        self.acc_bits = config.acc_bits
        self.partial_bits = block_partial_bits(config)
        self.exponent_bits = exponent_bits
        self.partial_exponent_bits = partial_exponent_bits
        self.value_layout = bfp_layout(self.acc_bits, exponent_bits)
        self.input_layout = data.StructLayout({
            "acc": self.value_layout,
            "partial": signed(self.partial_bits),
            "partial_exponent": signed(partial_exponent_bits),
            "first": unsigned(1),
        })
        super().__init__(unit_members(self.input_layout, self.value_layout))

    @property
    def rounding(self) -> str:
        return self._rounding

    @property
    def latency(self) -> int:
        """Cycles from accepting an input to presenting its result (no backpressure)."""
        return 15

    def elaborate(self, platform: object) -> Module:
        m = Module()
        dp, pipe = StalledPipeline.for_unit(m, self, self.latency)
        W = self.acc_bits
        # Magnitudes are normalised into a frame of F bits, then extended by two zero bits
        # below (T bits): one so that alignment by one place is exact, one so that the
        # jammed sticky bit always lies below the round bit (see docs/numerics.md).
        F = max(W, self.partial_bits)
        T = F + 2
        i = self.i_stream.payload

        def reg(value: Value, name: str) -> Signal:
            return register(dp, value, name)

        # 1: the operands registered (the accumulator comes straight from a memory).
        acc_mantissa = reg(Mux(i.first, 0, i.acc.mantissa), "acc_mantissa_1")
        a_exp = reg(i.acc.exponent, "a_exp_1")
        partial = reg(i.partial, "partial_1")
        b_exp = reg(i.partial_exponent, "b_exp_1")

        # 2: sign and magnitude of both operands.
        a_neg = reg(acc_mantissa < 0, "a_neg_2")
        a_mag = reg(abs(acc_mantissa), "a_mag_2")
        b_neg = reg(partial < 0, "b_neg_2")
        b_mag = reg(abs(partial), "b_mag_2")
        a_exp, b_exp = reg(a_exp, "a_exp_2"), reg(b_exp, "b_exp_2")

        # 3: leading zeros in the F-bit frame.
        a_lz = reg(count_leading_zeros(zero_extend(a_mag, F)), "a_lz_3")
        b_lz = reg(count_leading_zeros(zero_extend(b_mag, F)), "b_lz_3")
        a_zero = reg(a_mag == 0, "a_zero_3")
        b_zero = reg(b_mag == 0, "b_zero_3")
        a_mag, b_mag = reg(a_mag, "a_mag_3"), reg(b_mag, "b_mag_3")
        a_exp, b_exp = reg(a_exp, "a_exp_3"), reg(b_exp, "b_exp_3")
        a_neg, b_neg = reg(a_neg, "a_neg_3"), reg(b_neg, "b_neg_3")

        # 4: normalise (MSB at F - 1); frame exponents (value = norm * 2^fexp).
        a_norm = reg((zero_extend(a_mag, F) << a_lz)[:F], "a_norm_4")
        b_norm = reg((zero_extend(b_mag, F) << b_lz)[:F], "b_norm_4")
        a_fexp = reg(a_exp - a_lz, "a_fexp_4")
        b_fexp = reg(b_exp - b_lz, "b_fexp_4")
        a_zero, b_zero = reg(a_zero, "a_zero_4"), reg(b_zero, "b_zero_4")
        a_neg, b_neg = reg(a_neg, "a_neg_4"), reg(b_neg, "b_neg_4")

        # 5: exponent differences both ways; the mantissa comparison.
        diff_ab = reg(a_fexp - b_fexp, "diff_ab_5")
        diff_ba = reg(b_fexp - a_fexp, "diff_ba_5")
        norm_ge = reg(a_norm >= b_norm, "norm_ge_5")
        a_norm, b_norm = reg(a_norm, "a_norm_5"), reg(b_norm, "b_norm_5")
        a_fexp, b_fexp = reg(a_fexp, "a_fexp_5"), reg(b_fexp, "b_fexp_5")
        a_zero, b_zero = reg(a_zero, "a_zero_5"), reg(b_zero, "b_zero_5")
        a_neg, b_neg = reg(a_neg, "a_neg_5"), reg(b_neg, "b_neg_5")

        # 6: which operand is bigger (|big| >= |small|; a zero operand is always small);
        # the alignment distance each way, clamped to [0, T].
        def clamp(distance: Value) -> Value:
            return Mux(distance < 0, 0, Mux(distance > T, T, distance))[:bits_for(T)]

        a_wins = reg(~a_zero & (b_zero | (diff_ab > 0) | ((diff_ab == 0) & norm_ge)),
                     "a_wins_6")
        shift_ab = reg(clamp(diff_ab), "shift_ab_6")
        shift_ba = reg(clamp(diff_ba), "shift_ba_6")
        a_norm, b_norm = reg(a_norm, "a_norm_6"), reg(b_norm, "b_norm_6")
        a_fexp, b_fexp = reg(a_fexp, "a_fexp_6"), reg(b_fexp, "b_fexp_6")
        a_neg, b_neg = reg(a_neg, "a_neg_6"), reg(b_neg, "b_neg_6")

        # 7: order the operands.
        big_norm = reg(Mux(a_wins, a_norm, b_norm), "big_norm_7")
        small_norm = reg(Mux(a_wins, b_norm, a_norm), "small_norm_7")
        big_neg = reg(Mux(a_wins, a_neg, b_neg), "big_neg_7")
        subtract = reg(a_neg ^ b_neg, "subtract_7")
        big_fexp = reg(Mux(a_wins, a_fexp, b_fexp), "big_fexp_7")
        shift = reg(Mux(a_wins, shift_ab, shift_ba), "shift_7")

        # 8, 9: align the smaller operand (by the multiple of 8 first, then by the rest);
        # the bits shifted out, jammed into its LSB in 10.
        kept, round_bit, sticky = staged_shift_right_rounding(
            reg, Cat(Const(0, 2), small_norm), shift, T, "align_8")
        big_norm, big_neg = reg(big_norm, "big_norm_8"), reg(big_neg, "big_neg_8")
        subtract, big_fexp = reg(subtract, "subtract_8"), reg(big_fexp, "big_fexp_8")
        kept = reg(kept[:T], "kept_9")
        jam = reg(round_bit | sticky, "jam_9")
        big_wide = reg(Cat(Const(0, 2), big_norm), "big_wide_9")
        big_neg, subtract = reg(big_neg, "big_neg_9"), reg(subtract, "subtract_9")
        big_fexp = reg(big_fexp, "big_fexp_9")

        # 10: add or subtract magnitudes; the result is never negative.
        aligned = kept | jam
        total = reg(Mux(subtract, big_wide - aligned, big_wide + aligned)[:T + 1], "total_10")
        big_neg, big_fexp = reg(big_neg, "big_neg_10"), reg(big_fexp, "big_fexp_10")

        # 11, 12: leading zeros of the sum, in two steps: per 8-bit group (the count within
        # the group and whether it is zero), then the first nonzero group.
        groups = -(-(T + 1) // 8)
        padded = Cat(Const(0, 8 * groups - (T + 1)), total)   # zeros below keep the count
        group_lz = []
        group_nonzero = []
        for index in range(groups):       # group 0 is the most significant
            part = padded[8 * (groups - 1 - index):8 * (groups - index)]
            group_lz.append(reg(count_leading_zeros(part), f"group_lz_{index}_11"))
            group_nonzero.append(reg(part != 0, f"group_nonzero_{index}_11"))
        total, big_neg, big_fexp = (reg(total, "total_11"), reg(big_neg, "big_neg_11"),
                                    reg(big_fexp, "big_fexp_11"))
        first_group = count_leading_zeros(Cat(*reversed(group_nonzero)))
        within = Array(group_lz)[first_group]
        total_lz = reg(Cat(within, first_group)[:bits_for(8 * groups)], "total_lz_12")
        total_zero = reg(Cat(*group_nonzero) == 0, "total_zero_12")
        total, big_neg, big_fexp = (reg(total, "total_12"), reg(big_neg, "big_neg_12"),
                                    reg(big_fexp, "big_fexp_12"))

        # 13: normalise the sum (MSB at T); exponent of its top W - 1 bits.
        normal = reg((total << total_lz)[:T + 1], "normal_13")
        result_exp = reg(big_fexp + (T - W) - total_lz, "result_exp_13")
        negative, is_zero = reg(big_neg, "negative_13"), reg(total_zero, "zero_13")

        # 14: round to W - 1 magnitude bits.
        top = normal[T - W + 2:]
        guard = normal[T - W + 1]
        rest = normal[:T - W + 1] != 0
        if self._rounding == "nearest":
            round_up = guard & (rest | top[0])
        else:  # toward minus infinity: negative magnitudes round up
            round_up = negative & (guard | rest)
        rounded = reg(top + round_up, "rounded_14")
        result_exp = reg(result_exp, "result_exp_14")
        negative, is_zero = reg(negative, "negative_14"), reg(is_zero, "zero_14")

        # 15: canonical two's-complement form (carry out, negative powers of two).
        carry = rounded[W - 1]
        smallest_normal = rounded == (1 << (W - 2))
        o = self.o_stream.payload
        with dp.If(is_zero):
            dp.d.sync += [o.mantissa.eq(0), o.exponent.eq(0)]
        with dp.Elif(~negative):
            dp.d.sync += [
                o.mantissa.eq(Mux(carry, 1 << (W - 2), rounded)),
                o.exponent.eq(result_exp + carry),
            ]
        with dp.Elif(carry | smallest_normal):
            dp.d.sync += [
                o.mantissa.eq(-(1 << (W - 1))),
                o.exponent.eq(Mux(carry, result_exp, result_exp - 1)),
            ]
        with dp.Else():
            dp.d.sync += [o.mantissa.eq(-rounded), o.exponent.eq(result_exp)]

        pipe.insert_datapath(m, dp)
        return m


# --- Read-modify-write spacing -------------------------------------------------------------

def unit_latency(unit: IntAccumulator | BfpAccumulator) -> int:
    """The `latency` of a unit instantiated only to ask for it."""
    unit._MustUse__used = True  # not elaborated on purpose: no UnusedElaboratable warning
    return unit.latency


def pass_min(config: ArrayConfig, mode: str) -> int:
    """Shortest array pass (vectors per weight tile) the sequencer issues in `mode`; shorter
    M-tiles are padded with bubbles. The accumulator read-modify-write of a row must have
    been written back before the next pass reads it: IntAccumulator latency + 2 cycles, and
    in the MX modes BfpAccumulator latency + 2 cycles between the last passes of consecutive
    K-blocks (`passes_per_block` passes apart)."""
    int_gap = unit_latency(IntAccumulator(registered=config.registered_acc_reads)) + 2
    if not config.mode(mode).mx:
        return int_gap
    bfp_gap = unit_latency(BfpAccumulator(config)) + 2
    return max(int_gap, -(-bfp_gap // config.passes_per_block))


def pass_mins(config: ArrayConfig) -> tuple[int, int]:
    """(integer modes, MX modes) shortest pass; 1 where no such mode is built."""
    int_modes = [name for name in config.modes if not config.mode(name).mx]
    mx_modes = [name for name in config.modes if config.mode(name).mx]
    return (pass_min(config, int_modes[0]) if int_modes else 1,
            pass_min(config, mx_modes[0]) if mx_modes else 1)
