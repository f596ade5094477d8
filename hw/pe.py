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

multiplier="lut" computes the same two products as sums of shifted activations, so
synthesis never maps them to DSP blocks: on the ECP5 the PE's multipliers and adders then
sit together in the fabric, where routes to and from the DSP columns would dominate a
100 MHz clock period.

multiplier="packed" serves DSP-rich targets instead: one 8x16 product
a * (4096 * h + (l + 8)) yields a * h in its upper bits and a * l + 8a in its lower 12
bits (exactly separable because a * (l + 8) fits 12 signed bits); 8a is subtracted in
the lane-0 adder. In 8-bit modes the same multiplier computes a * w. One DSP block
(SB_MAC16, MULT18X18D) per PE in every mode, like an int8-only PE, plus a few dozen LUTs
of lane logic; on LUT fabric it is about 1.5 times the split variant.

multiplier="ice40-sb-mac16" targets the iCE40 UltraPlus, whose 8 SB_MAC16 blocks Yosys
only infers as 16x16 multipliers. Each block holds two signed 8x8 multipliers (MODE_8x8,
A_SIGNED = B_SIGNED = 1, both products combinational: TOPOUTPUT_SELECT =
BOTOUTPUT_SELECT = 2); `Ice40Mac16Pair` instantiates one and serves two PEs, which hand it
their operands through `dsp_a`/`dsp_b` and take the product back on `dsp_product`. The
DSP half computes lane 0: a * w in 8-bit modes, a * l (signed low nibble) in 4-bit modes;
a small LUT multiplier computes lane 1, a * h. So 16 PEs (a 4 x 4 array) use all 8
blocks for 16 int8 MACs or 32 4-bit MACs per cycle.

multiplier="ecp5-mult18" targets the ECP5, whose MULT18X18D blocks Yosys infers without
their registers (a product then crosses the route to and from the DSP row in one clock
period). `Ecp5Mult18` instantiates one per PE with its input, pipeline and output
registers: the packed product above, with operand a * (4096 * h + l) (l signed) in the
4-bit modes, so a * l is the low 12 bits read as signed and a * h the rest plus the borrow
of a negative low part. The lanes are separated in a register of the fabric and added to
the partial sums in the next stage (`MULT18_PE_STAGES` = 5 stages per PE).

`hw.resources` reports the cells of the behavioural variants (`MULTIPLIERS`).
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import (
    ClockSignal,
    Const,
    Instance,
    Module,
    Mux,
    Shape,
    ShapeLike,
    Signal,
    Value,
    signed,
)
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from golden.config import (
    INT4_PACKINGS,
    MODE_INFO,
    MODES,
    MULT18_PE_STAGES,
    PE_STAGES,
    mode_info,
)
from golden.config import MULTIPLIERS as ALL_MULTIPLIERS
from golden.protocol import CONFIGURE, mode_code

from .arith import booth_multiply_4x4, shift_add_multiply

__all__ = [
    "Mode", "WeightLayout", "ProcessingElement", "Ice40Mac16Pair", "Ecp5Mult18", "MULTIPLIERS",
    "DSP_MULTIPLIERS", "PAIRED_DSP_MULTIPLIERS", "check_multiplier", "product_range",
    "psum_shape", "mode_lanes",
]


def _mode_enum() -> type[enum.Enum]:
    """`Mode`: one member per `golden.config.MODES` entry (A8W8, ...), its value the mode's
    wire code (`golden.protocol.mode_code`), as wide as CONFIGURE's mode field."""

    def from_name(cls: type[enum.Enum], name: str) -> enum.Enum:
        """The member for a `golden.config` mode name ("a8w8", ...)."""
        if name not in MODE_INFO:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {name!r}")
        return cls[name.upper()]

    width = CONFIGURE[0]["mode"].width
    namespace = enum.EnumType.__prepare__("Mode", (enum.Enum,), shape=width)
    namespace.update({"__module__": __name__, "__qualname__": "Mode",
                      "__doc__": "Compute mode on the wires (the codes of docs/protocol.md).",
                      "from_name": classmethod(from_name)})
    for name in MODES:
        namespace[name.upper()] = mode_code(name)
    return enum.EnumType("Mode", (enum.Enum,), namespace, shape=width)


Mode = _mode_enum()


WeightLayout = data.UnionLayout({
    "int8": signed(8),
    "int4": data.ArrayLayout(signed(4), 2),
})
"""One PE's weight byte: one int8 weight, or two int4 weights (element 0 = lane 0 in the
low nibble, the ONNX packing order)."""

MULTIPLIERS = ("split", "packed", "lut")
"""The behavioural multipliers (written as `*`): any synthesis tool, and the Amaranth
simulator."""
DSP_MULTIPLIERS = ("ice40-sb-mac16", "ecp5-mult18")
"""Multipliers that instantiate vendor DSP primitives (Verilator with the primitive's
simulation model, or the vendor's synthesis)."""
PAIRED_DSP_MULTIPLIERS = ("ice40-sb-mac16",)
"""DSP multipliers whose block serves two PEs, which hand it their operands (`dsp_a`,
`dsp_b`, `dsp_product`); "ecp5-mult18" instantiates its block inside the PE."""


def check_multiplier(multiplier: object) -> None:
    if multiplier not in ALL_MULTIPLIERS:
        raise ValueError(f"multiplier must be one of {', '.join(map(repr, ALL_MULTIPLIERS))}, "
                         f"not {multiplier!r}")


def mode_lanes(modes: tuple[str, ...], int4_packing: str = "columns") -> int:
    """Output lanes per PE the hardware needs for the modes it is built with."""
    return max(mode_info(mode, int4_packing).lanes for mode in modes)


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
        fabric), "lut" (the same products as explicit shift-and-add sums: never a DSP
        block), "packed" (one 8x16 product, one DSP block), "ice40-sb-mac16" (lane 0
        from half an external SB_MAC16, see `Ice40Mac16Pair`) or "ecp5-mult18" (the packed
        product on a registered MULT18X18D, `Ecp5Mult18`); see the module docstring.

    stages
        Register stages (`golden.config.PE_STAGES`): 1, the product and the partial-sum
        addition in one cycle; 2, the multiplier outputs are registered and added in the
        next cycle (for fast clocks: the multiplier and the adder in separate stages).
        `MULT18_PE_STAGES` (5) with multiplier "ecp5-mult18", and only then.
    int4_packing
        "columns" or "k-pairs" (`golden.config.ArrayConfig.int4_packing`; "k-pairs" only
        with multiplier "ice40-sb-mac16"). With "k-pairs" and A4W4 built, an A4W4 tile's
        activation and weight bytes hold two int4 K-elements each (low nibble: K-element
        2j, high nibble: 2j + 1) and the PE computes a_lo * w_lo + a_hi * w_hi into its one
        lane: the DSP half multiplies the sign-extended low nibbles, a 4 x 4 LUT multiplier
        the high ones, and the DSP block's adder sums them (`dsp_addend`).
    dsp_registers
        Only with a DSP multiplier: the DSP block holds the PE's registers next to it
        instead of the fabric. Its operand register holds `dsp_b` (load it at `swap`, see
        `Ice40Mac16Pair`), and where the PE would register the raw product with nothing
        added (`stages` 2, or the first row with `stages` 1) the block's product register
        does. On the iCE40 these registers would otherwise take one logic cell per bit.

    Ports
    -----
    activation : In(signed(8))
        The row's activation (int4 activations sign-extended).
    weight : In(WeightLayout)
        Weight byte for the shadow register.
    load : In(1)
        Write `weight` into the shadow register at the clock edge.
    swap : In(1)
        Make the shadow weight the active one at the clock edge (if `load` is high in the
        same cycle, the shadow value *before* the load is the one that becomes active).
    shadow_pairs : In(1)
        Only with "k-pairs" when A4W4 and another mode are built: the shadow weight is an
        A4W4 one (sampled at `swap`, like `shadow_two_lanes`).
    shadow_two_lanes : In(1)
        Only when a two-lane (4-bit-weight, "columns") mode is built: the *shadow* weight
        is in a 4-bit-weight mode (sampled at `swap`, with the shadow weight, so the
        multipliers' operands are formed before the tile becomes active and no mode logic
        precedes them).
    psum_in : In(StructLayout({"lane0": ..., "lane1": ...}))
        Partial sums from the PE above (lane1 only when the PE has two lanes); absent
        when `accumulated` is 0.
    psum_out : Out(same layout, one product wider)
        Registered: psum_out(t + stages) = psum_in(t + stages - 1) + activation(t) *
        active_weight(t), per lane. In single-lane modes lane 1 passes psum_in.lane1
        through unchanged (zero in an array), so no stale product leaks in.
    dsp_a, dsp_b : Out(signed(8)); dsp_product : In(signed(16))
        Only with multiplier="ice40-sb-mac16": the operands of the PE's 8x8 DSP half
        and its product (connect them to one half of an `Ice40Mac16Pair`). Without
        `dsp_registers`, `dsp_b` comes from a register and the product is combinational;
        with them, `dsp_b` is the shadow tile's operand, which the block loads at `swap`,
        and the product is registered by the block when `dsp_product_registered`.
    enable : In(1)
        Only with multiplier="ecp5-mult18": the clock enable of the MULT18X18D's registers
        (the array's `advance`: the PE's other registers are enabled by the array).
    dsp_addend : Out(signed(16))
        Only with "k-pairs": what the DSP half's adder adds to its product (the LUT product
        of the high nibbles; 0 in other modes); `dsp_product` is then that sum.

    Latency `latency` = `stages` cycles from `activation` to `psum_out` (psum_in is added
    in the last stage, so a column of PEs adds one cycle per row whatever `stages` is); a
    `swap` in cycle t makes the new weight active from cycle t+1; throughput one (or two,
    in 4-bit modes) MAC per cycle. All registers are reset-less datapath state (weights
    start at 0).
    """

    def __init__(self, modes: tuple[str, ...] = MODES, *, accumulated: int = 0,
                 multiplier: str = "split", stages: int = 1,
                 dsp_registers: bool = False, int4_packing: str = "columns") -> None:
        for mode in modes:
            if mode not in MODE_INFO:
                raise ValueError(f"modes contains {mode!r}; known modes are {', '.join(MODES)}")
        if not isinstance(accumulated, int) or accumulated < 0:
            raise ValueError(
                f"accumulated must be a non-negative integer, not {accumulated!r}")
        check_multiplier(multiplier)
        if multiplier == "ecp5-mult18":
            if stages != MULT18_PE_STAGES:
                raise ValueError(f"stages must be {MULT18_PE_STAGES} with multiplier "
                                 f"'ecp5-mult18', not {stages!r}")
        elif stages not in PE_STAGES:
            raise ValueError(f"stages must be 1 or 2, not {stages!r}")
        if dsp_registers and multiplier not in PAIRED_DSP_MULTIPLIERS:
            raise ValueError(f"dsp_registers needs a DSP multiplier "
                             f"({', '.join(PAIRED_DSP_MULTIPLIERS)}), not {multiplier!r}")
        if int4_packing not in INT4_PACKINGS:
            raise ValueError(f"int4_packing must be 'columns' or 'k-pairs', not "
                             f"{int4_packing!r}")
        self._modes = tuple(modes)
        self._pairs = any(mode_info(mode, int4_packing).k_pack == 2 for mode in self._modes)
        if self._pairs and multiplier not in PAIRED_DSP_MULTIPLIERS:
            raise ValueError(f"int4_packing 'k-pairs' needs a DSP multiplier "
                             f"({', '.join(PAIRED_DSP_MULTIPLIERS)}), not {multiplier!r}")
        self._pairs_only = self._pairs and self._modes == ("a4w4",)
        self._accumulated = accumulated
        self._multiplier = multiplier
        self._stages = stages
        self._lanes = mode_lanes(self._modes, int4_packing)
        self._dsp_registers = dsp_registers
        members = {
            "activation": In(signed(8)),
            "weight": In(WeightLayout),
            "load": In(1),
            "swap": In(1),
            "psum_out": Out(_psum_layout(accumulated + 1, self._lanes)),
        }
        if self._lanes == 2:
            members["shadow_two_lanes"] = In(1)
        if self._pairs and not self._pairs_only:
            members["shadow_pairs"] = In(1)
        if accumulated > 0:  # the first row has no partial sums to add
            members["psum_in"] = In(_psum_layout(accumulated, self._lanes))
        if multiplier in PAIRED_DSP_MULTIPLIERS:
            members["dsp_a"] = Out(signed(8))
            members["dsp_b"] = Out(signed(8))
            members["dsp_product"] = In(signed(16))
        if multiplier == "ecp5-mult18":
            members["enable"] = In(1)
        if self._pairs:
            members["dsp_addend"] = Out(signed(16))
        super().__init__(members)

    @property
    def lanes(self) -> int:
        """MACs per cycle in the 4-bit-weight modes (1 when none is built)."""
        return self._lanes

    @property
    def pairs(self) -> bool:
        """A4W4 is built with K-pairs: `dsp_addend` exists."""
        return self._pairs

    @property
    def accumulated(self) -> int:
        """Products already summed into `psum_in`."""
        return self._accumulated

    @property
    def latency(self) -> int:
        """Cycles from `activation` and `psum_in` to `psum_out`: the register stages."""
        return self._stages

    @property
    def multiplier(self) -> str:
        return self._multiplier

    @property
    def dsp_product_registered(self) -> bool:
        """The DSP block registers `dsp_product` (with `dsp_registers`, where the PE would
        register the raw product itself: two stages, or the first row)."""
        return self._dsp_registers and (self._stages == 2 or self._accumulated == 0)

    def elaborate(self, platform: object) -> Module:
        m = Module()

        shadow = Signal(WeightLayout, reset_less=True)
        with m.If(self.load):
            m.d.sync += shadow.eq(self.weight)
        # Everything the active weight decides is formed when the tile swaps in, from the
        # shadow weight and its mode, so no mode logic sits between the registers and the
        # multipliers.
        two_lanes: Value = Const(0)
        if self._lanes == 2:
            two_lanes = Signal(name="two_lanes", reset_less=True)
            with m.If(self.swap):
                m.d.sync += two_lanes.eq(self.shadow_two_lanes)

        a = self.activation
        if self._multiplier == "ecp5-mult18":
            self._mult18(m, a, shadow, two_lanes)
            return m
        if self._multiplier in DSP_MULTIPLIERS:
            raw, finish = self._dsp_products(m, a, shadow)
        elif self._multiplier in ("split", "lut"):
            raw, finish = self._split_products(m, a, shadow)
        else:
            raw, finish = self._packed_products(m, a, shadow)
        if self._stages == 2:
            # The products are registered (with what finishing them needs) and summed in
            # the next cycle: the multiplier and the partial-sum adder in separate stages.
            # A product the DSP block registers arrives registered already.
            staged = []
            for index, value in enumerate([*raw, a, two_lanes]):
                if index == 0 and self.dsp_product_registered:
                    staged.append(value)
                    continue
                register = Signal.like(Value.cast(value), name=f"stage_{index}",
                                       reset_less=True)
                m.d.sync += register.eq(value)
                staged.append(register)
            *raw, a, two_lanes = staged
        products = finish(raw, a, two_lanes)

        psum_next = Signal(_psum_layout(self._accumulated + 1, self._lanes), reset_less=True)
        for lane, product in enumerate(products):
            if self._accumulated > 0:
                product = self.psum_in[f"lane{lane}"] + product
            if lane == 0 and self._stages == 1 and self.dsp_product_registered:
                m.d.comb += psum_next.lane0.eq(product)   # the block's product register
            else:
                m.d.sync += psum_next[f"lane{lane}"].eq(product)
        # Registers are internal signals driven onto the port (not the port itself): Yosys
        # 0.70's abc9 trips over port bits aliased by lib.data field names.
        m.d.comb += self.psum_out.eq(psum_next)
        return m

    def _mult18(self, m: Module, a: Value, shadow: data.View, two_lanes: Value) -> None:
        """The PE on a registered MULT18X18D (`Ecp5Mult18`, `latency` 3): its operand
        formed at the swap, the lanes separated in the next stage, added to the partial sums
        in the one after."""
        if self._lanes == 1:
            operand = self._on_swap(m, signed(8), "operand", shadow.int8)
        else:
            # 4-bit modes: 4096 * h + l, both nibbles signed; 8-bit modes: the int8 weight.
            operand = self._on_swap(m, signed(17), "operand",
                                    Mux(self.shadow_two_lanes,
                                        (shadow.int4[1] << 12) + shadow.int4[0], shadow.int8))
        m.submodules.mult = mult = Ecp5Mult18()
        m.d.comb += [mult.a.eq(a), mult.b.eq(operand), mult.enable.eq(self.enable)]
        # The two-lane flag of the product the block outputs: `Ecp5Mult18.latency` cycles
        # after the flag of its operands.
        for stage in range(Ecp5Mult18.latency):
            delayed = Signal(name=f"two_lanes_{stage + 1}", reset_less=True)
            m.d.sync += delayed.eq(two_lanes)
            two_lanes = delayed
        product = mult.product
        # product = 4096 * (a * h) + a * l with a * l in [-1016, 1024]: the low 12 bits read
        # as signed are a * l; the rest, plus the borrow of a negative low part, is a * h.
        lane_products = [Signal(psum_shape(1, 0), name="lane0_product", reset_less=True)]
        if self._lanes == 1:
            m.d.sync += lane_products[0].eq(product[:16].as_signed())
        else:
            lane_products.append(Signal(psum_shape(1, 1), name="lane1_product",
                                        reset_less=True))
            m.d.sync += [
                lane_products[0].eq(Mux(two_lanes, product[:12].as_signed(),
                                        product[:16].as_signed())),
                lane_products[1].eq(Mux(two_lanes,
                                        product[12:24].as_signed() + product[11], 0)),
            ]
        psum_next = Signal(_psum_layout(self._accumulated + 1, self._lanes), reset_less=True)
        for lane, lane_product in enumerate(lane_products):
            total = lane_product
            if self._accumulated > 0:
                total = self.psum_in[f"lane{lane}"] + lane_product
            m.d.sync += psum_next[f"lane{lane}"].eq(total)
        m.d.comb += self.psum_out.eq(psum_next)

    def _on_swap(self, m: Module, shape: ShapeLike, name: str, value: Value) -> Signal:
        """A register loaded with `value` (formed from the shadow weight) at a swap."""
        register = Signal(shape, name=name, reset_less=True)
        with m.If(self.swap):
            m.d.sync += register.eq(value)
        return register

    def _shadow_two_lanes(self) -> Value:
        return self.shadow_two_lanes if self._lanes == 2 else Const(0)

    def _dsp_operand(self, m: Module, operand: Value) -> Signal:
        """The DSP half's weight operand: loaded by the block at the swap (with
        `dsp_registers`), else a register of the PE."""
        if self._dsp_registers:
            dsp_operand = Signal(signed(8), name="dsp_operand")   # loaded by the block
            m.d.comb += dsp_operand.eq(operand)
            return dsp_operand
        return self._on_swap(m, signed(8), "dsp_operand", operand)

    def _dsp_products(self, m: Module, a: Value, shadow: data.View) -> tuple[list[Value], Finish]:
        if self._pairs:
            return self._pair_products(m, a, shadow)
        # The DSP operand is the int8 weight or the sign-extended low nibble, the LUT
        # multiplier's operand the high nibble or 0 (lane 1 is zero in 8-bit modes).
        operand = Mux(self._shadow_two_lanes(), shadow.int4[0], shadow.int8)
        m.d.comb += [self.dsp_a.eq(a), self.dsp_b.eq(self._dsp_operand(m, operand))]
        if self._lanes == 1:
            return [self.dsp_product], _as_products
        high = self._on_swap(m, signed(4), "high",
                             Mux(self.shadow_two_lanes, shadow.int4[1], 0))
        product_high = Signal(signed(12))
        m.d.comb += product_high.eq(a * high)
        return [self.dsp_product, product_high], _as_products

    def _pair_products(self, m: Module, a: Value,
                       shadow: data.View) -> tuple[list[Value], Finish]:
        # K-pairs: the DSP half multiplies the low nibbles (sign-extended to 8 bits) and
        # adds the LUT product of the high nibbles; in other modes it multiplies the int8
        # operands and adds 0. The activation multiplexer follows the active tile's mode
        # (a register loaded at the swap); a row's PEs share it.
        if self._pairs_only:
            operand: Value = shadow.int4[0]
            high_value: Value = shadow.int4[1]
            dsp_a: Value = a[0:4].as_signed()
        else:
            operand = Mux(self.shadow_pairs, shadow.int4[0], shadow.int8)
            high_value = Mux(self.shadow_pairs, shadow.int4[1], 0)
            pairs = self._on_swap(m, 1, "pairs", self.shadow_pairs)
            dsp_a = Mux(pairs, a[0:4].as_signed(), a)
        high = self._on_swap(m, signed(4), "high", high_value)
        product_high = Signal(signed(8))
        m.d.comb += [
            self.dsp_a.eq(dsp_a),
            self.dsp_b.eq(self._dsp_operand(m, operand)),
            product_high.eq(booth_multiply_4x4(a[4:8], high)),
            self.dsp_addend.eq(product_high),
        ]
        return [self.dsp_product], _as_products

    def _split_products(self, m: Module, a: Value,
                        shadow: data.View) -> tuple[list[Value], Finish]:
        if self._lanes == 1:
            weight = self._on_swap(m, signed(8), "weight_int8", shadow.int8)
            return [a * weight], _as_products
        high = self._on_swap(m, signed(4), "high", shadow.int4[1])      # signed [-8, 7]
        # Low nibble: signed in 4-bit modes, unsigned [0, 15] in 8-bit modes (signed(5)).
        low = self._on_swap(m, signed(5), "low",
                            Mux(self.shadow_two_lanes, shadow.int4[0],
                                shadow.int4[0].as_unsigned()))
        product_low = Signal(signed(13))
        product_high = Signal(signed(12))
        multiply = shift_add_multiply if self._multiplier == "lut" else _times
        m.d.comb += [product_low.eq(multiply(a, low)), product_high.eq(multiply(a, high))]

        def finish(raw: list[Value], a: Value, two_lanes: Value) -> list[Value]:
            product_low, product_high = raw
            return [
                Mux(two_lanes, product_low, product_low + (product_high << 4)),
                Mux(two_lanes, product_high, 0),
            ]
        return [product_low, product_high], finish

    def _packed_products(self, m: Module, a: Value,
                         shadow: data.View) -> tuple[list[Value], Finish]:
        if self._lanes == 1:
            weight = self._on_swap(m, signed(8), "weight_int8", shadow.int8)
            return [a * weight], _as_products
        # 4-bit modes: operand 4096 * h + (l + 8); l + 8 in [0, 15] is l with its sign bit
        # flipped. 8-bit modes: the int8 weight itself. Both fit 16 signed bits.
        bits = Value.cast(shadow)
        operand = self._on_swap(m, signed(16), "operand",
                                Mux(self.shadow_two_lanes,
                                    (bits[4:8].as_signed() << 12) | (bits[0:4] ^ 0b1000),
                                    shadow.int8))
        product = Signal(signed(24))
        m.d.comb += product.eq(a * operand)

        def finish(raw: list[Value], a: Value, two_lanes: Value) -> list[Value]:
            # product = 4096 * (a * h) + a * (l + 8) with a * (l + 8) in [-1920, 1905]: the
            # low 12 bits read as signed are a * (l + 8); the rest, plus the borrow of a
            # negative low part, is a * h.
            product, = raw
            low_part = product[0:12].as_signed()
            high_part = product[12:24].as_signed() + product[11]
            return [
                Mux(two_lanes, low_part - (a << 3), product),
                Mux(two_lanes, high_part, 0),
            ]
        return [product], finish


Finish = Callable[[list[Value], Value, Value], list[Value]]
"""Turns the multiplier outputs (registered or not), the activation and the two-lane flag
into the lane products."""


def _as_products(raw: list[Value], a: Value, two_lanes: Value) -> list[Value]:
    return raw


def _times(a: Value, b: Value) -> Value:
    return a * b


class Ice40Mac16Pair(wiring.Component):
    """Two signed 8x8 multipliers in one iCE40 UltraPlus SB_MAC16 block.

    `product[i]` = `a[i]` * `b[i]`. By default combinational: the block's input, pipeline
    and output registers are bypassed, so the products follow the PE's registers in the
    same cycle. With `operand_register` the block's B register holds both `b` operands: it
    loads them at a clock edge when `enable` and `load_b` are high and the products use
    the held values. With `product_register` the block's 8x8 pipeline registers hold both
    products, loaded at every edge with `enable` high. (The block has one clock enable for
    all its registers and one hold per input, so both halves share `enable` and `load_b`.)
    Element 0 uses the bottom half (A[7:0] x B[7:0] -> O[15:0]), element 1 the top half
    (A[15:8] x B[15:8] -> O[31:16]). In MODE_8x8 the block's A_SIGNED/B_SIGNED make both
    halves signed (Yosys's `cells_sim.v` sign-extends A[7:0] and B[7:0] only when
    MODE_8x8 is set, A[15:8] and B[15:8] always), so every product is the exact int8 x
    int8 product in 16 bits.

    Only synthesis for iCE40 UltraPlus parts and simulation with a SB_MAC16 model
    (`fpga.build.primitive_model("SB_MAC16")`) accept the design; the Amaranth simulator does not.
    """

    def __init__(self, *, operand_register: bool = False,
                 product_register: bool = False, addend: bool = False) -> None:
        self._operand_register = operand_register
        self._product_register = product_register
        self._addend = addend
        members = {
            "a": In(data.ArrayLayout(signed(8), 2)),
            "b": In(data.ArrayLayout(signed(8), 2)),
            "product": Out(data.ArrayLayout(signed(16), 2)),
        }
        if addend:
            members["addend"] = In(data.ArrayLayout(signed(16), 2))
        if operand_register or product_register:
            members["enable"] = In(1)
        if operand_register:
            members["load_b"] = In(1)
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        output = Signal(32)
        zero16 = Const(0, 16)
        clocked = self._operand_register or self._product_register
        # With an addend, each half's adder sums its 8x8 product (lower input 1) and C (top)
        # or D (bottom) (upper input 1), registered like the product, carry in 0; the output
        # is the adder's (select 0). Without, the output is the 8x8 product (select 2).
        added = int(self._addend)
        add_registered = int(self._addend and self._product_register)
        c, d = ((Value.cast(self.addend[1]), Value.cast(self.addend[0])) if self._addend
                else (zero16, zero16))
        adder = {} if not added else {
            "p_C_REG": Const(add_registered, 1),
            "p_D_REG": Const(add_registered, 1),
            "p_TOPADDSUB_LOWERINPUT": Const(1, 2),
            "p_TOPADDSUB_UPPERINPUT": Const(1, 1),
            "p_BOTADDSUB_LOWERINPUT": Const(1, 2),
            "p_BOTADDSUB_UPPERINPUT": Const(1, 1),
        }
        m.submodules.mac = Instance(
            "SB_MAC16",
            p_MODE_8x8=Const(1, 1),
            p_A_SIGNED=Const(1, 1),
            p_B_SIGNED=Const(1, 1),
            p_B_REG=Const(int(self._operand_register), 1),
            p_TOP_8x8_MULT_REG=Const(int(self._product_register), 1),
            p_BOT_8x8_MULT_REG=Const(int(self._product_register), 1),
            **adder,
            p_TOPOUTPUT_SELECT=Const(0 if added else 2, 2),
            p_BOTOUTPUT_SELECT=Const(0 if added else 2, 2),
            i_CLK=ClockSignal() if clocked else Const(0),
            i_CE=self.enable if clocked else Const(0),
            i_A=Value.cast(self.a), i_B=Value.cast(self.b), i_C=c, i_D=d,
            i_AHOLD=Const(0), i_BHOLD=~self.load_b if self._operand_register else Const(0),
            i_CHOLD=Const(0), i_DHOLD=Const(0),
            i_IRSTTOP=Const(0), i_IRSTBOT=Const(0), i_ORSTTOP=Const(0), i_ORSTBOT=Const(0),
            i_OLOADTOP=Const(0), i_OLOADBOT=Const(0), i_ADDSUBTOP=Const(0),
            i_ADDSUBBOT=Const(0), i_OHOLDTOP=Const(0), i_OHOLDBOT=Const(0),
            i_CI=Const(0), i_ACCUMCI=Const(0), i_SIGNEXTIN=Const(0),
            o_O=output,
            # Unused carry and sign-extension outputs, connected so no pin dangles.
            o_CO=Signal(name="unused_co"), o_ACCUMCO=Signal(name="unused_accumco"),
            o_SIGNEXTOUT=Signal(name="unused_signextout"),
        )
        m.d.comb += Value.cast(self.product).eq(output)
        return m


class Ecp5Mult18(wiring.Component):
    """One ECP5 MULT18X18D, signed 18 x 18 -> 36 bits, with its input, pipeline and output
    registers: `product` = `a` * `b` of the cycle `latency` (3) cycles earlier, every
    register clocked by the domain's clock and enabled by `enable`.

    Registered at both ends, the block's routes to and from the fabric are each a path of
    their own (nextpnr times the block as registers, `MULT18X18D_REGS_ALL`), instead of one
    path through the route in, the multiplier and the route out. Only synthesis for ECP5
    parts and simulation with a MULT18X18D model (`fpga.build.primitive_model("MULT18X18D",
    "ecp5")`) accept the design; the Amaranth simulator does not."""

    latency = 3
    """Cycles from `a`, `b` to `product`: the input, pipeline and output registers."""

    def __init__(self) -> None:
        super().__init__({
            "a": In(signed(18)),
            "b": In(signed(18)),
            "product": Out(signed(36)),
            "enable": In(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        product = Signal(36)
        signed_product = Signal()   # the block's flag that P is signed: always, here
        registers = {}
        for register in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"):
            registers.update({f"p_REG_{register}_CLK": "CLK0", f"p_REG_{register}_CE": "CE0",
                              f"p_REG_{register}_RST": "RST0"})
        a, b = Value.cast(self.a), Value.cast(self.b)
        m.submodules.mult = Instance(
            "MULT18X18D",
            **registers,
            p_GSR="DISABLED", p_RESETMODE="SYNC",
            **{f"i_A{bit}": a[bit] for bit in range(18)},
            **{f"i_B{bit}": b[bit] for bit in range(18)},
            **{f"i_C{bit}": Const(0) for bit in range(18)},
            i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
            i_CLK0=ClockSignal(), i_CLK1=Const(0), i_CLK2=Const(0), i_CLK3=Const(0),
            i_CE0=self.enable, i_CE1=Const(0), i_CE2=Const(0), i_CE3=Const(0),
            i_RST0=Const(0), i_RST1=Const(0), i_RST2=Const(0), i_RST3=Const(0),
            **{f"o_P{bit}": product[bit] for bit in range(36)},
            o_SIGNEDP=signed_product,
        )
        m.d.comb += Value.cast(self.product).eq(product)
        return m
