"""Protocol 2.1 on the host side (no RTL): arrays larger than 8 x 8 carry an activation
vector or weight row in several words, report 2.1 in IDENTIFY, and the host drives them
through the golden model's executor bit for bit; what the protocol cannot carry is refused
with one sentence."""

from __future__ import annotations

import numpy as np
import pytest

import golden
from golden.config import ArrayConfig
from golden.protocol import (
    MAX_ARRAY,
    PROTOCOL_VERSION,
    Opcode,
    Packet,
    check_accelerator_config,
    decode_identify,
    identify_words,
    parse_responses,
    protocol_version,
    vector_words,
    weight_row_words,
)
from host import Accelerator
from host.driver import AcceleratorError, GoldenTransport

SEED = 2412
INTEGER_MODES = ("a8w8", "a8w4", "a4w4")


@pytest.mark.parametrize("rows, cols, words, version", [
    (8, 8, (1, 1), (2, 0)), (4, 8, (1, 1), (2, 0)), (16, 8, (2, 1), (2, 1)),
    (8, 16, (1, 2), (2, 1)), (16, 16, (2, 2), (2, 1)), (32, 32, (4, 4), (2, 1)),
    (32, 2, (4, 1), (2, 1))])
def test_words_and_version_follow_the_geometry(rows: int, cols: int,
                                               words: tuple[int, int],
                                               version: tuple[int, int]) -> None:
    modes = ("a8w8", "a8w4", "mxint8") if cols == 32 else ArrayConfig().modes
    config = ArrayConfig(rows=rows, cols=cols, modes=modes)
    assert (vector_words(config), weight_row_words(config)) == words
    assert protocol_version(config) == version
    reported_version, reported = decode_identify(identify_words(config))
    assert reported_version == version
    assert (reported.rows, reported.cols, reported.modes) == (rows, cols, modes)


def test_the_protocol_refuses_more_than_32() -> None:
    assert MAX_ARRAY == 32 and PROTOCOL_VERSION == (2, 1)
    with pytest.raises(ValueError, match=r"rows must be at most 32 for protocol 2\.1 "
                                         r"\(vectors and weight rows of up to 4 words\), "
                                         r"not 64"):
        check_accelerator_config(ArrayConfig(rows=64, cols=8, modes=INTEGER_MODES))


class SixtyFourRows(GoldenTransport):
    """An accelerator whose IDENTIFY reports 64 rows (more than protocol 2.1 carries)."""

    def exchange(self, beats):
        answer = super().exchange(beats)
        words = identify_words(ArrayConfig(rows=64, cols=8, modes=INTEGER_MODES))
        return [answer[0], *((word, False) for word in words), *answer[5:]]


def test_the_host_refuses_a_geometry_it_cannot_drive() -> None:
    transport = SixtyFourRows(ArrayConfig(rows=16, cols=8))
    reply = parse_responses(transport.exchange(Packet.make(Opcode.IDENTIFY, 1).beats()))
    assert decode_identify(reply[0].data)[1].rows == 64
    with pytest.raises(AcceleratorError, match=r"this host cannot drive the accelerator "
                                               r"IDENTIFY describes: rows must be at most 32"):
        Accelerator(transport=transport)


@pytest.mark.parametrize("rows, cols", [(16, 16), (16, 8), (8, 16), (32, 32), (2, 32)])
def test_gemms_on_the_golden_executor(rows: int, cols: int) -> None:
    """Every mode the geometry builds, on shapes that are a multiple of nothing, through the
    host packer and the protocol's reference executor: 0 mismatches against golden."""
    rng = np.random.default_rng([SEED, rows, cols])
    wide = cols * 2 > 32
    modes = ("a8w8", "a8w4", "a4w4", "mxint8") if wide else ArrayConfig().modes
    config = ArrayConfig(rows=rows, cols=cols, modes=modes)
    with Accelerator(transport=GoldenTransport(config)) as accelerator:
        assert accelerator.config == config
        assert accelerator.protocol_version == (2, 1)
        for mode in modes:
            if mode.startswith("mx"):
                fmt_a, fmt_b = golden.config.MODE_INFO[mode].mx_formats
                a = rng.standard_normal((19, 77)).astype(np.float32)
                b = rng.standard_normal((77, 45)).astype(np.float32)
                got = accelerator.mx_matmul(a, b, fmt_a=fmt_a, fmt_b=fmt_b)
                expected = golden.mx_matmul(a, b, fmt_a=fmt_a, fmt_b=fmt_b)
            else:
                top = 8 if mode == "a4w4" else 128
                wtop = 128 if mode == "a8w8" else 8
                a = rng.integers(-top, top, (19, 77)).astype(np.int8)
                b = rng.integers(-wtop, wtop, (77, 45)).astype(np.int8)
                got = accelerator.matmul(a, b, mode=mode)
                expected = golden.matmul(a, b)
            assert golden.mismatches(expected, got) == 0, mode
