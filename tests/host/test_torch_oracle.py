"""`Accelerator.qlinear` against PyTorch's `torch.ops.quantized.linear` (fbgemm), on the
golden and Verilator backends: the accelerator computes what PyTorch computes."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from tests.golden.test_torch_oracle import _bias_for_fbgemm, quantized_weights

torch = pytest.importorskip("torch")

CASES = [
    # (m, k, n, per_channel, with_bias, relu, mode)
    (37, 515, 29, True, True, False, "a8w8"),
    (21, 200, 300, False, True, True, "a8w8"),
    (33, 96, 40, True, False, False, "a8w4"),
]


@pytest.fixture
def fbgemm():
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    yield
    torch.backends.quantized.engine = previous


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:3])) + "-" + c[6])
def test_qlinear_equals_torch_quantized_linear(accelerator, fbgemm, case):
    m, k, n, per_channel, with_bias, relu, mode = case
    seed = zlib.crc32(repr(case).encode())
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    w_q, w_scale, w_t = quantized_weights(rng, n, k, per_channel,
                                          bits=4 if mode == "a8w4" else 8)
    x_scale = float(np.float32(rng.uniform(0.005, 0.05)))
    y_scale = float(np.float32(rng.uniform(0.5, 4.0)))
    x_zero_point, y_zero_point = int(rng.integers(0, 256)), int(rng.integers(0, 256))
    x_q = rng.integers(0, 256, (m, k), dtype=np.uint8)
    bias_int, bias_f = (_bias_for_fbgemm(rng, x_scale, w_scale, n) if with_bias
                        else (None, None))
    x_t = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_q), x_scale, x_zero_point)
    packed = torch.ops.quantized.linear_prepack(
        w_t, None if bias_f is None else torch.from_numpy(bias_f))
    op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
    expected = op(x_t, packed, y_scale, y_zero_point).int_repr().numpy()
    assert len(np.unique(expected)) > 10
    got = accelerator.qlinear(x_q, w_q, x_scale=x_scale, x_zero_point=x_zero_point,
                              w_scale=w_scale, y_scale=y_scale, y_zero_point=y_zero_point,
                              bias=bias_int, relu=relu, mode=mode)
    np.testing.assert_array_equal(got, expected)
