"""Lowering quantized ONNX GEMMs and convolutions onto the accelerator's integer GEMM.

Everything here is host-side data movement and exact integer bookkeeping around calls of
the public `host.Accelerator` API:

* `im2col`: a convolution's input [N, C, H, W] -> patches [N * OH * OW, C * KH * KW], padded
  with the input zero point (so a padded element contributes x - zero_point = 0, as in ONNX
  Runtime), patches in (c, kh, kw) order (the order of the flattened weight [OC, C, KH, KW]);
* `ConvGeometry`: strides, dilations, pads (explicit or `auto_pad`), groups and output size;
* `integer_gemm`: sum_k (a - a_zero) * (b - b_zero) wrapped to int32 exactly like ONNX
  `MatMulInteger`, through one signed 8-bit GEMM on the accelerator plus rank-one zero-point
  corrections on the host (FBGEMM's folding, docs/models.md "Zero points");
* `quantized_gemm`: the same GEMM requantized to uint8 / int8 like `QLinearMatMul`,
  `QLinearConv` and `QGemm`: on the accelerator's requantizer (`Accelerator.qlinear`) when
  the weights are symmetric int8 and K fits one accelerator GEMM, else the int32 GEMM on the
  accelerator and `golden.requantize` (the unit the hardware requantizer is verified
  against) on the host.

Each function takes an `Accelerator` and a `GemmLog` that records every accelerator call's
`GemmStats`, so the runner can report cycles and utilization per ONNX node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import golden
from golden.rounding import wrap_int32

__all__ = ["ConvGeometry", "GemmLog", "Weights", "im2col", "integer_gemm", "quantized_gemm",
           "conv_weights", "conv_patches", "conv_output", "group_packs", "block_diagonal"]


# --- Bookkeeping ---------------------------------------------------------------------------

@dataclass
class GemmLog:
    """The accelerator calls made for one ONNX node: their `GemmStats` and the path taken
    ("qlinear": requantized on the accelerator; "int32": int32 on the accelerator, with
    `golden.requantize` on the host where the node requantizes)."""

    stats: list[Any] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)

    def record(self, accelerator: Any, path: str) -> None:
        self.stats.append(accelerator.last_stats)
        self.paths.add(path)


@dataclass
class Weights:
    """A constant weight matrix b [K, N] (integers) with its zero point, prepared once: the
    signed 8-bit operand sent to the accelerator, its column sums for the zero-point
    correction, and (for symmetric int8 weights) the [N, K] matrix `Accelerator.qlinear`
    takes."""

    matrix: np.ndarray
    zero_point: np.ndarray
    signed: np.ndarray
    offset: int
    column_sums: np.ndarray
    prepared: Any = None
    prepared_qlinear: Any = None

    @classmethod
    def make(cls, matrix: np.ndarray, zero_point: Any) -> Weights:
        """b [K, N] uint8 or int8; zero_point a scalar or one per column [N]."""
        if matrix.ndim != 2:
            raise ValueError(f"weights must be a 2-D [K, N] matrix, not of shape {matrix.shape}")
        offset = 128 if matrix.dtype == np.uint8 else 0
        signed = (matrix.astype(np.int16) - offset).astype(np.int8)
        zero = _zero_point("weight zero point", zero_point, matrix.dtype, matrix.shape[1])
        return cls(matrix, zero, signed, offset, signed.astype(np.int64).sum(axis=0))

    @property
    def symmetric_int8(self) -> bool:
        return self.matrix.dtype == np.int8 and not np.any(self.zero_point)


def _zero_point(name: str, value: Any, dtype: np.dtype, length: int) -> np.ndarray:
    """A zero point as int64 [length] (a scalar broadcast), checked against the data type."""
    zero = np.asarray(0 if value is None else value)
    if zero.dtype.kind not in "iu":
        raise ValueError(f"the {name} must be an integer, not of type {zero.dtype}")
    if zero.size not in (1, length):
        raise ValueError(f"the {name} must be a scalar or have {length} elements, not "
                         f"{zero.size}")
    info = np.iinfo(dtype)
    if zero.size and (zero.min() < info.min or zero.max() > info.max):
        raise ValueError(f"the {name} must lie in the range of {np.dtype(dtype).name}")
    return np.broadcast_to(zero.astype(np.int64).reshape(-1), (length,)).copy()


# --- Integer GEMMs -------------------------------------------------------------------------

def integer_gemm(accelerator: Any, log: GemmLog, a: np.ndarray, a_zero_point: Any,
                 weights: Weights, mode: str | None = None) -> np.ndarray:
    """int32 [M, N] = wrap32(sum_k (a[m, k] - a_zero) * (b[k, n] - b_zero[n])), ONNX
    `MatMulInteger`'s result, exactly.

    a [M, K] uint8 or int8. The accelerator multiplies signed 8-bit values, so uint8 operands
    are sent as value - 128 (a' = a - ca, b' = b - cb) and the host adds the exact corrections

        sum_k (a' + ca - za)(b' + cb - zb) = a' @ b' + rowsum(a') (cb - zb)
                                             + (ca - za) colsum(b') + K (ca - za)(cb - zb)

    in int64 before wrapping to int32 (the identity holds modulo 2^32). `mode` is the
    accelerator's integer mode (default: the fastest one whose ranges hold the operands as
    sent)."""
    if a.ndim != 2 or a.dtype not in (np.uint8, np.int8):
        raise ValueError(f"the activations must be a uint8 or int8 [M, K] matrix, not "
                         f"{a.dtype} of shape {a.shape}")
    k = a.shape[1]
    if k != weights.matrix.shape[0]:
        raise ValueError(f"the activations [M, K] {a.shape} and weights [K, N] "
                         f"{weights.matrix.shape} must agree on K")
    a_offset = 128 if a.dtype == np.uint8 else 0
    a_zero = int(_zero_point("activation zero point", a_zero_point, a.dtype, 1)[0])
    a_signed = (a.astype(np.int16) - a_offset).astype(np.int8)
    if weights.prepared is None:
        weights.prepared = accelerator.load_weights(weights.signed)
    product = accelerator.matmul(a_signed, weights.prepared, mode=mode, allow_wrap=True)
    log.record(accelerator, "int32")
    b_correction = weights.offset - weights.zero_point                   # [N]
    a_correction = a_offset - a_zero
    total = product.astype(np.int64)
    if np.any(b_correction):
        total = total + a_signed.astype(np.int64).sum(axis=1, keepdims=True) * b_correction
    if a_correction:
        total = total + a_correction * (weights.column_sums + k * b_correction)
    return wrap_int32(total).astype(np.int32)


def quantized_gemm(accelerator: Any, log: GemmLog, a: np.ndarray, *, a_scale: float,
                   a_zero_point: Any, weights: Weights, w_scale: np.ndarray, y_scale: float,
                   y_zero_point: Any, bias: np.ndarray | None, out_dtype: str) -> np.ndarray:
    """uint8 / int8 [M, N] = requantize(sum_k (a - za)(b - zb) + bias) with ONNX Runtime's
    fp32 requantization (scale fl32(fl32(a_scale * w_scale) / y_scale), round half to even,
    add the output zero point, saturate): the semantics of `QLinearMatMul`, `QLinearConv`
    and `QGemm` on its CPU provider, which are `golden.qlinear`'s."""
    n = weights.matrix.shape[1]
    y_zero = int(_zero_point("output zero point", y_zero_point, np.dtype(out_dtype), 1)[0])
    a_zero = int(_zero_point("activation zero point", a_zero_point, a.dtype, 1)[0])
    if weights.symmetric_int8 and a.shape[1] <= accelerator.max_k:
        if weights.prepared_qlinear is None:
            weights.prepared_qlinear = accelerator.load_weights(
                np.ascontiguousarray(weights.matrix.T))
        result = accelerator.qlinear(
            a, weights.prepared_qlinear, x_scale=a_scale, x_zero_point=a_zero,
            w_scale=w_scale, y_scale=y_scale, y_zero_point=y_zero, bias=bias,
            out_dtype=out_dtype)
        log.record(accelerator, "qlinear")
        return result
    accumulators = integer_gemm(accelerator, log, a, a_zero, weights)
    params = golden.requant_params(x_scale=a_scale, w_scale=w_scale, y_scale=y_scale,
                                   y_zero_point=y_zero, bias=bias, out_dtype=out_dtype,
                                   channels=n)
    return golden.requantize(accumulators, params)


# --- Convolutions --------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D convolution's geometry (1-D convolutions are lowered as H = 1)."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]     # top, left, bottom, right
    groups: int

    @classmethod
    def from_attributes(cls, attributes: dict[str, Any], input_shape: Sequence[int],
                        weight_shape: Sequence[int]) -> ConvGeometry:
        """ONNX Conv / QLinearConv / ConvInteger attributes for an input [N, C, H, W] (or
        [N, C, L]) and weights [OC, C / group, KH, KW] (or [OC, C / group, KL])."""
        spatial = len(weight_shape) - 2
        if spatial not in (1, 2) or len(input_shape) != spatial + 2:
            raise ValueError(f"only 1-D and 2-D convolutions are lowered, not input "
                             f"{tuple(input_shape)} with weights {tuple(weight_shape)}")
        kernel = tuple(int(v) for v in attributes.get("kernel_shape", weight_shape[2:]))
        if kernel != tuple(weight_shape[2:]):
            raise ValueError(f"kernel_shape {kernel} disagrees with the weights' shape "
                             f"{tuple(weight_shape)}")
        strides = tuple(int(v) for v in attributes.get("strides", [1] * spatial))
        dilations = tuple(int(v) for v in attributes.get("dilations", [1] * spatial))
        if min(strides + dilations) < 1:
            raise ValueError(f"strides {strides} and dilations {dilations} must be positive")
        group = int(attributes.get("group", 1))
        channels, out_channels = int(input_shape[1]), int(weight_shape[0])
        if group < 1 or channels % group or out_channels % group \
                or channels // group != weight_shape[1]:
            raise ValueError(f"group {group} does not divide the input channels {channels} "
                             f"and output channels {out_channels} into the weights' "
                             f"{weight_shape[1]} input channels per group")
        sizes = tuple(int(v) for v in input_shape[2:])
        auto_pad = attributes.get("auto_pad", "NOTSET")
        if isinstance(auto_pad, bytes):
            auto_pad = auto_pad.decode()
        if auto_pad in ("NOTSET", ""):
            pads = tuple(int(v) for v in attributes.get("pads", [0] * (2 * spatial)))
        elif auto_pad == "VALID":
            pads = (0,) * (2 * spatial)
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
                out = -(-size // s)
                total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
                small, large = total // 2, total - total // 2
                begin.append(small if auto_pad == "SAME_UPPER" else large)
                end.append(large if auto_pad == "SAME_UPPER" else small)
            pads = tuple(begin + end)
        else:
            raise ValueError(f"auto_pad {auto_pad!r} is not an ONNX padding mode")
        if len(pads) != 2 * spatial or min(pads) < 0:
            raise ValueError(f"pads {pads} must be {2 * spatial} non-negative integers")
        if spatial == 1:
            return cls((1, kernel[0]), (1, strides[0]), (1, dilations[0]),
                       (0, pads[0], 0, pads[1]), group)
        return cls(kernel, strides, dilations, (pads[0], pads[1], pads[2], pads[3]), group)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        sizes = []
        for size, k, s, d, before, after in zip(
                (height, width), self.kernel, self.strides, self.dilations,
                self.pads[:2], self.pads[2:], strict=True):
            span = (k - 1) * d + 1
            if size + before + after < span:
                raise ValueError(f"the kernel (span {span}) is larger than the padded input "
                                 f"({size + before + after})")
            sizes.append((size + before + after - span) // s + 1)
        return sizes[0], sizes[1]


def im2col(x: np.ndarray, geometry: ConvGeometry, pad_value: int) -> np.ndarray:
    """x [N, C, H, W] -> patches [N * OH * OW, C * KH * KW] in (c, kh, kw) order, the input
    padded with `pad_value` (the input zero point). Rows are in (n, oh, ow) order."""
    n, channels, height, width = x.shape
    out_h, out_w = geometry.output_size(height, width)
    top, left, bottom, right = geometry.pads
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)),
                    constant_values=np.asarray(pad_value, x.dtype))
    (kh_size, kw_size), (sh, sw), (dh, dw) = geometry.kernel, geometry.strides, \
        geometry.dilations
    patches = np.empty((n, out_h, out_w, channels, kh_size, kw_size), x.dtype)
    for kh in range(kh_size):
        for kw in range(kw_size):
            window = padded[:, :, kh * dh: kh * dh + sh * (out_h - 1) + 1: sh,
                            kw * dw: kw * dw + sw * (out_w - 1) + 1: sw]
            patches[:, :, :, :, kh, kw] = window.transpose(0, 2, 3, 1)
    return patches.reshape(n * out_h * out_w, channels * kh_size * kw_size)


def conv_patches(x: np.ndarray, geometry: ConvGeometry, pad_value: int
                 ) -> tuple[list[np.ndarray], tuple[int, int, int]]:
    """The im2col matrix of each group of x [N, C, H, W] (or [N, C, L]), and (N, OH, OW)."""
    if x.ndim == 3:
        x = x[:, :, None, :]
    if x.ndim != 4:
        raise ValueError(f"the convolution input must be [N, C, H, W] or [N, C, L], not of "
                         f"shape {x.shape}")
    per_group = x.shape[1] // geometry.groups
    out_h, out_w = geometry.output_size(x.shape[2], x.shape[3])
    groups = [im2col(x[:, g * per_group:(g + 1) * per_group], geometry, pad_value)
              for g in range(geometry.groups)]
    return groups, (x.shape[0], out_h, out_w)


def conv_weights(w: np.ndarray, groups: int) -> list[np.ndarray]:
    """Weights [OC, C / group, KH, KW] -> one [K, N] matrix per group, K in (c, kh, kw)
    order, N the group's output channels."""
    per_group = w.shape[0] // groups
    flat = w.reshape(w.shape[0], -1)
    return [np.ascontiguousarray(flat[g * per_group:(g + 1) * per_group].T)
            for g in range(groups)]


def conv_output(columns: list[np.ndarray], shape: tuple[int, int, int],
                one_dimensional: bool) -> np.ndarray:
    """Per-group GEMM results [N * OH * OW, OC / group] -> [N, OC, OH, OW] (or [N, OC, OW])."""
    n, out_h, out_w = shape
    joined = np.concatenate(columns, axis=1) if len(columns) > 1 else columns[0]
    out = joined.reshape(n, out_h, out_w, -1).transpose(0, 3, 1, 2)
    if one_dimensional:
        out = out[:, :, 0, :]
    return np.ascontiguousarray(out)


# --- Grouped convolutions, packed ----------------------------------------------------------

def group_packs(groups: int, columns_per_group: int, tile_columns: int
                ) -> list[tuple[int, int]]:
    """[first, end) ranges of a grouped convolution's groups that share one GEMM: as many
    groups as fill one N-tile of the accelerator (`tile_columns`: C, or 2C with 4-bit
    weights), their patches side by side along K and their weights block-diagonal
    (`block_diagonal`). A GEMM of N = 1 costs the cycles of a whole N-tile (the drain emits
    every padded column), so a depthwise convolution packed eight or sixteen channels to a
    GEMM takes a fraction of the cycles of one GEMM per channel, with the same exact
    integer result (the zeros off the diagonal add nothing)."""
    per_pack = max(1, tile_columns // max(columns_per_group, 1))
    return [(first, min(first + per_pack, groups)) for first in range(0, groups, per_pack)]


def block_diagonal(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """The matrices [K_i, N_i] on the diagonal of one [sum K_i, sum N_i] matrix, zeros
    elsewhere (same dtype)."""
    rows = sum(block.shape[0] for block in blocks)
    columns = sum(block.shape[1] for block in blocks)
    out = np.zeros((rows, columns), blocks[0].dtype)
    row = column = 0
    for block in blocks:
        out[row:row + block.shape[0], column:column + block.shape[1]] = block
        row += block.shape[0]
        column += block.shape[1]
    return out
