"""The demo's digits MLP (scikit-learn's MLPClassifier, 64-64-10) as ONNX, quantized by ONNX
Runtime (QLinearMatMul), through the model runner."""

from __future__ import annotations

import pytest

from host.models.digits import accuracy
from host.runner import ModelRunner

pytestmark = pytest.mark.xdist_group("models-cnn")


@pytest.mark.parametrize("fmt", ["qoperator", "qdq"])
@pytest.mark.parametrize("backend", ["golden", "verilator"])
def test_mlp(request, mlp, digits_data, fmt, backend):
    accelerator = request.getfixturevalue(f"{backend}_accelerator")
    path = mlp.quantized(fmt, per_channel=True, data=digits_data)
    pixels = digits_data.x_test.reshape(len(digits_data.x_test), -1)
    report = ModelRunner(path, accelerator).run({"pixels": pixels}, check=True)
    assert report.mismatches == 0
    assert [(node.op, node.k, node.n) for node in report.nodes] == \
        [("QLinearMatMul", 64, 64), ("QLinearMatMul", 64, 10)]
    assert abs(accuracy(report.outputs["logits"], digits_data.y_test)
               - mlp.float_accuracy) <= 0.01
    if backend == "verilator":
        assert report.cycles > 0
