"""One definition of every wire field: the host codec (`golden.protocol.WordLayout`) and the
gateware's layouts (`hw.wire`) agree, in both directions, on random and extreme values."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from golden.config import ArrayConfig
from golden.protocol import (
    BANK_ARGS,
    CONFIGURE,
    HEADER,
    IDENTIFY,
    REQUANT,
    STATUS,
    ConfigureFields,
    Header,
    StatusWord,
    WordField,
    WordLayout,
    activation_word,
    decode_configure,
    decode_identify,
    encode_requant_words,
    identify_words,
    weight_word,
)
from hw.pe import Mode
from hw.wire import layout, pack

SEED = 20261207
CONFIG = ArrayConfig()
LAYOUTS = [HEADER, BANK_ARGS, STATUS, *CONFIGURE, *REQUANT, *IDENTIFY,
           activation_word(CONFIG), weight_word(CONFIG)]


def _random_values(rng: np.random.Generator, word: WordLayout) -> list[dict[str, int]]:
    """Field values: every field's extremes, then random ones."""
    cases = [{name: field.range[0] for name, field in word.fields.items()},
             {name: field.range[1] for name, field in word.fields.items()}]
    for _ in range(50):
        cases.append({name: field.range[0] + int.from_bytes(rng.bytes(8), "little")
                      % (field.range[1] - field.range[0] + 1)
                      for name, field in word.fields.items()})
    return cases


@pytest.mark.parametrize("word", LAYOUTS, ids=lambda word: word.name)
def test_host_and_gateware_layouts_agree(word: WordLayout) -> None:
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    gateware = layout(word)
    assert gateware.size == word.width
    for values in _random_values(rng, word):
        encoded = word.encode(**values)
        # host -> gateware: the gateware's fields of the host's word are the values
        as_gateware = gateware.from_bits(encoded)
        assert {name: int(getattr(as_gateware, name)) for name in word.fields} == values
        # gateware -> host: a word the gateware's layout builds decodes to the values
        built = gateware.const(values).as_bits()
        assert built == encoded
        assert word.decode(built) == values


def test_pack_builds_the_hosts_words_in_simulation() -> None:
    """`hw.wire.pack` (the gateware building a word from signals of any width) gives the
    word `WordLayout.encode` gives, for the header and status words the accelerator sends."""
    rng = np.random.default_rng(SEED + 1)
    m = Module()
    code, opcode, field, value = Signal(4), Signal(8), Signal(4), Signal(24)
    tag, length = Signal(8), Signal(24)
    status_word, header_word = Signal(64), Signal(64)
    m.d.comb += [
        status_word.eq(pack(STATUS, code=code, opcode=opcode, field=field, value=value)),
        header_word.eq(pack(HEADER, opcode=opcode, tag=tag, length=length)),
    ]
    cases = [(15, 255, 15, (1 << 24) - 1, 255, (1 << 24) - 1), (0, 0, 0, 0, 0, 0)]
    cases += [tuple(int(rng.integers(0, 1 << bits)) for bits in (4, 8, 4, 24, 8, 24))
              for _ in range(40)]

    async def testbench(ctx) -> None:
        for c, o, f, v, t, n in cases:
            for signal, number in ((code, c), (opcode, o), (field, f), (value, v), (tag, t),
                                   (length, n)):
                ctx.set(signal, number)
            assert ctx.get(status_word) == StatusWord(c, o, f, v).encode()
            assert ctx.get(header_word) == Header(o, t, n).encode()

    simulator = Simulator(m)
    simulator.add_testbench(testbench)
    simulator.run()


def test_pack_refuses_unknown_fields() -> None:
    with pytest.raises(ValueError, match="status has no field 'colour'"):
        pack(STATUS, colour=Signal(2))


def test_word_layout_refuses_overlaps_and_bad_values() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        WordLayout("bad", {"a": WordField(0, 8), "b": WordField(4, 8)})
    with pytest.raises(ValueError, match="overlaps or leaves"):
        WordLayout("bad", {"a": WordField(60, 8)})
    with pytest.raises(ValueError, match=r"configure word 0 zero_point must be in \[-256, 255\]"):
        CONFIGURE[0].encode(zero_point=256)
    with pytest.raises(ValueError, match="header has no field 'bank'"):
        HEADER.encode(bank=1)


def test_codecs_are_the_layouts() -> None:
    """The host's message classes encode through the layouts (spot values written out by
    hand from docs/protocol.md)."""
    assert Header(0x06, 0x12, 0x345678, 0x000001).encode() == 0x000001_345678_12_06
    assert Header.decode(0x000001_345678_12_06).bank == 1
    fields = ConfigureFields(mode=4, out_kind=6, rounding=1, relu=1, zero_point=-1, m=0xFFFF,
                             k=32, n=0x8000)
    assert fields.encode() == [0x1FF_0630 | 4, 0x8000_0020_FFFF]
    assert decode_configure(fields.encode()) == fields
    words = encode_requant_words(np.array([-1, 5]), np.array([0x3F800000, 7]),
                                 np.array([-32, 31]))
    assert words == [0x3F800000_FFFFFFFF, 0x20, 0x00000007_00000005, 0x1F]
    for config in (CONFIG, ArrayConfig(rows=4, cols=4, counter_bits=40, acc_rounding="truncate")):
        version, decoded = decode_identify(identify_words(config))
        assert version == (2, 0)
        assert decoded == config


def test_mode_codes_are_the_configure_codes() -> None:
    """The gateware's `Mode` is derived from `golden.config.MODES`: member i is mode i."""
    from golden.config import MODES
    from golden.protocol import mode_code

    assert [member.name.lower() for member in Mode] == list(MODES)
    assert all(Mode.from_name(name).value == mode_code(name) for name in MODES)
    assert max(member.value for member in Mode) <= CONFIGURE[0]["mode"].range[1]
