"""Every offloaded op against ONNX Runtime, one node at a time: hand-built single-node
models with random data (seeds printed) over convolution geometries (strides, dilations,
explicit and automatic padding, groups, depthwise, 1-D), uint8 and int8 activations, per-tensor
and per-channel weights, weight zero points, bias, batched and transposed GEMMs. ONNX
Runtime's CPU provider is the oracle: every output must be equal element for element."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import golden
from host.lowering import ConvGeometry, GemmLog, Weights, im2col, integer_gemm
from host.runner import ModelRunner

_TYPES = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
          np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32}


def _model(op: str, inputs: list[tuple[str, np.ndarray, bool]], attributes: dict | None = None,
           domain: str = "") -> bytes:
    """One node; inputs (name, value, constant): constants become initializers, the others
    graph inputs of the value's dtype with a dynamic first dimension."""
    graph_inputs, initializers = [], []
    for name, value, constant in inputs:
        if constant:
            initializers.append(numpy_helper.from_array(value, name))
        else:
            shape = ["n", *value.shape[1:]]
            graph_inputs.append(helper.make_tensor_value_info(name, _TYPES[value.dtype], shape))
    node = helper.make_node(op, [name for name, _, _ in inputs], ["y"], domain=domain,
                            **(attributes or {}))
    graph = helper.make_graph([node], "single", graph_inputs, [helper.ValueInfoProto(name="y")],
                              initializer=initializers)
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def _run(model: bytes, feeds: dict, accelerator, offloaded: int = 1):
    runner = ModelRunner(model, accelerator)
    assert len(runner.offloaded) == offloaded, runner.left_to_onnxruntime
    report = runner.run(feeds, check=True)
    assert report.reference_consistent
    assert report.output_mismatches == {"y": 0}
    assert report.mismatches == 0
    return report


def _scales(rng, channels: int, per_channel: bool) -> np.ndarray:
    if per_channel:
        return rng.uniform(0.002, 0.02, channels).astype(np.float32)
    return np.array(rng.uniform(0.002, 0.02), np.float32)


def _y_scale(x_scale: float, w_scale: np.ndarray, k: int) -> np.ndarray:
    """An output scale for which the outputs span the output range (many saturate)."""
    return np.array(x_scale * float(np.median(w_scale)) * 40.0 * np.sqrt(k) / 64.0, np.float32)


CONV_CASES = [
    # (N, C, H, W), (OC, KH, KW), attributes
    ((2, 3, 9, 7), (5, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 4, 10, 10), (6, 3, 3), {"strides": [2, 2], "pads": [1, 0, 2, 1]}),
    ((1, 4, 11, 9), (4, 3, 2), {"dilations": [2, 1], "strides": [1, 2]}),
    ((2, 6, 8, 8), (6, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),            # depthwise
    ((1, 8, 7, 7), (4, 1, 1), {"group": 2}),
    ((2, 3, 7, 6), (4, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 2, 6, 7), (3, 2, 2), {"auto_pad": "SAME_LOWER"}),
    ((3, 4, 12), (5, 3), {"strides": [2], "pads": [2, 1]}),                    # 1-D
]


@pytest.mark.parametrize("activations", ["uint8", "int8"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_qlinearconv_matches_onnxruntime(golden_accelerator, case, per_channel, activations):
    seed = 1000 + case
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    x_shape, (oc, *kernel), attributes = CONV_CASES[case]
    group = attributes.get("group", 1)
    dtype = np.dtype(activations)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, x_shape).astype(dtype)
    w = rng.integers(-128, 128, (oc, x_shape[1] // group, *kernel)).astype(np.int8)
    x_scale = np.array(0.02, np.float32)
    w_scale = _scales(rng, oc, per_channel)
    k = w[0].size
    inputs = [("x", x, False), ("x_scale", x_scale, True),
              ("x_zero", np.array(rng.integers(info.min, info.max + 1), dtype), True),
              ("w", w, True), ("w_scale", w_scale, True),
              ("w_zero", np.zeros(oc if per_channel else (), np.int8), True),
              ("y_scale", _y_scale(0.02, w_scale, k), True),
              ("y_zero", np.array(rng.integers(info.min // 2, info.max // 2), dtype), True),
              ("bias", rng.integers(-3000, 3000, oc).astype(np.int32), True)]
    report = _run(_model("QLinearConv", inputs, attributes), {"x": x}, golden_accelerator)
    assert report.nodes[0].gemms == group
    assert report.nodes[0].path == "qlinear"


@pytest.mark.parametrize("case", [0, 1, 3, 7])
def test_qlinearconv_uint8_weights_with_a_zero_point(golden_accelerator, case):
    """Asymmetric uint8 weights: the int32 GEMM on the accelerator, the requantization on
    the host (`golden.requantize`)."""
    seed = 2000 + case
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    x_shape, (oc, *kernel), attributes = CONV_CASES[case]
    group = attributes.get("group", 1)
    x = rng.integers(0, 256, x_shape).astype(np.uint8)
    w = rng.integers(0, 256, (oc, x_shape[1] // group, *kernel)).astype(np.uint8)
    w_scale = np.array(0.01, np.float32)
    inputs = [("x", x, False), ("x_scale", np.array(0.02, np.float32), True),
              ("x_zero", np.array(131, np.uint8), True), ("w", w, True),
              ("w_scale", w_scale, True), ("w_zero", np.array(117, np.uint8), True),
              ("y_scale", _y_scale(0.02, w_scale, w[0].size), True),
              ("y_zero", np.array(120, np.uint8), True)]
    report = _run(_model("QLinearConv", inputs, attributes), {"x": x}, golden_accelerator)
    assert report.nodes[0].path == "int32"


@pytest.mark.parametrize("case", [0, 2, 3, 5, 7])
def test_convinteger_matches_onnxruntime(golden_accelerator, case):
    seed = 3000 + case
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    x_shape, (oc, *kernel), attributes = CONV_CASES[case]
    group = attributes.get("group", 1)
    x = rng.integers(0, 256, x_shape).astype(np.uint8)
    w = rng.integers(0, 256, (oc, x_shape[1] // group, *kernel)).astype(np.uint8)
    inputs = [("x", x, False), ("w", w, True), ("x_zero", np.array(140, np.uint8), True),
              ("w_zero", np.array(100, np.uint8), True)]
    _run(_model("ConvInteger", inputs, attributes), {"x": x}, golden_accelerator)


@pytest.mark.parametrize("activations", ["uint8", "int8"])
@pytest.mark.parametrize("per_column", [False, True], ids=["per-tensor", "per-column"])
def test_matmulinteger_matches_onnxruntime(golden_accelerator, activations, per_column):
    """3-D activations (batch, tokens, K), zero points on both sides, per-column weight zero
    points."""
    seed = 4000 + per_column + 2 * (activations == "int8")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    dtype = np.dtype(activations)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max + 1, (2, 7, 75)).astype(dtype)
    b = rng.integers(-128, 128, (75, 33)).astype(np.int8)
    b_zero = rng.integers(-5, 6, 33).astype(np.int8) if per_column else np.array(3, np.int8)
    inputs = [("a", a, False), ("b", b, True),
              ("a_zero", np.array(rng.integers(info.min, info.max + 1), dtype), True),
              ("b_zero", b_zero, True)]
    report = _run(_model("MatMulInteger", inputs), {"a": a}, golden_accelerator)
    assert (report.nodes[0].m, report.nodes[0].k, report.nodes[0].n) == (14, 75, 33)


@pytest.mark.parametrize("k", [96, 4500], ids=["one-gemm", "k-beyond-one-gemm"])
@pytest.mark.parametrize("activations", ["uint8", "int8"])
def test_qlinearmatmul_matches_onnxruntime(golden_accelerator, activations, k):
    seed = 5000 + k + (activations == "int8")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    dtype = np.dtype(activations)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max + 1, (3, 5, k)).astype(dtype)
    b = rng.integers(-128, 128, (k, 19)).astype(np.int8)
    b_scale = _scales(rng, 19, True)
    inputs = [("a", a, False), ("a_scale", np.array(0.03, np.float32), True),
              ("a_zero", np.array(rng.integers(info.min, info.max + 1), dtype), True),
              ("b", b, True), ("b_scale", b_scale, True),
              ("b_zero", np.zeros(19, np.int8), True),
              ("y_scale", _y_scale(0.03, b_scale, k), True),
              ("y_zero", np.array(rng.integers(info.min // 2, info.max // 2), dtype), True)]
    report = _run(_model("QLinearMatMul", inputs), {"a": a}, golden_accelerator)
    assert report.nodes[0].path == ("qlinear" if k <= golden_accelerator.max_k else "int32")


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_qgemm_matches_onnxruntime(golden_accelerator, trans_a, trans_b):
    seed = 6000 + 2 * trans_a + trans_b
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    m, k, n = 23, 70, 12
    a = rng.integers(0, 256, (k, m) if trans_a else (m, k)).astype(np.uint8)
    b = rng.integers(-128, 128, (n, k) if trans_b else (k, n)).astype(np.int8)
    b_scale = _scales(rng, n, True)
    inputs = [("a", a, False), ("a_scale", np.array(0.02, np.float32), True),
              ("a_zero", np.array(128, np.uint8), True), ("b", b, True),
              ("b_scale", b_scale, True), ("b_zero", np.zeros(n, np.int8), True),
              ("c", rng.integers(-5000, 5000, n).astype(np.int32), True),
              ("y_scale", _y_scale(0.02, b_scale, k), True),
              ("y_zero", np.array(100, np.uint8), True)]
    model = _model("QGemm", inputs, {"transA": trans_a, "transB": trans_b}, "com.microsoft")
    report = _run(model, {"a": a}, golden_accelerator)
    assert (report.nodes[0].m, report.nodes[0].k, report.nodes[0].n) == (m, k, n)


def _qgemm_alpha_model(rng) -> tuple[bytes, np.ndarray]:
    a = rng.integers(0, 256, (4, 8)).astype(np.uint8)
    inputs = [("a", a, False), ("a_scale", np.array(0.02, np.float32), True),
              ("a_zero", np.array(128, np.uint8), True),
              ("b", rng.integers(-128, 128, (8, 3)).astype(np.int8), True),
              ("b_scale", np.array(0.01, np.float32), True),
              ("b_zero", np.array(0, np.int8), True), ("c", np.zeros(3, np.int32), True),
              ("y_scale", np.array(0.05, np.float32), True),
              ("y_zero", np.array(128, np.uint8), True)]
    return _model("QGemm", inputs, {"alpha": 0.5}, "com.microsoft"), a


def test_a_node_the_accelerator_cannot_take_runs_in_onnxruntime(golden_accelerator):
    """QGemm with alpha != 1: left to ONNX Runtime, with the reason, and still equal."""
    model, a = _qgemm_alpha_model(np.random.default_rng(7000))
    runner = ModelRunner(model, golden_accelerator)
    assert runner.offloaded == []
    [left] = runner.left_to_onnxruntime
    assert left["op"] == "QGemm" and "alpha" in left["reason"]
    report = runner.run({"a": a}, check=True)
    assert report.mismatches == 0 and report.offloaded_nodes == 0


def test_strict_refuses_a_node_the_accelerator_cannot_take(golden_accelerator):
    model, _ = _qgemm_alpha_model(np.random.default_rng(7001))
    with pytest.raises(ValueError, match=r"^node .*QGemm.* cannot run on the accelerator: "
                                         r"alpha = 0.5"):
        ModelRunner(model, golden_accelerator, strict=True)


def test_an_activation_by_activation_product_runs_in_onnxruntime(golden_accelerator):
    rng = np.random.default_rng(7002)
    a = rng.integers(0, 256, (2, 4, 6)).astype(np.uint8)
    b = rng.integers(0, 256, (2, 6, 5)).astype(np.uint8)
    model = _model("MatMulInteger", [("a", a, False), ("b", b, False)])
    runner = ModelRunner(model, golden_accelerator)
    assert runner.offloaded == []
    assert "not a constant initializer" in runner.left_to_onnxruntime[0]["reason"]
    assert runner.run({"a": a, "b": b}, check=True).mismatches == 0


# --- The host-side helpers alone -------------------------------------------------------------

@pytest.mark.parametrize("a_dtype,b_dtype", [("uint8", "int8"), ("int8", "int8"),
                                             ("uint8", "uint8"), ("int8", "uint8")])
def test_integer_gemm_is_exact(golden_accelerator, a_dtype, b_dtype):
    """Zero-point decomposition against int64 arithmetic, extreme values included."""
    seed = 8000 + len(a_dtype) + 3 * len(b_dtype)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    a_info, b_info = np.iinfo(a_dtype), np.iinfo(b_dtype)
    a = rng.integers(a_info.min, a_info.max + 1, (9, 40)).astype(a_dtype)
    a[0] = a_info.max
    b = rng.integers(b_info.min, b_info.max + 1, (40, 6)).astype(b_dtype)
    b[:, 0] = b_info.min
    a_zero = int(a_info.min)
    b_zero = rng.integers(b_info.min, b_info.max + 1, 6).astype(b_dtype)
    got = integer_gemm(golden_accelerator, GemmLog(), a, a_zero, Weights.make(b, b_zero))
    expected = (a.astype(np.int64) - a_zero) @ (b.astype(np.int64) - b_zero.astype(np.int64))
    assert golden.mismatches(expected.astype(np.int32), got) == 0


def test_im2col_patch_order_and_padding():
    """Patches in (c, kh, kw) order, padded with the given value."""
    x = np.arange(2 * 3 * 3, dtype=np.int16).reshape(1, 2, 3, 3)
    geometry = ConvGeometry.from_attributes({"pads": [1, 1, 1, 1]}, x.shape, (1, 2, 3, 3))
    patches = im2col(x, geometry, pad_value=-7)
    assert patches.shape == (9, 18)
    first = patches[0].reshape(2, 3, 3)     # output (0, 0): the window at rows/cols -1..1
    assert (first[:, 0, :] == -7).all() and (first[:, :, 0] == -7).all()
    assert first[0, 1, 1] == x[0, 0, 0, 0] and first[1, 2, 2] == x[0, 1, 1, 1]


def _add_model(dims_x: list, dims_y: list) -> bytes:
    node = helper.make_node("Add", ["x", "y"], ["z"])
    graph = helper.make_graph(
        [node], "add", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims_x),
                        helper.make_tensor_value_info("y", TensorProto.FLOAT, dims_y)],
        [helper.ValueInfoProto(name="z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_inputs_disagreeing_on_a_named_dimension_are_refused(golden_accelerator):
    runner = ModelRunner(_add_model(["batch", 4], ["batch", 4]), golden_accelerator)
    with pytest.raises(ValueError, match="^input y has 3 along dimension batch, but input x "
                                         "has 2$"):
        runner.run({"x": np.zeros((2, 4), np.float32), "y": np.zeros((3, 4), np.float32)})


def test_onnxruntime_failing_on_the_inputs_is_one_sentence(golden_accelerator):
    runner = ModelRunner(_add_model(["a", 4], ["b", 4]), golden_accelerator)
    with pytest.raises(ValueError, match="^ONNX Runtime cannot run model on these inputs: "):
        runner.run({"x": np.zeros((2, 4), np.float32), "y": np.zeros((3, 4), np.float32)})
