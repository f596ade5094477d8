"""A float ONNX model run with one accelerator mode per layer: the deployable result of
`lpmac tune` (docs/mixed-precision.md).

    from host import Accelerator
    from host.precision import PrecisionAssignment, PrecisionRunner

    assignment = PrecisionAssignment.load("out/precision.json")
    with Accelerator(backend="verilator") as acc:
        report = PrecisionRunner("float.onnx", acc, assignment).run({"image": images})

The layers are the float model's `MatMul`, `Gemm` and `Conv` nodes whose weights are
constant initializers. Each layer named in the assignment runs on the accelerator in its
mode; every other node (and any layer the assignment leaves out) is executed by ONNX Runtime,
cut into sessions by the model runner's partitioner (`host.runner`).

A layer in an integer mode (a8w8, a8w4, a4w4):

    x_r = rotate(x, b)                      optional block Hadamard rotation of K
    x_q = saturate(round_half_even(x_r / s_x) + z_x)      ONNX QuantizeLinear; uint8 for
                                            8-bit activations, int4 values in [-8, 7] for 4
    W_q = clamp(round_half_even(W_r / s_w[n]), -q, q)     per output channel, q = 127 or 7
    acc = sum_k (x_q - z_x) W_q             exact int32, on the accelerator in that mode
    y   = fl32(fl32(acc) * fl32(s_x * s_w[n])) + bias[n]

which is, op for op, ONNX's QuantizeLinear -> MatMulInteger / ConvInteger -> Cast -> Mul ->
Add (tests compare with ONNX Runtime running those ops). A layer in an MX mode (mxint8,
mxint4, mxint8w4) is `Accelerator.mx_matmul` of the (rotated) float activations and weights
with FP32 output, plus the bias. Convolutions are lowered by im2col (`host.lowering`); the
groups of a grouped convolution share GEMMs, packed block-diagonally (`group_packs`).

The assignment file (`precision.json`) holds the format and its version, the SHA-256 of the
model it was made for, and per layer: the node, its mode, the rotation block (or none), the
activation scale and zero point and the weight scales of the integer modes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import golden
from golden.config import MODE_INFO, MODES, ArrayConfig

from .driver import GemmStats, PreparedWeights
from .lowering import (
    ConvGeometry,
    GemmLog,
    Weights,
    block_diagonal,
    conv_output,
    conv_patches,
    conv_weights,
    group_packs,
    integer_gemm,
)
from .rotation import rotate
from .runner import ModelRunner, RunReport, _load, _Segment

__all__ = ["FORMAT", "VERSION", "LAYER_OPS", "ActivationQuant", "LayerPrecision",
           "PrecisionAssignment", "FloatLayer", "find_layers", "QuantizedLayer",
           "PrecisionRunner", "GoldenFunctions", "model_sha256", "quantize_activations",
           "weight_scales", "quantize_weights", "activation_quant"]

FORMAT = "lpmac-precision"
VERSION = 1
LAYER_OPS = ("MatMul", "Gemm", "Conv")
"""Float ONNX ops that are layers when their weights are constant initializers."""

_ACTIVATION_RANGES = {"uint8": (0, 255), "int4": (-8, 7)}


def model_sha256(model: Any) -> str:
    """SHA-256 (hex) of a model file's bytes (or of bytes)."""
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    return hashlib.sha256(data).hexdigest()


# --- Quantizers ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ActivationQuant:
    """Per-tensor activation quantization: `dtype` "uint8" (8 bits, [0, 255]) or "int4"
    (4 bits, [-8, 7], held in int8), real value = (q - zero_point) * scale."""

    scale: float
    zero_point: int
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in _ACTIVATION_RANGES:
            raise ValueError(f"activation dtype must be uint8 or int4, not {self.dtype!r}")
        scale = float(np.float32(self.scale))
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"activation scale must be a positive float32, not {self.scale!r}")
        lo, hi = _ACTIVATION_RANGES[self.dtype]
        if isinstance(self.zero_point, bool) or not isinstance(self.zero_point, int | np.integer) \
                or not lo <= self.zero_point <= hi:
            raise ValueError(f"activation zero point must be an integer in [{lo}, {hi}], not "
                             f"{self.zero_point!r}")

    @property
    def bits(self) -> int:
        return 8 if self.dtype == "uint8" else 4

    def as_dict(self) -> dict[str, Any]:
        return {"scale": float(np.float32(self.scale)), "zero_point": int(self.zero_point),
                "dtype": self.dtype}


def quantize_activations(x: np.ndarray, quant: ActivationQuant) -> np.ndarray:
    """ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zero_point), the division
    in float32 (ONNX Runtime's kernel divides, clamps and converts with round-half-even);
    uint8, or int8 holding int4 values."""
    lo, hi = _ACTIVATION_RANGES[quant.dtype]
    scaled = np.asarray(x, np.float32) / np.float32(quant.scale)
    q = np.clip(np.rint(scaled) + quant.zero_point, lo, hi)
    return q.astype(np.uint8 if quant.dtype == "uint8" else np.int8)


def _clip_candidates(steps: int = 20) -> np.ndarray:
    return np.linspace(1.0, 0.3, steps)


def activation_quant(x: np.ndarray, bits: int, *, search: bool = True,
                     sample: int = 1 << 18) -> ActivationQuant:
    """Asymmetric per-tensor parameters for `bits` (8: uint8, 4: int4) from calibration
    activations: the range [min(x, 0), max(x, 0)] shrunk by the factor (1 down to 0.3, 20
    steps) that minimizes the mean squared quantization error on (a fixed subsample of) x."""
    values = np.asarray(x, np.float32).reshape(-1)
    if values.size > sample:
        values = values[np.linspace(0, values.size - 1, sample).astype(np.int64)]
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    if high - low <= 0:
        high = low + 1.0
    dtype = "uint8" if bits == 8 else "int4"
    lo, hi = _ACTIVATION_RANGES[dtype]
    best: tuple[float, ActivationQuant] | None = None
    for factor in (_clip_candidates() if search else [1.0]):
        scale = float(np.float32((high - low) * factor / (hi - lo)))
        zero = int(np.clip(np.rint(lo - low * factor / scale), lo, hi))
        quant = ActivationQuant(scale, zero, dtype)
        error = float(np.mean((_dequantize(quantize_activations(values, quant), quant)
                               - values) ** 2))
        if best is None or error < best[0]:
            best = (error, quant)
    assert best is not None
    return best[1]


def _dequantize(q: np.ndarray, quant: ActivationQuant) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(quant.zero_point)) * np.float32(quant.scale)


def weight_scales(matrix: np.ndarray, bits: int, *, search: bool = True) -> np.ndarray:
    """Symmetric per-column scales of a float weight matrix [K, N] for `bits` (8: q = 127,
    4: q = 7): max |W[:, n]| / q shrunk, column by column, by the factor (1 down to 0.3) that
    minimizes the column's squared quantization error. float32 [N]."""
    matrix = np.asarray(matrix, np.float32)
    top = 127 if bits == 8 else 7
    peak = np.abs(matrix).max(axis=0)
    peak = np.where(peak > 0, peak, np.float32(1.0))
    best_scale = (peak / top).astype(np.float32)
    best_error = np.full(matrix.shape[1], np.inf)
    for factor in (_clip_candidates() if search else [1.0]):
        scale = (peak * np.float32(factor) / top).astype(np.float32)
        error = ((quantize_weights(matrix, scale, bits).astype(np.float32) * scale - matrix)
                 ** 2).sum(axis=0)
        better = error < best_error
        best_scale = np.where(better, scale, best_scale)
        best_error = np.where(better, error, best_error)
    return best_scale.astype(np.float32)


def quantize_weights(matrix: np.ndarray, scales: np.ndarray, bits: int) -> np.ndarray:
    """clamp(round_half_even(W[k, n] / s[n]), -q, q) as int8 (q = 127 or 7), the division in
    float32."""
    top = 127 if bits == 8 else 7
    scaled = np.asarray(matrix, np.float32) / np.asarray(scales, np.float32)
    return np.clip(np.rint(scaled), -top, top).astype(np.int8)


# --- The assignment ------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerPrecision:
    """One layer's precision: `mode` (an accelerator mode), `rotation` (Hadamard block size or
    None), and for the integer modes the activation quantization and the weight scales (one
    per output channel)."""

    node: str
    mode: str
    rotation: int | None = None
    activation: ActivationQuant | None = None
    weight_scales: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"layer {self.node}: mode must be one of {', '.join(MODES)}, not "
                             f"{self.mode!r}")
        if self.rotation is not None and (isinstance(self.rotation, bool) or not isinstance(
                self.rotation, int) or self.rotation < 2 or self.rotation & (self.rotation - 1)):
            raise ValueError(f"layer {self.node}: rotation must be a power of two or null, not "
                             f"{self.rotation!r}")
        info = MODE_INFO[self.mode]
        if not info.mx:
            if self.activation is None or self.weight_scales is None:
                raise ValueError(f"layer {self.node}: mode {self.mode} needs an activation "
                                 "scale and zero point and the weight scales")
            if self.activation.bits != info.activation_bits:
                raise ValueError(f"layer {self.node}: mode {self.mode} takes "
                                 f"{info.activation_bits}-bit activations, not "
                                 f"{self.activation.dtype}")
            scales = np.asarray(self.weight_scales, np.float64)
            if scales.ndim != 1 or not np.all(np.isfinite(scales)) or not np.all(scales > 0):
                raise ValueError(f"layer {self.node}: weight scales must be positive numbers")

    @property
    def info(self) -> Any:
        return MODE_INFO[self.mode]

    def as_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"node": self.node, "mode": self.mode,
                                   "rotation": self.rotation}
        if self.activation is not None:
            payload["activation"] = self.activation.as_dict()
        if self.weight_scales is not None:
            payload["weight_scales"] = [float(np.float32(s)) for s in self.weight_scales]
        return payload

    @classmethod
    def from_dict(cls, payload: Any) -> LayerPrecision:
        if not isinstance(payload, dict) or "node" not in payload or "mode" not in payload:
            raise ValueError("every layer needs a node and a mode")
        activation = payload.get("activation")
        if activation is not None:
            if not isinstance(activation, dict):
                raise ValueError(f"layer {payload['node']}: activation must be an object")
            try:
                activation = ActivationQuant(float(activation["scale"]),
                                             activation["zero_point"], activation["dtype"])
            except (KeyError, TypeError) as error:
                raise ValueError(f"layer {payload['node']}: activation needs scale, zero_point "
                                 f"and dtype ({error})") from None
        scales = payload.get("weight_scales")
        if scales is not None:
            if not isinstance(scales, list) or not all(isinstance(v, int | float)
                                                        for v in scales):
                raise ValueError(f"layer {payload['node']}: weight_scales must be a list of "
                                 "numbers")
            scales = tuple(float(np.float32(v)) for v in scales)
        return cls(str(payload["node"]), payload["mode"], payload.get("rotation"), activation,
                   scales)


@dataclass
class PrecisionAssignment:
    """The per-layer precisions of one model (identified by its SHA-256), and what the tuner
    measured for them (`summary`, informative)."""

    model_sha256: str
    layers: dict[str, LayerPrecision]
    model: str = ""
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary, "format": FORMAT, "version": VERSION, "model": self.model,
                "model_sha256": self.model_sha256,
                "layers": [layer.as_dict() for layer in self.layers.values()]}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_dict(cls, payload: Any, source: str = "the precision file") -> PrecisionAssignment:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{source} is not an lpmac precision file (no \"format\": "
                             f"\"{FORMAT}\")")
        if payload.get("version") != VERSION:
            raise ValueError(f"{source} has format version {payload.get('version')!r}; this "
                             f"lpmac reads version {VERSION}")
        sha = payload.get("model_sha256")
        if not isinstance(sha, str) or len(sha) != 64:
            raise ValueError(f"{source} has no model_sha256")
        entries = payload.get("layers")
        if not isinstance(entries, list):
            raise ValueError(f"{source} has no list of layers")
        layers: dict[str, LayerPrecision] = {}
        for entry in entries:
            try:
                layer = LayerPrecision.from_dict(entry)
            except ValueError as error:
                raise ValueError(f"{source}: {error}") from None
            if layer.node in layers:
                raise ValueError(f"{source} lists layer {layer.node} twice")
            layers[layer.node] = layer
        summary = {key: value for key, value in payload.items()
                   if key not in ("format", "version", "model", "model_sha256", "layers")}
        return cls(sha, layers, str(payload.get("model", "")), summary)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PrecisionAssignment:
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except OSError as error:
            raise ValueError(f"cannot read the precision file {path}: {error.strerror}") \
                from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not JSON ({error})") from None
        return cls.from_dict(payload, str(path))

    def check_model(self, sha: str, name: str) -> None:
        if sha != self.model_sha256:
            raise ValueError(f"the precision file was made for another model (SHA-256 "
                             f"{self.model_sha256[:12]}...), not for {name} "
                             f"({sha[:12]}...)")


# --- Layers of a float model ---------------------------------------------------------------

@dataclass
class FloatLayer:
    """A `MatMul`, `Gemm` or `Conv` node of a float model with constant weights, seen as
    GEMMs: `matrix` [K, N] (float32; for a convolution, one [K, N / groups] per group in
    `matrices()`), `bias` [N] or None. `rotated_length` is the length the Hadamard blocks run
    along: K of a GEMM, the input channels per group of a convolution."""

    name: str
    op_type: str
    input: str
    output: str
    weight: np.ndarray          # MatMul / Gemm: [K, N]; Conv: [OC, C / groups, KH, KW]
    bias: np.ndarray | None
    attributes: dict[str, Any]

    @property
    def kind(self) -> str:
        return "conv" if self.op_type == "Conv" else "matmul"

    @property
    def groups(self) -> int:
        return int(self.attributes.get("group", 1)) if self.kind == "conv" else 1

    @property
    def n(self) -> int:
        return self.weight.shape[0] if self.kind == "conv" else self.weight.shape[1]

    @property
    def k(self) -> int:
        """K of one GEMM (per group)."""
        return int(np.prod(self.weight.shape[1:])) if self.kind == "conv" \
            else self.weight.shape[0]

    @property
    def rotated_length(self) -> int:
        return self.weight.shape[1] if self.kind == "conv" else self.weight.shape[0]

    def rotated_weight(self, block: int | None) -> np.ndarray:
        if block is None:
            return self.weight
        return rotate(self.weight, block, axis=1 if self.kind == "conv" else 0)

    def rotated_input(self, x: np.ndarray, block: int | None) -> np.ndarray:
        if block is None:
            return x
        if self.kind == "matmul":
            return rotate(x, block, axis=-1)
        per_group = self.weight.shape[1]
        if self.groups == 1:
            return rotate(x, block, axis=1)
        parts = [rotate(x[:, g * per_group:(g + 1) * per_group], block, axis=1)
                 for g in range(self.groups)]
        return np.concatenate(parts, axis=1)

    def matrices(self, weight: np.ndarray | None = None) -> list[np.ndarray]:
        """The [K, N] weight matrix of each group (of `weight`, default the layer's)."""
        weight = self.weight if weight is None else weight
        if self.kind == "conv":
            return conv_weights(weight, self.groups)
        return [weight]

    def geometry(self, input_shape: tuple[int, ...]) -> ConvGeometry:
        return ConvGeometry.from_attributes(self.attributes, input_shape, self.weight.shape)


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _layer(node: Any, arrays: Mapping[str, np.ndarray]) -> FloatLayer | str:
    """The node as a layer, or why it is not one."""
    name = node.name or node.output[0]
    inputs = list(node.input)
    if node.domain not in ("", "ai.onnx") or node.op_type not in LAYER_OPS:
        return f"{node.op_type} is not a MatMul, Gemm or Conv"
    if len(inputs) < 2 or inputs[1] not in arrays:
        return "its weights are not a constant initializer"
    weight = arrays[inputs[1]]
    if weight.dtype != np.float32:
        return f"its weights are {weight.dtype}, not float32"
    attributes = _attributes(node)
    bias = None
    if node.op_type == "MatMul":
        if weight.ndim != 2:
            return f"its weights have shape {weight.shape}, not [K, N]"
        matrix = weight
    elif node.op_type == "Gemm":
        if attributes.get("transA", 0):
            return "transA = 1"
        matrix = weight.T if attributes.get("transB", 0) else weight
        matrix = (np.float32(attributes.get("alpha", 1.0)) * matrix).astype(np.float32)
        if len(inputs) > 2 and inputs[2]:
            if inputs[2] not in arrays:
                return "its bias C is not a constant initializer"
            c = arrays[inputs[2]].astype(np.float32) * np.float32(attributes.get("beta", 1.0))
            if c.size not in (1, matrix.shape[1]) or (c.ndim == 2 and c.shape[0] != 1):
                return f"its bias C has shape {c.shape}, not one value per output column"
            bias = np.broadcast_to(c.reshape(-1), (matrix.shape[1],)).astype(np.float32)
        matrix = np.ascontiguousarray(matrix)
        attributes = {}
    else:
        if weight.ndim not in (3, 4):
            return f"it is a {weight.ndim - 2}-D convolution"
        try:
            ConvGeometry.from_attributes(attributes, (1, weight.shape[1] * int(
                attributes.get("group", 1)), *weight.shape[2:]), weight.shape)
        except ValueError as error:
            return str(error)
        if len(inputs) > 2 and inputs[2]:
            if inputs[2] not in arrays:
                return "its bias is not a constant initializer"
            bias = arrays[inputs[2]].astype(np.float32).reshape(-1)
        matrix = weight
    return FloatLayer(name, node.op_type, inputs[0], node.output[0],
                      np.ascontiguousarray(matrix, np.float32), bias, attributes)


def find_layers(model: Any) -> list[FloatLayer]:
    """The layers of a float model (path, bytes or ModelProto), in graph order."""
    from onnx import numpy_helper

    proto = _load(model)[0]
    arrays = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    layers = []
    for node in proto.graph.node:
        if node.op_type in LAYER_OPS:
            layer = _layer(node, arrays)
            if isinstance(layer, FloatLayer):
                layers.append(layer)
    return layers


# --- The golden model's functions as an accelerator ----------------------------------------

class GoldenFunctions:
    """The GEMMs of the accelerator API computed by the golden model's functions directly
    (`golden.matmul`, `golden.mx_matmul`), without the protocol: the same numbers as every
    backend (the accelerator tests check them against these functions), many times faster
    than the golden backend, which executes the protocol. It has no clock (cycles None).
    The tuner evaluates sensitivities with it; `PrecisionRunner.run(check=True)` compares a
    backend's result with it."""

    backend = "golden-functions"

    def __init__(self, config: ArrayConfig | None = None) -> None:
        self.config = config or ArrayConfig()
        self.last_stats: GemmStats | None = None
        self.max_k = 1 << 20

    def __enter__(self) -> GoldenFunctions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def load_weights(self, weights: np.ndarray) -> PreparedWeights:
        return PreparedWeights(weights, self.config)

    def _stats(self, operation: str, mode: str, out_kind: str, m: int, k: int, n: int,
               start: float) -> None:
        from .tiling import plan_gemm

        plan = plan_gemm(self.config, m=m, k=k, n=n, mode=mode, out_kind=out_kind)
        macs = plan.m * plan.k_pad * plan.n_pad
        self.last_stats = GemmStats(
            operation=operation, mode=mode, out_kind=out_kind, m=m, k=k, n=n, cycles=None,
            busy=0, input_stall=None, output_stall=None, macs=macs, useful_macs=m * k * n,
            peak_macs_per_cycle=self.config.peak_macs_per_cycle(mode), utilization=None,
            wall_s=time.perf_counter() - start, exchange_s=0.0, simulated_cycles=None,
            sim_cycles_per_s=None, words_sent=0, backend=self.backend)

    def matmul(self, a: np.ndarray, b: np.ndarray | PreparedWeights, *,
               mode: str | None = None, allow_wrap: bool = False) -> np.ndarray:
        start = time.perf_counter()
        array = b.array if isinstance(b, PreparedWeights) else b
        result = golden.matmul(a, array)
        self._stats("matmul", mode or "a8w8", "int32", a.shape[0], a.shape[1],
                    array.shape[1], start)
        return result

    def mx_matmul(self, a: np.ndarray, b: np.ndarray | PreparedWeights, *,
                  fmt_a: str = "mxint8", fmt_b: str = "mxint8", **_: Any) -> np.ndarray:
        from golden.config import mx_mode

        start = time.perf_counter()
        weights = b if isinstance(b, PreparedWeights) else PreparedWeights(b, self.config)
        config = self.config
        a_elements, a_codes = golden.mx_quantize(a, fmt_a, config.block_size, axis=1)
        b_elements, b_codes = weights.mx(fmt_b)
        mantissa, exponent = golden.mx_matmul_quantized(
            a_elements, a_codes, b_elements, b_codes, fmt_a=fmt_a, fmt_b=fmt_b,
            block=config.block_size, acc_bits=config.acc_bits,
            acc_rounding=config.acc_rounding)
        result = golden.bfp_to_float32(mantissa, exponent)
        self._stats("mx_matmul", mx_mode(fmt_a, fmt_b) or "mxint8", "fp32", a.shape[0],
                    a.shape[1], weights.shape[1], start)
        return result


# --- A layer on the accelerator ------------------------------------------------------------

class QuantizedLayer:
    """A float layer run on the accelerator in its assigned precision (the stage the model
    runner executes in place of the node): float input -> float output."""

    def __init__(self, layer: FloatLayer, precision: LayerPrecision, config: ArrayConfig
                 ) -> None:
        self.layer = layer
        self.precision = precision
        self.name = layer.name
        self.op_type = layer.op_type
        self.inputs = [layer.input]
        self.outputs = [layer.output]
        info = precision.info
        config.mode(precision.mode)
        if precision.rotation is not None and layer.rotated_length % precision.rotation:
            raise ValueError(f"layer {layer.name}: the rotation block {precision.rotation} "
                             f"does not divide its length {layer.rotated_length}")
        weight = layer.rotated_weight(precision.rotation)
        matrices = layer.matrices(weight)
        per_group = matrices[0].shape[1]
        tile = config.cols * info.lanes
        self.packs = group_packs(layer.groups, per_group, tile) if layer.groups > 1 \
            else [(0, 1)]
        self.bias = None if layer.bias is None else layer.bias.astype(np.float32)
        if info.mx:
            self.formats = info.mx_formats
            self._float = [block_diagonal(matrices[first:end]).astype(np.float32)
                           for first, end in self.packs]
            self._prepared: dict[int, list[Any]] = {}
            return
        scales = np.asarray(precision.weight_scales, np.float32)
        if scales.shape != (layer.n,):
            raise ValueError(f"layer {layer.name}: {scales.size} weight scales for "
                             f"{layer.n} output channels")
        quantized = [quantize_weights(matrix, scales[g * per_group:(g + 1) * per_group],
                                      info.weight_bits)
                     for g, matrix in enumerate(matrices)]
        self._weights = [Weights.make(block_diagonal(quantized[first:end]), 0)
                         for first, end in self.packs]
        activation = precision.activation
        assert activation is not None
        # fl32(fl32(s_x) * fl32(s_w[n])): ONNX's Mul of the int32 result (cast to float) by
        # the scale product, one float32 per output channel.
        self.scale = (np.float32(activation.scale) * scales).astype(np.float32)

    # --- Execution ---

    def run(self, accelerator: Any, values: list[np.ndarray | None], log: GemmLog
            ) -> np.ndarray:
        x = values[0]
        if x is None or x.dtype != np.float32:
            raise ValueError(f"layer {self.name}: the input must be float32, not "
                             f"{None if x is None else x.dtype}")
        x = self.layer.rotated_input(x, self.precision.rotation)
        if self.layer.kind == "matmul":
            k = self.layer.k
            if x.ndim == 0 or x.shape[-1] != k:
                raise ValueError(f"layer {self.name}: the input of shape {x.shape} does not "
                                 f"end in K = {k}")
            out = self._gemms(accelerator, log, [x.reshape(-1, k)])
            return out.reshape(*x.shape[:-1], self.layer.n)
        geometry = self.layer.geometry(x.shape)
        if self.precision.info.mx:
            patches, shape = conv_patches(x, geometry, 0)
        else:
            activation = self.precision.activation
            assert activation is not None
            patches, shape = conv_patches(quantize_activations(x, activation), geometry,
                                          activation.zero_point)
        columns = self._gemms(accelerator, log, patches, quantized=True)
        return conv_output([columns], shape, x.ndim == 3)

    def _gemms(self, accelerator: Any, log: GemmLog, patches: list[np.ndarray],
               quantized: bool = False) -> np.ndarray:
        """The layer's output [M, N] from its (per group) activation matrices."""
        info = self.precision.info
        outputs = []
        for pack, (first, end) in enumerate(self.packs):
            a = patches[first] if end - first == 1 else np.concatenate(patches[first:end],
                                                                     axis=1)
            if info.mx:
                prepared = self._prepared.setdefault(id(accelerator), [None] * len(self.packs))
                if prepared[pack] is None:
                    prepared[pack] = accelerator.load_weights(self._float[pack])
                result = accelerator.mx_matmul(np.ascontiguousarray(a, np.float32),
                                               prepared[pack], fmt_a=self.formats[0],
                                               fmt_b=self.formats[1])
                log.record(accelerator, "mx")
            else:
                activation = self.precision.activation
                assert activation is not None
                a_q = a if quantized else quantize_activations(a, activation)
                accumulators = integer_gemm(accelerator, log, a_q, activation.zero_point,
                                            self._weights[pack], mode=self.precision.mode)
                columns = slice(sum(self._columns(p) for p in range(pack)),
                                sum(self._columns(p) for p in range(pack + 1)))
                result = accumulators.astype(np.float32) * self.scale[columns]
            outputs.append(result)
        out = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=1)
        if self.bias is not None:
            out = out + self.bias
        return out.astype(np.float32, copy=False)

    def _columns(self, pack: int) -> int:
        first, end = self.packs[pack]
        return (end - first) * (self.layer.n // self.layer.groups)

    def gemm_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(M, K, N, GEMMs) of the layer for an input of `input_shape` (the GEMMs of packed
        groups: K and N of one pack)."""
        layer = self.layer
        if layer.kind == "matmul":
            return int(np.prod(input_shape[:-1])), layer.k, layer.n, 1
        geometry = layer.geometry(input_shape)
        spatial = input_shape[2:] if len(input_shape) == 4 else (1, input_shape[2])
        out_h, out_w = geometry.output_size(*spatial)
        first, end = self.packs[0]
        return (input_shape[0] * out_h * out_w, layer.k * (end - first),
                self._columns(0), len(self.packs))


# --- The runner ----------------------------------------------------------------------------

class PrecisionRunner(ModelRunner):
    """A float ONNX model with the layers of `precision` (a `PrecisionAssignment` or the
    path of a precision file) on the accelerator, each in its mode; everything else in ONNX
    Runtime. The model's SHA-256 must be the one the assignment was made for. `run(feeds,
    check=True)` also runs the layers on the golden model's functions and counts the
    elements that differ (`golden.mismatches`), per output and per layer."""

    def __init__(self, model: Any, accelerator: Any, precision: Any, *,
                 progress: Any = None) -> None:
        proto, data, name = _load(model)
        if not isinstance(precision, PrecisionAssignment):
            precision = PrecisionAssignment.load(precision)
        precision.check_model(model_sha256(data), name)
        self.precision = precision
        layers = {layer.name: layer for layer in find_layers(proto)}
        unknown = [node for node in precision.layers if node not in layers]
        if unknown:
            raise ValueError(f"the precision file names layer {unknown[0]}, which is not a "
                             f"MatMul, Gemm or Conv with constant weights of {name}")
        self.layers = layers
        super().__init__(proto, accelerator, progress=progress)
        self.name = name

    def _partitioned_graph(self) -> Any:
        """The file's own graph: the layers are its nodes (ONNX Runtime's optimizer would fuse
        them away, e.g. into attention kernels); the other nodes run in ONNX Runtime as they
        are, graph optimizations disabled."""
        return self.original

    def _select(self, nodes: list[Any], strict: bool) -> dict[int, Any]:
        config = self.accelerator.config
        selected: dict[int, Any] = {}
        for index, node in enumerate(nodes):
            name = node.name or node.output[0]
            if name in self.precision.layers:
                selected[index] = QuantizedLayer(self.layers[name],
                                                 self.precision.layers[name], config)
            elif name in self.layers:
                self.left_to_onnxruntime.append(
                    {"node": name, "op": node.op_type,
                     "reason": "the precision file does not assign it a mode (float)"})
        return selected

    def assign(self, precision: PrecisionAssignment) -> None:
        """Give the same layers other precisions, keeping the partition and its ONNX Runtime
        sessions (the tuner evaluates many assignments of one model)."""
        if set(precision.layers) != set(self.precision.layers):
            raise ValueError("assign takes an assignment of the same layers")
        precision.check_model(self.precision.model_sha256, self.name)
        config = self.accelerator.config
        self.precision = precision
        self.stages = [QuantizedLayer(self.layers[stage.name], precision.layers[stage.name],
                                      config) if isinstance(stage, QuantizedLayer) else stage
                       for stage in self.stages]
        self.offloaded = [stage for stage in self.stages if not isinstance(stage, _Segment)]

    def execute(self, feeds: Mapping[str, np.ndarray], accelerator: Any
                ) -> dict[str, np.ndarray]:
        """Every value of one run on `accelerator` (validated feeds), without the report."""
        values: dict[str, np.ndarray] = dict(feeds)
        for stage in self.stages:
            if isinstance(stage, _Segment):
                feed = {name: values[name] for name in stage.inputs}
                values.update(zip(stage.outputs, self._run_segment(stage, values, feed),
                                  strict=True))
            else:
                inputs = [values[name] for name in stage.inputs]
                values[stage.outputs[0]] = stage.run(accelerator, inputs, GemmLog())
        return values

    def _check(self, feeds: dict[str, np.ndarray], values: dict[str, np.ndarray],
               report: RunReport) -> None:
        if self.progress:
            self.progress("checking against the golden model's functions")
        expected = self.execute(feeds, GoldenFunctions(self.accelerator.config))
        report.output_mismatches = {name: golden.mismatches(expected[name],
                                                            report.outputs[name])
                                    for name in self.output_names}
        for node_report, node in zip(report.nodes, self.offloaded, strict=True):
            node_report.mismatches = golden.mismatches(expected[node.outputs[0]],
                                                       values[node.outputs[0]])
        report.reference_consistent = None
        report.checked = True
        report.mismatches = sum(report.output_mismatches.values()) + sum(
            node.mismatches or 0 for node in report.nodes)
