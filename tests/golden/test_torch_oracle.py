"""Golden model vs PyTorch: quantized.linear (fbgemm, qnnpack), ao.nn.quantized.Linear,
quantize_per_tensor and torch._int_mm. Every test is seeded and prints its seed."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import golden

torch = pytest.importorskip("torch")


@pytest.fixture
def engine(request):
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = request.param
    yield request.param
    torch.backends.quantized.engine = previous


def quantized_weights(rng, n, k, per_channel, bits=8):
    """Random int8 / int4-valued weights [N, K], their scale(s) and the torch tensor."""
    lo, hi = (-128, 127) if bits == 8 else (-8, 7)
    w_q = rng.integers(lo, hi + 1, (n, k), dtype=np.int8)
    if per_channel:
        w_scale = rng.uniform(0.002, 0.05, n).astype(np.float32).astype(np.float64)
        w_t = torch._make_per_channel_quantized_tensor(
            torch.from_numpy(w_q), torch.from_numpy(w_scale), torch.zeros(n, dtype=torch.long),
            0)
    else:
        w_scale = float(np.float32(rng.uniform(0.002, 0.05)))
        w_t = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w_q), w_scale, 0)
    return w_q, w_scale, w_t


def _bias_for_fbgemm(rng, x_scale, w_scale, n, limit=3000):
    """An int32 bias and the float bias fbgemm turns back into exactly that integer
    (fbgemm adds fl32(bias_f / fl32(x_scale * w_scale)) to fl32(acc) in float32)."""
    act_times_w = (np.float32(x_scale) * np.broadcast_to(
        np.asarray(w_scale, np.float64).astype(np.float32), (n,))).astype(np.float32)
    bias_int = rng.integers(-limit, limit, n)
    for _ in range(50):
        bias_f = (bias_int.astype(np.float32) * act_times_w).astype(np.float32)
        back = bias_f / act_times_w
        ok = back == bias_int.astype(np.float32)
        if ok.all():
            return bias_int.astype(np.int32), bias_f
        bias_int = np.where(ok, bias_int, rng.integers(-limit, limit, n))
    raise AssertionError("could not construct a round-tripping bias")


CASES = [
    # (m, k, n, per_channel, with_bias, relu, power_of_two_scales)
    (37, 515, 29, False, False, False, False),
    (161, 203, 47, True, True, False, False),
    (153, 127, 81, True, False, True, False),
    (145, 333, 57, False, True, True, False),
    (164, 16, 48, False, False, False, True),
    (133, 30, 63, True, True, False, True),
]


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"], indirect=True)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:3])) + (
    "-pc" if c[3] else "-pt") + ("-bias" if c[4] else "") + ("-relu" if c[5] else "") + (
    "-ties" if c[6] else ""))
def test_qlinear_matches_quantized_linear(engine, case):
    m, k, n, per_channel, with_bias, relu, pow2 = case
    seed = zlib.crc32(repr((engine, case)).encode())
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    w_q, w_scale, w_t = quantized_weights(rng, n, k, per_channel)
    x_zero_point = int(rng.integers(0, 256))
    y_zero_point = int(rng.integers(0, 256))
    x_q = rng.integers(0, 256, (m, k), dtype=np.uint8)
    if pow2:
        # s32 = 2^-4 * 2^-7 / 2^-10 = 1/2 and small accumulators: every odd accumulator is an
        # exact tie (x * s32 = j + 1/2), and the outputs stay inside the clamp.
        x_scale, y_scale = 2.0**-4, 2.0**-10
        x_q = np.clip(x_zero_point + rng.integers(-3, 4, (m, k)), 0, 255).astype(np.uint8)
        w_q = rng.integers(-3, 4, (n, k), dtype=np.int8)
        y_zero_point = int(rng.integers(100, 156))
        w_scale = np.full(n, 2.0**-7) if per_channel else 2.0**-7
        w_t = (torch._make_per_channel_quantized_tensor(
            torch.from_numpy(w_q), torch.from_numpy(w_scale), torch.zeros(n, dtype=torch.long),
            0) if per_channel else
            torch._make_per_tensor_quantized_tensor(torch.from_numpy(w_q), w_scale, 0))
    else:
        x_scale = float(np.float32(rng.uniform(0.005, 0.05)))
        y_scale = float(np.float32(rng.uniform(0.5, 4.0)))
    bias_int, bias_f = (_bias_for_fbgemm(rng, x_scale, w_scale, n, 40 if pow2 else 3000)
                        if with_bias else (None, None))
    x_t = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_q), x_scale, x_zero_point)
    packed = torch.ops.quantized.linear_prepack(
        w_t, None if bias_f is None else torch.from_numpy(bias_f))
    op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
    expected = op(x_t, packed, y_scale, y_zero_point).int_repr().numpy()
    got = golden.qlinear(x_q, w_q, x_scale=x_scale, x_zero_point=x_zero_point,
                         w_scale=w_scale, y_scale=y_scale, y_zero_point=y_zero_point,
                         bias=bias_int, relu=relu)
    acc = golden.matmul(x_q.astype(np.int16) - x_zero_point, w_q.T.astype(np.int16))
    assert np.abs(acc).max() < 2**24, "test inputs must keep fbgemm's float bias add exact"
    if pow2:
        total = acc.astype(np.int64) + (0 if bias_int is None else bias_int)
        inside = (total // 2 + y_zero_point > 0) & (total // 2 + y_zero_point < 255)
        ties = np.count_nonzero((total % 2 == 1) & inside)
        print(f"exact ties: {ties} of {total.size}")
        assert ties >= total.size // 4
    mismatches = np.argwhere(got != expected)
    assert mismatches.size == 0, (
        f"{len(mismatches)} mismatches, first at {tuple(mismatches[0])}: golden "
        f"{got[tuple(mismatches[0])]} vs torch {expected[tuple(mismatches[0])]}")


def test_at_least_50000_outputs_compared():
    per_engine = sum(m * n for m, _, n, *_ in CASES)
    assert 2 * per_engine >= 50_000


@pytest.mark.parametrize("engine", ["fbgemm"], indirect=True)
@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinear_matches_ao_quantized_linear_module(engine, per_channel):
    seed = 1234 + per_channel
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    m, k, n = 41, 150, 23
    w_q, w_scale, w_t = quantized_weights(rng, n, k, per_channel)
    x_scale = float(np.float32(0.0173))
    bias_int, bias_f = _bias_for_fbgemm(rng, x_scale, w_scale, n)
    module = torch.ao.nn.quantized.Linear(k, n, dtype=torch.qint8)
    module.set_weight_bias(w_t, torch.from_numpy(bias_f))
    module.scale, module.zero_point = 0.731, 77
    x_q = rng.integers(0, 256, (m, k), dtype=np.uint8)
    x_t = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_q), x_scale, 131)
    expected = module(x_t).int_repr().numpy()
    got = golden.qlinear(x_q, w_q, x_scale=x_scale, x_zero_point=131, w_scale=w_scale,
                         y_scale=0.731, y_zero_point=77, bias=bias_int)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_quantize_matches_quantize_per_tensor(dtype):
    seed = 99
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    scale = float(np.float32(0.037))
    zero_point = 128 if dtype == "uint8" else 3
    x = (rng.standard_normal(100_000) * 3).astype(np.float32)
    # Exact ties: x * (1/s) = k + 1/2 in float32.
    inverse = np.float32(1) / np.float32(scale)
    ties = ((np.arange(-500, 500) + np.float32(0.5)) / inverse).astype(np.float32)
    # 100,000 + 1000 + 3 elements: the vector body and a scalar tail.
    x = np.concatenate([x, ties, np.float32([1e9, -1e9, 0.0])])
    torch_dtype = torch.quint8 if dtype == "uint8" else torch.qint8
    expected = torch.quantize_per_tensor(torch.from_numpy(x), scale, zero_point,
                                         torch_dtype).int_repr().numpy()
    np.testing.assert_array_equal(golden.quantize(x, scale, zero_point, dtype), expected)


@pytest.mark.parametrize("bits", [8, 4])
def test_matmul_matches_torch_int_mm(bits):
    seed = 2024 + bits
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 127) if bits == 8 else (-8, 7)
    for m, k, n in [(32, 64, 40), (48, 520, 24), (17, 1024, 8)]:
        a = rng.integers(lo, hi + 1, (m, k), dtype=np.int8)
        b = rng.integers(lo, hi + 1, (k, n), dtype=np.int8)
        a[0, :] = lo
        b[:, 0] = lo
        expected = torch._int_mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        np.testing.assert_array_equal(golden.matmul(a, b), expected)


def test_matmul_wraps_like_int32():
    """K large enough to overflow int32: golden wraps modulo 2^32 like torch int32 sums."""
    k = 140_000
    a = np.full((1, k), -128, dtype=np.int8)
    b = np.full((k, 2), -128, dtype=np.int8)
    expected = torch.from_numpy(a).int() @ torch.from_numpy(b).int()
    np.testing.assert_array_equal(golden.matmul(a, b), expected.numpy())
    assert golden.max_safe_k((-128, 127), (-128, 127)) < k
