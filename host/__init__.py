"""lpmac host driver: the public API (`Accelerator`), GEMM tiling, transports, the `lpmac`
command line, and the model runner (`host.runner.ModelRunner`: quantized ONNX models with
their integer GEMMs on the accelerator, docs/models.md). The packet protocol itself is
specified in `golden.protocol`.

`from host import Accelerator` is cheap: the driver (and NumPy, the golden model) load on
first use, and no simulator is built until an `Accelerator` is opened."""

from __future__ import annotations

from typing import Any

__all__ = ["Accelerator", "AcceleratorError", "GemmStats", "PreparedWeights", "TransportError",
           "open_transport"]

_LAZY = {
    "Accelerator": "host.driver",
    "AcceleratorError": "host.tiling",
    "GemmStats": "host.driver",
    "PreparedWeights": "host.driver",
    "open_transport": "host.driver",
    "TransportError": "host.transport",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'host' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
