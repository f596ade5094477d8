"""Arithmetic building blocks shared by the accumulation, requantization and MX output
units: a leading-zero count, a right shift that reports its rounding bits, pipeline
registers and the flow control of a pipeline that stalls as a whole."""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["SerialMultiplier", "SkidBuffer", "StalledPipeline", "unit_members",
           "add_shifted", "booth_multiply_4x4", "count_leading_zeros", "register",
           "shift_add_multiply", "shift_right_rounding", "staged_shift_right_rounding",
           "zero_extend"]


def count_leading_zeros(value: Value) -> Value:
    """Leading zeros of an unsigned `value`, as a balanced tree (combinational, log depth).

    The result has ceil_log2(len(value)) bits (at least 1); it is unspecified for zero, which
    callers test separately."""
    value = Value.cast(value)
    padded_width = 1 << max(1, ceil_log2(len(value)))
    # Zeros appended below the value do not change its leading-zero count.
    bits = Cat(Const(0, padded_width - len(value)), value)

    def tree(part: Value) -> tuple[Value, Value]:
        if len(part) == 2:
            return ~part[1], part == 0
        half = len(part) // 2
        high_count, high_zero = tree(part[half:])
        low_count, low_zero = tree(part[:half])
        count = Mux(high_zero, Cat(low_count, Const(1, 1)), Cat(high_count, Const(0, 1)))
        return count, high_zero & low_zero

    return tree(bits)[0]


def shift_add_multiply(a: Value, b: Value) -> Value:
    """a * b for a signed `b` as a sum of shifted copies of `a` (two's complement: the top
    bit of `b` weighs -2^(n-1)), so synthesis builds it from LUTs and carry chains, never
    from a DSP block."""
    width = len(b)
    total: Value = -Mux(b[width - 1], a << (width - 1), 0)
    for bit in range(width - 1):
        total = total + Mux(b[bit], a << bit, 0)
    return total


def booth_multiply_4x4(a: Value, w: Value) -> Value:
    """a * w for signed 4-bit `a` and `w`, radix-4 Booth recoded on `a`: a = d0 + 4 * d1
    with digits d0 = -2 a1 + a0 and d1 = -2 a3 + a2 + a1 in [-2, 2]. Each partial product
    |d| * w is w, 2w or 0, negated as its complement plus a correction bit, so each of
    its bits is one small function of two bits of `w` and the digit (on the iCE40 about 30
    LUT4s per product instead of the 38 of Yosys's `*`; the digits' decoding is shared by
    products of the same `a`)."""
    a = Value.cast(a)
    w = Value.cast(w).as_signed()
    a0, a1, a2, a3 = a[0], a[1], a[2], a[3]
    digits = (
        (a1, a0, a1 & ~a0),                                   # neg, |d| = 1, |d| = 2
        (a3 & ~(a2 & a1), a2 ^ a1, ~(a2 ^ a1) & (a3 ^ a2)),
    )
    parts = []
    for neg, one, two in digits:
        magnitude = Mux(one, w, Mux(two, w << 1, 0))          # signed, 6 bits
        parts.append(magnitude ^ Cat(*[neg] * 6).as_signed())
    (neg0, _, _), (neg1, _, _) = digits
    return parts[0] + (parts[1] << 2) + neg0 + (neg1 << 2)


def add_shifted(low: Value, high: Value, shift: int) -> Value:
    """low + (high << shift) for signed values, without an adder over the `shift` low bits
    of `low` (they pass through): the carry chain is `shift` bits shorter."""
    low = Value.cast(low)
    return Cat(low[:shift], (low >> shift) + high).as_signed()


def shift_right_rounding(value: Value, amount: Value,
                         max_amount: int) -> tuple[Value, Value, Value]:
    """`value >> amount` (arithmetic when `value` is signed) with the bits it drops.

    Returns (kept, round_bit, sticky): round_bit is the most significant dropped bit and
    sticky the OR of the others, both as if `value` were extended with copies of its sign
    bit, so they are exact for every `amount` up to `max_amount` (the caller clamps).
    Combinational."""
    value = Value.cast(value)
    amount = Value.cast(amount)
    is_signed = value.shape().signed
    width = max(len(value), max_amount)
    fill = value[-1] if is_signed else Const(0, 1)
    bits = Cat(value, *([fill] * (width - len(value))))
    kept = (bits.as_signed() if is_signed else bits) >> amount
    # Bit i is the round bit when i + 1 == amount and a sticky bit when i + 1 < amount;
    # only bits an amount up to `max_amount` (and within its shape) reaches are looked at.
    reach = min(width, max_amount, (1 << len(amount)) - 1)
    if reach == 0:
        return kept, Const(0, 1), Const(0, 1)
    round_mask = Cat(amount == index + 1 for index in range(reach))
    round_bit = (bits[:reach] & round_mask) != 0
    if reach == 1:
        return kept, round_bit, Const(0, 1)
    sticky_mask = Cat(amount > index + 1 for index in range(reach - 1))
    return kept, round_bit, (bits[:reach - 1] & sticky_mask) != 0


def staged_shift_right_rounding(stage: Callable[[Value, str], Value], value: Value,
                                amount: Value, max_amount: int,
                                name: str) -> tuple[Value, Value, Value]:
    """`shift_right_rounding` in two pipeline stages: the shift by the multiple of 8 in
    `amount` (with the bits it drops), then `stage` registers, then the shift by the rest.

    `stage(value, name)` makes one pipeline register (the caller's stage registers must
    carry everything else one stage further, like these). Returns (kept, round_bit,
    sticky) of the second stage, equal to `shift_right_rounding(value, amount,
    max_amount)` one stage later."""
    amount = Value.cast(amount)
    coarse, dropped_top, dropped_rest = shift_right_rounding(
        value, Cat(Const(0, 3), amount[3:]), max_amount)
    coarse = stage(coarse, f"{name}_coarse")
    dropped_top = stage(dropped_top, f"{name}_dropped_top")
    dropped_rest = stage(dropped_rest, f"{name}_dropped_rest")
    fine = stage(amount[:3], f"{name}_fine")
    kept, round_bit, sticky = shift_right_rounding(coarse, fine, 8)
    # With no fine shift the coarse shift's top dropped bit rounds; otherwise everything
    # the coarse shift dropped lies below the round bit.
    return (kept, Mux(fine == 0, dropped_top, round_bit),
            Mux(fine == 0, dropped_rest, sticky | dropped_top | dropped_rest))


def zero_extend(value: Value, width: int) -> Value:
    """`value` as an unsigned value of `width` (>= its own) bits."""
    value = Value.cast(value)
    return Cat(value, Const(0, width - len(value)))


def register(module: Module, value: Value, name: str) -> Signal:
    """A pipeline register of `module`'s sync domain loaded with `value` every cycle.

    Data registers have no reset (only the valid bits of a pipeline need one); wrap
    `module` in an `EnableInserter` to make every register of a stage advance together."""
    value = Value.cast(value)
    reg = Signal(value.shape(), name=name, reset_less=True)
    module.d.sync += reg.eq(value)
    return reg


class StalledPipeline:
    """Flow control of a pipeline of `depth` register stages that stall together.

    `advance` is high when the output register is empty or being read; every register
    (wrap the datapath module in `EnableInserter(advance)`) then moves one stage. The input
    is ready exactly when the pipeline advances, so throughput is one element per cycle and
    `valid` of the output never depends on its `ready`; the input's `ready` does depend
    combinationally on the output's (there is no skid buffer)."""

    def __init__(self, module: Module, datapath: Module, i_stream: stream.Interface,
                 o_stream: stream.Interface, depth: int) -> None:
        self.advance = Signal(name="advance")
        module.d.comb += [
            self.advance.eq(~o_stream.valid | o_stream.ready),
            i_stream.ready.eq(self.advance),
        ]
        valid = i_stream.valid
        self.valid: list[Signal] = []
        for stage in range(1, depth + 1):
            reg = Signal(name=f"valid_{stage}")
            datapath.d.sync += reg.eq(valid)
            self.valid.append(reg)
            valid = reg
        module.d.comb += o_stream.valid.eq(valid)
        self.busy = Signal(name="busy")
        module.d.comb += self.busy.eq(Cat(self.valid) != 0)

    @classmethod
    def for_unit(cls, module: Module, unit: object, depth: int
                 ) -> tuple[Module, StalledPipeline]:
        """The pipeline between `unit.i_stream` and `unit.o_stream`, driving `unit.busy`:
        (the datapath module to fill with the stages, the pipeline). Finish with
        `insert_datapath`."""
        datapath = Module()
        pipe = cls(module, datapath, unit.i_stream, unit.o_stream, depth)
        module.d.comb += unit.busy.eq(pipe.busy)
        return datapath, pipe

    def insert_datapath(self, module: Module, datapath: Module) -> None:
        """Add `datapath` to `module` as submodule `datapath`, its registers enabled by
        `advance`."""
        module.submodules.datapath = EnableInserter(self.advance)(datapath)


class SkidBuffer(wiring.Component):
    """A stream register whose `ready` is a register too: it cuts every combinational path
    through a stream, forward (valid, payload) and backward (ready).

    `o_stream` comes from an output register; a beat accepted while the output is held
    waits in a second (skid) register, and `i_stream.ready` is low exactly while that one
    is full. Throughput one beat per cycle, latency 1 cycle; `busy` is high while a beat is
    inside."""

    def __init__(self, layout: object) -> None:
        super().__init__(unit_members(layout, layout))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        i, o = self.i_stream, self.o_stream
        skid = Signal.like(i.payload, reset_less=True)
        skid_valid = Signal()
        # The data registers have no reset (only the valid bits need one): the reset net
        # stays off their hundreds of flip-flops.
        out = Signal.like(i.payload, reset_less=True)
        m.d.comb += [i.ready.eq(~skid_valid), self.busy.eq(o.valid | skid_valid),
                     o.payload.eq(out)]
        # The skid register copies every beat accepted (it is only read while
        # `skid_valid`), so its enable does not depend on `o_stream.ready`.
        with m.If(i.valid & ~skid_valid):
            m.d.sync += skid.eq(i.payload)
        with m.If(~o.valid | o.ready):      # the output register takes a beat
            with m.If(skid_valid):
                m.d.sync += [out.eq(skid), o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [out.eq(i.payload), o.valid.eq(i.valid)]
        with m.Elif(i.valid & ~skid_valid):
            m.d.sync += skid_valid.eq(1)
        return m


def unit_members(input_layout: object, output_layout: object, **extra: object) -> dict:
    """The signature members of a streaming unit: `i_stream`, `o_stream`, the unit's own
    `extra` members, then `busy`."""
    return {
        "i_stream": In(stream.Signature(input_layout)),
        "o_stream": Out(stream.Signature(output_layout)),
        **extra,
        "busy": Out(1),
    }


class SerialMultiplier(wiring.Component):
    """Unsigned `a * b`, one bit of `a` per cycle: a shift-and-add multiplier for
    arithmetic that is not on a datapath (about `b_width` LUTs and `a_width + 2 b_width`
    flip-flops, against a combinational multiplier's `a_width * b_width` LUTs or a DSP
    block, and no long combinational path).

    `start` (one cycle) latches `a` and `b`; `busy` is high for the next `a_width` cycles,
    and from the cycle it falls `product` holds `a * b` until the next `start`."""

    def __init__(self, a_width: int, b_width: int) -> None:
        self._a_width = a_width
        self._b_width = b_width
        super().__init__({
            "start": In(1),
            "a": In(a_width),
            "b": In(b_width),
            "product": Out(a_width + b_width),
            "busy": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        # `work` holds the running sum above the bits of `a` not yet used; every step adds
        # `b` to the top when the lowest remaining bit of `a` is set and shifts right.
        work = Signal(self._a_width + self._b_width)
        b = Signal(self._b_width)
        steps = Signal(range(self._a_width + 1))
        top = work[self._a_width:]
        addend = Mux(work[0], b, 0)
        summed = Signal(self._b_width + 1)
        m.d.comb += [
            summed.eq(top + addend),
            self.product.eq(work),
            self.busy.eq(steps != 0),
        ]
        with m.If(self.start):
            m.d.sync += [work.eq(self.a), b.eq(self.b), steps.eq(self._a_width)]
        with m.Elif(self.busy):
            m.d.sync += [work.eq(Cat(work[1:self._a_width], summed)), steps.eq(steps - 1)]
        return m
