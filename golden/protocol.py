"""The lpmac packet protocol, version 2.1 (docs/protocol.md is the prose version).

Everything here is pure Python/NumPy and shared by the three parties that must agree bit for
bit: the gateware (`hw.accelerator` takes its opcodes, codes and field layouts from this
module), the reference executor (`golden.reference`) and the host packer (`host.tiling`).

Words are 64 bits; a packet is a header word plus `length` payload words, and the `last`
flag of the stream marks its final word. An activation vector of R bytes takes
`vector_words` words and a weight row of C bytes `weight_row_words` (one each up to 8 x 8,
as in version 2.0; up to four for 32 x 32 arrays). Fields are little-endian bit ranges of a word.
Every word with fields is a `WordLayout` here (`HEADER`, `STATUS`, `CONFIGURE`,
`REQUANT`, `IDENTIFY`, `BANK_ARGS`): the host codec encodes and decodes with it, and the
gateware's `lib.data` layouts are derived from it (`hw.wire`), so each field is written once.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .config import MODE_INFO, MODES, ArrayConfig

__all__ = [
    "PROTOCOL_VERSION", "MAX_ARRAY", "protocol_version", "vector_words", "weight_row_words",
    "MAGIC", "WORD_BITS", "WORD_MASK", "MAX_LENGTH", "LENGTH_BITS",
    "WordField", "WordLayout", "HEADER", "BANK_ARGS", "STATUS", "CONFIGURE", "REQUANT",
    "IDENTIFY", "response_length", "Opcode", "Status",
    "Field", "OUT_KINDS", "REQUANT_KINDS", "MX_KINDS", "INTEGER_MODE_KINDS", "MX_MODE_KINDS",
    "COUNTER_NAMES", "Header",
    "StatusWord", "Packet", "Response", "Beat", "ConfigureFields", "Geometry",
    "check_accelerator_config", "mode_code", "out_kind_code", "encode_configure",
    "decode_configure", "check_configure", "identify_words", "decode_identify",
    "UNIDENTIFIED_FIELDS", "identified_fields",
    "encode_requant_words", "split_packets", "parse_responses", "item_nibbles",
    "MX_CODE_NIBBLES", "activation_word", "weight_word",
    "pack_results", "unpack_results", "words_to_nibbles", "nibbles_to_words",
]

PROTOCOL_VERSION = (2, 1)
"""(major, minor) of this specification: a host refuses a different major version.
Version 2.1 adds activation vectors and weight rows of several words (arrays of more than 8
rows or columns); with R, C <= 8 every packet is the same as in 2.0, and such an accelerator
reports 2.0 (`protocol_version`)."""
MAX_ARRAY = 32
"""Largest R and C the protocol carries: a vector or weight row of up to four words."""
MAGIC = 0x434D504C
"""The first 32 bits of IDENTIFY's first word: "LPMC" as little-endian bytes."""
WORD_BITS = 64
WORD_MASK = (1 << WORD_BITS) - 1
LENGTH_BITS = 24
MAX_LENGTH = (1 << LENGTH_BITS) - 1
"""Largest payload length a header can state."""

Beat = tuple[int, bool]
"""One transfer of the stream: (64-bit word, last)."""


@dataclass(frozen=True)
class WordField:
    """Bits `offset` .. `offset + width - 1` of a word; two's complement if `signed`."""

    offset: int
    width: int
    signed: bool = False

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    @property
    def range(self) -> tuple[int, int]:
        """(lowest, highest) value the field holds."""
        if self.signed:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, self.mask


class WordLayout:
    """The named fields of one wire word (bits no field names are 0).

    `encode` builds a word from field values (each must fit its field), `encode_wrapped`
    from raw values taken modulo the field's width, `decode` reads the fields back (signed
    fields sign-extended); `encode_array` / `decode_array` do the same on NumPy arrays of
    words. `hw.wire.layout` turns a `WordLayout` into the gateware's `lib.data` layout."""

    def __init__(self, name: str, fields: dict[str, WordField], width: int = 64) -> None:
        self.name = name
        self.width = width
        self.fields = dict(fields)
        used = 0
        for field_name, field in self.fields.items():
            bits = field.mask << field.offset
            if field.offset < 0 or field.width < 1 or field.offset + field.width > width \
                    or used & bits:
                raise ValueError(f"{name}: field {field_name!r} {field} overlaps or leaves the "
                                 f"{width}-bit word")
            used |= bits

    def __repr__(self) -> str:
        return f"WordLayout({self.name!r})"

    def __getitem__(self, name: str) -> WordField:
        return self.fields[name]

    def _known(self, values: dict[str, int]) -> None:
        unknown = set(values) - set(self.fields)
        if unknown:
            raise ValueError(f"{self.name} has no field {sorted(unknown)[0]!r}")

    def encode(self, **values: int) -> int:
        """The word holding `values` (missing fields are 0); each value must fit."""
        self._known(values)
        for name, value in values.items():
            low, high = self.fields[name].range
            if not low <= value <= high:
                raise ValueError(f"{self.name} {name} must be in [{low}, {high}], "
                                 f"not {value!r}")
        return self.encode_wrapped(**values)

    def encode_wrapped(self, **values: int) -> int:
        """The word holding each value modulo its field's width."""
        self._known(values)
        word = 0
        for name, value in values.items():
            field = self.fields[name]
            word |= (int(value) & field.mask) << field.offset
        return word

    def decode(self, word: int) -> dict[str, int]:
        """Every field of `word`, signed fields sign-extended."""
        result = {}
        for name, field in self.fields.items():
            value = (int(word) >> field.offset) & field.mask
            if field.signed and value >> (field.width - 1):
                value -= 1 << field.width
            result[name] = value
        return result

    def encode_array(self, **values: np.ndarray) -> np.ndarray:
        """`encode_wrapped` of arrays (broadcast together): uint64 words."""
        self._known(values)
        arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.int64) for v in values.values()))
        words = np.zeros(arrays[0].shape if arrays else (), dtype=np.uint64)
        for name, value in zip(values, arrays, strict=True):
            field = self.fields[name]
            words |= (value.astype(np.uint64) & np.uint64(field.mask)) << np.uint64(field.offset)
        return words

    def decode_array(self, words: np.ndarray, name: str) -> np.ndarray:
        """Field `name` of every word of `words` (int64, signed fields sign-extended)."""
        field = self.fields[name]
        words = np.asarray(words, dtype=np.uint64)
        value = ((words >> np.uint64(field.offset)) & np.uint64(field.mask)).astype(np.int64)
        if field.signed:
            value = np.where(value >> (field.width - 1) != 0, value - (1 << field.width), value)
        return value


HEADER = WordLayout("header", {
    "opcode": WordField(0, 8),
    "tag": WordField(8, 8),
    "length": WordField(16, LENGTH_BITS),
    "args": WordField(40, 24),
})
"""Every packet's first word: opcode (`Opcode`), tag (echoed), payload length, arguments."""

BANK_ARGS = WordLayout("bank arguments", {"bank": WordField(0, 8)}, width=24)
"""The header arguments of LOAD_SCALES, LOAD_ACTIVATIONS and COMPUTE: the bank (0 or 1)."""

STATUS = WordLayout("status", {
    "code": WordField(0, 8),
    "opcode": WordField(8, 8),
    "field": WordField(16, 8),
    "value": WordField(32, 32),
})
"""The last word of every response: `Status`, the request's opcode, the `Field` a
BAD_FIELD or TOO_LARGE refers to, and a value (a length or a word count)."""

CONFIGURE = (
    WordLayout("configure word 0", {
        "mode": WordField(0, 3),            # MODES.index(mode)
        "rounding": WordField(4, 1),        # 0 fp32, 1 gemmlowp
        "relu": WordField(5, 1),
        "out_kind": WordField(8, 3),        # OUT_KINDS.index(kind)
        "zero_point": WordField(16, 9, signed=True),
    }),
    WordLayout("configure word 1", {
        "m": WordField(0, 16),
        "k": WordField(16, 16),
        "n": WordField(32, 16),
    }),
)
"""CONFIGURE's two payload words."""

REQUANT = (
    WordLayout("requant word 0", {
        "bias": WordField(0, 32, signed=True),
        "multiplier": WordField(32, 32),    # float32 bits of s32 (fp32), or q31 (gemmlowp)
    }),
    WordLayout("requant word 1", {"shift": WordField(0, 6, signed=True)}),
)
"""LOAD_REQUANT's two words per output channel."""

IDENTIFY = (
    WordLayout("identify word 0", {
        "magic": WordField(0, 32),
        "major": WordField(32, 8),
        "minor": WordField(40, 8),
        "k_pairs": WordField(48, 1),        # int4 packing: 1 = k-pairs
        "acc_truncate": WordField(49, 1),   # acc rounding: 1 = truncate
        "counter_bits": WordField(56, 8),
    }),
    WordLayout("identify word 1", {
        "rows": WordField(0, 8),
        "cols": WordField(8, 8),
        "block_size": WordField(16, 8),
        "acc_bits": WordField(24, 8),
        "stream_width": WordField(32, 16),
        "modes": WordField(48, 8),          # bit i = MODES[i]
    }),
    WordLayout("identify word 2", {
        "weight_buffer_depth": WordField(0, 32),
        "activation_buffer_depth": WordField(32, 32),
    }),
    WordLayout("identify word 3", {
        "accumulator_depth": WordField(0, 32),
        "requant_depth": WordField(32, 32),
    }),
)
"""IDENTIFY's four data words."""


def activation_word(config: ArrayConfig) -> WordLayout:
    """A LOAD_ACTIVATIONS payload word: one activation vector (R <= 8) or word j of one
    (`vector_words`), row 8j + r's byte in bits 8r + 7 .. 8r (an int8 value, or two int4
    K-elements with K-pairs)."""
    return WordLayout("activation word", {"vector": WordField(0, 8 * min(config.rows, 8))})


def weight_word(config: ArrayConfig) -> WordLayout:
    """A weight-row word of COMPUTE's payload: one row (C <= 8) or word j of one
    (`weight_row_words`), column 8j + c's byte in bits 8c + 7 .. 8c (an int8 weight, or two
    int4 weights: lane 0 in the low nibble)."""
    return WordLayout("weight word", {"row": WordField(0, 8 * min(config.cols, 8))})


def response_length(data_words: object) -> object:
    """A response's header length: its data words and the status word (an int, or a
    gateware value)."""
    return data_words + 1


class Opcode(enum.IntEnum):
    """Request opcodes (header bits 7..0); a response echoes its request's opcode."""

    IDENTIFY = 0x01
    CONFIGURE = 0x02
    LOAD_REQUANT = 0x03
    LOAD_SCALES = 0x04
    LOAD_ACTIVATIONS = 0x05
    COMPUTE = 0x06
    READ_COUNTERS = 0x07
    CLEAR_COUNTERS = 0x08


class Status(enum.IntEnum):
    """Status codes (status word bits 7..0): the reason."""

    OK = 0
    BAD_OPCODE = 1      # the opcode is not one of `Opcode`
    BAD_LENGTH = 2      # header length differs from what the command needs (value: needed)
    TRUNCATED = 3       # `last` came before `length` payload words (value: words received)
    TOO_LONG = 4        # no `last` on the final payload word; the rest of the packet is dropped
    BAD_FIELD = 5       # a field is out of range (field: which)
    TOO_LARGE = 6       # the configured tile does not fit a buffer (field: which)
    NOT_CONFIGURED = 7  # the command needs a successful CONFIGURE first
    NOT_APPLICABLE = 8  # the command does not apply to the configured mode or output


class Field(enum.IntEnum):
    """What a BAD_FIELD or TOO_LARGE status refers to (status word bits 23..16)."""

    NONE = 0
    BANK = 1
    MODE = 2
    OUT_KIND = 3
    ZERO_POINT = 4
    M = 5
    K = 6
    N = 7
    ACTIVATIONS = 8     # activation buffer bank (and the MX scale bank that shadows it)
    ACCUMULATORS = 9    # accumulator bank
    REQUANT = 10        # requantization parameter memory
    LENGTH = 11         # a packet length would exceed MAX_LENGTH


OUT_KINDS: tuple[str, ...] = ("uint8", "int8", "int4", "int32", "fp32", "mxint8", "mxint4")
"""Output kinds in code order (CONFIGURE word 0 bits 10..8)."""
REQUANT_KINDS = ("uint8", "int8", "int4")
MX_KINDS = ("mxint8", "mxint4")
INTEGER_MODE_KINDS = ("uint8", "int8", "int4", "int32")
"""The output kinds of the integer modes."""
MX_MODE_KINDS = ("fp32", "mxint8", "mxint4")
"""The output kinds of the MX modes."""
_OUT_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "int4": (-8, 7)}

COUNTER_NAMES = ("cycles", "busy", "input_stall", "output_stall", "macs")
"""READ_COUNTERS payload order."""
DETERMINISTIC_COUNTERS = ("busy", "macs")
"""Counters whose values do not depend on stream timing."""


def check_accelerator_config(config: ArrayConfig) -> None:
    """Refuse configurations this protocol cannot carry: 64-bit stream beats (one word per
    beat) and arrays of at most `MAX_ARRAY` rows and columns."""
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"config must be an ArrayConfig, not {config!r}")
    version = f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}"
    if config.stream_width != WORD_BITS:
        raise ValueError(f"protocol {version} needs stream_width 64, not "
                         f"{config.stream_width!r}")
    for name in ("rows", "cols"):
        if getattr(config, name) > MAX_ARRAY:
            raise ValueError(
                f"{name} must be at most {MAX_ARRAY} for protocol {version} (vectors and "
                f"weight rows of up to {MAX_ARRAY // 8} words), not {getattr(config, name)!r}")


def vector_words(config: ArrayConfig) -> int:
    """Words of one activation vector (R bytes, 8 per word): LOAD_ACTIVATIONS sends
    `vector_words` words per vector, rows 8j .. 8j + 7 in word j."""
    return -(-config.rows // 8)


def weight_row_words(config: ArrayConfig) -> int:
    """Words of one weight row (C bytes, 8 per word) in COMPUTE's payload, columns
    8j .. 8j + 7 in word j."""
    return -(-config.cols // 8)


def protocol_version(config: ArrayConfig) -> tuple[int, int]:
    """The version an accelerator built with `config` reports: 2.0 when every vector and
    weight row is one word (R, C <= 8: its packets are 2.0's, word for word), else 2.1."""
    if vector_words(config) == 1 and weight_row_words(config) == 1:
        return (2, 0)
    return PROTOCOL_VERSION


def mode_code(mode: str) -> int:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return MODES.index(mode)


def out_kind_code(out_kind: str) -> int:
    if out_kind not in OUT_KINDS:
        raise ValueError(f"out_kind must be one of {', '.join(OUT_KINDS)}, not {out_kind!r}")
    return OUT_KINDS.index(out_kind)


# --- Header and status words ---------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    """bits 7..0 opcode, 15..8 tag, 39..16 length (payload words), 63..40 args."""

    opcode: int
    tag: int
    length: int
    args: int = 0

    def encode(self) -> int:
        return HEADER.encode(opcode=self.opcode, tag=self.tag, length=self.length,
                             args=self.args)

    @classmethod
    def decode(cls, word: int) -> Header:
        return cls(**HEADER.decode(word))

    @property
    def bank(self) -> int:
        """The bank argument of LOAD_SCALES, LOAD_ACTIVATIONS and COMPUTE."""
        return BANK_ARGS.decode(self.args)["bank"]


@dataclass(frozen=True)
class StatusWord:
    """bits 7..0 code, 15..8 opcode, 23..16 field, 63..32 value (31..24 reserved, 0)."""

    code: int
    opcode: int
    field: int = 0
    value: int = 0

    def encode(self) -> int:
        return STATUS.encode_wrapped(code=self.code, opcode=self.opcode, field=self.field,
                                     value=self.value)

    @classmethod
    def decode(cls, word: int) -> StatusWord:
        return cls(**STATUS.decode(word))

    @property
    def ok(self) -> bool:
        return self.code == Status.OK

    def describe(self) -> str:
        """One sentence naming the command and the reason."""
        try:
            command = Opcode(self.opcode).name
        except ValueError:
            command = f"opcode {self.opcode:#04x}"
        try:
            reason = Status(self.code).name
        except ValueError:
            reason = f"status {self.code}"
        text = f"{command}: {reason}"
        if self.field:
            try:
                text += f" ({Field(self.field).name})"
            except ValueError:
                text += f" (field {self.field})"
        if self.code in (Status.BAD_LENGTH, Status.TRUNCATED):
            text += f", value {self.value}"
        return text


@dataclass(frozen=True)
class Packet:
    """A request or response: the header and the payload words (for responses the payload
    ends with the status word)."""

    header: Header
    payload: tuple[int, ...] = ()

    @classmethod
    def make(cls, opcode: int, tag: int, payload: Sequence[int] = (), args: int = 0) -> Packet:
        payload = tuple(int(word) for word in payload)
        for word in payload:
            if not 0 <= word <= WORD_MASK:
                raise ValueError(f"payload words must be 64-bit unsigned, not {word!r}")
        return cls(Header(int(opcode), tag, len(payload), args), payload)

    def beats(self) -> list[Beat]:
        words = [self.header.encode(), *self.payload]
        return [(word, index == len(words) - 1) for index, word in enumerate(words)]


@dataclass(frozen=True)
class Response:
    """A response packet split into header, data words and the final status word."""

    header: Header
    data: tuple[int, ...]
    status: StatusWord

    @property
    def ok(self) -> bool:
        return self.status.ok


def split_packets(beats: Iterable[Beat]) -> list[list[Beat]]:
    """Cut a beat sequence at its `last` flags (a trailing unfinished packet is kept)."""
    packets: list[list[Beat]] = [[]]
    for word, last in beats:
        packets[-1].append((int(word), bool(last)))
        if last:
            packets.append([])
    return [packet for packet in packets if packet]


def parse_responses(beats: Iterable[Beat]) -> list[Response]:
    """Decode response packets, checking each one's framing (length and `last`)."""
    responses = []
    for packet in split_packets(beats):
        header = Header.decode(packet[0][0])
        if len(packet) != header.length + 1 or not packet[-1][1] or header.length < 1:
            raise ValueError(
                f"malformed response packet: header says {header.length} payload words, "
                f"the packet has {len(packet) - 1}")
        words = [word for word, _ in packet[1:]]
        responses.append(Response(header, tuple(words[:-1]), StatusWord.decode(words[-1])))
    return responses


# --- CONFIGURE -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigureFields:
    """The raw fields of a CONFIGURE payload (any values; `check_configure` validates).

    word 0: bits 2..0 mode, 4 rounding (0 fp32, 1 gemmlowp), 5 relu, 10..8 out kind,
    24..16 output zero point (9-bit two's complement). word 1: bits 15..0 M, 31..16 K,
    47..32 N."""

    mode: int
    out_kind: int
    rounding: int
    relu: int
    zero_point: int
    m: int
    k: int
    n: int

    def encode(self) -> list[int]:
        values = vars(self)
        return [layout.encode_wrapped(**{name: values[name] for name in layout.fields})
                for layout in CONFIGURE]


def encode_configure(*, mode: str, out_kind: str, m: int, k: int, n: int,
                     rounding: str = "fp32", relu: bool = False,
                     zero_point: int = 0) -> ConfigureFields:
    """CONFIGURE fields from names (validated as far as the encoding goes)."""
    if rounding not in ("fp32", "gemmlowp"):
        raise ValueError(f"rounding must be 'fp32' or 'gemmlowp', not {rounding!r}")
    for name, value in (("m", m), ("k", k), ("n", n)):
        if not 0 < value < (1 << 16):
            raise ValueError(f"{name} must be in [1, 65535], not {value!r}")
    if not -256 <= zero_point <= 255:
        raise ValueError(f"zero_point must fit 9 signed bits, not {zero_point!r}")
    return ConfigureFields(mode_code(mode), out_kind_code(out_kind),
                           int(rounding == "gemmlowp"), int(bool(relu)), zero_point, m, k, n)


def decode_configure(words: Sequence[int]) -> ConfigureFields:
    fields: dict[str, int] = {}
    for layout, word in zip(CONFIGURE, words, strict=True):
        fields.update(layout.decode(word))
    return ConfigureFields(**fields)


MX_CODE_NIBBLES = 2
"""Nibbles of an MX block's E8M0 scale code, which precedes the block's elements."""


def item_nibbles(out_kind: str) -> int:
    """Nibbles of one result element in the result stream (an MX block's first element is
    preceded by its code, `MX_CODE_NIBBLES` more)."""
    return {"uint8": 2, "int8": 2, "int4": 1, "int32": 8, "fp32": 8, "mxint8": 2,
            "mxint4": 1}[out_kind]


@dataclass(frozen=True)
class Geometry:
    """Everything that follows from a valid CONFIGURE: tile sizes and packet lengths.

    lc: output columns per array pass (C, or 2C in 4-bit-weight modes); kt: K / R array
    passes per N-tile; nt: N / lc N-tiles; nb: K / BK MX blocks; group: N-tiles drained
    together (BK / lc for MX outputs, which are re-blocked along N, else 1); block_scale_words:
    words of B scale codes per (N-tile, K-block) in COMPUTE; vector_words, row_words: words
    per activation vector and per weight row; *_words: payload lengths."""

    config: ArrayConfig
    mode: str
    out_kind: str
    rounding: str
    relu: bool
    zero_point: int
    m: int
    k: int
    n: int
    lanes: int
    lc: int
    kt: int
    nt: int
    nb: int
    group: int
    block_scale_words: int
    vector_words: int
    row_words: int
    act_words: int
    scale_words: int
    requant_words: int
    compute_words: int
    items: int
    result_words: int

    @property
    def mx(self) -> bool:
        return MODE_INFO[self.mode].mx

    @property
    def requant(self) -> bool:
        return self.out_kind in REQUANT_KINDS

    @property
    def vectors(self) -> int:
        """Activation vectors one COMPUTE sends through the array."""
        return self.nt * self.kt * self.m

    @property
    def macs(self) -> int:
        """MACs of one COMPUTE as the counters count them (padding included)."""
        return (self.vectors * self.config.rows * self.config.cols
                * self.config.mode(self.mode).macs_per_pe)


def check_configure(config: ArrayConfig,
                    fields: ConfigureFields) -> tuple[Status, Field, Geometry | None]:
    """Validate CONFIGURE fields in the hardware's order; (OK, NONE, geometry) if valid."""
    rows, cols, block = config.rows, config.cols, config.block_size
    if fields.mode >= len(MODES) or MODES[fields.mode] not in config.modes:
        return Status.BAD_FIELD, Field.MODE, None
    mode = MODES[fields.mode]
    info = config.mode(mode)
    allowed = MX_MODE_KINDS if info.mx else INTEGER_MODE_KINDS
    if fields.out_kind >= len(OUT_KINDS) or OUT_KINDS[fields.out_kind] not in allowed:
        return Status.BAD_FIELD, Field.OUT_KIND, None
    out_kind = OUT_KINDS[fields.out_kind]
    requant = out_kind in REQUANT_KINDS
    if requant:
        lo, hi = _OUT_RANGES[out_kind]
        if not lo <= fields.zero_point <= hi:
            return Status.BAD_FIELD, Field.ZERO_POINT, None
    lc = cols * info.lanes
    k_granule = block if info.mx else rows
    n_granule = block if out_kind in MX_KINDS else lc
    m, k, n = fields.m, fields.k, fields.n
    if m == 0:
        return Status.BAD_FIELD, Field.M, None
    if k == 0 or k % k_granule:
        return Status.BAD_FIELD, Field.K, None
    if n == 0 or n % n_granule:
        return Status.BAD_FIELD, Field.N, None
    kt, nt = k // rows, n // lc
    nb = k // block if info.mx else 0
    group = block // lc if out_kind in MX_KINDS else 1
    if m * kt > config.activation_bank_depth:
        return Status.TOO_LARGE, Field.ACTIVATIONS, None
    if m * group > config.accumulator_bank_depth:
        return Status.TOO_LARGE, Field.ACCUMULATORS, None
    if requant and n > config.requant_depth:
        return Status.TOO_LARGE, Field.REQUANT, None
    block_scale_words = -(-lc // 8) if info.mx else 0
    words_per_vector, words_per_row = vector_words(config), weight_row_words(config)
    compute_words = nt * (k * words_per_row + nb * block_scale_words)
    items = m * n
    nibbles = items * item_nibbles(out_kind) + (items // block * MX_CODE_NIBBLES
                                               if out_kind in MX_KINDS
                                               else 0)
    result_words = -(-nibbles // 16)
    if compute_words > MAX_LENGTH or response_length(result_words) > MAX_LENGTH:
        return Status.TOO_LARGE, Field.LENGTH, None
    geometry = Geometry(
        config=config, mode=mode, out_kind=out_kind,
        rounding="gemmlowp" if fields.rounding else "fp32", relu=bool(fields.relu),
        zero_point=fields.zero_point, m=m, k=k, n=n, lanes=info.lanes, lc=lc, kt=kt, nt=nt,
        nb=nb, group=group, block_scale_words=block_scale_words,
        vector_words=words_per_vector, row_words=words_per_row,
        act_words=m * kt * words_per_vector,
        scale_words=-(-(m * nb) // 8), requant_words=2 * n, compute_words=compute_words,
        items=items, result_words=result_words)
    return Status.OK, Field.NONE, geometry


# --- IDENTIFY -------------------------------------------------------------------------------

def identify_words(config: ArrayConfig) -> list[int]:
    """IDENTIFY's four data words (`IDENTIFY`): the magic number, the protocol version
    (`protocol_version`), the
    int4 packing, the accumulator rounding and the counter width; the array, block size,
    accumulator, stream width and modes (bit i = MODES[i]); the buffer depths."""
    fields = {
        "magic": MAGIC, "major": protocol_version(config)[0],
        "minor": protocol_version(config)[1],
        "modes": sum(1 << MODES.index(mode) for mode in config.modes),
        "k_pairs": int(config.int4_packing == "k-pairs"),
        "acc_truncate": int(config.acc_rounding == "truncate"),
        "counter_bits": config.counter_bits,
        **{name: getattr(config, name) for name in (
            "rows", "cols", "block_size", "acc_bits", "stream_width", "weight_buffer_depth",
            "activation_buffer_depth", "accumulator_depth", "requant_depth")},
    }
    return [layout.encode(**{name: fields[name] for name in layout.fields})
            for layout in IDENTIFY]


UNIDENTIFIED_FIELDS = ("multiplier", "pipeline", "activation_memory", "drain_pairs")
"""`ArrayConfig` fields IDENTIFY does not carry: how the hardware is built, which changes
neither the protocol nor any result. `decode_identify` leaves them at their defaults."""


def identified_fields(config: ArrayConfig) -> dict[str, object]:
    """The fields of `config` that IDENTIFY carries, by name."""
    return {name: value for name, value in config.as_dict().items()
            if name not in UNIDENTIFIED_FIELDS}


def decode_identify(words: Sequence[int]) -> tuple[tuple[int, int], ArrayConfig]:
    """(protocol version, ArrayConfig) from IDENTIFY's data words (`UNIDENTIFIED_FIELDS`
    at their defaults, except the multiplier of a K-pairs build: "ice40-sb-mac16", the one
    that implements K-pairs)."""
    if len(words) != len(IDENTIFY) or IDENTIFY[0].decode(words[0])["magic"] != MAGIC:
        raise ValueError("not an lpmac IDENTIFY response (magic number missing)")
    fields: dict[str, int] = {}
    for layout, word in zip(IDENTIFY, words, strict=True):
        fields.update(layout.decode(word))
    version = (fields.pop("major"), fields.pop("minor"))
    del fields["magic"]
    fields["modes"] = tuple(mode for index, mode in enumerate(MODES)
                            if fields["modes"] >> index & 1)
    if fields.pop("k_pairs"):
        fields.update(int4_packing="k-pairs", multiplier="ice40-sb-mac16")
    fields["acc_rounding"] = "truncate" if fields.pop("acc_truncate") else "nearest"
    return version, ArrayConfig(**fields)


# --- LOAD_REQUANT ---------------------------------------------------------------------------

def encode_requant_words(bias: np.ndarray, multiplier_bits: np.ndarray,
                         shift: np.ndarray) -> list[int]:
    """Two words per channel (`REQUANT`): bias and multiplier, then the shift.

    `multiplier_bits` are the 32 bits the requantizer takes: the float32 pattern of s32
    (fp32 rounding) or q31 (gemmlowp); `shift` is gemmlowp's shift in [-32, 31]."""
    first = REQUANT[0].encode_array(bias=bias, multiplier=multiplier_bits)
    words = np.empty(2 * first.size, dtype=np.uint64)
    words[0::2] = first.reshape(-1)
    words[1::2] = REQUANT[1].encode_array(shift=shift).reshape(-1)
    return [int(word) for word in words]


# --- Result stream --------------------------------------------------------------------------

def words_to_nibbles(words: Sequence[int]) -> np.ndarray:
    """The nibble stream of 64-bit words: each word's nibbles, least significant first."""
    array = np.asarray([int(w) for w in words], dtype=np.uint64)
    as_bytes = array.astype("<u8").view(np.uint8)
    nibbles = np.empty(as_bytes.size * 2, dtype=np.uint8)
    nibbles[0::2] = as_bytes & 0x0F
    nibbles[1::2] = as_bytes >> 4
    return nibbles


def nibbles_to_words(nibbles: np.ndarray) -> list[int]:
    """Inverse of `words_to_nibbles`; the stream is padded with zero nibbles to whole words."""
    nibbles = np.asarray(nibbles, dtype=np.uint8)
    padded = np.zeros(-(-nibbles.size // 16) * 16, dtype=np.uint8)
    padded[:nibbles.size] = nibbles
    as_bytes = (padded[0::2] | (padded[1::2] << 4)).astype(np.uint8)
    return [int(word) for word in as_bytes.view("<u8")]


def _value_nibbles(values: np.ndarray, count: int) -> np.ndarray:
    """[..., count] nibbles of each value, least significant first."""
    values = np.asarray(values, dtype=np.int64)
    shifts = 4 * np.arange(count, dtype=np.int64)
    return ((values[..., None] >> shifts) & 0xF).astype(np.uint8)


def _result_order(geometry: Geometry, matrix: np.ndarray) -> np.ndarray:
    """[M, N] -> [NG, M, group * lc]: the order in which the drain emits the elements."""
    span = geometry.group * geometry.lc
    return matrix.reshape(geometry.m, geometry.n // span, span).transpose(1, 0, 2)


def pack_results(geometry: Geometry, values: np.ndarray,
                 codes: np.ndarray | None = None) -> list[int]:
    """The result words of one COMPUTE: `values` [M, N] (element bit patterns as integers:
    outputs, int32 accumulators, float32 bits or MX elements) and, for MX outputs, the
    scale codes [M, N / BK]. Elements go out group by group, row by row (`_result_order`),
    each as `item_nibbles` nibbles; an MX block is its code (2 nibbles) and its elements."""
    nibble_count = item_nibbles(geometry.out_kind)
    ordered = _result_order(geometry, np.asarray(values, dtype=np.int64))
    element_nibbles = _value_nibbles(ordered, nibble_count)     # [NG, M, span, n]
    if geometry.out_kind in MX_KINDS:
        if codes is None:
            raise ValueError("MX outputs need their scale codes")
        block = geometry.config.block_size
        codes = np.asarray(codes, dtype=np.int64).reshape(geometry.m, -1, 1)
        code_nibbles = _value_nibbles(_result_order_codes(geometry, codes), MX_CODE_NIBBLES)
        per_block = element_nibbles.reshape(*ordered.shape[:2], -1, block * nibble_count)
        stream = np.concatenate(
            [code_nibbles.reshape(*per_block.shape[:3], MX_CODE_NIBBLES), per_block], axis=-1)
    else:
        stream = element_nibbles
    words = nibbles_to_words(stream.reshape(-1))
    assert len(words) == geometry.result_words
    return words


def _result_order_codes(geometry: Geometry, codes: np.ndarray) -> np.ndarray:
    """MX codes [M, N / BK, 1] -> [NG, M, 1] (a group is exactly one block per row)."""
    return codes.transpose(1, 0, 2)


def unpack_results(geometry: Geometry,
                   words: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of `pack_results`: (values [M, N] as unsigned bit patterns of
    `item_nibbles` nibbles, MX codes [M, N / BK] or None)."""
    if len(words) != geometry.result_words:
        raise ValueError(f"a COMPUTE result has {geometry.result_words} words, not {len(words)}")
    nibble_count = item_nibbles(geometry.out_kind)
    span = geometry.group * geometry.lc
    groups = geometry.n // span
    stream = words_to_nibbles(words)
    weights = (1 << (4 * np.arange(nibble_count, dtype=np.int64)))
    codes = None
    if geometry.out_kind in MX_KINDS:
        per_block = 2 + span * nibble_count
        blocks = stream[:groups * geometry.m * per_block].reshape(groups, geometry.m, per_block)
        codes = (blocks[..., 0].astype(np.int64) | blocks[..., 1].astype(np.int64) << 4)
        codes = codes.transpose(1, 0)
        elements = blocks[..., 2:].reshape(groups, geometry.m, span, nibble_count)
    else:
        elements = stream[:geometry.items * nibble_count].reshape(
            groups, geometry.m, span, nibble_count)
    values = (elements.astype(np.int64) * weights).sum(axis=-1)
    return values.transpose(1, 0, 2).reshape(geometry.m, geometry.n), codes
