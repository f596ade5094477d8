"""The requantization unit: int32 accumulators -> int8 / uint8 / int4 outputs.

    y = clamp( R(wrap32(acc + bias_n), s_n) + zo , lo, hi )

bit-exact with `golden.requant.requantize` in both rounding modes, in integer logic only:

- fp32: R = round_half_even(fl32(fl32(x) * s32)): int32 -> float32 (RNE to 24 bits),
  24 x 24-bit mantissa product rounded to 24 bits (RNE), then RNE to an integer. Products
  of 2^10 and more saturate (they clamp for every output type), products below 2^-126 are
  rounded as if float32 had no subnormals, which cannot change the integer result.
- gemmlowp: R = RDBPOT(SRDHM(wrap32(x << max(shift, 0)), q31), max(-shift, 0)), including
  SRDHM's INT32_MIN * INT32_MIN saturation.

One signed 32 x 32-bit multiplier serves both modes: four 16 x 16 partial products, which
synthesis maps to DSP blocks (multiplier="dsp"), or eight 32 x 4-bit shift-and-add
partial products summed over two more stages, all in LUTs and carry chains
(multiplier="lut": no route to and from a DSP column on the path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In

from golden.requant import RequantParams

from .arith import (
    StalledPipeline,
    add_shifted,
    count_leading_zeros,
    register,
    staged_shift_right_rounding,
    unit_members,
)

__all__ = ["RequantRounding", "Requantizer", "requant_config", "requant_inputs",
           "REQUANT_MULTIPLIERS", "CHANNEL_PARAMS"]

REQUANT_MULTIPLIERS = ("dsp", "lut")

CHANNEL_PARAMS = data.StructLayout({
    "bias": signed(32),
    "multiplier": unsigned(32),
    "shift": signed(6),
})
"""One output channel's requantization parameters (a word of the accelerator's
requantization memory): int32 bias, the 32-bit multiplier, the gemmlowp shift."""
"""How the requantizer multiplies: "dsp" (`*` on 16-bit halves, which synthesis maps to DSP
blocks where the target has them) or "lut" (shift-and-add, never a DSP block)."""


class RequantRounding(enum.Enum, shape=1):
    """The rounding semantics of R, selectable per GEMM."""

    FP32 = 0
    GEMMLOWP = 1


INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# |R| beyond this saturates: with zo, lo and hi in [-256, 255], R + zo then lies outside
# [lo, hi] whatever they are, so R can be clamped to 11 bits before the zero point is added.
_R_LIMIT = 1 << 10


class Requantizer(wiring.Component):
    """Requantize one accumulator per cycle.

    `i_stream` payload: `acc` (int32), and the parameters of its output channel: `bias`
    (int32), `multiplier` (32 bits: the float32 bit pattern of s32 in fp32 mode, the int32
    q31 in gemmlowp mode) and `shift` (gemmlowp only, [-32, 31]; TFLite uses [-31, 30]).
    `o_stream` payload: `value`, the output y as a signed 9-bit integer (uint8, int8 or
    int4 values alike).

    `config` holds the per-GEMM settings: `rounding` (`RequantRounding`), `zero_point` zo
    and the inclusive clamp bounds `lo`, `hi` (from `golden.requant.output_range`; ReLU is
    lo = max(lo, zo)), each signed 9-bit. `config` is read while elements are in flight:
    change it only while `busy` is low.

    fp32 mode is exact for every int32 x and every finite s32 of either sign, normal or
    subnormal (s32 = +-inf or NaN is not supported).

    `multiplier` ("dsp" or "lut", `REQUANT_MULTIPLIERS`) selects how the 32 x 32-bit
    product is built; the results, the latency and the throughput are the same.

    Latency `latency` (16) cycles, throughput one element per cycle.
    """

    input_layout = data.StructLayout({
        "acc": signed(32),
        "bias": signed(32),
        "multiplier": unsigned(32),
        "shift": signed(6),
    })
    config_layout = data.StructLayout({
        "rounding": RequantRounding,
        "zero_point": signed(9),
        "lo": signed(9),
        "hi": signed(9),
    })
    output_layout = data.StructLayout({"value": signed(9)})

    def __init__(self, *, multiplier: str = "dsp") -> None:
        if multiplier not in REQUANT_MULTIPLIERS:
            self._MustUse__silence = True     # refused: no "created but never used" warning
            raise ValueError(f"multiplier must be one of {', '.join(REQUANT_MULTIPLIERS)}, "
                             f"not {multiplier!r}")
        self._multiplier = multiplier
        super().__init__(unit_members(self.input_layout, self.output_layout,
                                      config=In(self.config_layout)))

    @property
    def latency(self) -> int:
        """Cycles from accepting an input to presenting its result (no backpressure)."""
        return 16

    def elaborate(self, platform: object) -> Module:
        m = Module()
        dp, pipe = StalledPipeline.for_unit(m, self, self.latency)
        fp32 = Signal()
        m.d.comb += fp32.eq(self.config.rounding == RequantRounding.FP32)
        i = self.i_stream.payload

        def reg(value: Value, name: str) -> Signal:
            return register(dp, value, name)

        # 1: x = wrap32(acc + bias); leading zeros of s32's mantissa (subnormals).
        x = reg((i.acc + i.bias)[:32].as_signed(), "x_1")
        multiplier = reg(i.multiplier, "multiplier_1")
        s_mantissa_c = Cat(i.multiplier[:23], i.multiplier[23:31] != 0)
        s_lz = reg(count_leading_zeros(s_mantissa_c), "s_lz_1")
        shift = reg(i.shift, "shift_1")

        # 2: fp32: |x| and the normalised 24-bit mantissa of s32 (value s_mant * 2^s_exp).
        #    gemmlowp: x << left (wrapping); q31.
        s_field = multiplier[23:31]
        s_mantissa = Cat(multiplier[:23], s_field != 0)
        s_exp = Mux(s_field == 0, 1, s_field) - 150 - s_lz
        left = Mux(shift > 0, shift, 0)[:5]
        a = reg(Mux(fp32, abs(x), (x << left)[:32]), "a_2")
        b = reg(Mux(fp32, (s_mantissa << s_lz)[:24], multiplier), "b_2")
        exp = reg(s_exp, "exp_2")
        negative = reg((x < 0) ^ multiplier[31], "negative_2")
        zero = reg((x == 0) | (s_mantissa == 0), "zero_2")
        right = reg(Mux(shift < 0, -shift, 0)[:6], "right_2")

        # 3: leading zeros of |x|; gemmlowp's one overflow case of SRDHM.
        x_lz = reg(count_leading_zeros(a), "x_lz_3")
        saturate_high = reg((a == 1 << 31) & (b == 1 << 31), "saturate_high_3")
        a, b, exp = reg(a, "a_3"), reg(b, "b_3"), reg(exp, "exp_3")
        negative, zero, right = reg(negative, "negative_3"), reg(zero, "zero_3"), \
            reg(right, "right_3")

        # 4: fp32: normalise |x| to 32 bits; fl32(x) * s32 = mx * s_mant * 2^exp.
        a = reg(Mux(fp32, (a << x_lz)[:32], a), "a_4")
        exp = reg(exp + 8 - x_lz, "exp_4")
        b, negative, zero, right, saturate_high = (
            reg(b, "b_4"), reg(negative, "negative_4"), reg(zero, "zero_4"),
            reg(right, "right_4"), reg(saturate_high, "saturate_high_4"))

        # 5: fp32: fl32(x), rounded to nearest even on 24 bits; a carry renormalises. The
        #    carry out is found from the bits (all ones and rounding up), not at the end of
        #    the adder's carry chain, so the exponent's adder does not wait for it.
        round_up = a[7] & ((a[:7] != 0) | a[8])
        x_rounded = a[8:32] + round_up
        x_carry = round_up & a[8:32].all()
        a = reg(Mux(fp32, Mux(x_carry, 1 << 23, x_rounded[:24]), a), "a_5")
        exp = reg(exp + (fp32 & x_carry), "exp_5")
        b, negative, zero, right, saturate_high = (
            reg(b, "b_5"), reg(negative, "negative_5"), reg(zero, "zero_5"),
            reg(right, "right_5"), reg(saturate_high, "saturate_high_5"))

        # 6: the multiplier's operands registered again: registers that feed nothing but
        #    the multipliers (the DSP blocks on an FPGA), so they can be placed next to them;
        #    or the shift-and-add product's first stage.
        if self._multiplier == "dsp":
            a, b = reg(a, "a_6"), reg(b, "b_6")
        else:
            pairs = self._lut_pairs(reg, a, b)
        exp, negative, zero, right, saturate_high = (
            reg(exp, "exp_6"), reg(negative, "negative_6"), reg(zero, "zero_6"),
            reg(right, "right_6"), reg(saturate_high, "saturate_high_6"))

        # 7, 8, 9: the signed 32 x 32 product (a and b as int32; in fp32 mode both are
        #    below 2^24).
        if self._multiplier == "dsp":
            product = self._dsp_product(reg, a, b)
        else:
            product = self._lut_product(reg, pairs)
        # Right shifts that take the rounded 24-bit product (P >> 23 or P >> 24) to an
        # integer: -(exp + 23) and -(exp + 24).
        shift_23 = reg(-(exp + 23), "shift_23_7")
        negative, zero, right, saturate_high = (
            reg(negative, "negative_7"), reg(zero, "zero_7"), reg(right, "right_7"),
            reg(saturate_high, "saturate_high_7"))
        shift_23, negative, zero, right, saturate_high = (
            reg(shift_23, "shift_23_8"), reg(negative, "negative_8"), reg(zero, "zero_8"),
            reg(right, "right_8"), reg(saturate_high, "saturate_high_8"))
        shift_23, negative, zero, right, saturate_high = (
            reg(shift_23, "shift_23_9"), reg(negative, "negative_9"), reg(zero, "zero_9"),
            reg(right, "right_9"), reg(saturate_high, "saturate_high_9"))

        # 10, 11: fp32: the float32 product, RNE to 24 bits (the product has 47 or 48 bits);
        #    whether it is 2^10 or more; the right shift that makes it an integer.
        #    gemmlowp: SRDHM = (a * b + 2^30) >> 31, saturating.
        #    Two stages: the kept bits, the round bits and the sums first, then the choices.
        top = product[47]
        kept = reg(Mux(top, product[24:48], product[23:47]), "kept_10")
        guard = reg(Mux(top, product[23], product[22]), "guard_10")
        rest = reg(Mux(top, product[:23] != 0, product[:22] != 0), "rest_10")
        p_shift = reg(shift_23 - top, "p_shift_10")
        srdhm = reg(((product[30:].as_signed() + 1) >> 1)[:32].as_signed(), "srdhm_10")
        negative, zero, right, saturate_high = (
            reg(negative, "negative_10"), reg(zero, "zero_10"), reg(right, "right_10"),
            reg(saturate_high, "saturate_high_10"))
        p_rounded = kept + (guard & (rest | kept[0]))
        srdhm = Mux(saturate_high, INT32_MAX, srdhm)
        value = reg(Mux(fp32, p_rounded, srdhm), "value_11")
        amount = reg(Mux(fp32, Mux(p_shift < 0, 0, Mux(p_shift > 32, 32, p_shift)), right)[:6],
                     "amount_11")
        saturate = reg(fp32 & ~zero & (p_shift <= 13), "saturate_11")
        negate = reg(fp32 & negative, "negate_11")

        # 12, 13: the shared rounding right shift (fp32: to an integer; gemmlowp: RDBPOT),
        # by the multiple of 8 first, then by the rest.
        kept, guard, rest = staged_shift_right_rounding(reg, value, amount, 33, "shift_12")
        saturate, negate = reg(saturate, "saturate_12"), reg(negate, "negate_12")
        kept = reg(kept[:33].as_signed(), "kept_13")
        guard, rest = reg(guard, "guard_13"), reg(rest, "rest_13")
        saturate, negate = reg(saturate, "saturate_13"), reg(negate, "negate_13")

        # 14: round (fp32: half to even; gemmlowp: half away from zero) and apply the sign.
        up = Mux(fp32, guard & (rest | kept[0]), guard & (~kept[-1] | rest))
        rounded = reg((Mux(negate, ~kept, kept) + Mux(negate, ~up, up))[:34].as_signed(),
                      "rounded_14")
        saturate, negate = reg(saturate, "saturate_14"), reg(negate, "negate_14")

        # 15: clamp R to 11 bits (anything larger saturates the output anyway).
        clamped = Mux(rounded >= _R_LIMIT, _R_LIMIT - 1,
                      Mux(rounded < -_R_LIMIT, -_R_LIMIT, rounded[:11].as_signed()))
        clamped = reg(Mux(saturate, Mux(negate, -_R_LIMIT, _R_LIMIT - 1), clamped)
                      .as_signed(), "clamped_15")

        # 16: + zo, clamp to [lo, hi].
        shifted = clamped + self.config.zero_point
        lo, hi = self.config.lo, self.config.hi
        dp.d.sync += self.o_stream.payload.value.eq(
            Mux(shifted < lo, lo, Mux(shifted > hi, hi, shifted)))

        pipe.insert_datapath(m, dp)
        return m

    @staticmethod
    def _dsp_product(reg: Callable[[Value, str], Signal], a: Value, b: Value) -> Signal:
        # 7: four 16 x 16 partial products (one DSP block each).
        a_high, a_low = a[16:].as_signed(), a[:16]
        b_high, b_low = b[16:].as_signed(), b[:16]
        high_high = reg(a_high * b_high, "high_high_7")
        high_low = reg(a_high * b_low, "high_low_7")
        low_high = reg(a_low * b_high, "low_high_7")
        low_low = reg(a_low * b_low, "low_low_7")
        # 8: the middle partial products summed; the outer two do not overlap (low_low has
        # 32 bits), so they are concatenated.
        middle = reg(high_low + low_high, "middle_8")
        outer = reg(Cat(low_low[:32], high_high), "outer_8")
        # 9: the product.
        return reg((outer.as_signed() + (middle << 16))[:64].as_signed(), "product_9")

    @staticmethod
    def _lut_pairs(reg: Callable[[Value, str], Signal], a: Value, b: Value) -> list[Signal]:
        # 6: sixteen 32 x 2-bit products a * b[2j : 2j + 2] (without their weight 2^2j;
        # bit 31 of b weighs -2^31), each one adder of two gated copies of a.
        a = a.as_signed()
        pairs = []
        for pair in range(16):
            low = Mux(b[2 * pair], a, 0)
            high = Mux(b[2 * pair + 1], a << 1, 0)
            pairs.append(reg(low - high if pair == 15 else low + high, f"pair_6_{pair}"))
        return pairs

    @staticmethod
    def _lut_product(reg: Callable[[Value, str], Signal], pairs: list[Signal]) -> Signal:
        # 7: eight 32 x 4-bit partial products a * b[4g : 4g + 4] (the top nibble signed,
        # the others unsigned): two pairs each.
        partial = [reg(add_shifted(pairs[2 * group], pairs[2 * group + 1], 2),
                       f"partial_7_{group}") for group in range(8)]
        # 8: each half of b's partial products summed (two adder levels).
        halves = []
        for half in range(2):
            p0, p1, p2, p3 = partial[4 * half:4 * half + 4]
            halves.append(reg(add_shifted(add_shifted(p0, p1, 4), add_shifted(p2, p3, 4), 8),
                              f"half_8_{half}"))
        # 9: the product.
        return reg(add_shifted(halves[0], halves[1], 16)[:64].as_signed(), "product_9")


# --- Host-side helpers: golden parameters -> port values ---------------------------------

def requant_config(params: RequantParams) -> dict[str, Any]:
    """The `config` port value of a GEMM's `golden.requant.RequantParams`."""
    lo, hi = params.bounds
    rounding = RequantRounding.FP32 if params.rounding == "fp32" else RequantRounding.GEMMLOWP
    return {"rounding": rounding, "zero_point": int(params.zero_point), "lo": lo, "hi": hi}


def requant_inputs(acc: np.ndarray, params: RequantParams) -> list[dict[str, int]]:
    """`i_stream` payloads for accumulators `acc` [..., N] (row-major order), with the
    per-channel (or per-tensor) parameters of `params`."""
    acc = np.asarray(acc, dtype=np.int64)
    channels = acc.shape[-1] if acc.ndim else 1
    bias = np.broadcast_to(np.asarray(params.bias, dtype=np.int64), (channels,))
    if params.rounding == "fp32":
        bits = np.asarray(params.multiplier, dtype=np.float32).view(np.uint32).astype(np.int64)
        shift = np.zeros((), dtype=np.int64)
    else:
        bits = np.asarray(params.multiplier, dtype=np.int64) & 0xFFFFFFFF
        shift = np.asarray(params.shift, dtype=np.int64)
    bits = np.broadcast_to(bits, (channels,))
    shift = np.broadcast_to(shift, (channels,))
    flat = acc.reshape(-1, channels)
    return [{"acc": int(value), "bias": int(bias[n]), "multiplier": int(bits[n]),
             "shift": int(shift[n])}
            for row in flat for n, value in enumerate(row.tolist())]

