"""Golden model vs ONNX Runtime QLinearMatMul and MatMulInteger, and ONNX int4 packing."""

from __future__ import annotations

import numpy as np
import pytest

import golden

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

_ONNX_TYPES = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8,
               np.int32: TensorProto.INT32, np.float32: TensorProto.FLOAT}


def _run(op, inputs, output_type, initializers):
    """One-node ONNX model: `inputs` are fed, `initializers` are constants."""
    names = list(inputs) + list(initializers)
    node = helper.make_node(op, names, ["y"])
    graph_inputs = [helper.make_tensor_value_info(n, _ONNX_TYPES[v.dtype.type], v.shape)
                    for n, v in inputs.items()]
    inits = [helper.make_tensor(n, _ONNX_TYPES[v.dtype.type], v.shape, v.flatten().tolist())
             for n, v in initializers.items()]
    output = helper.make_tensor_value_info("y", output_type, None)
    graph = helper.make_graph([node], op, graph_inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


@pytest.mark.parametrize("x_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("per_column", [False, True])
def test_qlinear_matches_qlinearmatmul(x_dtype, per_column):
    seed = 31 + per_column + (x_dtype == "int8") * 2
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    m, k, n = 67, 219, 45
    lo, hi = golden.output_range(x_dtype)
    x_q = rng.integers(lo, hi + 1, (m, k)).astype(x_dtype)
    w_q = rng.integers(-128, 128, (n, k), dtype=np.int8)
    x_zero = int(rng.integers(lo, hi + 1))
    y_zero = int(rng.integers(lo, hi + 1))
    x_scale = np.float32(rng.uniform(0.005, 0.05))
    y_scale = np.float32(rng.uniform(0.5, 3))
    w_scale = (rng.uniform(0.002, 0.05, n) if per_column else
               np.array(rng.uniform(0.002, 0.05))).astype(np.float32)
    expected = _run("QLinearMatMul", {"a": x_q}, _ONNX_TYPES[np.dtype(x_dtype).type], {
        "a_scale": np.array(x_scale, np.float32),
        "a_zero_point": np.array(x_zero, x_dtype),
        "b": np.ascontiguousarray(w_q.T),
        "b_scale": w_scale,
        "b_zero_point": np.zeros(w_scale.shape, np.int8),
        "y_scale": np.array(y_scale, np.float32),
        "y_zero_point": np.array(y_zero, x_dtype),
    })
    got = golden.qlinear(x_q, w_q, x_scale=float(x_scale), x_zero_point=x_zero,
                         w_scale=w_scale.astype(np.float64) if per_column else float(w_scale),
                         y_scale=float(y_scale), y_zero_point=y_zero, out_dtype=x_dtype)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("b_zero", [0, -3])
def test_matmul_matches_matmulinteger(b_zero):
    seed = 77 - b_zero
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (53, 301), dtype=np.uint8)
    b = rng.integers(-128, 128, (301, 37), dtype=np.int8)
    a_zero = 117
    expected = _run("MatMulInteger", {"a": a}, TensorProto.INT32, {
        "b": b, "a_zero_point": np.array(a_zero, np.uint8),
        "b_zero_point": np.array(b_zero, np.int8)})
    got = golden.matmul(a.astype(np.int16) - a_zero, b.astype(np.int16) - b_zero)
    np.testing.assert_array_equal(got, expected)


def test_pack_int4_matches_onnx_int4_tensor():
    rng = np.random.default_rng(5)
    for length in (1, 2, 7, 64):
        values = rng.integers(-8, 8, length).astype(np.int8)
        tensor = helper.make_tensor("t", TensorProto.INT4, [length], values.tolist())
        # make_tensor packs INT4 two per byte into int32_data, as the ONNX spec stores it.
        onnx_bytes = bytes(np.array(tensor.int32_data, np.uint8))
        packed = golden.pack_int4(values)
        assert bytes(packed) == onnx_bytes, (values, packed, onnx_bytes)
        np.testing.assert_array_equal(golden.unpack_int4(packed, length), values)
