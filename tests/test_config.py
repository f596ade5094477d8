"""ArrayConfig: the one parameter source, validated at construction."""

from __future__ import annotations

import pytest

from golden.config import MODES, ArrayConfig


def test_defaults_and_derived_quantities():
    config = ArrayConfig()
    assert (config.rows, config.cols, config.block_size, config.acc_bits) == (8, 8, 32, 32)
    assert config.stream_width == 64 and config.stream_bytes == 8
    assert config.modes == MODES
    assert config.peak_macs_per_cycle("a8w8") == 64
    assert config.peak_macs_per_cycle("a8w4") == 128
    assert config.peak_macs_per_cycle("a4w4") == 128
    assert config.passes_per_block == 4
    assert config.replace(rows=4).rows == 4


@pytest.mark.parametrize("changes,message", [
    (dict(rows=3), "rows must be a power of two"),
    (dict(cols=0), "cols must be a power of two"),
    (dict(rows=128), "rows must be a power of two from 1 to 64"),
    (dict(rows=True), "rows must be a power of two"),
    (dict(block_size=8), "block_size must be 16 or 32"),
    (dict(rows=32, block_size=16), r"block_size \(16\) must be a multiple of rows \(32\)"),
    (dict(acc_bits=15), "acc_bits must be an integer from 16 to 32"),
    (dict(acc_rounding="up"), "acc_rounding must be 'nearest' or 'truncate'"),
    (dict(weight_buffer_depth=100), "weight_buffer_depth must be a power of two"),
    (dict(stream_width=48), "stream_width must be 32, 64 or 128"),
    (dict(modes=("a8w8", "fp8")), "modes contains 'fp8'"),
    (dict(modes="a8w8"), "modes must be a non-empty tuple"),
    (dict(modes=()), "modes must be a non-empty tuple"),
    (dict(modes=("a8w8", "a8w8")), "modes lists a mode twice"),
    (dict(counter_bits=32), "counter_bits must be an integer from 40 to 64, not 32"),
    (dict(counter_bits=True), "counter_bits must be an integer from 40 to 64, not True"),
    (dict(multiplier="dsp"),
     "multiplier must be one of 'split', 'packed', 'lut', 'ice40-sb-mac16', 'ecp5-mult18', "
     "not 'dsp'"),
    (dict(pipeline="deep"), "pipeline must be 'compact' or 'fast', not 'deep'"),
    (dict(requant_depth=1), "requant_depth must be a power of two of at least 2, or 0"),
    (dict(requant_depth=48), "requant_depth must be a power of two"),
    (dict(int4_packing="nibbles"), "int4_packing must be 'columns' or 'k-pairs', not 'nibbles'"),
    (dict(int4_packing="k-pairs", modes=("a8w8", "a4w4")),
     "int4_packing 'k-pairs' needs multiplier 'ice40-sb-mac16', not 'split'"),
    (dict(int4_packing="k-pairs", multiplier="ice40-sb-mac16"),
     "int4_packing 'k-pairs' packs A4W4 only; leave a8w4, mxint4, mxint8w4 out of modes, or "
     "pack in 'columns'"),
])
def test_invalid_configs_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        ArrayConfig(**changes)


def test_mode_not_built_is_refused():
    config = ArrayConfig(modes=("a8w8",))
    with pytest.raises(ValueError, match="mode must be one of a8w8 for this configuration"):
        config.peak_macs_per_cycle("a4w4")
    # Without MX modes the block size need not be a multiple of rows.
    assert ArrayConfig(rows=32, block_size=16, modes=("a8w8",)).rows == 32


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        ArrayConfig().rows = 4  # type: ignore[misc]


def test_multiplier_and_requantizer_fields():
    assert ArrayConfig().multiplier == "split"
    config = ArrayConfig(rows=4, cols=4, multiplier="ice40-sb-mac16", requant_depth=0,
                         modes=("a8w8", "a8w4", "a4w4"))
    assert config.multiplier == "ice40-sb-mac16" and config.as_dict()["multiplier"] == \
        "ice40-sb-mac16"
    # requant_depth 0: no requantization unit; an MX-only build has none either.
    assert not config.has_requantizer and ArrayConfig().has_requantizer
    assert not ArrayConfig(modes=("mxint8",)).has_requantizer


def test_k_pairs_pack_a4w4_in_one_lane():
    """K-pairs: A4W4 keeps one output lane per PE and does two MACs per PE per cycle; the
    other modes are as with "columns"."""
    columns = ArrayConfig(rows=4, cols=4, multiplier="ice40-sb-mac16", modes=("a8w8", "a4w4"))
    pairs = columns.replace(int4_packing="k-pairs")
    assert (columns.mode("a4w4").lanes, columns.mode("a4w4").k_pack) == (2, 1)
    assert (pairs.mode("a4w4").lanes, pairs.mode("a4w4").k_pack) == (1, 2)
    assert pairs.peak_macs_per_cycle("a4w4") == columns.peak_macs_per_cycle("a4w4") == 32
    assert pairs.peak_macs_per_cycle("a8w8") == 16 and pairs.mode("a8w8").k_pack == 1
    assert pairs.k_pairs and not columns.k_pairs
    assert not pairs.replace(modes=("a8w8",)).k_pairs
