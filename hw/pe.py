"""The precision-scalable, weight-stationary processing element of the systolic array.

One PE holds one weight byte and multiplies it by the activation of its row every cycle:

* 8-bit-weight modes (A8W8, MXINT8): the byte is one int8 weight; one int8 x int8 MAC
  per cycle, into lane 0.
* 4-bit-weight modes (A8W4, A4W4, MXINT4): the byte holds two int4 weights of two
  different output columns, lane 0 (low nibble, column n) and lane 1 (high nibble,
  column n + C); two MACs per cycle, the same activation times each weight, into two
  partial sums. 4-bit activations arrive sign-extended to 8 bits, so the PE treats A8W4
  and A4W4 alike.

How one multiplier serves both (multiplier="split", the default). With w = 16 * h + l,
h = signed high nibble and l = unsigned low nibble, an 8x8 product is

    a * w = 16 * (a * h) + a * l.

The PE computes the two 8x4-sized products p_hi = a * h (signed 4-bit h) and
p_lo = a * l', where l' is the low nibble read as *unsigned* in 8-bit modes and as
*signed* in 4-bit modes (a 5-bit signed operand either way). In 8-bit modes
lane 0 = p_lo + 16 * p_hi (the shift-add that finishes any 8x8 multiplier); in 4-bit
modes p_lo and p_hi are the two lane products. That is the partial-product array of one
8x8 multiplier (plus one row for the signed low nibble) and one extra adder for lane 1.
On LUT fabric it costs about what an int8-only PE costs (the lane-1 partial-sum
register aside); with `-dsp` synthesis Yosys maps the two 8x4 products to two DSP blocks.

multiplier="packed" serves DSP-rich targets instead: one 8x16 product
a * (4096 * h + (l + 8)) yields a * h in its upper bits and a * l + 8a in its lower 12
bits (exactly separable because a * (l + 8) fits 12 signed bits); 8a is subtracted in
the lane-0 adder. In 8-bit modes the same multiplier computes a * w. One DSP block
(SB_MAC16, MULT18X18D) per PE in every mode, like an int8-only PE, plus a few dozen LUTs
of lane logic; on LUT fabric it is about 1.5 times the split variant.

`hw.resources` reports the cells of both variants.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, Value, signed
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from golden.config import MODE_INFO, MODES

__all__ = [
    "Mode", "WeightLayout", "ProcessingElement", "MULTIPLIERS", "product_range",
    "psum_shape", "mode_lanes",
]


class Mode(enum.Enum, shape=3):
    """Compute mode on the wires; the same order as `golden.config.MODES`."""

    A8W8 = 0
    A8W4 = 1
    A4W4 = 2
    MXINT8 = 3
    MXINT4 = 4

    @classmethod
    def from_name(cls, name: str) -> Mode:
        """The member for a `golden.config` mode name ("a8w8", ...)."""
        if name not in MODE_INFO:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {name!r}")
        return cls[name.upper()]


assert [member.name.lower() for member in Mode] == list(MODES), "Mode and MODES disagree"

WeightLayout = data.UnionLayout({
    "int8": signed(8),
    "int4": data.ArrayLayout(signed(4), 2),
})
"""One PE's weight byte: one int8 weight, or two int4 weights (element 0 = lane 0 in the
low nibble, the ONNX packing order)."""

MULTIPLIERS = ("split", "packed")


def mode_lanes(modes: tuple[str, ...]) -> int:
    """Lanes (MACs per PE per cycle) the hardware needs for the modes it is built with."""
    return max(MODE_INFO[mode].lanes for mode in modes)


def product_range(lanes_mode: int) -> tuple[int, int]:
    """Inclusive range of one product: int8 x int8 (1 lane) or int8 x int4 (2 lanes).

    Activations are int8 in every mode (int4 activations are a subset), so a 4-bit lane
    product lies in [-128 * 7 ... 127 * -8, -128 * -8] = [-1016, 1024]."""
    weight_bits = 8 if lanes_mode == 1 else 4
    low_a, high_a = -128, 127
    low_w, high_w = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    corners = [a * w for a in (low_a, high_a) for w in (low_w, high_w)]
    return min(corners), max(corners)


def psum_shape(products: int, lane: int = 0) -> Shape:
    """Smallest shape holding any sum of `products` products of `lane`.

    Lane 0 carries int8 x int8 products (it also carries the narrower 4-bit-lane products);
    lane 1 only int8 x int4 products. `products` = 0 gives a zero-width shape."""
    low, high = product_range(1 if lane == 0 else 2)
    return Shape.cast(range(low * products, high * products + 1))


def _psum_layout(products: int, lanes: int) -> data.StructLayout:
    return data.StructLayout({f"lane{lane}": psum_shape(products, lane)
                              for lane in range(lanes)})


class ProcessingElement(wiring.Component):
    """Weight-stationary MAC cell with a double-buffered (shadow) weight register.

    Parameters
    ----------
    modes
        Modes the PE is built for (a subset of `golden.config.MODES`); with no 4-bit-weight
        mode there is one lane and no lane-1 logic.
    accumulated
        Products already summed into `psum_in` (the PE's row index in the array); it sets
        the exact widths of `psum_in` and `psum_out`.
    multiplier
        "split" (two 8x4 products sharing one 8x8 partial-product array; best on LUT
        fabric) or "packed" (one 8x16 product, one DSP block); see the module docstring.

    Ports
    -----
    activation : In(signed(8))
        The row's activation (int4 activations sign-extended).
    mode : In(Mode)
        Format of the *active* weight this cycle; selects one or two lanes.
    weight : In(WeightLayout)
        Weight byte for the shadow register.
    load : In(1)
        Write `weight` into the shadow register at the clock edge.
    swap : In(1)
        Copy the shadow register into the active register at the clock edge (if `load` is
        high in the same cycle, the shadow value *before* the load is the one copied).
    psum_in : In(StructLayout({"lane0": ..., "lane1": ...}))
        Partial sums from the PE above (lane1 only when the PE has two lanes); absent
        when `accumulated` is 0.
    psum_out : Out(same layout, one product wider)
        Registered: psum_out(t+1) = psum_in(t) + activation(t) * active_weight(t), per
        lane. In single-lane modes lane 1 passes psum_in.lane1 through unchanged (zero in
        an array), so no stale product leaks in.

    Latency `latency` = 1 cycle from `activation`/`psum_in` to `psum_out`; a `swap` in
    cycle t makes the new weight active from cycle t+1; throughput one (or two, in 4-bit
    modes) MAC per cycle. All registers are reset-less datapath state (weights start at 0).
    """

    def __init__(self, modes: tuple[str, ...] = MODES, *, accumulated: int = 0,
                 multiplier: str = "split") -> None:
        for mode in modes:
            if mode not in MODE_INFO:
                raise ValueError(f"modes contains {mode!r}; known modes are {', '.join(MODES)}")
        if not isinstance(accumulated, int) or accumulated < 0:
            raise ValueError(
                f"accumulated must be a non-negative integer, not {accumulated!r}")
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"multiplier must be 'split' or 'packed', not {multiplier!r}")
        self._modes = tuple(modes)
        self._accumulated = accumulated
        self._multiplier = multiplier
        self._lanes = mode_lanes(self._modes)
        members = {
            "activation": In(signed(8)),
            "mode": In(Mode),
            "weight": In(WeightLayout),
            "load": In(1),
            "swap": In(1),
            "psum_out": Out(_psum_layout(accumulated + 1, self._lanes)),
        }
        if accumulated > 0:  # the first row has no partial sums to add
            members["psum_in"] = In(_psum_layout(accumulated, self._lanes))
        super().__init__(members)

    @property
    def lanes(self) -> int:
        """MACs per cycle in the 4-bit-weight modes (1 when none is built)."""
        return self._lanes

    @property
    def accumulated(self) -> int:
        """Products already summed into `psum_in`."""
        return self._accumulated

    @property
    def latency(self) -> int:
        """Cycles from `activation` and `psum_in` to `psum_out`."""
        return 1

    @property
    def multiplier(self) -> str:
        return self._multiplier

    def elaborate(self, platform: object) -> Module:
        m = Module()

        shadow = Signal(WeightLayout, reset_less=True)
        active = Signal(WeightLayout, reset_less=True)
        with m.If(self.load):
            m.d.sync += shadow.eq(self.weight)
        with m.If(self.swap):
            m.d.sync += active.eq(shadow)

        a = self.activation
        if self._lanes == 1:
            products = [a * active.int8]
        else:
            two_lanes = Signal()
            m.d.comb += two_lanes.eq(Value.cast(self.mode).matches(
                *(Mode.from_name(name) for name in self._modes if MODE_INFO[name].lanes == 2)))
            if self._multiplier == "split":
                products = self._split_products(m, a, active, two_lanes)
            else:
                products = self._packed_products(m, a, active, two_lanes)

        psum_next = Signal(_psum_layout(self._accumulated + 1, self._lanes), reset_less=True)
        for lane, product in enumerate(products):
            if self._accumulated > 0:
                product = self.psum_in[f"lane{lane}"] + product
            m.d.sync += psum_next[f"lane{lane}"].eq(product)
        # Registers are internal signals driven onto the port (not the port itself): Yosys
        # 0.70's abc9 trips over port bits aliased by lib.data field names.
        m.d.comb += self.psum_out.eq(psum_next)
        return m

    @staticmethod
    def _split_products(m: Module, a: Value, weight: data.View,
                        two_lanes: Value) -> list[Value]:
        high = weight.int4[1]                               # signed [-8, 7]
        # Low nibble: signed in 4-bit modes, unsigned [0, 15] in 8-bit modes. Mux of a
        # signed(4) and an unsigned(4) value is a signed(5) value either way.
        low = Mux(two_lanes, weight.int4[0], weight.int4[0].as_unsigned())
        product_low = Signal(signed(13))
        product_high = Signal(signed(12))
        m.d.comb += [product_low.eq(a * low), product_high.eq(a * high)]
        return [
            Mux(two_lanes, product_low, product_low + (product_high << 4)),
            Mux(two_lanes, product_high, 0),
        ]

    @staticmethod
    def _packed_products(m: Module, a: Value, weight: data.View,
                         two_lanes: Value) -> list[Value]:
        # 4-bit modes: operand 4096 * h + (l + 8); l + 8 in [0, 15] is l with its sign bit
        # flipped. 8-bit modes: the int8 weight itself. Both fit 16 signed bits.
        operand = Signal(signed(16))
        bits = Value.cast(weight)
        with m.If(two_lanes):
            m.d.comb += operand.eq(((bits[4:8].as_signed()) << 12) | (bits[0:4] ^ 0b1000))
        with m.Else():
            m.d.comb += operand.eq(weight.int8)
        product = Signal(signed(24))
        m.d.comb += product.eq(a * operand)
        # product = 4096 * (a * h) + a * (l + 8) with a * (l + 8) in [-1920, 1905]: the low
        # 12 bits read as signed are a * (l + 8); the rest, plus the borrow of a negative
        # low part, is a * h.
        low_part = product[0:12].as_signed()
        high_part = product[12:24].as_signed() + product[11]
        return [
            Mux(two_lanes, low_part - (a << 3), product),
            Mux(two_lanes, high_part, 0),
        ]
