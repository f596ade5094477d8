"""CONFIGURE: the checks of a staged CONFIGURE payload and the configuration registers.

`ConfigureUnit` holds the applied configuration (`ConfigRegisters`, the registers every
other engine reads) and the logic that validates a CONFIGURE payload in the order of
`golden.protocol.check_configure`: the fields decoded combinationally (`ConfigFields`),
three products on one time-shared serial multiplier, then the checks registered as one
flag each and answered in priority order (docs/architecture.md, "Decoder").
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
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
)

from .arith import SerialMultiplier
from .control import first_failure
from .pe import Mode
from .wire import view

__all__ = ["ConfigFields", "ConfigRegisters", "ConfigureUnit", "OUT_KIND_CODES"]

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
        # group = BK / lc N-tiles for MX outputs (lc <= 16 <= BK), else 1.
        self.group_log2 = Mux(self.mx_out, log_block - lc_log2, 0)[:3]
        # Words per N-tile of the COMPUTE payload: K weight rows (+ scale words per block).
        # (1 or 2 scale words per block: a shift, not a multiplication.)
        two_scale_words = self.lanes2 & (lc_max > 8)
        self.tile_words = self.k + Mux(self.mx, self.k_blocks << two_scale_words, 0)
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


class ConfigRegisters:
    """The applied configuration, as registers the engines read.

    `pass_mins` is the shortest array pass of the integer and of the MX modes
    (`hw.accelerator.Accelerator.pass_min`)."""

    def __init__(self, config: ArrayConfig, lc_max: int, pass_mins: tuple[int, int]) -> None:
        self._config = config
        self._pass_mins = pass_mins
        self.mode = Signal(Mode)
        self.out_kind = Signal(3)
        self.rounding = Signal()
        self.relu = Signal()
        self.zero_point = Signal(signed(9))
        # Loop bounds are kept as their last index: a counter compares with a register.
        # A CONFIGURE is refused unless M fits an accumulator bank and M * K-tiles an
        # activation bank, so the registers (and the counters that compare with them) are
        # only as wide as those bounds.
        acc_half = config.accumulator_bank_depth
        act_half = config.activation_bank_depth
        self.m = Signal(range(acc_half + 1))
        self.m_last = Signal(range(max(2, acc_half)))
        self.k_last = Signal(range(max(2, act_half)))
        self.groups_last = Signal(16)
        self.group_last = Signal(range(max(2, config.block_size // config.cols + 1)))
        self.group_log2 = Signal(3)
        self.lc = Signal(range(lc_max + 1))
        self.pass_last = Signal(range(max(2, acc_half, *pass_mins)))
        # Flags that no CONFIGURE of this build can change are constants, so that the
        # logic of the units the build leaves out disappears in synthesis.
        built = [config.mode(name) for name in config.modes]
        self.mx = self._flag([info.mx for info in built])
        self.lanes2 = self._flag([info.lanes == 2 for info in built])
        # Two MACs per PE per cycle (two lanes, or K-pairs).
        self.double_macs = self._flag([info.macs_per_pe == 2 for info in built]) \
            if config.k_pairs else self.lanes2
        self.requant = Signal() if config.has_requantizer else Const(0, 1)
        self.act_words = Signal(LENGTH_BITS)
        self.scale_words = Signal(LENGTH_BITS)
        self.requant_words = Signal(LENGTH_BITS)
        self.compute_words = Signal(LENGTH_BITS)
        self.result_words = Signal(LENGTH_BITS)
        self.items_last = Signal(32)
        self.lo = Signal(signed(9))
        self.hi = Signal(signed(9))

    @staticmethod
    def _flag(values: list[bool]) -> Signal | Const:
        """A flag register, or a constant when every built mode has the same value."""
        return Const(int(values[0]), 1) if len(set(values)) == 1 else Signal()

    def _flags(self, f: ConfigFields) -> list[tuple[Value, Value]]:
        """(register, decoded field) of each mode flag; `double_macs` is `lanes2` itself
        unless K-pairs are built."""
        flags = [(self.mx, f.mx), (self.lanes2, f.lanes2)]
        if self._config.k_pairs:
            flags.append((self.double_macs, f.double_macs))
        return [*flags, (self.requant, f.requant)]

    @property
    def requant_bounds(self) -> tuple[Signal, Signal]:
        return self.lo, self.hi

    def apply(self, f: ConfigFields, act_words: Signal, compute_words: Signal,
              items: object, result_words: Signal) -> list:
        config = self._config
        int_min, mx_min = self._pass_mins
        pass_min = Mux(f.mx, mx_min, int_min)
        ppb_log2 = exact_log2(config.passes_per_block) if config.has_mx else 0
        kinds = OUT_KIND_CODES
        lo = Mux(f.out_kind == kinds["uint8"], 0,
                 Mux(f.out_kind == kinds["int8"], -128, -8))
        hi = Mux(f.out_kind == kinds["uint8"], 255, Mux(f.out_kind == kinds["int8"], 127, 7))
        return [
            self.mode.eq(f.mode),
            self.out_kind.eq(f.out_kind),
            self.rounding.eq(f.rounding),
            self.relu.eq(f.relu),
            self.zero_point.eq(f.zero_point),
            self.m.eq(f.m),
            self.m_last.eq(f.m - 1),
            self.k_last.eq(f.k_tiles - 1),
            self.groups_last.eq((f.n_tiles >> f.group_log2) - 1),
            self.group_last.eq((Const(1, 8) << f.group_log2) - 1),
            self.group_log2.eq(f.group_log2),
            self.lc.eq(f.lc),
            self.pass_last.eq(Mux(f.m > pass_min, f.m, pass_min) - 1),
            *(flag.eq(value) for flag, value in self._flags(f) if isinstance(flag, Signal)),
            self.act_words.eq(act_words),
            self.scale_words.eq(((act_words >> ppb_log2) + 7) >> 3),
            self.requant_words.eq(f.n << 1),
            self.compute_words.eq(compute_words),
            self.result_words.eq(result_words),
            self.items_last.eq(items - 1),
            self.lo.eq(Mux(f.relu & (f.zero_point > lo), f.zero_point, lo)),
            self.hi.eq(hi),
        ]


class ConfigureUnit:
    """The configuration registers and CONFIGURE's checks.

    `registers` are the applied configuration, `configured` whether a CONFIGURE succeeded
    since reset (and since the last CONFIGURE began). A CONFIGURE runs in seven steps, one
    per cycle of `phase` (one-hot, started by the decoder), with the multiplier's cycles in
    between: M * K-tiles, N-tiles * words per N-tile, M * N, result nibbles, result words,
    the checks registered, then applied (`steps`)."""

    def __init__(self, config: ArrayConfig, lc_max: int, pass_mins: tuple[int, int]) -> None:
        self._config = config
        self._lc_max = lc_max
        self.registers = ConfigRegisters(config, lc_max, pass_mins)
        self.configured = Signal()
        # One-hot: CONFIGURE's step in the decoder's state CONFIG.
        self.phase = Signal(7, name="config_phase")

    def build(self, m: Module, word0: Signal, word1: Signal) -> None:
        """The staged fields (`word0`, `word1`), the products and the checks."""
        config = self._config
        act_half = config.activation_bank_depth
        acc_half = config.accumulator_bank_depth
        f = self.fields = ConfigFields(m, config, word0, word1, self._lc_max)
        m.submodules.config_multiplier = multiplier = SerialMultiplier(16, 18)
        self.multiplier = multiplier
        product = multiplier.product
        self.act_words_calc = act_words_calc = Signal(32)
        self.compute_words_calc = compute_words_calc = Signal(34)
        self.result_words_calc = result_words_calc = Signal(40)  # result nibbles, then words
        self.items = product[:32]                 # M * N, from the last product
        # CONFIGURE's checks in the order of golden.reference: (status, field, failed).
        self.checks = checks = [
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
        self.config_flags = Signal(len(checks))
        self.error, self.which = first_failure(m, checks, self.config_flags)

    def _multiply(self, a: object, b: object) -> list:
        return [self.multiplier.start.eq(1), self.multiplier.a.eq(a), self.multiplier.b.eq(b)]

    def steps(self, m: Module, respond: Callable[..., list], final_last: Signal,
              items_rest: Signal, finish: Callable[[], None]) -> None:
        """CONFIGURE's steps (inside the decoder's CONFIG state): three products with one
        serial multiplier, then the checks, each registered as one flag, then taken in
        priority order (a short path per cycle: CONFIGURE is rare, the clock is not). The
        last step applies the configuration or answers the first failed check through
        `respond`, and calls `finish`."""
        f, c, multiplier = self.fields, self.registers, self.multiplier
        config_phase, product, items = self.phase, multiplier.product, self.items
        act_words_calc = self.act_words_calc
        compute_words_calc = self.compute_words_calc
        result_words_calc = self.result_words_calc
        config_flags, checks = self.config_flags, self.checks

        def next_phase() -> list:
            return [config_phase.eq(config_phase << 1)]

        with m.If(config_phase[0]):
            m.d.comb += self._multiply(f.m, f.k_tiles)
            m.d.sync += next_phase()
        with m.If(config_phase[1] & ~multiplier.busy):
            m.d.comb += self._multiply(f.n_tiles, f.tile_words)
            m.d.sync += [act_words_calc.eq(product), *next_phase()]
        with m.If(config_phase[2] & ~multiplier.busy):
            m.d.comb += self._multiply(f.m, f.n)
            m.d.sync += [compute_words_calc.eq(product), *next_phase()]
        with m.If(config_phase[3] & ~multiplier.busy):
            m.d.sync += [result_words_calc.eq(f.result_nibbles(items)), *next_phase()]
        with m.If(config_phase[4]):
            m.d.sync += [result_words_calc.eq(f.result_words(result_words_calc)),
                         *next_phase()]
        with m.If(config_phase[5]):
            m.d.sync += [config_flags.eq(Cat(*(bad for _, _, bad in checks))),
                         *next_phase()]
        with m.If(config_phase[6]):
            with m.If(config_flags == 0):
                m.d.sync += [
                    self.configured.eq(1),
                    items_rest.eq(items - 2),
                    *c.apply(f, act_words_calc, compute_words_calc, items,
                             result_words_calc),
                    *respond(Mux(final_last, Status.OK, Status.TOO_LONG),
                             discard=~final_last),
                ]
            with m.Else():
                m.d.sync += respond(self.error, field=self.which, discard=~final_last)
            finish()
