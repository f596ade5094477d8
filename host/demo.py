"""The README's main job: a small MLP trained on scikit-learn's bundled digits dataset,
quantized three ways (A8W8, A8W4, MXINT8), with every inference GEMM run through a GEMM
backend and checked bit for bit against the golden model.

The GEMMs are pluggable: `run_demo(qlinear=..., mx_matmul=...)` takes any functions with
the golden model's signatures; `run_demo(accelerator=acc)` runs them on an
`host.Accelerator` (what `lpmac demo` does, on the simulated RTL by default) and adds the
accelerator's cycle counts and utilization per mode."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import golden

HIDDEN = 64
SEED = 0


@dataclass
class ModeResult:
    mode: str
    accuracy: float
    gemms: int
    macs: int
    seconds: float
    mismatches: int
    cycles: int | None = None
    """Accelerator cycles of the mode's GEMMs (None without an accelerator with a clock)."""
    utilization: float | None = None
    """Counted MACs / (cycles * peak MACs per cycle of the mode)."""


@dataclass
class DemoReport:
    float_accuracy: float
    samples: int
    results: list[ModeResult]
    backend: str = "golden"

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "float_accuracy": self.float_accuracy,
            "test_samples": self.samples,
            "modes": [vars(r) for r in self.results],
        }


def train_mlp():
    """Digits (8x8 images, 1797 samples, bundled with scikit-learn: no download), one
    hidden ReLU layer. Returns (weights, biases, x_train, x_test, y_test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x = digits.data.astype(np.float32) / 16.0
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.3, random_state=SEED, stratify=digits.target)
    model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), max_iter=400, random_state=SEED)
    model.fit(x_train, y_train)
    weights = [w.T.astype(np.float32) for w in model.coefs_]        # [N, K] per layer
    biases = [b.astype(np.float32) for b in model.intercepts_]
    return weights, biases, x_train, x_test, y_test


def _symmetric_scales(w: np.ndarray, bits: int) -> np.ndarray:
    top = 2 ** (bits - 1) - 1
    return np.maximum(np.abs(w).max(axis=1), 1e-8).astype(np.float32) / np.float32(top)


def _quantize_weights(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    scales = _symmetric_scales(w, bits)
    top = 2 ** (bits - 1) - 1
    q = np.clip(np.rint(w / scales[:, None]), -top, top).astype(np.int8)
    return q, scales.astype(np.float64)


QLinear = Callable[..., np.ndarray]


def run_integer(mode: str, weights, biases, x_train, x_test, qlinear: QLinear):
    """A8W8 / A8W4 inference with per-channel weights and calibrated activation scales."""
    bits = 8 if mode == "a8w8" else 4
    x_scale = 1.0 / 255.0
    hidden_float = np.maximum(x_train @ weights[0].T + biases[0], 0)
    hidden_scale = float(np.percentile(hidden_float, 99.99)) / 255.0
    logits_float = hidden_float @ weights[1].T + biases[1]
    logits_scale = float(np.abs(logits_float).max()) / 127.0

    w1, s1 = _quantize_weights(weights[0], bits)
    w2, s2 = _quantize_weights(weights[1], bits)
    b1 = golden.quantize_bias(biases[0], x_scale, s1)
    b2 = golden.quantize_bias(biases[1], hidden_scale, s2)
    x_q = golden.quantize(x_test, x_scale, 0, "uint8")
    hidden = qlinear(x_q, w1, x_scale=x_scale, x_zero_point=0, w_scale=s1,
                     y_scale=hidden_scale, y_zero_point=0, bias=b1, relu=True,
                     out_dtype="uint8")
    logits = qlinear(hidden, w2, x_scale=hidden_scale, x_zero_point=0, w_scale=s2,
                     y_scale=logits_scale, y_zero_point=0, bias=b2, out_dtype="int8")
    return logits, [(x_q, w1), (hidden, w2)]


def run_mx(weights, biases, x_test, mx_matmul):
    hidden = np.maximum(mx_matmul(x_test, weights[0].T.copy()) + biases[0], 0)
    logits = mx_matmul(hidden.astype(np.float32), weights[1].T.copy()) + biases[1]
    return logits, [(x_test, weights[0]), (hidden, weights[1])]


class _Counted:
    """Wraps an accelerator method: sums the cycles and counted MACs of its calls."""

    def __init__(self, accelerator, method: Callable[..., np.ndarray], mode: str | None = None
                 ) -> None:
        self.accelerator, self.method, self.mode = accelerator, method, mode
        self.cycles: int | None = 0
        self.macs = 0
        self.peak = 0

    def __call__(self, *args, **kwargs) -> np.ndarray:
        if self.mode is not None:
            kwargs["mode"] = self.mode
        result = self.method(*args, **kwargs)
        stats = self.accelerator.last_stats
        self.macs += stats.macs
        self.peak = stats.peak_macs_per_cycle
        self.cycles = None if stats.cycles is None or self.cycles is None \
            else self.cycles + stats.cycles
        return result

    @property
    def utilization(self) -> float | None:
        return self.macs / (self.cycles * self.peak) if self.cycles else None


def run_demo(qlinear: QLinear | None = None, mx_matmul=None,
             progress: Callable[[str], None] | None = None, accelerator=None) -> DemoReport:
    """Train, quantize and run every mode. `qlinear` / `mx_matmul` default to the golden
    model, or to `accelerator`'s methods when one is given; every result is compared with
    the golden model bit for bit."""
    say = progress or (lambda message: None)
    say("training the float MLP on the digits dataset")
    weights, biases, x_train, x_test, y_test = train_mlp()
    float_logits = np.maximum(x_test @ weights[0].T + biases[0], 0) @ weights[1].T + biases[1]
    float_accuracy = float(np.mean(float_logits.argmax(axis=1) == y_test))
    backend = "golden" if accelerator is None else accelerator.backend
    results = []
    for mode in ("a8w8", "a8w4", "mxint8"):
        counted = None
        gemm = mx_matmul or golden.mx_matmul if mode == "mxint8" else qlinear or golden.qlinear
        if accelerator is not None:
            counted = _Counted(accelerator, accelerator.mx_matmul if mode == "mxint8"
                               else accelerator.qlinear, None if mode == "mxint8" else mode)
            gemm = counted
        say(f"running {mode} inference on the {backend} backend")
        start = time.perf_counter()
        if mode == "mxint8":
            logits, gemms = run_mx(weights, biases, x_test, gemm)
            seconds = time.perf_counter() - start
            reference, _ = run_mx(weights, biases, x_test, golden.mx_matmul)
            mismatches = golden.mismatches(reference, logits)
        else:
            logits, gemms = run_integer(mode, weights, biases, x_train, x_test, gemm)
            seconds = time.perf_counter() - start
            reference, _ = run_integer(mode, weights, biases, x_train, x_test, golden.qlinear)
            mismatches = golden.mismatches(reference, logits)
        macs = sum(x.shape[0] * x.shape[1] * w.shape[0] for x, w in gemms)
        accuracy = float(np.mean(np.asarray(logits).argmax(axis=1) == y_test))
        results.append(ModeResult(
            mode, accuracy, len(gemms), macs, seconds, mismatches,
            cycles=counted.cycles if counted else None,
            utilization=counted.utilization if counted else None))
    return DemoReport(float_accuracy, len(y_test), results, backend)
