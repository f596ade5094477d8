"""CONFIGURE: the checks of a CONFIGURE payload and the configuration registers.

`ConfigureUnit` holds the applied configuration (`registers`, of `config_layout`, which
every other engine reads) and validates a CONFIGURE payload in the order of
`golden.protocol.check_configure`: the fields decoded combinationally (`ConfigFields`),
three products on one time-shared serial multiplier, then the checks registered as one flag
each and answered in priority order (docs/architecture.md, "Decoder").
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from golden.config import MODE_INFO, MODES, ArrayConfig
from golden.protocol import (
    CONFIGURE,
    LENGTH_BITS,
    MAX_LENGTH,
    MX_CODE_NIBBLES,
    OUT_KINDS,
    Field,
    Status,
    item_nibbles,
    vector_words,
    weight_row_words,
)

from .accumulate import pass_mins
from .arith import SerialMultiplier
from .control import first_failure
from .pe import Mode
from .wire import view

__all__ = ["ConfigFields", "ConfigureUnit", "OUT_KIND_CODES", "config_layout",
           "CONTROL_SIGNATURE"]

OUT_KIND_CODES = {name: index for index, name in enumerate(OUT_KINDS)}
"""Output kind -> its code in CONFIGURE and in the configuration registers."""


class ConfigFields:
    """The fields of a staged CONFIGURE payload and what follows from them (combinational)."""

    def __init__(self, m: Module, config: ArrayConfig, word0: Signal, word1: Signal,
                 lc_max: int) -> None:
        rows, cols, block = config.rows, config.cols, config.block_size
        fields0, fields1 = view(CONFIGURE[0], word0), view(CONFIGURE[1], word1)
        self.mode = fields0.mode
        self.rounding = fields0.rounding
        self.relu = fields0.relu
        self.out_kind = fields0.out_kind
        self.zero_point = fields0.zero_point
        self.m = fields1.m
        self.k = fields1.k
        self.n = fields1.n
        built = [Mode.from_name(name).value for name in config.modes]
        self.mode_ok = Signal()
        m.d.comb += self.mode_ok.eq(self.mode.matches(*built))
        # A mode of a kind the build lacks fails `mode_ok`, the first check, so these flags
        # are constant 0 when no such mode is built (what follows from them is only used
        # by the later checks and by a successful CONFIGURE).
        self.mx = Signal()
        self.lanes2 = Signal()
        if config.has_mx:
            m.d.comb += self.mx.eq(self.mode.matches(*(Mode.from_name(n).value for n in MODES
                                                        if MODE_INFO[n].mx)))
        two_lane_modes = [n for n in config.modes if config.mode(n).lanes == 2]
        if two_lane_modes:
            m.d.comb += self.lanes2.eq(self.mode.matches(
                *(Mode.from_name(n).value for n in two_lane_modes)))
        # Two MACs per PE per cycle: the two-lane modes, and A4W4 with K-pairs.
        self.double_macs = self.lanes2
        if config.k_pairs:
            self.double_macs = Signal()
            m.d.comb += self.double_macs.eq(self.lanes2 | (self.mode == Mode.A4W4.value))
        kinds = OUT_KIND_CODES
        self.requant = self.out_kind.matches(kinds["uint8"], kinds["int8"], kinds["int4"])
        # MX output kinds fail `out_ok` (the second check) unless an MX mode is configured.
        self.mx_out = self.out_kind.matches(kinds["mxint8"], kinds["mxint4"]) & self.mx
        self.out_ok = Mux(self.mx, self.out_kind.matches(kinds["fp32"], kinds["mxint8"],
                                                         kinds["mxint4"]),
                          self.out_kind.matches(kinds["uint8"], kinds["int8"], kinds["int4"],
                                                kinds["int32"]))
        zp = self.zero_point
        with_range = Mux(self.out_kind == kinds["uint8"], (zp >= 0) & (zp <= 255),
                         Mux(self.out_kind == kinds["int8"], (zp >= -128) & (zp <= 127),
                             (zp >= -8) & (zp <= 7)))
        self.zero_point_ok = ~self.requant | with_range
        log_rows, log_cols, log_block = exact_log2(rows), exact_log2(cols), exact_log2(block)
        k_granule_bits = Mux(self.mx, log_block, log_rows)
        self.k_ok = (self.k != 0) & ((self.k & ((Const(1, 17) << k_granule_bits) - 1)) == 0)
        lc_log2 = log_cols + self.lanes2
        n_granule_bits = Mux(self.mx_out, log_block, lc_log2)
        self.n_ok = (self.n != 0) & ((self.n & ((Const(1, 17) << n_granule_bits) - 1)) == 0)
        self.k_tiles = self.k >> log_rows
        self.n_tiles = self.n >> lc_log2
        self.k_blocks = self.k >> log_block
        # group = BK / lc N-tiles for MX outputs (`ArrayConfig` keeps an MX pass, lc, within
        # BK), else 1.
        self.group_log2 = Mux(self.mx_out, log_block - lc_log2, 0)[:3]
        # Words per N-tile of the COMPUTE payload: K weight rows of `weight_row_words` words
        # (+ scale words per block). Powers of two: shifts, not multiplications.
        if cols <= 8:       # one word per row; 1 or 2 scale words per block
            two_scale_words = self.lanes2 & (lc_max > 8)
            self.tile_words = self.k + Mux(self.mx, self.k_blocks << two_scale_words, 0)
        else:               # C / 8 words per row; C / 8 or C / 4 scale words per block
            log_row_words = exact_log2(weight_row_words(config))
            scale_words_log2 = Mux(self.lanes2, log_row_words + 1, log_row_words)
            self.tile_words = (self.k << log_row_words) \
                + Mux(self.mx, self.k_blocks << scale_words_log2, 0)
        self.lc = Mux(self.lanes2, 2 * cols, cols)
        # log2 of each kind's item nibbles (8, 1 or 2), and MX_CODE_NIBBLES per MX block.
        by_nibbles = {count: [kinds[kind] for kind in OUT_KINDS if item_nibbles(kind) == count]
                      for count in (8, 1, 2)}
        assert sum(map(len, by_nibbles.values())) == len(OUT_KINDS)
        self._nibble_log2 = Mux(self.out_kind.matches(*by_nibbles[8]), 3,
                                Mux(self.out_kind.matches(*by_nibbles[1]), 0, 1))
        self._log_block = log_block

    def result_nibbles(self, items: object) -> Value:
        """Nibbles of one COMPUTE's results for `items` = M * N elements."""
        return (items << self._nibble_log2) \
            + Mux(self.mx_out, (items >> self._log_block) << exact_log2(MX_CODE_NIBBLES), 0)

    @staticmethod
    def result_words(nibbles: object) -> Value:
        """Words that carry `nibbles` nibbles."""
        return ((nibbles + 15) >> 4)[:36]


def config_layout(config: ArrayConfig) -> data.StructLayout:
    """The applied configuration, as the engines read it.

    Loop bounds are kept as their last index (a counter compares with a register). A
    CONFIGURE is refused unless M fits an accumulator bank and M * K-tiles an activation
    bank, so the bounds (and the counters that compare with them) are only as wide as
    those banks. `mx`, `lanes2`, `double_macs` (two MACs per PE per cycle: two lanes, or
    K-pairs) and `requant` are flags; `lo`, `hi` the output clamp (ReLU folded in)."""
    acc_half = config.accumulator_bank_depth
    act_half = config.activation_bank_depth
    return data.StructLayout({
        "mode": Mode,
        "out_kind": unsigned(3),
        "rounding": unsigned(1),
        "relu": unsigned(1),
        "zero_point": signed(9),
        "m": range(acc_half + 1),
        "m_last": range(max(2, acc_half)),
        "k_last": range(max(2, act_half)),
        "groups_last": unsigned(16),
        "group_last": range(max(2, config.block_size // config.cols + 1)),
        "group_log2": unsigned(3),
        "lc": range(config.lane_columns + 1),
        "pass_last": range(max(2, acc_half, *pass_mins(config))),
        "mx": unsigned(1),
        "lanes2": unsigned(1),
        "double_macs": unsigned(1),
        "requant": unsigned(1),
        "act_words": unsigned(LENGTH_BITS),
        "scale_words": unsigned(LENGTH_BITS),
        "requant_words": unsigned(LENGTH_BITS),
        "compute_words": unsigned(LENGTH_BITS),
        "result_words": unsigned(LENGTH_BITS),
        "items_last": unsigned(32),
        "lo": signed(9),
        "hi": signed(9),
    })


CONTROL_SIGNATURE = wiring.Signature({
    "start": Out(1),
    "invalidate": Out(1),
    "word0": Out(64),
    "word1": Out(64),
    "done": In(1),
    "code": In(4),
    "field": In(4),
    "configured": In(1),
})
"""The decoder's side of the CONFIGURE unit (see `ConfigureUnit`)."""


class ConfigureUnit(wiring.Component):
    """The configuration registers and CONFIGURE's checks.

    Ports
    -----
    control : In(CONTROL_SIGNATURE)
        `invalidate` (a CONFIGURE begins) clears `configured`; `start` (one cycle) checks
        the payload `word0`, `word1` (held until `done`). `done` is high for one cycle
        `latency` cycles later with the first failed check in `code` and `field`
        (`golden.protocol.Status` and `Field`; OK and NONE when every check passes, and then
        the registers hold the new configuration from the next cycle on). `configured`:
        a CONFIGURE succeeded since reset and since the last `invalidate`.
    registers : Out(config_layout(config))
        The applied configuration. Fields that no CONFIGURE of this build can change are
        constants, so the logic of what the build leaves out disappears in synthesis.
    applied : Out(1)
        High for one cycle, the first cycle the registers hold a new configuration.

    Latency: seven steps with the multiplier's cycles in between (M * K-tiles, N-tiles *
    words per N-tile, M * N, result nibbles, result words, the checks registered, the
    answer): `latency` cycles from `start` to `done`.
    """

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        super().__init__({
            "control": In(CONTROL_SIGNATURE),
            "registers": Out(config_layout(config)),
            "applied": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from `start` to `done`: seven steps, three of them also waiting for the
        multiplier's 16 cycles."""
        return 7 + 3 * 16

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self._config
        control = self.control
        act_half = config.activation_bank_depth
        acc_half = config.accumulator_bank_depth
        f = ConfigFields(m, config, control.word0, control.word1, config.lane_columns)
        # (N-tiles x words per N-tile: up to 4 K + K / 4 words per N-tile with C = 32.)
        m.submodules.config_multiplier = multiplier = SerialMultiplier(
            16, 18 if config.cols <= 8 else 20)
        product = multiplier.product
        act_words_calc = Signal(32)
        compute_words_calc = Signal(34)
        result_words_calc = Signal(40)  # result nibbles, then result words
        items = product[:32]            # M * N, from the last product
        # CONFIGURE's checks in the order of golden.reference: (status, field, failed).
        checks = [
            (Status.BAD_FIELD, Field.MODE, ~f.mode_ok),
            (Status.BAD_FIELD, Field.OUT_KIND, ~f.out_ok),
            (Status.BAD_FIELD, Field.ZERO_POINT, ~f.zero_point_ok),
            (Status.BAD_FIELD, Field.M, f.m == 0),
            (Status.BAD_FIELD, Field.K, ~f.k_ok),
            (Status.BAD_FIELD, Field.N, ~f.n_ok),
            (Status.TOO_LARGE, Field.ACTIVATIONS, act_words_calc > act_half),
            (Status.TOO_LARGE, Field.ACCUMULATORS, f.m > (acc_half >> f.group_log2)),
            (Status.TOO_LARGE, Field.REQUANT, f.requant & (f.n > config.requant_depth)),
            # compute words > MAX_LENGTH, or result words + 1 > MAX_LENGTH (= 2^24 - 1)
            (Status.TOO_LARGE, Field.LENGTH, (compute_words_calc[LENGTH_BITS:] != 0)
             | (result_words_calc[LENGTH_BITS:] != 0)
             | (result_words_calc[:LENGTH_BITS] == MAX_LENGTH)),
        ]
        config_flags = Signal(len(checks))
        error, which = first_failure(m, checks, config_flags)
        configured = Signal()
        m.d.comb += [control.code.eq(error), control.field.eq(which),
                     control.configured.eq(configured)]

        # One-hot: the step at hand. Three products with one serial multiplier, then the
        # checks, each registered as one flag, then taken in priority order (a short path
        # per cycle: CONFIGURE is rare, the clock is not).
        phase = Signal(7, name="config_phase")

        def multiply(a: Value, b: Value) -> list:
            return [multiplier.start.eq(1), multiplier.a.eq(a), multiplier.b.eq(b)]

        def next_phase() -> list:
            return [phase.eq(phase << 1)]

        with m.If(control.start):
            m.d.sync += phase.eq(1)
        with m.If(phase[0]):
            m.d.comb += multiply(f.m, f.k_tiles)
            m.d.sync += next_phase()
        with m.If(phase[1] & ~multiplier.busy):
            m.d.comb += multiply(f.n_tiles, f.tile_words)
            m.d.sync += [act_words_calc.eq(product), *next_phase()]
        with m.If(phase[2] & ~multiplier.busy):
            m.d.comb += multiply(f.m, f.n)
            m.d.sync += [compute_words_calc.eq(product), *next_phase()]
        with m.If(phase[3] & ~multiplier.busy):
            m.d.sync += [result_words_calc.eq(f.result_nibbles(items)), *next_phase()]
        with m.If(phase[4]):
            m.d.sync += [result_words_calc.eq(f.result_words(result_words_calc)),
                         *next_phase()]
        with m.If(phase[5]):
            m.d.sync += [config_flags.eq(Cat(*(bad for _, _, bad in checks))),
                         *next_phase()]
        applied = Signal()
        m.d.sync += applied.eq(0)
        m.d.comb += self.applied.eq(applied)
        with m.If(phase[6]):
            m.d.comb += control.done.eq(1)
            m.d.sync += phase.eq(0)
            with m.If(config_flags == 0):
                m.d.sync += [configured.eq(1), applied.eq(1),
                             *self._apply(f, act_words_calc, compute_words_calc, items,
                                          result_words_calc)]
        with m.If(control.invalidate):
            m.d.sync += configured.eq(0)
        self._constants(m)
        return m

    def _variable_flags(self) -> dict[str, bool]:
        """Which mode flags a CONFIGURE of this build can change (the others are constant:
        their value in every built mode)."""
        config = self._config
        built = [config.mode(name) for name in config.modes]
        values = {
            "mx": [info.mx for info in built],
            "lanes2": [info.lanes == 2 for info in built],
            "double_macs": [info.macs_per_pe == 2 for info in built],
        }
        flags = {name: len(set(seen)) > 1 for name, seen in values.items()}
        flags["requant"] = config.has_requantizer
        self._flag_values = {name: int(seen[0]) for name, seen in values.items()}
        self._flag_values["requant"] = 0
        return flags

    def _constants(self, m: Module) -> None:
        """The registers no CONFIGURE of this build changes, as constants."""
        c = self.registers
        for name, variable in self._variable_flags().items():
            if not variable:
                m.d.comb += getattr(c, name).eq(self._flag_values[name])
        if not self._config.k_pairs:       # double_macs is lanes2 itself
            m.d.comb += c.double_macs.eq(c.lanes2)

    def _paired_items(self, f: ConfigFields) -> Value:
        """The result path packs outputs in pairs (a paired drain in a two-lane mode, any
        output kind but MX elements, which go one by one): half as many items."""
        if self._config.drain_width == 1:
            return Const(0, 1)
        return f.lanes2 & ~f.mx_out

    def _apply(self, f: ConfigFields, act_words: Signal, compute_words: Signal,
               items: Value, result_words: Signal) -> list:
        """The registers loaded from a CONFIGURE that passed every check."""
        config, c = self._config, self.registers
        int_min, mx_min = pass_mins(config)
        pass_min = Mux(f.mx, mx_min, int_min)
        ppb_log2 = exact_log2(config.passes_per_block) if config.has_mx else 0
        kinds = OUT_KIND_CODES
        lo = Mux(f.out_kind == kinds["uint8"], 0,
                 Mux(f.out_kind == kinds["int8"], -128, -8))
        hi = Mux(f.out_kind == kinds["uint8"], 255, Mux(f.out_kind == kinds["int8"], 127, 7))
        variable = self._variable_flags()
        if config.k_pairs:
            flag_fields = {"mx": f.mx, "lanes2": f.lanes2, "double_macs": f.double_macs}
        else:
            flag_fields = {"mx": f.mx, "lanes2": f.lanes2}
        flag_fields["requant"] = f.requant
        return [
            c.mode.eq(f.mode),
            c.out_kind.eq(f.out_kind),
            c.rounding.eq(f.rounding),
            c.relu.eq(f.relu),
            c.zero_point.eq(f.zero_point),
            c.m.eq(f.m),
            c.m_last.eq(f.m - 1),
            c.k_last.eq(f.k_tiles - 1),
            c.groups_last.eq((f.n_tiles >> f.group_log2) - 1),
            c.group_last.eq((Const(1, 8) << f.group_log2) - 1),
            c.group_log2.eq(f.group_log2),
            c.lc.eq(f.lc),
            c.pass_last.eq(Mux(f.m > pass_min, f.m, pass_min) - 1),
            *(getattr(c, name).eq(value) for name, value in flag_fields.items()
              if variable[name]),
            c.act_words.eq(act_words << exact_log2(vector_words(config))
                           if config.rows > 8 else act_words),
            c.scale_words.eq(((act_words >> ppb_log2) + 7) >> 3),
            c.requant_words.eq(f.n << 1),
            c.compute_words.eq(compute_words),
            c.result_words.eq(result_words),
            c.items_last.eq(Mux(self._paired_items(f), (items >> 1) - 1, items - 1)),
            c.lo.eq(Mux(f.relu & (f.zero_point > lo), f.zero_point, lo)),
            c.hi.eq(hi),
        ]
