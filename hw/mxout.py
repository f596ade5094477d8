"""The MX output path: canonical BFP accumulators (m, e) -> FP32 or re-blocked MXINT8/4.

- `BfpToFloat32`: m * 2^e rounded to float32, bit-exact with `golden.mx.bfp_to_float32`
  (RNE, IEEE subnormals, overflow to infinity, -0.0 for negative values that round to 0).
- `MxQuantizer`: re-blocks a row of values along N, bit-exact with
  `golden.mx.mx_quantize(bfp_to_float64(m, e), fmt, block, axis=-1)`: per block of
  `config.block_size` consecutive values (or fewer, closed early by `last`), the shared
  exponent clamp(floor(log2 max|v|), -127, 127) (-127 for an all-zero block) and the
  elements clamp(RNE(v * 2^(f - shared)), -max, max).
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In
from amaranth.utils import bits_for, ceil_log2

from golden.config import ArrayConfig
from golden.mx import MX_FORMATS, SCALE_BIAS, SHARED_EXP_MAX, SHARED_EXP_MIN

from .accumulate import ACC_EXPONENT_BITS, bfp_layout
from .arith import (
    StalledPipeline,
    count_leading_zeros,
    register,
    shift_right_rounding,
    staged_shift_right_rounding,
    unit_members,
)

__all__ = ["BfpToFloat32", "MxElementFormat", "MxQuantizer"]

FLOAT32_INFINITY = 0x7F800000


class MxElementFormat(enum.Enum, shape=1):
    """Element format of the re-blocked MX output."""

    MXINT8 = 0
    MXINT4 = 1


def _check(config: ArrayConfig, exponent_bits: int) -> None:
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"config must be an ArrayConfig, not {config!r}")
    if not isinstance(exponent_bits, int) or not 4 <= exponent_bits <= 16:
        raise ValueError(f"exponent_bits must be an integer from 4 to 16, not {exponent_bits!r}")


def _unpack(dp: Module, mantissa: Value, exponent: Value,
            width: int) -> tuple[Signal, Signal, Signal, Signal, Signal]:
    """Stages 1 to 3 shared by both units: sign, magnitude, leading zeros and the
    exponent of the leading one, lead = floor(log2 |m * 2^e|).

    Returns registers (negative, magnitude, leading_zeros, lead, zero) of stage 3."""
    negative = register(dp, mantissa < 0, "negative_1")
    magnitude = register(dp, abs(mantissa), "magnitude_1")
    exponent = register(dp, exponent, "exponent_1")
    leading_zeros = register(dp, count_leading_zeros(magnitude), "leading_zeros_2")
    zero = register(dp, magnitude == 0, "zero_2")
    negative, magnitude = register(dp, negative, "negative_2"), register(dp, magnitude,
                                                                         "magnitude_2")
    exponent = register(dp, exponent, "exponent_2")
    lead = register(dp, exponent + (width - 1) - leading_zeros, "lead_3")
    return (register(dp, negative, "negative_3"), register(dp, magnitude, "magnitude_3"),
            register(dp, leading_zeros, "leading_zeros_3"), lead,
            register(dp, zero, "zero_3"))


class BfpToFloat32(wiring.Component):
    """FP32 output of the MX path: the float32 bit pattern of m * 2^e, rounded to nearest
    even, with subnormals and overflow to infinity (`golden.mx.bfp_to_float32`).

    `i_stream` payload: (mantissa, exponent) of W = `config.acc_bits` and `exponent_bits`
    bits; any mantissa is accepted, canonical or not. `o_stream` payload: `bits`, the
    IEEE-754 binary32 encoding.

    Latency `latency` (7) cycles, throughput one value per cycle.
    """

    output_layout = data.StructLayout({"bits": unsigned(32)})

    def __init__(self, config: ArrayConfig, *, exponent_bits: int = ACC_EXPONENT_BITS) -> None:
        _check(config, exponent_bits)
        self.acc_bits = config.acc_bits
        self.exponent_bits = exponent_bits
        self.input_layout = bfp_layout(config.acc_bits, exponent_bits)
        super().__init__(unit_members(self.input_layout, self.output_layout))

    @property
    def latency(self) -> int:
        """Cycles from accepting a value to presenting its result (no backpressure)."""
        return 7

    def elaborate(self, platform: object) -> Module:
        m = Module()
        dp, pipe = StalledPipeline.for_unit(m, self, self.latency)
        W = self.acc_bits
        # Frame of at least 26 bits, so that 24 kept bits leave a round bit and a sticky bit.
        frame = max(W, 26)
        i = self.i_stream.payload

        def reg(value: Value, name: str) -> Signal:
            return register(dp, value, name)

        negative, magnitude, leading_zeros, lead, zero = _unpack(dp, i.mantissa, i.exponent, W)

        # 4: normalise; bits to drop (24 kept, fewer for subnormal results); exponent field.
        normal = reg(Cat(Const(0, frame - W), (magnitude << leading_zeros)[:W]), "normal_4")
        # drop = (frame - 24) + max(0, -126 - lead), at most frame + 1: the comparisons of
        # lead with constants run beside the one subtraction.
        drop = Mux(lead >= -126, frame - 24,
                   Mux(lead < -151, frame + 1, (frame - 150) - lead))
        drop = reg(drop[:bits_for(frame + 1)], "drop_4")
        # The biased exponent minus one: adding the 24-bit mantissa, whose hidden bit is
        # set, adds the one back (and a rounding carry moves to the next binade by itself).
        field = reg(Mux(lead >= -126, lead + 126, 0)[:8], "field_4")
        overflow = reg(lead > 127, "overflow_4")
        negative, zero = reg(negative, "negative_4"), reg(zero, "zero_4")

        # 5, 6: round to the kept bits (the shift by the multiple of 8 first).
        kept, guard, rest = staged_shift_right_rounding(reg, normal, drop, frame + 1,
                                                        "round_5")
        field, overflow = reg(field, "field_5"), reg(overflow, "overflow_5")
        negative, zero = reg(negative, "negative_5"), reg(zero, "zero_5")
        up = reg(guard & (rest | kept[0]), "up_6")
        kept = reg(kept[:24], "kept_6")
        field, overflow = reg(field, "field_6"), reg(overflow, "overflow_6")
        negative, zero = reg(negative, "negative_6"), reg(zero, "zero_6")

        # 7: assemble. A rounding carry out of the largest binade gives exactly the
        # encoding of infinity (254 - 1 + 2 = 255, mantissa 0); larger values saturate.
        magnitude_bits = ((field << 23) + kept + up)[:31]
        magnitude_bits = Mux(zero, 0, Mux(overflow, FLOAT32_INFINITY, magnitude_bits))
        dp.d.sync += self.o_stream.payload.bits.eq(Cat(magnitude_bits, negative))

        pipe.insert_datapath(m, dp)
        return m


class MxQuantizer(wiring.Component):
    """MXINT8 / MXINT4 output of the MX path: re-blocks values along a row.

    `i_stream` payload: `value` (mantissa, exponent) and `last` (the last value of a row:
    it closes a partial block). A block is `config.block_size` (BK) consecutive values, or
    fewer when `last` comes first. `o_stream` payload, one per value and in input order:
    `element` (the MX element P, two's complement, [-127, 127] or [-7, 7]), `scale` (the
    block's E8M0 code, shared + 127), `first` and `last` (first / last element of a block).

    `format` selects MXINT8 or MXINT4; change it only while `busy` is low.

    Two block buffers of BK entries alternate: one fills while the other is quantised, so
    throughput is one value per cycle. The first element of a block appears `latency` (11)
    cycles after its last value was accepted (no backpressure).
    """

    output_layout = data.StructLayout({
        "element": signed(8),
        "scale": unsigned(8),
        "first": unsigned(1),
        "last": unsigned(1),
    })

    # Stored per value: 9 leading mantissa bits and a sticky bit are enough for every
    # rounding the unit does (an MXINT8 element keeps at most 8 significant bits and its
    # round bit lies at least two places below the leading one).
    _KEPT_BITS = 9

    def __init__(self, config: ArrayConfig, *, exponent_bits: int = ACC_EXPONENT_BITS) -> None:
        _check(config, exponent_bits)
        self.acc_bits = config.acc_bits
        self.block_size = config.block_size
        self.exponent_bits = exponent_bits
        self.input_layout = data.StructLayout({
            "value": bfp_layout(config.acc_bits, exponent_bits),
            "last": unsigned(1),
        })
        self._lead_shape = signed(exponent_bits + 2)
        self.entry_layout = data.StructLayout({
            "negative": unsigned(1),
            "zero": unsigned(1),
            "kept": unsigned(self._KEPT_BITS),
            "sticky": unsigned(1),
            "lead": self._lead_shape,
        })
        super().__init__(unit_members(self.input_layout, self.output_layout,
                                      format=In(MxElementFormat)))

    @property
    def latency(self) -> int:
        """Cycles from accepting the value that completes a block to presenting the block's
        first element (no backpressure)."""
        return 11

    def elaborate(self, platform: object) -> Module:
        m = Module()
        W, BK = self.acc_bits, self.block_size
        index_bits = ceil_log2(BK)
        i = self.i_stream.payload

        # --- Front: unpack and normalise (4 stages), stalls when the filling bank is full.
        front = Module()
        front_valid = [Signal(name=f"front_valid_{n}") for n in range(1, 5)]
        front.d.sync += [front_valid[0].eq(self.i_stream.valid),
                         *(front_valid[n].eq(front_valid[n - 1])
                           for n in range(1, len(front_valid)))]
        negative, magnitude, leading_zeros, lead, zero = _unpack(
            front, i.value.mantissa, i.value.exponent, W)
        last = i.last
        for stage in range(1, 4):
            last = register(front, last, f"last_{stage}")
        normal = register(front, (magnitude << leading_zeros)[:W], "normal_4")
        lead = register(front, lead, "lead_4")
        zero = register(front, zero, "zero_4")
        negative = register(front, negative, "negative_4")
        last = register(front, last, "last_4")

        # --- Block buffers: bank b holds entries b * BK ... b * BK + BK - 1.
        memory = Memory(shape=self.entry_layout, depth=2 * BK, init=[])
        m.submodules.memory = memory
        write_port = memory.write_port()
        read_port = memory.read_port()

        write_bank = Signal()
        write_index = Signal(index_bits)
        block_max = Signal(self._lead_shape)
        block_any = Signal()  # a nonzero value has been seen in the block
        bank_full = Signal(2)
        bank_count = [Signal(range(BK + 1), name=f"bank_count_{b}") for b in range(2)]
        bank_max = [Signal(self._lead_shape, name=f"bank_max_{b}") for b in range(2)]
        bank_any = [Signal(name=f"bank_any_{b}") for b in range(2)]

        write_ready = ~Mux(write_bank, bank_full[1], bank_full[0])
        front_advance = ~front_valid[-1] | write_ready
        m.d.comb += self.i_stream.ready.eq(front_advance)
        m.submodules.front = EnableInserter(front_advance)(front)

        write = front_valid[-1] & write_ready
        end_of_block = (write_index == BK - 1) | last
        new_any = block_any | ~zero
        new_max = Mux(~zero & (~block_any | (lead > block_max)), lead, block_max)
        m.d.comb += [
            write_port.addr.eq(Cat(write_index, write_bank)),
            write_port.en.eq(write),
            write_port.data.negative.eq(negative),
            write_port.data.zero.eq(zero),
            write_port.data.kept.eq(normal[W - self._KEPT_BITS:]),
            write_port.data.sticky.eq(normal[:W - self._KEPT_BITS] != 0),
            write_port.data.lead.eq(lead),
        ]
        with m.If(write):
            with m.If(end_of_block):
                m.d.sync += [write_index.eq(0), write_bank.eq(~write_bank), block_any.eq(0)]
                for b in range(2):
                    with m.If(write_bank == b):
                        m.d.sync += [bank_full[b].eq(1), bank_count[b].eq(write_index + 1),
                                     bank_max[b].eq(new_max), bank_any[b].eq(new_any)]
            with m.Else():
                m.d.sync += [write_index.eq(write_index + 1), block_max.eq(new_max),
                             block_any.eq(new_any)]

        # --- Reader: quantise a full bank, one element per cycle (6 stages incl. the read).
        read_bank = Signal()
        read_index = Signal(index_bits)
        reader = Module()
        o = self.o_stream
        read_advance = ~o.valid | o.ready
        issue = read_advance & Mux(read_bank, bank_full[1], bank_full[0])
        count = Mux(read_bank, bank_count[1], bank_count[0])
        is_last = read_index == count - 1
        m.d.comb += [read_port.addr.eq(Cat(read_index, read_bank)),
                     read_port.en.eq(read_advance)]
        with m.If(issue):
            with m.If(is_last):
                m.d.sync += [read_index.eq(0), read_bank.eq(~read_bank)]
                for b in range(2):
                    with m.If(read_bank == b):
                        m.d.sync += bank_full[b].eq(0)
            with m.Else():
                m.d.sync += read_index.eq(read_index + 1)

        # Valid bits of the reader stages (these, unlike the data registers, reset).
        valid = [Signal(name=f"valid_{n}") for n in range(1, 6)]
        reader.d.sync += [valid[0].eq(issue), *(valid[n].eq(valid[n - 1])
                                                for n in range(1, len(valid)))]

        self._round_stages(reader, read_port, read_bank, read_index == 0, is_last,
                           (bank_max, bank_any), valid)
        m.submodules.reader = EnableInserter(read_advance)(reader)

        m.d.comb += self.busy.eq((Cat(front_valid) != 0) | (bank_full != 0)
                                 | (write_index != 0) | (Cat(valid) != 0) | o.valid)
        return m

    def _round_stages(self, reader: Module, read_port: object, read_bank: Value,
                      first_read: Value, is_last: Value,
                      bank_stats: tuple[list[Signal], list[Signal]],
                      valid: list[Signal]) -> None:
        """R1 .. R6 of the reader, on `reader` (its enable is the output's advance): the
        block's shared exponent, then each element shifted to the format's grid, rounded
        and clamped."""
        o = self.o_stream
        bank_max, bank_any = bank_stats

        def reg(value: Value, name: str) -> Signal:
            return register(reader, value, name)

        # R1: the memory read; the block's shared exponent, first and last.
        top = Mux(read_bank, bank_max[1], bank_max[0])
        any_nonzero = Mux(read_bank, bank_any[1], bank_any[0])
        shared = Mux(~any_nonzero | (top < SHARED_EXP_MIN), SHARED_EXP_MIN,
                     Mux(top > SHARED_EXP_MAX, SHARED_EXP_MAX, top))
        shared = reg(shared[:8].as_signed(), "shared_1")
        first = reg(first_read, "first_1")
        last = reg(is_last, "last_1")

        def reg_view(view: data.View, name: str) -> data.View:
            register = Signal(self.entry_layout, name=name, reset_less=True)
            reader.d.sync += register.eq(view)
            return register

        # R2: the entry registered (the memory's output feeds no logic).
        entry = reg_view(read_port.data, "entry_2")
        shared, first, last = reg(shared, "shared_2"), reg(first, "first_2"), reg(last, "last_2")

        # R3: the exponent distance shared - lead (lead > shared saturates).
        distance = reg(shared - entry.lead, "distance_3")
        entry = reg_view(entry, "entry_3")
        shared, first, last = reg(shared, "shared_3"), reg(first, "first_3"), reg(last, "last_3")

        # R4: bits to drop: (KEPT - 1 - f) + distance, at most `limit`. Per format, the
        # clamp compares `distance` with a constant (beside the sum, not after it), and the
        # format picks last.
        mxint8 = self.format == MxElementFormat.MXINT8

        def per_format(value_for: Callable[[str], Value]) -> Value:
            """`value_for` the element format in use (both built, the format chooses)."""
            return Mux(mxint8, value_for("mxint8"), value_for("mxint4"))

        limit = self._KEPT_BITS + 1  # everything rounds to 0 from here on

        def drop_for(name: str) -> Value:
            offset = (self._KEPT_BITS - 1) - MX_FORMATS[name].fraction_bits
            return Mux(distance > limit - offset, limit, offset + distance)

        drop = reg(per_format(drop_for)[:bits_for(limit)], "drop_4")
        saturate = reg(distance < 0, "saturate_4")
        kept_4 = reg(entry.kept, "kept_4")
        sticky_4 = reg(entry.sticky, "sticky_4")
        negative_4 = reg(entry.negative, "negative_4")
        zero_4 = reg(entry.zero, "zero_4")
        shared, first, last = reg(shared, "shared_4"), reg(first, "first_4"), reg(last, "last_4")

        # R5: shift to the element's grid.
        kept, guard, rest = shift_right_rounding(kept_4, drop, limit)
        up = reg(guard & (rest | sticky_4 | kept[0]), "up_5")
        kept = reg(kept[:self._KEPT_BITS], "kept_5")
        saturate, negative, zero = (reg(saturate, "saturate_5"), reg(negative_4, "negative_5"),
                                    reg(zero_4, "zero_5"))
        shared, first, last = reg(shared, "shared_5"), reg(first, "first_5"), reg(last, "last_5")

        # R6: round, clamp to +-max, sign. Whether kept + up exceeds a format's max_code is
        # a comparison of `kept` with constants (beside the sum), and the sum and its
        # negation are formed side by side (-(kept + up) = ~kept + ~up in two's
        # complement), so the format and the sign only choose.
        def over_for(name: str) -> Value:
            max_code = MX_FORMATS[name].max_code
            return (kept > max_code) | ((kept == max_code) & up)

        def clamped_for(name: str) -> Value:
            max_code = MX_FORMATS[name].max_code
            return Mux(negative, -max_code, max_code)

        over = saturate | per_format(over_for)
        clamped = per_format(clamped_for)
        rounded = Mux(negative, ~kept + ~up, kept + up)
        element = Mux(zero, 0, Mux(over, clamped, rounded))
        reader.d.sync += [
            o.valid.eq(valid[-1]),
            o.payload.element.eq(element[:8]),
            o.payload.scale.eq(shared + SCALE_BIAS),
            o.payload.first.eq(first),
            o.payload.last.eq(last),
        ]
