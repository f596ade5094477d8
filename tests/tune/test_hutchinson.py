"""Hutchinson's trace estimator with finite-difference Hessian-vector products, against the
Hessian trace of quadratic losses in closed form, the loss computed by ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from host.tune import hutchinson_trace


def _linear_model_loss(x: np.ndarray, targets: np.ndarray):
    """loss(W) = sum((x W - t)^2) / N with x W computed by ONNX Runtime (float64)."""
    k, c = x.shape[1], targets.shape[1]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, list(x.shape)),
         helper.make_tensor_value_info("w", TensorProto.DOUBLE, [k, c])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [x.shape[0], c])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])

    def loss(w: np.ndarray) -> float:
        y = session.run(None, {"x": x, "w": w})[0]
        return float(((y - targets) ** 2).sum() / x.shape[0])

    return loss


def test_exact_on_a_diagonal_hessian():
    """x with orthogonal columns: H = (2 / N) x^T x (x) I is diagonal, so every Rademacher
    sample gives the trace, 2 C ||x||^2 / N, up to rounding."""
    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.standard_normal((64, 12)))
    x = q * rng.uniform(0.5, 3.0, 12)
    targets = rng.standard_normal((64, 5))
    loss = _linear_model_loss(x, targets)
    expected = 2 * 5 * float((x ** 2).sum()) / 64
    w = rng.standard_normal((12, 5))
    got = hutchinson_trace(loss, w, samples=3, step=0.1, seed=0)
    assert abs(got - expected) < 1e-6 * expected
    # A wrong estimator (one difference instead of two) would not match.
    assert abs(hutchinson_trace(loss, w, samples=3, step=0.2, seed=1) - expected) \
        < 1e-6 * expected


def test_unbiased_on_a_full_hessian():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((50, 8)) @ rng.standard_normal((8, 8))
    targets = rng.standard_normal((50, 3))
    loss = _linear_model_loss(x, targets)
    expected = 2 * 3 * float((x ** 2).sum()) / 50
    got = hutchinson_trace(loss, rng.standard_normal((8, 3)), samples=400, step=0.05, seed=2)
    assert abs(got - expected) < 0.1 * expected
