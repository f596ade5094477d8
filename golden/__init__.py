"""lpmac golden model: the bit-exact NumPy specification of every unit (docs/numerics.md).

Public entry points: `qlinear`, `matmul`, `mx_quantize`, `mx_matmul`; the units they are
built from (`requantize`, `bfp_accumulate`, ...) are exported for the hardware testbenches.
"""

from .compare import mismatches
from .config import MODES, ArrayConfig
from .intgemm import matmul, max_safe_k
from .mx import (
    MX_FORMATS,
    bfp_accumulate,
    bfp_add,
    bfp_normalize,
    bfp_to_float32,
    bfp_to_float64,
    block_dot_products,
    block_exponents,
    mx_dequantize,
    mx_matmul,
    mx_matmul_quantized,
    mx_quantize,
)
from .quant import dequantize, pack_int4, quantize, unpack_int4
from .requant import (
    RequantParams,
    fold_zero_point,
    fp32_multiplier,
    gemmlowp_multiplier,
    output_range,
    qlinear,
    quantize_bias,
    quantize_multiplier,
    requant_params,
    requantize,
)

__all__ = [
    "ArrayConfig", "MODES", "matmul", "max_safe_k", "MX_FORMATS", "bfp_accumulate", "bfp_add",
    "bfp_normalize", "bfp_to_float32", "bfp_to_float64", "block_dot_products",
    "block_exponents", "mx_dequantize", "mx_matmul", "mx_matmul_quantized", "mx_quantize",
    "dequantize", "pack_int4", "quantize", "unpack_int4", "RequantParams", "fold_zero_point",
    "fp32_multiplier", "gemmlowp_multiplier", "output_range", "qlinear", "quantize_bias",
    "quantize_multiplier", "requant_params", "requantize", "mismatches",
]
