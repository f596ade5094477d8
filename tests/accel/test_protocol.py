"""The host side of the protocol without RTL: packet encodings, the reference executor
against golden (through the host packer), tiling decisions and malformed-input rules."""

from __future__ import annotations

import numpy as np
import pytest

import golden
from golden.config import MODES, ArrayConfig
from golden.protocol import (
    MAX_LENGTH,
    PROTOCOL_VERSION,
    ConfigureFields,
    Field,
    Header,
    Opcode,
    Packet,
    Status,
    StatusWord,
    check_accelerator_config,
    check_configure,
    decode_configure,
    decode_identify,
    encode_configure,
    identify_words,
    nibbles_to_words,
    parse_responses,
    unpack_results,
    words_to_nibbles,
)
from golden.reference import ReferenceAccelerator
from host import tiling
from tests.accel.scenarios import gemm_cases, malformed_cases

CONFIG = ArrayConfig()


def run_reference(config: ArrayConfig, program: tiling.GemmProgram):
    reference = ReferenceAccelerator(config)
    beats = [(b.word, b.last) for b in reference.run(program.beats())]
    return program.decode(parse_responses(beats))


def test_header_and_status_layout() -> None:
    word = Header(Opcode.COMPUTE, 0x12, 0x345678, 0x9ABCDE).encode()
    assert word == 0x9ABCDE_345678_12_06
    assert Header.decode(word) == Header(6, 0x12, 0x345678, 0x9ABCDE)
    status = StatusWord(Status.BAD_FIELD, Opcode.CONFIGURE, Field.N, 7)
    assert status.encode() == 0x00000007_00_07_02_05
    assert StatusWord.decode(status.encode()) == status
    assert status.describe() == "CONFIGURE: BAD_FIELD (N)"
    with pytest.raises(ValueError, match=r"header length must be in \[0, 16777215\]"):
        Header(1, 0, MAX_LENGTH + 1).encode()


def test_configure_round_trip() -> None:
    fields = encode_configure(mode="a4w4", out_kind="int4", m=37, k=120, n=32,
                              rounding="gemmlowp", relu=True, zero_point=-5)
    assert decode_configure(fields.encode()) == fields
    assert fields.encode()[0] == 0x1FB_0000 | 2 << 8 | 1 << 5 | 1 << 4 | 2


K_PAIRS = ArrayConfig(rows=4, cols=4, modes=("a8w8", "a4w4"), requant_depth=0,
                      multiplier="ice40-sb-mac16", int4_packing="k-pairs")
"""An SB_MAC16 build with A4W4 in K-pairs."""


def test_identify_describes_the_config() -> None:
    config = ArrayConfig(rows=4, cols=8, block_size=16, acc_bits=24, acc_rounding="truncate",
                         modes=("a8w8", "mxint8"), requant_depth=64)
    version, decoded = decode_identify(identify_words(config))
    assert version == (2, 0) and PROTOCOL_VERSION == (2, 1)   # a 4 x 8 array speaks 2.0
    assert decoded == config
    narrow = config.replace(counter_bits=40)
    words = identify_words(narrow)
    assert (words[0] >> 56) == 40 and (identify_words(config)[0] >> 56) == 64
    assert decode_identify(words)[1] == narrow
    # Modes: bit i of word 1 bits 55..48 is MODES[i] (MXINT8 x MXINT4 is mode 5).
    assert (words[1] >> 48) & 0xFF == 0b1001
    every = identify_words(ArrayConfig())
    assert (every[1] >> 48) & 0xFF == 0b111111
    # K-pairs change the wire format, so IDENTIFY carries them (bit 48 of word 0); the
    # decoded multiplier is the one that implements them.
    pairs = K_PAIRS
    words = identify_words(pairs)
    assert (words[0] >> 48) & 1 == 1 and (identify_words(config)[0] >> 48) & 1 == 0
    assert decode_identify(words)[1] == pairs


def test_nibble_stream_round_trip() -> None:
    nibbles = np.random.default_rng(0).integers(0, 16, 100).astype(np.uint8)
    words = nibbles_to_words(nibbles)
    assert len(words) == 7 and words_to_nibbles(words)[:100].tolist() == nibbles.tolist()
    assert nibbles_to_words(np.arange(16, dtype=np.uint8)) == [0xFEDCBA9876543210]


def test_protocol_needs_64_bit_words_and_arrays_of_at_most_32() -> None:
    with pytest.raises(ValueError, match="needs stream_width 64, not 32"):
        check_accelerator_config(ArrayConfig(stream_width=32))
    check_accelerator_config(ArrayConfig(rows=32, cols=16))
    with pytest.raises(ValueError, match="cols must be at most 32"):
        check_accelerator_config(ArrayConfig(cols=64, modes=("a8w8",)))


def test_geometry_of_256_cube() -> None:
    small = CONFIG.replace(activation_buffer_depth=1024)     # 512 vectors a bank
    plan = tiling.plan_gemm(small, m=256, k=256, n=256, mode="a8w8", out_kind="uint8")
    assert (plan.m_tile, plan.m_tiles, plan.n_chunks) == (16, 16, ((0, 256),))
    status, _, geometry = check_configure(CONFIG, encode_configure(
        mode="a8w4", out_kind="int8", m=16, k=256, n=256))
    assert status == Status.OK
    assert (geometry.lc, geometry.kt, geometry.nt, geometry.act_words) == (16, 32, 16, 512)
    assert geometry.compute_words == 16 * 256 and geometry.result_words == 16 * 256 // 8


def test_k_pairs_pack_two_k_elements_per_byte() -> None:
    """K-pairs: the protocol's K counts bytes of two int4 K-elements (2j low, 2j + 1 high),
    and a 4 x 4 array takes one weight byte per column, not two columns per byte."""
    pairs = K_PAIRS
    plan = tiling.plan_gemm(pairs, m=3, k=9, n=5, mode="a4w4", out_kind="int32")
    assert (plan.k_pad, plan.k_words, plan.n_pad) == (16, 8, 8)
    a = np.array([[1, -2, 3, -8, 7, 0, -1, 5, 2]] * 3)
    b = np.arange(45).reshape(9, 5) % 16 - 8
    program = tiling.matmul_program(pairs, a, b, mode="a4w4")
    loads = [p for p in program.packets if p.header.opcode == Opcode.LOAD_ACTIVATIONS]
    first = loads[0].payload[0].to_bytes(8, "little")   # k-tile 0, row 0: K 0..7
    assert list(first[:4]) == [(1 & 15) | (-2 & 15) << 4, 3 | (-8 & 15) << 4, 7,
                               (-1 & 15) | 5 << 4]
    assert check_configure(pairs, encode_configure(mode="a4w4", out_kind="int32", m=3, k=8,
                                                   n=8))[0] == Status.OK
    columns = tiling.plan_gemm(pairs.replace(int4_packing="columns", multiplier="split"),
                               m=3, k=9, n=5, mode="a4w4", out_kind="int32")
    assert (columns.k_pad, columns.k_words, columns.n_pad) == (12, 12, 8)


def test_tiling_pads_and_balances() -> None:
    small = CONFIG.replace(activation_buffer_depth=1024)     # 512 vectors a bank
    plan = tiling.plan_gemm(small, m=37, k=115, n=29, mode="a8w4", out_kind="int4")
    assert (plan.k_pad, plan.n_pad, plan.m_tile, plan.m_tiles) == (120, 32, 19, 2)
    mx = tiling.plan_gemm(CONFIG, m=5, k=33, n=40, mode="mxint4", out_kind="mxint8")
    assert (mx.k_pad, mx.n_pad) == (64, 64)
    wide = tiling.plan_gemm(CONFIG, m=4, k=8, n=600, mode="a8w8", out_kind="int8")
    assert wide.n_chunks == ((0, 256), (256, 512), (512, 600))
    with pytest.raises(ValueError, match="k = 5000 is too large"):
        tiling.plan_gemm(small, m=1, k=5000, n=8, mode="a8w8", out_kind="int8")
    # A limit on the M-tile (the driver's on a fast link) balances the M-tiles below it.
    capped = tiling.plan_gemm(CONFIG, m=70, k=64, n=8, mode="a8w8", out_kind="int32",
                              max_m_tile=32)
    assert (capped.m_tile, capped.m_tiles) == (24, 3)
    assert tiling.plan_gemm(CONFIG, m=70, k=64, n=8, mode="a8w8",
                            out_kind="int32").m_tiles == 1
    with pytest.raises(ValueError, match="out_kind must be one of fp32"):
        tiling.plan_gemm(CONFIG, m=1, k=8, n=8, mode="mxint8", out_kind="int8")


def test_host_refuses_bad_operands() -> None:
    a = np.zeros((2, 8), np.int64)
    with pytest.raises(ValueError, match="b must hold int4 values"):
        tiling.matmul_program(CONFIG, a, np.full((8, 2), 8), mode="a8w4")
    big = np.zeros((1, 140_000), np.int64)
    with pytest.raises(ValueError, match="K = 140000 can overflow"):
        tiling.matmul_program(CONFIG, big, np.zeros((140_000, 1), np.int64))
    x = np.zeros((2, 8), np.uint8)
    with pytest.raises(ValueError, match="x_q .* must hold int4 values"):
        tiling.qlinear_program(CONFIG, x, np.zeros((2, 8), np.int8), x_scale=1.0,
                               x_zero_point=0, w_scale=1.0, y_scale=1.0, y_zero_point=0,
                               mode="a4w4")


@pytest.mark.parametrize("group", ["qlinear", "matmul", "mx", "shapes", "same_bank", "cancel",
                                   "tiny_scales"])
def test_reference_executor_matches_golden(group: str, sim_seed: int) -> None:
    """The packets of the host packer, executed by the reference, decode to golden's
    results in every mode (the RTL tests compare the RTL with this reference)."""
    rng = np.random.default_rng(sim_seed)
    for case in gemm_cases(CONFIG, rng, [group]):
        got = run_reference(CONFIG, case.program)
        assert case.mismatches(case.expected, got) == 0, case.name


def test_reference_with_other_configs(sim_seed: int) -> None:
    rng = np.random.default_rng(sim_seed)
    for config in (ArrayConfig(rows=4, cols=4, block_size=16, acc_bits=16,
                               acc_rounding="truncate", requant_depth=32),
                   ArrayConfig(rows=2, cols=8, modes=("a8w8", "mxint8"))):
        for case in gemm_cases(config, rng, ["qlinear", "mx", "shapes"]):
            assert case.mismatches(case.expected, run_reference(config, case.program)) == 0


def test_malformed_cases_get_documented_errors() -> None:
    expected = {
        "illegal opcode with payload": [Status.BAD_OPCODE],
        "unconfigured LOAD_ACTIVATIONS": [Status.BAD_FIELD, Status.NOT_CONFIGURED],
        "bank out of range": [Status.OK, Status.BAD_FIELD],
        "zero point out of range": [Status.BAD_FIELD],
        "tile larger than the activation bank": [Status.TOO_LARGE],
        "CONFIGURE with a wrong length": [Status.BAD_LENGTH],
        "LOAD_ACTIVATIONS cut short": [Status.OK, Status.TRUNCATED],
        "LOAD_ACTIVATIONS too long": [Status.OK, Status.TOO_LONG],
        "COMPUTE cut short in its weights": [Status.OK, Status.OK, Status.TRUNCATED],
        "COMPUTE header only": [Status.OK, Status.TRUNCATED],
        "IDENTIFY with a wrong length": [Status.BAD_LENGTH],
        "READ_COUNTERS too long": [Status.TOO_LONG],
        "CLEAR_COUNTERS with a wrong length": [Status.BAD_LENGTH],
        "LOAD_REQUANT cut short": [Status.OK, Status.TRUNCATED],
        "COMPUTE longer than a packet can be": [Status.TOO_LARGE],
        "LOAD_SCALES too long": [Status.OK, Status.TOO_LONG],
        "requantizer saturating SRDHM(INT32_MIN, INT32_MIN)": [Status.OK] * 4,
        "three COMPUTEs per activation tile": [Status.OK] * 9,
        "CONFIGURE with every field at its largest": [Status.TOO_LARGE],
        "reserved bits set": [Status.OK, Status.OK],
        "LOAD_REQUANT too long": [Status.OK, Status.TOO_LONG],
        "CONFIGURE too long": [Status.TOO_LONG],
        "COMPUTE on bank 2": [Status.OK, Status.BAD_FIELD],
        "unconfigured LOAD_REQUANT, LOAD_SCALES and COMPUTE": [Status.BAD_FIELD]
        + [Status.NOT_CONFIGURED] * 3,
        "LOAD_SCALES on bank 2": [Status.OK, Status.BAD_FIELD],
    }
    reference = ReferenceAccelerator(CONFIG)
    rng = np.random.default_rng(1)
    seen = set()
    for name, beats in malformed_cases(CONFIG, rng):
        responses = parse_responses([(b.word, b.last) for b in reference.run(beats)])
        assert len(responses) == sum(last for _, last in beats)
        if name in expected:
            assert [r.status.code for r in responses] == expected[name], name
            seen.add(name)
        if name.startswith("requantizer saturating"):   # channels 0..3 give 127
            assert {word & 0xFFFF_FFFF for word in responses[-1].data} == {0x7F7F_7F7F}
        # after every malformed packet, the next GEMM is correct
        case = gemm_cases(CONFIG, rng, ["a8w8_small"])[0]
        answer = [(b.word, b.last) for b in reference.run(case.program.beats())]
        assert case.mismatches(case.expected, case.program.decode(parse_responses(answer))) == 0
    assert seen == set(expected)


def test_truncated_compute_runs_with_zero_weights() -> None:
    """The documented rule: a COMPUTE cut short still answers with results, computed with
    zeros in place of the missing weight words, and status TRUNCATED."""
    rng = np.random.default_rng(2)
    a = rng.integers(-128, 128, (4, 16))
    w = rng.integers(-128, 128, (16, 8))
    program = tiling.matmul_program(CONFIG, a, w)
    packets = program.packets
    compute = packets[-1]
    cut = Packet(compute.header, compute.payload[:10])
    beats = [beat for packet in (*packets[:-1], cut) for beat in packet.beats()]
    responses = parse_responses([(b.word, b.last) for b in
                                 ReferenceAccelerator(CONFIG).run(beats)])
    assert responses[-1].status == StatusWord(Status.TRUNCATED, Opcode.COMPUTE, 0, 10)
    geometry = program.computes[0][1]
    w_cut = w.copy()
    w_cut[10:] = 0                                       # words 10.. are rows 10..15
    values, _ = unpack_results(geometry, responses[-1].data)
    assert np.array_equal(values.astype(np.uint32).view(np.int32)[:4],
                          golden.matmul(a, w_cut))


def test_configure_checks_in_order() -> None:
    fields = ConfigureFields(mode=7, out_kind=7, rounding=0, relu=0, zero_point=500, m=0, k=3,
                             n=5)
    assert check_configure(CONFIG, fields)[:2] == (Status.BAD_FIELD, Field.MODE)
    only_int = ArrayConfig(modes=("a8w8",))
    fields = encode_configure(mode="mxint8", out_kind="fp32", m=1, k=32, n=8)
    assert check_configure(only_int, fields)[:2] == (Status.BAD_FIELD, Field.MODE)
    assert len(MODES) == 6          # (codes 6 and 7 are no mode)
