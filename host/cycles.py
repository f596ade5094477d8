"""What a layer costs in each mode: the cycles the accelerator's counters count for its GEMMs,
measured on the Verilator model of the RTL once per GEMM shape and mode, and cached on disk.

    prices = CyclePrices()                       # the default configuration's Verilator build
    prices.gemm("matmul", 4096, 9, 16, "a8w4")   # measured once, then read from the cache
    prices.layer(layer, precision, input_shape)  # the sum over the layer's GEMMs

The cycles of a GEMM depend only on its shape, mode and output kind, never on the values
(the accelerator has no data-dependent timing; `tests/tune` checks it), so one measurement
with random operands prices every layer of that shape. The cache is a JSON file per
Verilator build, `<sim cache>/cycles/<build directory name>.json` (the build's name carries
the hash of its Verilog), keyed "operation:MxKxN:mode". The golden backend has no clock:
prices always come from the Verilator build, whatever backend evaluates the accuracy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from golden.config import MODE_INFO, ArrayConfig

from .lowering import GemmLog

__all__ = ["CyclePrices", "gemm_calls"]

_RANGES = {4: (-8, 7), 8: (-128, 127)}


class _ShapeRecorder:
    """Stands in for an accelerator to list the GEMMs a layer makes (zeros as results)."""

    backend = "shapes"

    def __init__(self, config: ArrayConfig) -> None:
        from .precision import GoldenFunctions

        self.config = config
        self.max_k = 1 << 20
        self.calls: list[tuple[str, int, int, int, str]] = []
        self.last_stats: Any = None
        self._functions = GoldenFunctions(config)

    def load_weights(self, weights: np.ndarray) -> Any:
        return self._functions.load_weights(weights)

    def matmul(self, a: np.ndarray, b: Any, *, mode: str | None = None,
               allow_wrap: bool = False) -> np.ndarray:
        self.calls.append(("matmul", a.shape[0], a.shape[1], b.shape[1], mode or "a8w8"))
        return np.zeros((a.shape[0], b.shape[1]), np.int32)

    def mx_matmul(self, a: np.ndarray, b: Any, *, fmt_a: str = "mxint8",
                  fmt_b: str = "mxint8", **_: Any) -> np.ndarray:
        from golden.config import mx_mode

        self.calls.append(("mx_matmul", a.shape[0], a.shape[1], b.shape[1],
                           mx_mode(fmt_a, fmt_b) or "mxint8"))
        return np.zeros((a.shape[0], b.shape[1]), np.float32)


def gemm_calls(layer: Any, precision: Any, input_shape: tuple[int, ...],
               config: ArrayConfig | None = None) -> list[tuple[str, int, int, int, str]]:
    """(operation, M, K, N, mode) of every accelerator GEMM a `QuantizedLayer` of `layer` in
    `precision` makes for an input of `input_shape` (found by running it on zeros)."""
    from .precision import QuantizedLayer

    config = config or ArrayConfig()
    recorder = _ShapeRecorder(config)
    quantized = QuantizedLayer(layer, precision, config)
    quantized.run(recorder, [np.zeros(input_shape, np.float32)], GemmLog())
    return recorder.calls


class CyclePrices:
    """Cycles per GEMM (operation, M, K, N, mode), measured on an accelerator with a clock and
    cached in `cache_file`. `open_accelerator` opens that accelerator when a price is not in
    the cache (default: the Verilator backend of `config`). `measured` counts the GEMMs
    simulated by this object."""

    def __init__(self, config: ArrayConfig | None = None, *, cache_file: Path | None = None,
                 open_accelerator: Callable[[], Any] | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.config = config or ArrayConfig()
        self.progress = progress
        self._open = open_accelerator or self._verilator
        self._accelerator: Any = None
        self.cache_file = cache_file or self._default_cache()
        self.measured = 0
        self._prices: dict[str, int] = self._read()

    def _verilator(self) -> Any:
        from .driver import Accelerator

        return Accelerator(self.config, backend="verilator", progress=self.progress)

    def _default_cache(self) -> Path:
        from sim.build import cache_dir
        from sim.fastsim import harness_executable

        build = harness_executable(self.config, progress=self.progress).parent.name
        return cache_dir() / "cycles" / f"{build}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.cache_file.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, int]:
        try:
            payload = json.loads(self.cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return {key: int(value) for key, value in payload.items()}

    def close(self) -> None:
        if self._accelerator is not None:
            self._accelerator.close()
            self._accelerator = None

    def __enter__(self) -> CyclePrices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def key(operation: str, m: int, k: int, n: int, mode: str) -> str:
        return f"{operation}:{m}x{k}x{n}:{mode}"

    def gemm(self, operation: str, m: int, k: int, n: int, mode: str) -> int:
        """Cycles of one accelerator call (`matmul` with int32 output or `mx_matmul` with
        FP32 output) of M x K x N in `mode`."""
        key = self.key(operation, m, k, n, mode)
        if key in self._prices:
            return self._prices[key]
        with self._locked():
            self._prices.update(self._read())
            if key not in self._prices:
                self._prices[key] = self._measure(operation, m, k, n, mode)
                self.cache_file.write_text(json.dumps(self._prices, indent=0, sort_keys=True))
        return self._prices[key]

    def _measure(self, operation: str, m: int, k: int, n: int, mode: str) -> int:
        if self._accelerator is None:
            self._accelerator = self._open()
        accelerator = self._accelerator
        if self.progress:
            self.progress(f"measuring the cycles of {m} x {k} x {n} {mode}")
        rng = np.random.default_rng(m * 1_000_003 + k * 1009 + n)
        info = MODE_INFO[mode]
        if info.mx:
            a = rng.standard_normal((m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            fmt_a, fmt_b = info.mx_formats
            accelerator.mx_matmul(a, b, fmt_a=fmt_a, fmt_b=fmt_b)
        else:
            lo, hi = _RANGES[info.activation_bits]
            a = rng.integers(lo, hi + 1, (m, k)).astype(np.int8)
            lo, hi = _RANGES[info.weight_bits]
            b = rng.integers(lo, hi + 1, (k, n)).astype(np.int8)
            accelerator.matmul(a, b, mode=mode, allow_wrap=True)
        cycles = accelerator.last_stats.cycles
        if cycles is None:
            raise ValueError(f"the {accelerator.backend} backend has no clock to count cycles")
        self.measured += 1
        return int(cycles)

    def layer(self, layer: Any, precision: Any, input_shape: tuple[int, ...]) -> int:
        """Cycles of a layer in `precision` for an input of `input_shape`."""
        return sum(self.gemm(*call) for call in gemm_calls(layer, precision, input_shape,
                                                             self.config))
