"""The digits CNN (conv, stride 2, depthwise, pooling, residual add, linear) quantized by
ONNX Runtime's static quantizer, end to end through the model runner: 0 differing elements
against ONNX Runtime on every output and offloaded node, accuracy within 1 point of float."""

from __future__ import annotations

import numpy as np
import pytest

from host.models.digits import accuracy
from host.runner import ModelRunner

pytestmark = pytest.mark.xdist_group("models-cnn")

VARIANTS = [(fmt, per_channel, activations) for fmt in ("qoperator", "qdq")
            for per_channel in (False, True) for activations in ("uint8", "int8")]


@pytest.mark.parametrize("fmt,per_channel,activations", VARIANTS)
def test_cnn_on_golden(golden_accelerator, cnn, digits_data, fmt, per_channel, activations):
    path = cnn.quantized(fmt, per_channel=per_channel, activations=activations,
                         data=digits_data)
    runner = ModelRunner(path, golden_accelerator)
    report = runner.run({"image": digits_data.x_test}, check=True)
    print(f"{path.name}: accuracy {accuracy(report.outputs['logits'], digits_data.y_test):.4f}"
          f" (float {cnn.float_accuracy:.4f}), offloaded {report.offloaded_nodes}, left "
          f"{[left['node'] for left in report.left_to_onnxruntime]}")
    assert report.mismatches == 0
    assert report.reference_consistent
    assert all(node.mismatches == 0 for node in report.nodes)
    assert abs(accuracy(report.outputs["logits"], digits_data.y_test)
               - cnn.float_accuracy) <= 0.01
    ops = sorted(node.op for node in report.nodes)
    if fmt == "qdq" and activations == "int8":
        # ONNX Runtime's CPU provider leaves two of the int8 QDQ convolutions in float
        # (and converts the fused ones to uint8): those stay in ONNX Runtime, with reasons.
        left = report.left_to_onnxruntime
        assert [entry["op"] for entry in left] == ["Conv", "Conv"]
        assert all("does not fuse" in entry["reason"] for entry in left)
        assert ops == ["QGemm", "QLinearConv", "QLinearConv"]
    else:
        assert report.left_to_onnxruntime == []
        assert ops == ["QGemm"] + ["QLinearConv"] * 4
    depthwise = [node for node in report.nodes if node.gemms > 1]
    assert [(node.k, node.n, node.gemms) for node in depthwise] in ([(9, 1, 32)], [])


def test_cnn_on_verilator(verilator_accelerator, cnn, digits_data):
    """The simulated RTL: every offloaded node's cycles and utilization from the
    accelerator's counters."""
    path = cnn.quantized("qoperator", per_channel=True, data=digits_data)
    images = digits_data.x_test[:64]
    report = ModelRunner(path, verilator_accelerator).run({"image": images}, check=True)
    assert report.mismatches == 0 and report.offloaded_nodes == 5
    assert all(node.cycles > 0 and 0 < node.utilization <= 1 for node in report.nodes)
    assert report.cycles == sum(node.cycles for node in report.nodes)
    assert report.macs >= report.useful_macs == sum(
        node.m * node.k * node.n * node.gemms for node in report.nodes)
    assert report.inferences == 64


def test_dynamic_cnn_convinteger(golden_accelerator, cnn, digits_data, tmp_path):
    """Dynamic quantization of the CNN: DynamicQuantizeLinear + ConvInteger (and
    MatMulInteger for the linear layer) on the accelerator."""
    from host.models.quantize import quantize_dynamic

    path = quantize_dynamic(cnn.float_model, tmp_path / "cnn-dynamic.onnx", per_channel=False,
                            op_types=("Conv", "Gemm", "MatMul"))
    report = ModelRunner(path, golden_accelerator).run({"image": digits_data.x_test[:100]},
                                                       check=True)
    assert report.mismatches == 0
    assert "ConvInteger" in {node.op for node in report.nodes}


@pytest.mark.slow
def test_cnn_on_cocotb(cnn, digits_data):
    """The cocotb testbench path (slow: a simulator run per exchange)."""
    from host import Accelerator

    path = cnn.quantized("qoperator", per_channel=True, data=digits_data)
    with Accelerator(backend="cocotb") as accelerator:
        report = ModelRunner(path, accelerator).run({"image": digits_data.x_test[:16]},
                                                    check=True)
    print(f"cocotb: {report.cycles:,} cycles, {report.wall_s:.1f} s for 16 images")
    assert report.mismatches == 0 and report.offloaded_nodes == 5


@pytest.mark.slow
def test_cnn_all_variants_on_verilator(verilator_accelerator, cnn, digits_data):
    for fmt, per_channel, activations in VARIANTS:
        path = cnn.quantized(fmt, per_channel=per_channel, activations=activations,
                             data=digits_data)
        report = ModelRunner(path, verilator_accelerator).run({"image": digits_data.x_test},
                                                              check=True)
        print(f"{path.name}: {report.cycles:,} cycles, {report.utilization:.2%}, "
              f"{report.wall_s:.2f} s, {len(digits_data.x_test) / report.wall_s:.1f} images/s")
        assert report.mismatches == 0
        assert np.isfinite(report.wall_s)
