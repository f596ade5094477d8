"""A float model with per-layer precisions (`host.precision`): an all-A8W8 assignment equals
ONNX Runtime running the same quantized layers (QuantizeLinear -> ConvInteger / MatMulInteger
-> Cast -> Mul -> Add, same scales) element for element; the activation quantizer is ONNX
Runtime's QuantizeLinear, ties included; a mixed assignment of every mode (rotations
included) gives the same bits on the golden backend, the Verilator backend and the golden
functions; the precision file round-trips and refuses another model or a damaged file."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import golden
from host.precision import (
    ActivationQuant,
    GoldenFunctions,
    PrecisionAssignment,
    PrecisionRunner,
    find_layers,
    quantize_activations,
    quantize_weights,
)
from host.tune import calibrate

pytestmark = pytest.mark.xdist_group("tune-cnn")


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("dtype", ["uint8", "int4"])
def test_activation_quantizer_is_onnx_quantize_linear(dtype):
    """Against ONNX Runtime's QuantizeLinear (and Clip to [-8, 7] for int4 values held in
    int8), on random values, exact ties (k + 0.5) * scale and saturating ones."""
    rng = np.random.default_rng(4)
    scale, zero = (np.float32(0.0371), 17) if dtype == "uint8" else (np.float32(0.25), -3)
    ties = ((np.arange(-40, 40) + 0.5) * scale).astype(np.float32)
    x = np.concatenate([rng.standard_normal(5000).astype(np.float32) * 4, ties,
                        np.array([1e6, -1e6], np.float32)])
    onnx_type = TensorProto.UINT8 if dtype == "uint8" else TensorProto.INT8
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])]
    inits = [numpy_helper.from_array(np.array(scale), "s"),
             numpy_helper.from_array(np.array(zero, np.uint8 if dtype == "uint8"
                                              else np.int8), "z")]
    output = "q"
    if dtype == "int4":
        inits += [numpy_helper.from_array(np.array(-8, np.int8), "lo"),
                  numpy_helper.from_array(np.array(7, np.int8), "hi")]
        nodes.append(helper.make_node("Clip", ["q", "lo", "hi"], ["c"]))
        output = "c"
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [x.size])], [helper.make_tensor_value_info(
            output, onnx_type, [x.size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    expected = _session(model).run(None, {"x": x})[0]
    got = quantize_activations(x, ActivationQuant(float(scale), zero, dtype))
    assert golden.mismatches(expected, got) == 0


def _onnx_quantized(model_path, assignment: PrecisionAssignment) -> onnx.ModelProto:
    """The float model with each integer, unrotated layer replaced by ONNX's own quantized
    ops with the assignment's scales: QuantizeLinear -> ConvInteger / MatMulInteger -> Cast ->
    Mul (s_x * s_w) -> Add (bias)."""
    model = onnx.load(str(model_path))
    graph = model.graph
    layers = {layer.name: layer for layer in find_layers(model)}
    nodes = []
    for node in graph.node:
        name = node.name or node.output[0]
        precision = assignment.layers.get(name)
        if precision is None:
            nodes.append(node)
            continue
        assert precision.rotation is None and not precision.info.mx
        layer = layers[name]
        activation = precision.activation
        scales = np.asarray(precision.weight_scales, np.float32)
        tag = name.replace("/", "_")
        conv = layer.kind == "conv"
        if conv:
            w_q = quantize_weights(layer.weight.reshape(layer.n, -1).T, scales,
                                   precision.info.weight_bits).T.reshape(layer.weight.shape)
            shape = [1, layer.n, 1, 1]
        else:
            w_q = quantize_weights(layer.weight, scales, precision.info.weight_bits)
            shape = [layer.n]
        scale = (np.float32(activation.scale) * scales).astype(np.float32).reshape(shape)
        bias = np.zeros(layer.n, np.float32) if layer.bias is None else layer.bias
        graph.initializer.extend([
            numpy_helper.from_array(np.array(np.float32(activation.scale)), f"{tag}_sx"),
            numpy_helper.from_array(np.array(activation.zero_point, np.uint8), f"{tag}_zx"),
            numpy_helper.from_array(w_q, f"{tag}_wq"),
            numpy_helper.from_array(scale, f"{tag}_scale"),
            numpy_helper.from_array(bias.reshape(shape), f"{tag}_bias")])
        nodes.append(helper.make_node("QuantizeLinear", [layer.input, f"{tag}_sx", f"{tag}_zx"],
                                      [f"{tag}_xq"]))
        if conv:
            nodes.append(helper.make_node("ConvInteger", [f"{tag}_xq", f"{tag}_wq", f"{tag}_zx"],
                                          [f"{tag}_acc"], **layer.attributes))
        else:
            nodes.append(helper.make_node("MatMulInteger", [f"{tag}_xq", f"{tag}_wq",
                                                            f"{tag}_zx"], [f"{tag}_acc"]))
        nodes += [helper.make_node("Cast", [f"{tag}_acc"], [f"{tag}_f"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", [f"{tag}_f", f"{tag}_scale"], [f"{tag}_m"]),
                  helper.make_node("Add", [f"{tag}_m", f"{tag}_bias"], [layer.output])]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


@pytest.mark.parametrize("mode", ["a8w8", "a8w4"])
def test_uint8_activation_assignment_equals_onnx_runtime(mode, float_cnn, images, digits_data,
                                                         golden_accelerator):
    """Every layer A8W8 (or A8W4: int4 weights in ConvInteger's int8): the model's logits
    and every layer's output are ONNX Runtime's for the same quantized ops and scales, bit
    for bit (the non-layer ops are ONNX Runtime's kernels in both)."""
    assignment = calibrate(float_cnn, {"image": digits_data.x_test[:128]}, mode)
    assert len(assignment.layers) == 5
    reference = _onnx_quantized(float_cnn, assignment)
    runner = PrecisionRunner(float_cnn, golden_accelerator, assignment)
    values = runner.execute({"image": images}, golden_accelerator)
    outputs = [layer.output for layer in runner.layers.values()]
    reference.graph.output.extend(onnx.ValueInfoProto(name=name) for name in outputs)
    expected = dict(zip(["logits", *outputs], _session(reference).run(
        ["logits", *outputs], {"image": images}), strict=True))
    for name, value in expected.items():
        assert golden.mismatches(value, values[name]) == 0, name
    # The comparison can fail: a 1% change of one activation scale changes the logits.
    layer = next(iter(assignment.layers.values()))
    nudged = PrecisionAssignment(assignment.model_sha256, {**assignment.layers, layer.node: (
        type(layer)(layer.node, layer.mode, None, ActivationQuant(
            float(np.float32(layer.activation.scale) * np.float32(1.01)),
            layer.activation.zero_point, "uint8"), layer.weight_scales))})
    runner.assign(nudged)
    changed = runner.execute({"image": images}, golden_accelerator)
    assert golden.mismatches(expected["logits"], changed["logits"]) > 0


def test_mixed_assignment_is_bit_exact_across_backends(float_cnn, images, mixed_assignment,
                                                       golden_accelerator,
                                                       verilator_accelerator):
    """All six modes but A8W8, with rotations: golden backend, Verilator backend (the RTL) and
    the golden functions give the same bits for every output and every layer; the Verilator
    run's check against the golden functions counts 0."""
    modes = {layer.mode for layer in mixed_assignment.layers.values()}
    assert modes == {"a8w4", "a4w4", "mxint8", "mxint8w4", "mxint4"}
    reports = {}
    for accelerator in (golden_accelerator, verilator_accelerator):
        runner = PrecisionRunner(float_cnn, accelerator, mixed_assignment)
        reports[accelerator.backend] = runner.run({"image": images},
                                                  check=accelerator.backend == "verilator")
    functions = PrecisionRunner(float_cnn, golden_accelerator, mixed_assignment).execute(
        {"image": images}, GoldenFunctions())
    verilator = reports["verilator"]
    assert verilator.checked and verilator.mismatches == 0
    assert all(node.cycles and node.cycles > 0 for node in verilator.nodes)
    assert [node.mode for node in verilator.nodes] == ["a8w4", "a4w4", "mxint8", "mxint8w4",
                                                       "mxint4"]
    for name in ("logits",):
        assert golden.mismatches(reports["golden"].outputs[name],
                                 verilator.outputs[name]) == 0
        assert golden.mismatches(functions[name], verilator.outputs[name]) == 0


def test_precision_file_round_trip_and_refusals(tmp_path, float_cnn, mixed_assignment,
                                                golden_accelerator):
    path = mixed_assignment.save(tmp_path / "precision.json")
    loaded = PrecisionAssignment.load(path)
    assert loaded.as_dict() == mixed_assignment.as_dict()
    payload = json.loads(path.read_text())
    assert payload["format"] == "lpmac-precision" and payload["version"] == 1
    assert [layer["mode"] for layer in payload["layers"]] == [
        "a8w4", "a4w4", "mxint8", "mxint8w4", "mxint4"]
    assert payload["layers"][1]["rotation"] == 16
    assert len(payload["layers"][0]["weight_scales"]) == 16
    # Another model (one weight changed) is refused with one sentence.
    other = onnx.load(str(float_cnn))
    other.graph.initializer[0].raw_data = bytes(reversed(other.graph.initializer[0].raw_data))
    other_path = tmp_path / "other.onnx"
    onnx.save(other, str(other_path))
    with pytest.raises(ValueError, match=r"made for another model .* not for .*other\.onnx"):
        PrecisionRunner(other_path, golden_accelerator, path)
    # Damaged files.
    for text, message in (("{", "is not JSON"), ('{"format": "x"}', "not an lpmac precision"),
                          ('{"format": "lpmac-precision", "version": 9}', "version 9")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            PrecisionAssignment.load(bad)
    broken = dict(payload, layers=[dict(payload["layers"][0], mode="a2w2")])
    bad.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="mode must be one of"):
        PrecisionAssignment.load(bad)
    broken = dict(payload, layers=[dict(payload["layers"][0], node="/nope/Conv")])
    bad.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="names layer /nope/Conv"):
        PrecisionRunner(float_cnn, golden_accelerator, bad)
