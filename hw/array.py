"""The weight-stationary R x C systolic array.

K runs down the R rows, N across the C columns. PE (r, c) holds the weight W[k0 + r, n]
(two int4 weights W[., n] and W[., n + C] in the 4-bit-weight modes, see `hw.pe`); an
activation vector a[m, k0 : k0 + R] enters row r skewed by r cycles and is broadcast to
the C PEs of the row; partial sums flow down the columns and leave row R - 1 together,
so every output beat holds the C (or 2C) column dot products of one input vector.

Flow control. The PE grid is lock-step: every register of the grid advances together on
one enable, `advance`, which is low only while the one-entry skid buffer at the output
holds a result the consumer has not taken. `advance` is a register output, so neither
`ready` of the inputs nor the grid's clock enables depend combinationally on `out.ready`.
Bubbles (cycles without an input vector) flow through the grid as invalid entries.

Weights. The shadow weights fill from the `w` stream, one row of C weight bytes per beat,
rows 0 .. R-1 in order, while the grid computes with the active weights. An activation
beat with `swap` set makes the freshly loaded tile active for itself and every later
vector; the swap travels down the rows with the vector's skew, so consecutive vectors can
use different tiles with no bubble between them. Interlocks keep it safe whatever the
producers do: a `swap` beat waits until all R rows of the shadow tile are loaded, and the
next tile's rows are not accepted until that swap has been issued (the wavefront of the
swap always stays ahead of the new rows). The `mode` of a tile travels with its weights
and becomes active with the swap. Reset empties the pipeline and the shadow tile but not
the weight registers: load and swap a tile before the first vector.
"""

from __future__ import annotations

from amaranth.hdl import (
    Cat,
    EnableInserter,
    Module,
    Shape,
    ShapeLike,
    Signal,
    Value,
    signed,
    unsigned,
)
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.config import ArrayConfig

from .pe import (
    PAIRED_DSP_MULTIPLIERS,
    Ice40Mac16Pair,
    Mode,
    ProcessingElement,
    WeightLayout,
    check_multiplier,
    mode_lanes,
    psum_shape,
)

__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """Weight-stationary R x C systolic array of precision-scalable PEs.

    Parameters
    ----------
    config
        Rows R (K direction), columns C (N direction) and the modes built.
    meta_shape
        Shape of a user field carried from each input vector to its output beat unchanged
        (for tags such as "last pass of a K-block"); none by default (no `meta` field).
    multiplier
        PE multiplier variant (see `hw.pe`); `config.multiplier` when not given. With
        "ice40-sb-mac16" the array instantiates ceil(R * C / 2) SB_MAC16 blocks, one per
        two PEs (row-major pairs); with "ecp5-mult18" every PE instantiates one MULT18X18D.

    Ports
    -----
    a : In(stream.Signature(StructLayout))
        One activation vector per beat. `data`: ArrayLayout(signed(8), R), element r for
        row r (int4 activations sign-extended); `swap`: make the shadow weight tile active
        starting with this vector (the beat waits until the tile is fully loaded, so
        `a.ready` depends on `a.payload.swap`);
        `meta` (only with a non-zero `meta_shape`): passed through.
    w : In(stream.Signature(StructLayout))
        One weight row per beat, rows 0 .. R-1 in order. `data`: ArrayLayout(WeightLayout,
        C), element c for column c: an int8 weight, or two int4 weights (low nibble =
        output column c, high nibble = output column c + C); `mode`: the tile's `Mode`
        (give every row of a tile the same mode; modes not in `config.modes` are not
        supported).
    out : Out(stream.Signature(StructLayout))
        One beat per input vector, in order. `data`: ArrayLayout(psum_shape, lanes * C);
        element j is the exact dot product of the vector with output column j's R
        weights: column j of the tile for j < C, and in 4-bit-weight modes the high-nibble
        column j - C for j >= C (zero in 8-bit-weight modes). `meta`: the vector's.
    busy : Out(1)
        Some accepted vector has not left through `out` yet.
    shadow_full : Out(1)
        A complete shadow tile waits for its swap (the `w` stream is not accepted).

    Latency and throughput: an input accepted in cycle t has its output valid in cycle
    t + `latency` (R + `config.pe_stages`) when the output is not stalled. The array
    accepts one vector per cycle in every mode (R * C MACs per cycle in 8-bit-weight
    modes, 2 * R * C in 4-bit-weight modes), so N vectors take N + `latency` cycles.
    After the output has been stalled, one cycle passes before the grid advances again.
    Loading a tile takes R beats; it overlaps computation, so tiles used for at least
    R + 1 vectors swap in without a bubble.
    """

    def __init__(self, config: ArrayConfig, *, meta_shape: ShapeLike = 0,
                 multiplier: str | None = None) -> None:
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        multiplier = config.multiplier if multiplier is None else multiplier
        check_multiplier(multiplier)
        self._config = config
        self._multiplier = multiplier
        self._lanes = mode_lanes(config.modes, config.int4_packing)
        rows, cols = config.rows, config.cols
        # A zero-width `meta` is left out: Verilog has no zero-width wires.
        meta = {"meta": meta_shape} if Shape.cast(meta_shape).width else {}
        self._has_meta = bool(meta)
        self._meta_shape = meta_shape
        self.activation_layout = data.StructLayout({
            "data": data.ArrayLayout(signed(8), rows),
            "swap": unsigned(1),
            **meta,
        })
        self.weight_layout = data.StructLayout({
            "data": data.ArrayLayout(WeightLayout, cols),
            "mode": Mode,
        })
        self.output_layout = data.StructLayout({
            "data": data.ArrayLayout(self.psum_shape, self._lanes * cols),
            **meta,
        })
        super().__init__({
            "a": In(stream.Signature(self.activation_layout)),
            "w": In(stream.Signature(self.weight_layout)),
            "out": Out(stream.Signature(self.output_layout)),
            "busy": Out(1),
            "shadow_full": Out(1),
        })

    @property
    def config(self) -> ArrayConfig:
        return self._config

    @property
    def lanes(self) -> int:
        """MACs per PE per cycle in the 4-bit-weight modes (1 if none is built)."""
        return self._lanes

    @property
    def psum_shape(self) -> Shape:
        """Exact signed shape of a column dot product of R int8 x int8 products."""
        return psum_shape(self._config.rows, 0)

    @property
    def latency(self) -> int:
        """Cycles from accepting a vector to its output beat being valid (no stall)."""
        return self._config.rows + self._config.pe_stages

    @property
    def weight_beats(self) -> int:
        """Beats of the `w` stream per weight tile."""
        return self._config.rows

    def elaborate(self, platform: object) -> Module:
        rows, cols, lanes = self._config.rows, self._config.cols, self._lanes
        m = Module()
        grid = Module()  # everything that advances in lock-step

        advance = Signal()
        skid_full = Signal()
        m.d.comb += advance.eq(~skid_full)

        # --- Weight loading and the swap interlock ---------------------------------------
        load_row = Signal(range(max(rows, 2)))  # never zero bits wide (Verilog)
        shadow_full = Signal()
        m.d.comb += [
            self.w.ready.eq(advance & ~shadow_full),
            self.a.ready.eq(advance & (~self.a.payload.swap | shadow_full)),
            self.shadow_full.eq(shadow_full),
        ]
        w_transfer = Signal()
        a_transfer = Signal()
        m.d.comb += [
            w_transfer.eq(self.w.valid & self.w.ready),
            a_transfer.eq(self.a.valid & self.a.ready),
        ]
        with grid.If(w_transfer):
            with grid.If(load_row == rows - 1):
                grid.d.sync += [load_row.eq(0), shadow_full.eq(1)]
            with grid.Else():
                grid.d.sync += load_row.eq(load_row + 1)
        # A swap needs shadow_full and a load needs ~shadow_full: never in the same cycle.
        with grid.If(a_transfer & self.a.payload.swap):
            grid.d.sync += shadow_full.eq(0)

        # --- Per-row control: the swap wavefront, the tile mode, the skewed activations ---
        # Row r swaps in the cycle before vector v's activation reaches it (r cycles after
        # v is accepted) and computes v one cycle later.
        row_swap: list[Signal] = []
        row_activation: list[Signal] = []
        row_shadow_two_lanes: list[Value] = []
        row_shadow_pairs: list[Value] = []
        four_bit_modes = [Mode.from_name(name) for name in self._config.modes
                          if self._config.mode(name).lanes == 2]
        swap = Signal(name="swap_0")
        m.d.comb += swap.eq(a_transfer & self.a.payload.swap)
        for row in range(rows):
            if row > 0:
                delayed = Signal(name=f"swap_{row}")
                grid.d.sync += delayed.eq(swap)
                swap = delayed
            row_swap.append(swap)

            # The PEs sample the shadow tile's mode at the swap (see `hw.pe`).
            shadow_mode = Signal(Mode, name=f"shadow_mode_{row}")
            with grid.If(w_transfer & (load_row == row)):
                grid.d.sync += shadow_mode.eq(self.w.payload.mode)
            row_shadow_two_lanes.append(Value.cast(shadow_mode).matches(*four_bit_modes))
            row_shadow_pairs.append(shadow_mode == Mode.A4W4)

            # r + 1 registers: the input register and the skew of row r.
            stage = self.a.payload.data[row]
            for delay in range(row + 1):
                registered = Signal(signed(8), name=f"activation_{row}_{delay}",
                                    reset_less=True)
                grid.d.sync += registered.eq(stage)
                stage = registered
            row_activation.append(stage)

        valid = a_transfer
        meta = self.a.payload.meta if self._has_meta else None
        valid_stages: list[Signal] = []
        for stage_index in range(self.latency):
            next_valid = Signal(name=f"valid_{stage_index}")
            grid.d.sync += next_valid.eq(valid)
            valid = next_valid
            valid_stages.append(valid)
            if meta is not None:
                next_meta = Signal(self._meta_shape, name=f"meta_{stage_index}",
                                   reset_less=True)
                grid.d.sync += next_meta.eq(meta)
                meta = next_meta
        bottom_valid = valid

        # --- The PE grid ------------------------------------------------------------------
        # DSP blocks serve two PEs of one row (the same swap), so with two or more columns
        # they also hold the PEs' operand and raw-product registers (see `hw.pe`).
        paired = self._multiplier in PAIRED_DSP_MULTIPLIERS
        dsp_registers = paired and cols >= 2
        pes: list[list[ProcessingElement]] = []
        for row in range(rows):
            pe_row = []
            for col in range(cols):
                pe = ProcessingElement(self._config.modes, accumulated=row,
                                       multiplier=self._multiplier,
                                       stages=self._config.pe_stages,
                                       dsp_registers=dsp_registers,
                                       int4_packing=self._config.int4_packing)
                grid.submodules[f"pe_{row}_{col}"] = pe
                grid.d.comb += [
                    pe.activation.eq(row_activation[row]),
                    pe.weight.eq(self.w.payload.data[col]),
                    pe.load.eq(w_transfer & (load_row == row)),
                    pe.swap.eq(row_swap[row]),
                ]
                if row > 0:
                    grid.d.comb += pe.psum_in.eq(pes[row - 1][col].psum_out)
                if lanes == 2:
                    grid.d.comb += pe.shadow_two_lanes.eq(row_shadow_two_lanes[row])
                if "shadow_pairs" in pe.signature.members:
                    grid.d.comb += pe.shadow_pairs.eq(row_shadow_pairs[row])
                if "enable" in pe.signature.members:     # the PE's MULT18X18D registers
                    grid.d.comb += pe.enable.eq(advance)
                pe_row.append(pe)
            pes.append(pe_row)
        if paired:
            self._dsp_pairs(grid, pes, dsp_registers, advance, row_swap)

        bottom = Signal(self.output_layout)
        for lane in range(lanes):
            for col in range(cols):
                m.d.comb += bottom.data[lane * cols + col].eq(
                    pes[rows - 1][col].psum_out[f"lane{lane}"])
        if meta is not None:
            m.d.comb += bottom.meta.eq(meta)

        m.submodules.grid = EnableInserter(advance)(grid)

        # --- Output skid buffer -----------------------------------------------------------
        # While the skid register is empty the grid advances and its bottom row drives
        # `out`; a result the consumer does not take is caught in the skid register, which
        # then drives `out` while the grid waits.
        skid = Signal(self.output_layout, reset_less=True)
        m.d.comb += [
            self.out.valid.eq(skid_full | bottom_valid),
            self.out.payload.eq(skid),
        ]
        with m.If(~skid_full):
            m.d.comb += self.out.payload.eq(bottom)
        with m.If(skid_full):
            with m.If(self.out.ready):
                m.d.sync += skid_full.eq(0)
        with m.Elif(bottom_valid & ~self.out.ready):
            m.d.sync += [skid.eq(bottom), skid_full.eq(1)]

        m.d.comb += self.busy.eq(skid_full | (Cat(*valid_stages) != 0))
        return m

    @staticmethod
    def _dsp_pairs(grid: Module, pes: list[list[ProcessingElement]], dsp_registers: bool,
                   advance: Signal, row_swap: list[Signal]) -> None:
        """The SB_MAC16 blocks, each serving two PEs in row-major order (`hw.pe`)."""
        flat = [(row, pe) for row, pe_row in enumerate(pes) for pe in pe_row]
        for index in range(0, len(flat), 2):
            row, first = flat[index]
            pair = Ice40Mac16Pair(operand_register=dsp_registers,
                                  product_register=first.dsp_product_registered,
                                  addend=first.pairs)
            grid.submodules[f"mac16_{index // 2}"] = pair
            if dsp_registers:
                grid.d.comb += [pair.enable.eq(advance), pair.load_b.eq(row_swap[row])]
            for half, (_, pe) in enumerate(flat[index:index + 2]):
                grid.d.comb += [
                    pair.a[half].eq(pe.dsp_a),
                    pair.b[half].eq(pe.dsp_b),
                    pe.dsp_product.eq(pair.product[half]),
                ]
                if pe.pairs:
                    grid.d.comb += pair.addend[half].eq(pe.dsp_addend)
