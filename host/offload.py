"""The ONNX nodes that run on the accelerator: which ones qualify, and how each executes.

Offloaded (ONNX Runtime's CPU semantics, bit for bit; docs/models.md):

| node | result |
|---|---|
| `QLinearConv` | uint8 / int8, requantized |
| `QLinearMatMul` | uint8 / int8, requantized |
| `com.microsoft.QGemm` (with an output zero point) | uint8 / int8, requantized |
| `MatMulInteger` | int32 |
| `ConvInteger` | int32 |

A node of these types is offloaded when its weights are a constant initializer (a 2-D [K, N]
matrix for the GEMMs, [OC, C / group, KH, KW] or [OC, C / group, KL] for the convolutions)
and its attributes are ones the lowering takes; otherwise `plan_node` returns the reason and
ONNX Runtime runs the node. Scales and zero points are read when the node runs (dynamic
quantization computes the activations' zero point at run time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .lowering import (
    ConvGeometry,
    GemmLog,
    Weights,
    conv_output,
    conv_patches,
    conv_weights,
    integer_gemm,
    quantized_gemm,
)

__all__ = ["OFFLOADED_OPS", "OffloadedNode", "plan_node"]

OFFLOADED_OPS: dict[tuple[str, str], str] = {
    ("", "QLinearConv"): "conv",
    ("com.microsoft", "QLinearConv"): "conv",
    ("", "QLinearMatMul"): "matmul",
    ("com.microsoft", "QGemm"): "gemm",
    ("", "MatMulInteger"): "matmul",
    ("", "ConvInteger"): "conv",
}
"""(domain, op_type) of the nodes the runner offloads, and their kind."""

_REQUANTIZED = {"QLinearConv", "QLinearMatMul", "QGemm"}


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {attribute.name: onnx.helper.get_attribute_value(attribute)
            for attribute in node.attribute}


def _scalar(value: np.ndarray, what: str, node: str) -> np.ndarray:
    if value.size != 1:
        raise ValueError(f"node {node}: the {what} must be a scalar, not of shape "
                         f"{value.shape}")
    return value.reshape(())


@dataclass
class OffloadedNode:
    """One ONNX node executed on the accelerator (built by `plan_node`)."""

    name: str
    op_type: str
    kind: str                       # "conv", "matmul" or "gemm"
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any]
    weight_array: np.ndarray        # the weight initializer as stored in the model
    _weights: dict[tuple, list[Weights]] = field(default_factory=dict, repr=False)

    @property
    def requantized(self) -> bool:
        return self.op_type in _REQUANTIZED

    # --- Inputs by role ---

    def _roles(self, values: list[np.ndarray | None]) -> dict[str, np.ndarray | None]:
        names = {
            "QLinearConv": ("x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale",
                            "y_zero", "bias"),
            "QLinearMatMul": ("x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale",
                              "y_zero"),
            "QGemm": ("x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "bias", "y_scale",
                      "y_zero"),
            "MatMulInteger": ("x", "w", "x_zero", "w_zero"),
            "ConvInteger": ("x", "w", "x_zero", "w_zero"),
        }[self.op_type]
        roles: dict[str, np.ndarray | None] = dict.fromkeys(names)
        for role, value in zip(names, values, strict=False):
            roles[role] = value
        return roles

    def _weight_matrices(self, w: np.ndarray, zero: np.ndarray | None,
                         groups: int = 1) -> list[Weights]:
        """The [K, N] weight matrix of each group with its zero points, prepared once."""
        zero_key = None if zero is None else (zero.dtype.str, zero.tobytes())
        key = (groups, zero_key)
        if key not in self._weights:
            if self.kind == "conv":
                matrices = conv_weights(w, groups)
            elif self.kind == "gemm" and self.attributes.get("transB", 0):
                matrices = [np.ascontiguousarray(w.T)]
            else:
                matrices = [w]
            per_group = matrices[0].shape[1]
            zeros = np.zeros(1, w.dtype) if zero is None else zero.reshape(-1)
            prepared = []
            for g, matrix in enumerate(matrices):
                group_zero = zeros if zeros.size == 1 else zeros[g * per_group:
                                                                 (g + 1) * per_group]
                prepared.append(Weights.make(matrix, group_zero))
            self._weights = {key: prepared}     # one entry: zero points are constants
        return self._weights[key]

    # --- Execution ---

    def run(self, accelerator: Any, values: list[np.ndarray | None], log: GemmLog
            ) -> np.ndarray:
        """The node's output from its input values (None for absent optional inputs)."""
        roles = self._roles(values)
        x = roles["x"]
        if x is None or x.dtype not in (np.uint8, np.int8):
            raise ValueError(f"node {self.name}: the activations must be uint8 or int8, not "
                             f"{None if x is None else x.dtype}")
        if self.kind == "conv":
            return self._run_conv(accelerator, roles, log)
        return self._run_matmul(accelerator, roles, log)

    def _requant_arguments(self, roles: dict[str, np.ndarray | None], channels: int,
                           first: int, count: int) -> dict[str, Any]:
        """Scales, zero points and bias of output channels [first, first + count)."""
        w_scale = np.asarray(roles["w_scale"], np.float32).reshape(-1)
        if w_scale.size not in (1, channels):
            raise ValueError(f"node {self.name}: the weight scale must be a scalar or have "
                             f"{channels} elements, not {w_scale.size}")
        if w_scale.size > 1:
            w_scale = w_scale[first:first + count]
        bias = roles.get("bias")
        if bias is not None:
            bias = np.asarray(bias).reshape(-1)
            if bias.dtype != np.int32:
                raise ValueError(f"node {self.name}: the bias must be int32, not {bias.dtype}")
            if bias.size == 1:
                bias = np.broadcast_to(bias, (channels,))
            if bias.size != channels:
                raise ValueError(f"node {self.name}: the bias must have {channels} "
                                 f"elements, not {bias.size}")
            bias = np.ascontiguousarray(bias[first:first + count])
        y_zero = _scalar(np.asarray(roles["y_zero"]), "output zero point", self.name)
        return dict(a_scale=float(_scalar(np.asarray(roles["x_scale"], np.float32),
                                          "input scale", self.name)),
                    w_scale=w_scale if w_scale.size > 1 else float(w_scale[0]),
                    y_scale=float(_scalar(np.asarray(roles["y_scale"], np.float32),
                                          "output scale", self.name)),
                    y_zero_point=int(y_zero), bias=bias, out_dtype=y_zero.dtype.name)

    def _gemm(self, accelerator: Any, log: GemmLog, a: np.ndarray, x_zero: int,
              weights: Weights, roles: dict[str, np.ndarray | None], channels: int,
              first: int) -> np.ndarray:
        if not self.requantized:
            return integer_gemm(accelerator, log, a, x_zero, weights)
        count = weights.matrix.shape[1]
        return quantized_gemm(accelerator, log, a, a_zero_point=x_zero, weights=weights,
                              **self._requant_arguments(roles, channels, first, count))

    def _x_zero(self, roles: dict[str, np.ndarray | None]) -> int:
        zero = roles["x_zero"]
        if zero is None:
            return 0
        return int(_scalar(np.asarray(zero), "input zero point", self.name))

    def _run_matmul(self, accelerator: Any, roles: dict[str, np.ndarray | None],
                    log: GemmLog) -> np.ndarray:
        x = roles["x"]
        w = roles["w"]
        if self.kind == "gemm" and self.attributes.get("transA", 0):
            if x.ndim != 2:
                raise ValueError(f"node {self.name}: QGemm's A must be 2-D, not {x.shape}")
            x = np.ascontiguousarray(x.T)
        weights = self._weight_matrices(w, roles["w_zero"])[0]
        k, n = weights.matrix.shape
        if x.ndim == 0 or x.shape[-1] != k:
            raise ValueError(f"node {self.name}: the activations of shape {x.shape} do not "
                             f"end in K = {k}, the weights' rows")
        a = x.reshape(-1, k)
        out = self._gemm(accelerator, log, a, self._x_zero(roles), weights, roles, n, 0)
        return out.reshape(*x.shape[:-1], n)

    @property
    def channels_last(self) -> bool:
        """ONNX Runtime's NHWC `com.microsoft.QLinearConv`: input and output [N, H, W, C]."""
        return bool(self.attributes.get("channels_last", 0))

    def _run_conv(self, accelerator: Any, roles: dict[str, np.ndarray | None],
                  log: GemmLog) -> np.ndarray:
        x, w = roles["x"], roles["w"]
        if self.channels_last:
            x = np.moveaxis(x, -1, 1)
        geometry = ConvGeometry.from_attributes(self.attributes, x.shape, w.shape)
        x_zero = self._x_zero(roles)
        patches, shape = conv_patches(x, geometry, x_zero)
        weights = self._weight_matrices(w, roles["w_zero"], geometry.groups)
        channels = w.shape[0]
        per_group = channels // geometry.groups
        columns = [self._gemm(accelerator, log, patch, x_zero, group_weights, roles,
                              channels, g * per_group)
                   for g, (patch, group_weights) in enumerate(zip(patches, weights,
                                                                  strict=True))]
        out = conv_output(columns, shape, x.ndim == 3)
        return np.ascontiguousarray(np.moveaxis(out, 1, -1)) if self.channels_last else out

    def gemm_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(M, K, N, GEMMs) of the node for an activation input of `input_shape`."""
        w = self.weight_array
        if self.kind == "conv" and self.channels_last:
            input_shape = (input_shape[0], input_shape[-1], *input_shape[1:-1])
        if self.kind == "conv":
            geometry = ConvGeometry.from_attributes(self.attributes, input_shape, w.shape)
            spatial = input_shape[2:] if len(input_shape) == 4 else (1, input_shape[2])
            out_h, out_w = geometry.output_size(*spatial)
            return (input_shape[0] * out_h * out_w, int(np.prod(w.shape[1:])),
                    w.shape[0] // geometry.groups, geometry.groups)
        k, n = (w.shape[1], w.shape[0]) if self.kind == "gemm" and \
            self.attributes.get("transB", 0) else w.shape
        m = input_shape[1] if self.kind == "gemm" and self.attributes.get("transA", 0) \
            else int(np.prod(input_shape[:-1]))
        return m, k, n, 1


def plan_node(node: Any, initializers: dict[str, Any]) -> OffloadedNode | str:
    """An `OffloadedNode` for a node the accelerator can run, or the reason why ONNX Runtime
    runs it (one sentence). `initializers` maps names to TensorProtos."""
    from onnx import numpy_helper

    kind = OFFLOADED_OPS.get((node.domain or "", node.op_type))
    if kind is None:
        return f"{node.op_type} is not an integer GEMM or convolution"
    attributes = _attributes(node)
    weight_index = 1 if node.op_type in ("MatMulInteger", "ConvInteger") else 3
    inputs = list(node.input)
    weight_name = inputs[weight_index] if len(inputs) > weight_index else ""
    if weight_name not in initializers:
        return (f"its weights ({weight_name or 'absent'}) are not a constant initializer "
                "(an activation x activation product)")
    weight = numpy_helper.to_array(initializers[weight_name])
    if weight.dtype not in (np.uint8, np.int8):
        return f"its weights are {weight.dtype}, not uint8 or int8"
    if kind == "conv":
        if weight.ndim not in (3, 4):
            return (f"it is a {weight.ndim - 2}-D convolution; the lowering takes 1-D and "
                    "2-D ones")
        try:
            ConvGeometry.from_attributes(attributes, (1, weight.shape[1] * int(
                attributes.get("group", 1)), *weight.shape[2:]), weight.shape)
        except ValueError as error:
            return str(error)
    elif weight.ndim != 2:
        return f"its weights have shape {weight.shape}, not a 2-D [K, N] matrix"
    if node.op_type == "QGemm":
        alpha = float(attributes.get("alpha", 1.0))
        if alpha != 1.0:
            return (f"alpha = {alpha}: ONNX Runtime folds alpha into the output scale in an "
                    "order other than the requantizer's")
        if len(inputs) < 9 or not inputs[8] or not inputs[7]:
            return "it has a float output (no output scale and zero point)"
        if len(inputs) > 6 and inputs[6] and inputs[6] in initializers:
            bias = numpy_helper.to_array(initializers[inputs[6]])
            n = weight.shape[0] if attributes.get("transB", 0) else weight.shape[1]
            if bias.size not in (1, n):
                return f"its bias C has shape {bias.shape}, not one value per output column"
    return OffloadedNode(name=node.name or node.output[0], op_type=node.op_type, kind=kind,
                         inputs=inputs, outputs=list(node.output), attributes=attributes,
                         weight_array=weight)
