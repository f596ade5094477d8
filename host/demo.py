"""The README's main job, `lpmac demo`: the model runner on a real model.

A small CNN (conv, stride 2, depthwise, a residual add, max pooling, a final linear layer)
is trained on scikit-learn's bundled digits dataset (seconds, no download), exported to
ONNX and quantized by ONNX Runtime's own quantizer twice: QOperator with per-channel weights
and QDQ with per-tensor weights (uint8 activations). Each is run on the 540 test images with
every QLinearConv / QGemm on the accelerator (the Verilator model of the RTL by default) and
everything else in ONNX Runtime, compared with ONNX Runtime element by element, and scored
against the float model's accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["VARIANTS", "DemoReport", "VariantResult", "run_demo"]

VARIANTS: tuple[tuple[str, bool], ...] = (("qoperator", True), ("qdq", False))
"""(format, per-channel weights) of the quantized models the demo runs."""


@dataclass
class VariantResult:
    name: str
    accuracy: float
    offloaded_nodes: int
    mismatches: int
    cycles: int | None
    macs: int
    utilization: float | None
    wall_s: float
    ms_per_image: float
    left_to_onnxruntime: int
    nodes: list[dict[str, Any]]


@dataclass
class DemoReport:
    backend: str
    samples: int
    float_accuracy: float
    results: list[VariantResult]
    cpu: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "test_samples": self.samples,
                "float_accuracy": self.float_accuracy,
                "models": [asdict(result) for result in self.results], "cpu": self.cpu}

    @property
    def mismatches(self) -> int:
        return sum(result.mismatches for result in self.results)


def run_demo(accelerator: Any, progress: Callable[[str], None] | None = None,
             directory: Path | None = None) -> DemoReport:
    """Train (or reuse) the digits CNN in `directory` (default `host.models.model_dir()`),
    quantize it, and run each variant of `VARIANTS` on `accelerator` with a check against
    ONNX Runtime."""
    from host.models import model_dir
    from host.models.digits import DigitsCNN, accuracy, load_data
    from host.runner import ModelRunner

    say = progress or (lambda message: None)
    data = load_data()
    directory = Path(directory) if directory is not None else model_dir() / "digits"
    say("training the float CNN on the digits dataset (cached after the first run)")
    cnn = DigitsCNN.build(directory, data=data)
    results = []
    report = None
    for fmt, per_channel in VARIANTS:
        name = f"{'QOperator' if fmt == 'qoperator' else 'QDQ'} " \
               f"{'per-channel' if per_channel else 'per-tensor'}"
        say(f"quantizing ({name}, uint8 activations) with onnxruntime.quantization")
        path = cnn.quantized(fmt, per_channel=per_channel, data=data)
        runner = ModelRunner(path, accelerator, progress=progress)
        say(f"running {len(data.x_test)} images, {len(runner.offloaded)} nodes on the "
            f"{accelerator.backend} backend, the rest in ONNX Runtime")
        report = runner.run({"image": data.x_test}, check=True)
        results.append(VariantResult(
            name=name, accuracy=accuracy(report.outputs["logits"], data.y_test),
            offloaded_nodes=report.offloaded_nodes, mismatches=report.mismatches,
            cycles=report.cycles, macs=report.macs, utilization=report.utilization,
            wall_s=report.wall_s, ms_per_image=report.time_per_inference_s * 1e3,
            left_to_onnxruntime=len(report.left_to_onnxruntime),
            nodes=[asdict(node) for node in report.nodes]))
    return DemoReport(backend=accelerator.backend, samples=len(data.y_test),
                      float_accuracy=cnn.float_accuracy, results=results,
                      cpu=report.cpu if report else {})
