"""Requantization: int32 accumulators -> int8 / uint8 / int4 outputs.

    y = clamp( R(wrap32(acc + bias_n), s_n) + zo , lo, hi )

with two bit-exact choices of R (docs/numerics.md, "Requantization"):

- "fp32": R(x, s) = round_half_even(fl32(fl32(x) * s32_n)), the PyTorch fbgemm / qnnpack,
  ONNX Runtime and XNNPACK arithmetic, with s32_n = fl32(fl32(in) * fl32(w_n)) / fl32(out)
  computed in float32 as PyTorch does;
- "gemmlowp": R(x) = RDBPOT(SRDHM(wrap32(x << max(shift, 0)), q31), max(-shift, 0)), the
  TFLite reference / TFLite Micro / CMSIS-NN arithmetic, with (q31, shift) from TFLite's
  QuantizeMultiplier of the double-precision real multiplier.

The output zero point is added exactly (no int32 wrap) and the clamp is exact, so an
accumulator too large for the output saturates instead of wrapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _checks
from .intgemm import exact_matmul_int64
from .rounding import (
    round_half_away,
    round_half_even,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    to_float32,
    wrap_int32,
)

__all__ = [
    "OUT_DTYPES", "ROUNDINGS", "RequantParams", "fp32_multiplier", "quantize_multiplier",
    "gemmlowp_multiplier", "requant_params", "requantize", "qlinear", "fold_zero_point",
    "quantize_bias", "output_range",
]

ROUNDINGS = ("fp32", "gemmlowp")
OUT_DTYPES = ("uint8", "int8", "int4")
_NUMPY_OUT = {"uint8": np.uint8, "int8": np.int8, "int4": np.int8}
# Shift range of the hardware's gemmlowp path (and of a meaningful TFLite multiplier).
GEMMLOWP_MAX_SHIFT = 30


def output_range(out_dtype: str, zero_point: int = 0, relu: bool = False) -> tuple[int, int]:
    """Inclusive clamp bounds of an output type; ReLU clamps at the zero point."""
    lo, hi = _checks.INT_RANGES[_checks.choice("out_dtype", out_dtype, OUT_DTYPES)]
    return (max(lo, zero_point) if relu else lo), hi


def fp32_multiplier(x_scale: float, w_scale: float | np.ndarray, y_scale: float) -> np.ndarray:
    """s32 = fl32(fl32(x_scale) * fl32(w_scale)) / fl32(y_scale), in float32 throughout, as
    PyTorch's quantized linear computes its output multiplier."""
    product = np.float32(x_scale) * np.asarray(w_scale).astype(np.float32)
    return (product / np.float32(y_scale)).astype(np.float32)


def quantize_multiplier(real_multiplier: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFLite QuantizeMultiplier: real = q31 * 2^(shift - 31), q31 in [2^30, 2^31).

    frexp, then q * 2^31 rounded half away from zero (std::round), renormalised when it
    reaches 2^31; a shift below -31 gives (0, 0). Returns int64 arrays (q31, shift)."""
    real = np.asarray(real_multiplier, dtype=np.float64)
    if not np.all(np.isfinite(real)) or not np.all(real > 0):
        raise ValueError("the real multiplier must be positive and finite")
    fraction, shift = np.frexp(real)
    q_fixed = round_half_away(np.ldexp(fraction, 31)).astype(np.int64)
    shift = shift.astype(np.int64)
    carry = q_fixed == 2**31
    q_fixed = np.where(carry, q_fixed // 2, q_fixed)
    shift = np.where(carry, shift + 1, shift)
    underflow = shift < -31
    q_fixed = np.where(underflow, 0, q_fixed)
    shift = np.where(underflow, 0, shift)
    if np.any(shift > GEMMLOWP_MAX_SHIFT):
        raise ValueError(
            f"the real multiplier must be below 2^{GEMMLOWP_MAX_SHIFT} (after rounding), but is "
            f"{float(real.max())!r}")
    return q_fixed, shift


def gemmlowp_multiplier(x_scale: float, w_scale: float | np.ndarray,
                        y_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(q31, shift) of double(x_scale) * double(w_scale) / double(y_scale), as TFLite's
    per-channel PopulateConvolutionQuantizationParams and GetQuantizedConvolutionMultipler
    compute them from the tensors' float32 scales."""
    x = np.float64(np.float32(x_scale))
    w = np.asarray(w_scale).astype(np.float32).astype(np.float64)
    y = np.float64(np.float32(y_scale))
    return quantize_multiplier(x * w / y)


@dataclass(frozen=True)
class RequantParams:
    """Everything the requantization unit needs for one GEMM; per-channel arrays have one
    entry per output column n, per-tensor ones are 0-D.

    multiplier: float32 s32 ("fp32") or int64 q31 ("gemmlowp"); shift: int64 ("gemmlowp"
    only); bias: int64 holding int32 values, shape [N] or 0-D."""

    rounding: str
    multiplier: np.ndarray
    shift: np.ndarray | None
    bias: np.ndarray
    zero_point: int
    out_dtype: str
    relu: bool

    @property
    def bounds(self) -> tuple[int, int]:
        return output_range(self.out_dtype, self.zero_point, self.relu)


def requant_params(*, x_scale: float, w_scale: float | np.ndarray, y_scale: float,
                   y_zero_point: int, bias: np.ndarray | None = None, relu: bool = False,
                   rounding: str = "fp32", out_dtype: str = "uint8",
                   channels: int | None = None) -> RequantParams:
    """Validate float scales and compute the integer-domain parameters of `requantize`,
    exactly as PyTorch ("fp32") or TFLite ("gemmlowp") does on the host."""
    rounding = _checks.choice("rounding", rounding, ROUNDINGS)
    out_dtype = _checks.choice("out_dtype", out_dtype, OUT_DTYPES)
    x_scale_v = _checks.positive_scale("x_scale", x_scale)
    w_scale_v = _checks.positive_scale("w_scale", w_scale, length=channels)
    y_scale_v = _checks.positive_scale("y_scale", y_scale)
    zero_point = _checks.int_scalar("y_zero_point", y_zero_point,
                                    _checks.INT_RANGES[out_dtype])
    if not isinstance(relu, bool | np.bool_):
        raise ValueError(f"relu must be True or False, not {relu!r}")
    if bias is None:
        bias_v = np.zeros((), dtype=np.int64)
    else:
        shape = None if channels is None else 1
        bias_v = _checks.int_array("bias", bias, ndim=shape,
                                   value_range=_checks.INT_RANGES["int32"],
                                   range_name="int32").astype(np.int64)
        if channels is not None and bias_v.shape != (channels,):
            raise ValueError(
                f"bias must be a 1-D array of length {channels} (one per output channel), "
                f"not of shape {bias_v.shape}")
    if rounding == "fp32":
        multiplier = fp32_multiplier(x_scale_v[()], w_scale_v, y_scale_v[()])
        if not np.all(np.isfinite(multiplier)) or not np.all(multiplier > 0):
            raise ValueError(
                "x_scale * w_scale / y_scale must be a positive finite float32, but "
                "underflows or overflows")
        shift = None
    else:
        real = np.float64(np.float32(x_scale_v[()])) \
            * w_scale_v.astype(np.float32).astype(np.float64) \
            / np.float64(np.float32(y_scale_v[()]))
        if not np.all(np.isfinite(real)) or not np.all(real > 0):
            raise ValueError("x_scale * w_scale / y_scale must be positive and finite")
        multiplier, shift = gemmlowp_multiplier(x_scale_v[()], w_scale_v, y_scale_v[()])
    return RequantParams(rounding, multiplier, shift, bias_v, zero_point, out_dtype,
                         bool(relu))


def requantize(acc: np.ndarray, params: RequantParams) -> np.ndarray:
    """The requantization unit: int32 accumulators [..., N] -> outputs [..., N].

    Returns uint8 for "uint8" and int8 for "int8" and "int4" (int4 values unpacked)."""
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu":
        raise ValueError(f"acc must have an integer dtype, not {acc.dtype}")
    x = wrap_int32(acc.astype(np.int64) + params.bias)
    if params.rounding == "fp32":
        # A product beyond float32 becomes +-inf and clamps to the bound below, as the
        # hardware saturates: an intended overflow, not a warning.
        with np.errstate(over="ignore"):
            scaled = round_half_even(to_float32(x) * params.multiplier)
        # The product may exceed int64; clamp in float64 first (exact for integer bounds).
        lo, hi = params.bounds
        shifted = scaled.astype(np.float64) + params.zero_point
        y = np.clip(shifted, lo, hi).astype(np.int64)
    else:
        left = np.maximum(params.shift, 0)
        right = np.maximum(-params.shift, 0)
        high = saturating_rounding_doubling_high_mul(wrap_int32(x << left), params.multiplier)
        lo, hi = params.bounds
        y = np.clip(rounding_divide_by_pot(high, right) + params.zero_point, lo, hi)
    return y.astype(_NUMPY_OUT[params.out_dtype])


def fold_zero_point(w_q: np.ndarray, x_zero_point: int,
                    bias: np.ndarray | None = None) -> np.ndarray:
    """bias - x_zero_point * sum_k w[n, k] (int32, wrapping), so that
    sum_k x[k] * w[n, k] + folded == sum_k (x[k] - x_zero_point) * w[n, k] + bias
    modulo 2^32: the host-side zero-point correction (as FBGEMM does it)."""
    column_sums = w_q.astype(np.int64).sum(axis=1)
    base = np.zeros(w_q.shape[0], np.int64) if bias is None else bias.astype(np.int64)
    return wrap_int32(base - int(x_zero_point) * column_sums).astype(np.int32)


def quantize_bias(bias: np.ndarray, x_scale: float, w_scale: float | np.ndarray) -> np.ndarray:
    """Float bias -> int32 at scale x_scale * w_scale, rounded half to even and saturated,
    as PyTorch's qnnpack path and TFLite's converter quantize it."""
    bias = _checks.finite_float_array("bias", np.asarray(bias, dtype=np.float64))
    scale = np.float64(x_scale) * np.asarray(w_scale, dtype=np.float64)
    return np.clip(round_half_even(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)


def qlinear(x_q: np.ndarray, w_q: np.ndarray, *, x_scale: float, x_zero_point: int,
            w_scale: float | np.ndarray, y_scale: float, y_zero_point: int,
            bias: np.ndarray | None = None, relu: bool = False, rounding: str = "fp32",
            out_dtype: str = "uint8") -> np.ndarray:
    """Quantized linear layer y = requantize(sum_k (x - x_zero_point) * w^T + bias).

    x_q [M, K] uint8 (PyTorch quint8) or int8 (TFLite); its dtype says which, and
    x_zero_point may be any value of that dtype. w_q [N, K] int8 (PyTorch's layout),
    symmetric (zero point 0). w_scale a scalar (per tensor) or [N] (per channel). bias an
    int32-valued integer array [N] at scale x_scale * w_scale, or None. Returns [M, N] of
    `out_dtype` (int4 outputs are int8 arrays holding values in [-8, 7])."""
    x_q = _checks.int_array("x_q", x_q, ndim=2, dtypes=("uint8", "int8"))
    w_q = _checks.int_array("w_q", w_q, ndim=2, dtypes=("int8",))
    if x_q.shape[1] != w_q.shape[1]:
        raise ValueError(
            f"x_q [M, K] and w_q [N, K] must agree on K, but x_q has shape {x_q.shape} and "
            f"w_q has shape {w_q.shape}")
    x_zero = _checks.int_scalar("x_zero_point", x_zero_point,
                                _checks.INT_RANGES[x_q.dtype.name])
    params = requant_params(x_scale=x_scale, w_scale=w_scale, y_scale=y_scale,
                            y_zero_point=y_zero_point, bias=bias, relu=relu,
                            rounding=rounding, out_dtype=out_dtype, channels=w_q.shape[0])
    centred = x_q.astype(np.int16) - np.int16(x_zero)
    acc = exact_matmul_int64(centred, w_q.T).astype(np.int32)
    return requantize(acc, params)
