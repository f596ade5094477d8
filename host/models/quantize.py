"""Quantization with ONNX Runtime's own tools (`onnxruntime.quantization`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

__all__ = ["FORMATS", "ACTIVATIONS", "quantize_static", "quantize_dynamic"]

FORMATS = ("qoperator", "qdq")
ACTIVATIONS = ("uint8", "int8")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantizer logs advice (pre-processing, formats) on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_static(float_model: Path, out: Path, calibration: Iterable[Mapping[str, np.ndarray]],
                    *, fmt: str = "qoperator", per_channel: bool = False,
                    activations: str = "uint8") -> Path:
    """Static quantization, MinMax calibration on `calibration` (feeds), int8 weights
    (symmetric, ONNX Runtime's default), `activations` uint8 or int8; `fmt` "qoperator"
    (QLinearConv, QGemm, ...) or "qdq" (QuantizeLinear / DequantizeLinear pairs)."""
    from onnxruntime import quantization as q

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {', '.join(ACTIVATIONS)}, not "
                         f"{activations!r}")

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(list(calibration))

        def get_next(self):
            return next(self._feeds, None)

    with _quiet():
        q.quantize_static(
            str(float_model), str(out), Reader(),
            quant_format=q.QuantFormat.QOperator if fmt == "qoperator" else q.QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=q.QuantType.QUInt8 if activations == "uint8" else q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax)
    return out


def quantize_dynamic(float_model: Path, out: Path, *, per_channel: bool = True,
                     op_types: tuple[str, ...] | None = None) -> Path:
    """Dynamic quantization: int8 weights, activations quantized at run time to uint8
    (`DynamicQuantizeLinear` + `MatMulInteger` / `ConvInteger`)."""
    from onnxruntime import quantization as q

    with _quiet():
        q.quantize_dynamic(str(float_model), str(out), per_channel=per_channel,
                           weight_type=q.QuantType.QInt8,
                           op_types_to_quantize=list(op_types) if op_types else None)
    return out
