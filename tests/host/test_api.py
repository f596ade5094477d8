"""The public API (`host.Accelerator`) against the golden model, bit for bit, on the golden
and Verilator backends: every mode, uint8 / int8 / int4 outputs with zero points, both
roundings, MX with FP32 and MX outputs, random and non-multiple shapes, N-chunks, several
M-tiles, prepared weights; and the statistics the counters give."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import golden
from golden.config import ArrayConfig
from host.driver import GoldenTransport

INT_RANGES = {"a8w8": ((-128, 127), (-128, 127)), "a8w4": ((-128, 127), (-8, 7)),
              "a4w4": ((-8, 7), (-8, 7))}
SHAPES = [(37, 515, 29), (1, 1, 1), (8, 8, 16), (100, 64, 300)]


def _rng(*key: object) -> np.random.Generator:
    seed = zlib.crc32(repr(key).encode())
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def _int_operands(rng, mode, m, k, n):
    (a_lo, a_hi), (w_lo, w_hi) = INT_RANGES[mode]
    a = rng.integers(a_lo, a_hi + 1, (m, k)).astype(np.int8)
    b = rng.integers(w_lo, w_hi + 1, (k, n)).astype(np.int8)
    a.flat[0], b.flat[0] = a_lo, w_lo          # corner values take part
    return a, b


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ["a8w8", "a8w4", "a4w4"])
def test_matmul_equals_golden(accelerator, mode, shape):
    rng = _rng("matmul", mode, shape)
    a, b = _int_operands(rng, mode, *shape)
    got = accelerator.matmul(a, b, mode=mode)
    assert got.dtype == np.int32 and got.shape == (shape[0], shape[2])
    np.testing.assert_array_equal(got, golden.matmul(a, b))
    assert accelerator.last_stats.mode == mode


@pytest.mark.parametrize("mode", ["a8w8", "a8w4", "a4w4"])
def test_matmul_chooses_the_fastest_mode_that_holds_the_operands(golden_accelerator, mode):
    rng = _rng("auto", mode)
    a, b = _int_operands(rng, mode, 9, 40, 11)
    a.flat[1], b.flat[1] = INT_RANGES[mode][0][1], INT_RANGES[mode][1][1]
    np.testing.assert_array_equal(golden_accelerator.matmul(a.astype(np.int32),
                                                            b.astype(np.int16)),
                                  golden.matmul(a, b))
    assert golden_accelerator.last_stats.mode == mode


def test_matmul_extreme_values(accelerator):
    a = np.full((17, 515), -128, np.int8)
    b = np.full((515, 9), -128, np.int8)
    b[:, 1] = 127
    np.testing.assert_array_equal(accelerator.matmul(a, b), golden.matmul(a, b))


QLINEAR_CASES = [
    # (mode, x dtype, out_dtype, rounding, per_channel, bias, relu, shape)
    ("a8w8", "uint8", "uint8", "fp32", True, True, False, (37, 515, 29)),
    ("a8w8", "uint8", "uint8", "gemmlowp", False, True, True, (37, 515, 29)),
    ("a8w8", "int8", "int8", "fp32", False, False, False, (33, 100, 300)),
    ("a8w8", "int8", "int4", "gemmlowp", True, True, False, (20, 72, 40)),
    ("a8w4", "uint8", "uint8", "fp32", True, True, True, (37, 515, 29)),
    ("a8w4", "uint8", "int8", "gemmlowp", True, False, False, (5, 24, 17)),
    ("a4w4", "int8", "int4", "fp32", True, True, False, (19, 96, 33)),
    ("a4w4", "uint8", "uint8", "gemmlowp", False, True, False, (19, 96, 33)),
]


def _qlinear_inputs(rng, mode, x_dtype, out_dtype, per_channel, with_bias, relu, shape,
                    rounding):
    m, k, n = shape
    (a_lo, a_hi), (w_lo, w_hi) = INT_RANGES[mode]
    if x_dtype == "uint8":
        # The accelerator receives x - 128 (docs/numerics.md): int4 activations are
        # uint8 values in [120, 135].
        x = rng.integers(a_lo + 128, a_hi + 129, (m, k)).astype(np.uint8)
        x_zero = int(rng.integers(0, 256))
    else:
        x = rng.integers(a_lo, a_hi + 1, (m, k)).astype(np.int8)
        x_zero = int(rng.integers(-128, 128))
    w = rng.integers(w_lo, w_hi + 1, (n, k)).astype(np.int8)
    w_scale = rng.uniform(0.002, 0.02, n) if per_channel else float(rng.uniform(0.002, 0.02))
    lo, hi = golden.output_range(out_dtype)
    y_zero = int(rng.integers(lo, hi + 1))
    spread = np.sqrt(k) * max(np.std(x.astype(float)), 1) * max(np.std(w.astype(float)), 1)
    y_scale = float(0.02 * np.median(w_scale) * spread / (hi - lo) * 4)
    bias = rng.integers(-3000, 3000, n).astype(np.int32) if with_bias else None
    return x, w, dict(x_scale=0.02, x_zero_point=x_zero, w_scale=w_scale, y_scale=y_scale,
                      y_zero_point=y_zero, bias=bias, relu=relu, rounding=rounding,
                      out_dtype=out_dtype)


@pytest.mark.parametrize("case", QLINEAR_CASES, ids=lambda c: "-".join(map(str, c[:4])))
def test_qlinear_equals_golden(accelerator, case):
    mode, x_dtype, out_dtype, rounding, per_channel, with_bias, relu, shape = case
    rng = _rng("qlinear", case)
    x, w, kwargs = _qlinear_inputs(rng, mode, x_dtype, out_dtype, per_channel, with_bias,
                                   relu, shape, rounding)
    expected = golden.qlinear(x, w, **kwargs)
    lo, hi = golden.output_range(out_dtype)
    assert len(np.unique(expected)) > 3, "the test's scales must spread the outputs"
    got = accelerator.qlinear(x, w, mode=mode, **kwargs)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_qlinear_default_mode_is_chosen_from_the_values(golden_accelerator):
    rng = _rng("qlinear-auto")
    x, w, kwargs = _qlinear_inputs(rng, "a8w4", "uint8", "uint8", True, True, False,
                                   (7, 40, 9), "fp32")
    np.testing.assert_array_equal(golden_accelerator.qlinear(x, w, **kwargs),
                                  golden.qlinear(x, w, **kwargs))
    assert golden_accelerator.last_stats.mode == "a8w4"


MX_SHAPES = [(37, 100, 29), (20, 64, 40), (3, 32, 70)]


@pytest.mark.parametrize("out", ["fp32", "mxint8", "mxint4"])
@pytest.mark.parametrize("formats", [("mxint8", "mxint8"), ("mxint4", "mxint4"),
                                     ("mxint8", "mxint4")], ids=lambda f: "x".join(f))
@pytest.mark.parametrize("shape", MX_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mx_matmul_equals_golden(accelerator, formats, out, shape):
    fmt_a, fmt_b = formats
    rng = _rng("mx", fmt_a, fmt_b, out, shape)
    m, k, n = shape
    a = (rng.standard_normal((m, k)) * np.exp2(rng.integers(-20, 20, (m, 1)))) \
        .astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    a[0, :32] = 0.0                                   # an all-zero block
    expected = golden.mx_matmul(a, b, fmt_a=fmt_a, fmt_b=fmt_b, out=out)
    got = accelerator.mx_matmul(a, b, fmt_a=fmt_a, fmt_b=fmt_b, out=out)
    if out == "fp32":
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))
    else:
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        assert got[0].dtype == np.int8 and got[1].dtype == np.uint8


def test_prepared_weights_serve_many_batches(accelerator):
    rng = _rng("prepared")
    b = rng.integers(-8, 8, (200, 24)).astype(np.int8)
    weights = accelerator.load_weights(b)
    for batch in range(3):
        a = rng.integers(-128, 128, (5 + 20 * batch, 200)).astype(np.int8)
        np.testing.assert_array_equal(accelerator.matmul(a, weights), golden.matmul(a, b))
        assert accelerator.last_stats.mode == "a8w4"
    w_q = rng.integers(-128, 128, (24, 200)).astype(np.int8)
    layer = accelerator.load_weights(w_q)
    kwargs = dict(x_scale=0.02, x_zero_point=3, w_scale=0.01, y_scale=1.5, y_zero_point=-4,
                  out_dtype="int8")
    for batch in range(2):
        x = rng.integers(-128, 128, (9 + batch, 200)).astype(np.int8)
        np.testing.assert_array_equal(accelerator.qlinear(x, layer, **kwargs),
                                      golden.qlinear(x, w_q, **kwargs))
    bf = rng.standard_normal((200, 24)).astype(np.float32)
    mx_weights = accelerator.load_weights(bf)
    for batch in range(2):
        af = rng.standard_normal((4 + batch, 200)).astype(np.float32)
        np.testing.assert_array_equal(accelerator.mx_matmul(af, mx_weights).view(np.int32),
                                      golden.mx_matmul(af, bf).view(np.int32))


@pytest.mark.parametrize("mode", ["a8w8", "a8w4", "mxint8"])
def test_stats_agree_with_the_plan(accelerator, mode):
    """The counters' MACs are the padded GEMM of the tiling plan; busy is one accepted
    vector per R x C (x lanes) MACs; utilization is MACs / (cycles * peak)."""
    rng = _rng("stats", mode)
    m, k, n = 37, 96, 29
    config = accelerator.config
    if mode == "mxint8":
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        accelerator.mx_matmul(a, b)
        plan = accelerator.plan(m, k, n, mode=mode, out_kind="fp32")
    else:
        a, b = _int_operands(rng, mode, m, k, n)
        accelerator.matmul(a, b, mode=mode)
        plan = accelerator.plan(m, k, n, mode=mode, out_kind="int32")
    stats = accelerator.last_stats
    lanes = 2 if mode == "a8w4" else 1
    assert stats.macs == plan.m_pad * plan.k_pad * plan.n_pad
    assert stats.busy * config.rows * config.cols * lanes == stats.macs
    assert stats.useful_macs == m * k * n
    assert stats.peak_macs_per_cycle == config.rows * config.cols * lanes
    assert (stats.m, stats.k, stats.n, stats.mode) == (m, k, n, mode)
    assert stats.wall_s > 0
    if accelerator.backend == "golden":
        assert stats.cycles is None and stats.utilization is None
    else:
        assert stats.cycles > stats.busy
        assert stats.utilization == pytest.approx(stats.macs / (stats.cycles *
                                                                stats.peak_macs_per_cycle))
        assert 0 < stats.utilization < 1


def test_utilization_256_cubed_a8w8_on_verilator(verilator_accelerator):
    rng = _rng("utilization")
    a, b = _int_operands(rng, "a8w8", 256, 256, 256)
    np.testing.assert_array_equal(verilator_accelerator.matmul(a, b), golden.matmul(a, b))
    stats = verilator_accelerator.last_stats
    print(stats)
    assert stats.macs == 256**3
    assert stats.utilization >= 0.95


def test_accelerator_reports_the_configuration_it_was_built_with(accelerator):
    assert accelerator.config == ArrayConfig()
    assert accelerator.identify()["protocol"] == "2.0"


def test_build_choices_identify_does_not_carry_are_the_callers():
    """IDENTIFY carries no multiplier or pipeline: a configuration that differs from the
    defaults only there opens, keeps them and computes; a reported field that differs is
    refused by name."""
    from host import Accelerator

    built = ArrayConfig(rows=4, cols=4, multiplier="lut", pipeline="fast")
    with Accelerator(built, backend="golden") as accelerator:
        assert accelerator.config == built
        reported = accelerator.identify()["config"]
        assert reported["rows"] == 4 and "multiplier" not in reported \
            and "pipeline" not in reported
        a, b = _int_operands(_rng("build choices"), "a8w8", 5, 9, 6)
        np.testing.assert_array_equal(accelerator.matmul(a, b), golden.matmul(a, b))
    transport = GoldenTransport(built)
    with pytest.raises(ValueError, match=r"^the accelerator reports cols 4 \(not 8\); "):
        Accelerator(built.replace(cols=8), transport=transport)


def test_cocotb_backend_small_gemms():
    """The cocotb path (one simulator run per exchange): one small GEMM per kind of output."""
    from host import Accelerator

    rng = _rng("cocotb")
    a, b = _int_operands(rng, "a8w4", 9, 40, 21)
    x, w, kwargs = _qlinear_inputs(rng, "a8w8", "uint8", "uint8", True, True, False,
                                   (9, 40, 21), "fp32")
    af = rng.standard_normal((5, 40)).astype(np.float32)
    bf = rng.standard_normal((40, 21)).astype(np.float32)
    with Accelerator(backend="cocotb") as accelerator:
        np.testing.assert_array_equal(accelerator.matmul(a, b), golden.matmul(a, b))
        assert accelerator.last_stats.cycles > 0
        np.testing.assert_array_equal(accelerator.qlinear(x, w, **kwargs),
                                      golden.qlinear(x, w, **kwargs))
        np.testing.assert_array_equal(accelerator.mx_matmul(af, bf).view(np.int32),
                                      golden.mx_matmul(af, bf).view(np.int32))


@pytest.mark.xdist_group("cocotb")
@pytest.mark.parametrize("mode", list(golden.MODES))
def test_cocotb_backend_every_mode(mode):
    """The cocotb path in every mode on a non-multiple shape: int32 and a requantized
    layer (integer modes), FP32 and MX outputs (MX modes)."""
    from host import Accelerator

    rng = _rng("cocotb-mode", mode)
    with Accelerator(backend="cocotb") as accelerator:
        if golden.config.MODE_INFO[mode].mx:
            formats = dict(zip(("fmt_a", "fmt_b"), golden.config.MODE_INFO[mode].mx_formats,
                               strict=True))
            a = rng.standard_normal((7, 50)).astype(np.float32)
            b = rng.standard_normal((50, 19)).astype(np.float32)
            got = accelerator.mx_matmul(a, b, **formats, out="mxint8")
            expected = golden.mx_matmul(a, b, **formats, out="mxint8")
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])
        else:
            x, w, kwargs = _qlinear_inputs(rng, mode, "uint8", "int8", True, True, False,
                                           (7, 50, 19), "gemmlowp")
            np.testing.assert_array_equal(accelerator.qlinear(x, w, mode=mode, **kwargs),
                                          golden.qlinear(x, w, **kwargs))
        assert accelerator.last_stats.mode == mode and accelerator.last_stats.cycles > 0


def test_matmul_beyond_one_activation_bank_splits_k(accelerator):
    """K = 70,000 > the 65,528 one GEMM takes (a 16-bit K field): K-slices summed modulo
    2^32."""
    rng = _rng("k-split")
    a, b = _int_operands(rng, "a8w8", 5, 70_000, 11)
    assert accelerator.max_k < 70_000
    np.testing.assert_array_equal(accelerator.matmul(a, b), golden.matmul(a, b))
    stats = accelerator.last_stats
    assert (stats.k, stats.useful_macs) == (70_000, 5 * 70_000 * 11)


def test_matmul_wraps_modulo_2_32_when_allowed(golden_accelerator):
    a = np.full((1, 140_000), -128, np.int8)
    b = np.full((140_000, 2), -128, np.int8)
    b[:, 1] = 127
    expected = golden.matmul(a, b)
    assert expected[0, 0] != 140_000 * 128 * 128          # it did wrap
    np.testing.assert_array_equal(golden_accelerator.matmul(a, b, allow_wrap=True), expected)


def test_batch_of_one_row_on_verilator():
    """One-row M-tiles with several N-tiles and K a multiple of 4 R: the short drain once
    finished before the accumulation pipeline had emptied and a stale flag re-queued the
    bank, so the accelerator never became idle."""
    from host import Accelerator

    rng = _rng("one-row")
    a, b = _int_operands(rng, "a8w8", 1, 64, 16)
    with Accelerator(backend="verilator") as accelerator:
        for _ in range(2):
            np.testing.assert_array_equal(accelerator.matmul(a, b), golden.matmul(a, b))


@pytest.mark.parametrize("backend", ["golden", "verilator"])
def test_long_calls_go_in_parts_with_progress(backend, monkeypatch):
    """Above `EXCHANGE_WORDS` a call is cut into several exchanges at packet boundaries and
    `progress` hears each; the result and the counted MACs do not change."""
    from host import Accelerator, driver

    monkeypatch.setattr(driver, "EXCHANGE_WORDS", 1000)
    heard: list[str] = []
    rng = _rng("parts", backend)
    a, b = _int_operands(rng, "a8w8", 40, 200, 24)
    with Accelerator(backend=backend, progress=heard.append) as accelerator:
        np.testing.assert_array_equal(accelerator.matmul(a, b), golden.matmul(a, b))
        stats = accelerator.last_stats
        plan = accelerator.plan(40, 200, 24, mode="a8w8", out_kind="int32")
    parts = [message for message in heard if message.endswith("words")]
    assert len(parts) >= 3
    assert parts[-1].startswith(f"{stats.words_sent:,} of {stats.words_sent:,}")
    assert stats.macs == plan.m_pad * plan.k_pad * plan.n_pad


def test_k_pairs_through_the_driver() -> None:
    """An accelerator built with A4W4 in K-pairs (as IDENTIFY reports it): the driver packs
    two K-elements per byte, results equal golden.matmul for odd and even K, and the MAC
    counter counts two MACs per PE per cycle."""
    from host import Accelerator

    config = ArrayConfig(rows=4, cols=4, modes=("a8w8", "a4w4"), requant_depth=0,
                         multiplier="ice40-sb-mac16", int4_packing="k-pairs",
                         activation_buffer_depth=256, accumulator_depth=64)
    rng = np.random.default_rng(7)
    with Accelerator(config, backend="golden") as accelerator:
        assert accelerator.config.int4_packing == "k-pairs"
        for m, k, n in ((5, 7, 3), (33, 64, 9), (70, 300, 17)):
            a = rng.integers(-8, 8, (m, k))
            b = rng.integers(-8, 8, (k, n))
            np.testing.assert_array_equal(accelerator.matmul(a, b, mode="a4w4"),
                                          golden.matmul(a, b))
            stats = accelerator.last_stats
            plan = accelerator.plan(m, k, n, mode="a4w4", out_kind="int32")
            assert plan.k_words == plan.k_pad // 2
            assert stats.macs == plan.m_pad * plan.k_pad * plan.n_pad
            assert stats.busy * config.rows * config.cols * 2 == stats.macs
            assert stats.peak_macs_per_cycle == 32
        a = rng.integers(-128, 128, (9, 20))
        b = rng.integers(-128, 128, (20, 5))
        np.testing.assert_array_equal(accelerator.matmul(a, b), golden.matmul(a, b))
