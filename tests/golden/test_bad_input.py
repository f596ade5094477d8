"""Bad input to the golden model: one ValueError sentence naming the argument, per case."""

from __future__ import annotations

import numpy as np
import pytest

import golden

RNG = np.random.default_rng(0)
X_U8 = RNG.integers(0, 256, (4, 8), dtype=np.uint8)
W_I8 = RNG.integers(-128, 128, (3, 8), dtype=np.int8)
QLINEAR = dict(x_scale=0.1, x_zero_point=10, w_scale=0.01, y_scale=0.2, y_zero_point=5)
FLOATS = RNG.standard_normal((2, 32)).astype(np.float32)


def _qlinear(**changes):
    args = dict(x_q=X_U8, w_q=W_I8, **QLINEAR)
    args.update(changes)
    return golden.qlinear(args.pop("x_q"), args.pop("w_q"), **args)


QLINEAR_CASES = {
    "x_q not an array": (dict(x_q=[[1, 2]]), "x_q must be a NumPy integer array"),
    "x_q float dtype": (dict(x_q=X_U8.astype(np.float32)), "x_q must have an integer dtype"),
    "x_q int16 dtype": (dict(x_q=X_U8.astype(np.int16)), "x_q must have dtype uint8 or int8"),
    "x_q 1-D": (dict(x_q=X_U8[0]), "x_q must be a 2-D array"),
    "x_q empty M": (dict(x_q=X_U8[:0]), "x_q must not be empty"),
    "w_q uint8": (dict(w_q=W_I8.astype(np.uint8)), "w_q must have dtype int8"),
    "K mismatch": (dict(w_q=W_I8[:, :5]), "must agree on K"),
    "x_zero_point out of uint8": (dict(x_zero_point=300), r"x_zero_point must be in \[0, 255\]"),
    "x_zero_point out of int8": (dict(x_q=X_U8.astype(np.int8) // 2, x_zero_point=200),
                                 r"x_zero_point must be in \[-128, 127\]"),
    "x_zero_point float": (dict(x_zero_point=1.5), "x_zero_point must be an integer"),
    "y_zero_point out of range": (dict(y_zero_point=-1), r"y_zero_point must be in \[0, 255\]"),
    "y_zero_point out of int4": (dict(y_zero_point=9, out_dtype="int4"),
                                 r"y_zero_point must be in \[-8, 7\]"),
    "x_scale NaN": (dict(x_scale=float("nan")), "x_scale must be finite"),
    "x_scale inf": (dict(x_scale=float("inf")), "x_scale must be finite"),
    "x_scale zero": (dict(x_scale=0.0), "x_scale must be positive"),
    "y_scale negative": (dict(y_scale=-0.5), "y_scale must be positive"),
    "w_scale wrong length": (dict(w_scale=np.full(4, 0.1)), "w_scale must be a scalar or a 1-D"),
    "w_scale NaN entry": (dict(w_scale=np.array([0.1, np.nan, 0.1])), "w_scale must be finite"),
    "w_scale string": (dict(w_scale="0.1"), "w_scale must be a positive finite number"),
    "bias wrong length": (dict(bias=np.zeros(5, np.int32)), "bias must be a 1-D array of length 3"),
    "bias float": (dict(bias=np.zeros(3)), "bias must have an integer dtype"),
    "bias beyond int32": (dict(bias=np.array([2**40, 0, 0])), r"bias must hold values in"),
    "rounding unknown": (dict(rounding="fp16"), "rounding must be one of"),
    "out_dtype unknown": (dict(out_dtype="int16"), "out_dtype must be one of"),
    "relu not bool": (dict(relu="yes"), "relu must be True or False"),
    "multiplier underflow": (dict(x_scale=1e-30, w_scale=1e-30), "underflows or overflows"),
}


@pytest.mark.parametrize("case", list(QLINEAR_CASES))
def test_qlinear_rejects(case):
    changes, message = QLINEAR_CASES[case]
    with pytest.raises(ValueError, match=message):
        _qlinear(**changes)


MATMUL_CASES = {
    "a list": ([[1]], np.ones((1, 1), np.int8), "a must be a NumPy integer array"),
    "b float": (np.ones((2, 2), np.int8), np.ones((2, 2)), "b must have an integer dtype"),
    "a 3-D": (np.ones((1, 2, 2), np.int8), np.ones((2, 2), np.int8), "a must be a 2-D array"),
    "K mismatch": (np.ones((2, 3), np.int8), np.ones((2, 2), np.int8), "must agree on K"),
    "empty K": (np.ones((2, 0), np.int8), np.ones((0, 2), np.int8), "a must not be empty"),
    "bool": (np.ones((2, 2), bool), np.ones((2, 2), np.int8), "a must have an integer dtype"),
}


@pytest.mark.parametrize("case", list(MATMUL_CASES))
def test_matmul_rejects(case):
    a, b, message = MATMUL_CASES[case]
    with pytest.raises(ValueError, match=message):
        golden.matmul(a, b)


MX_QUANTIZE_CASES = {
    "NaN": (dict(x=np.array([[np.nan] * 32])), "x must be finite"),
    "inf": (dict(x=np.array([[np.inf] * 32])), "x must be finite"),
    "format": (dict(fmt="mxfp8"), "fmt must be one of"),
    "block": (dict(block=8), "block must be 16 or 32"),
    "axis": (dict(axis=2), "axis must be an axis of a 2-D array"),
    "empty": (dict(x=np.zeros((0, 32))), "x must not be empty"),
    "complex": (dict(x=np.zeros((1, 32), complex)), "x must hold real numbers"),
}


@pytest.mark.parametrize("case", list(MX_QUANTIZE_CASES))
def test_mx_quantize_rejects(case):
    changes, message = MX_QUANTIZE_CASES[case]
    args = dict(x=FLOATS, fmt="mxint8", block=32, axis=-1)
    args.update(changes)
    with pytest.raises(ValueError, match=message):
        golden.mx_quantize(**args)


def test_mx_dequantize_rejects_nan_scale_code():
    with pytest.raises(ValueError, match="scale_codes contains the E8M0 NaN code 255"):
        golden.mx_dequantize(np.zeros((1, 32), np.int8), np.array([[255]], np.uint8))


def test_mx_dequantize_rejects_element_out_of_range():
    with pytest.raises(ValueError, match=r"elements must hold values in \[-7, 7\] \(mxint4\)"):
        golden.mx_dequantize(np.full((1, 32), 8, np.int8), np.array([[127]], np.uint8),
                             "mxint4")


def test_mx_dequantize_rejects_wrong_scale_shape():
    with pytest.raises(ValueError, match="scale_codes must have shape"):
        golden.mx_dequantize(np.zeros((1, 64), np.int8), np.array([[127]], np.uint8))


def test_mx_matmul_quantized_rejects_nan_scale_code():
    elements = np.zeros((2, 32), np.int8)
    with pytest.raises(ValueError, match="b_codes contains the E8M0 NaN code 255"):
        golden.mx_matmul_quantized(elements, np.full((2, 1), 127, np.uint8), elements.T,
                                   np.full((1, 2), 255, np.uint8))


def test_mx_matmul_quantized_rejects_most_negative_element():
    elements = np.full((2, 32), -128, np.int8)
    with pytest.raises(ValueError, match=r"a_elements must hold values in \[-127, 127\]"):
        golden.mx_matmul_quantized(elements, np.full((2, 1), 127, np.uint8), elements.T,
                                   np.full((1, 2), 127, np.uint8))


MX_MATMUL_CASES = {
    "shape": (dict(b=FLOATS), "must be 2-D and agree on K"),
    "acc_bits low": (dict(acc_bits=7), "acc_bits must be an integer from 8 to 32"),
    "acc_bits high": (dict(acc_bits=33), "acc_bits must be an integer from 8 to 32"),
    "out": (dict(out="bf16"), "out must be one of"),
    "acc_rounding": (dict(acc_rounding="up"), "acc_rounding must be one of"),
    "NaN in b": (dict(b=np.full((32, 2), np.nan)), "b must be finite"),
    "fmt_b": (dict(fmt_b="int8"), "fmt_b must be one of"),
}


@pytest.mark.parametrize("case", list(MX_MATMUL_CASES))
def test_mx_matmul_rejects(case):
    changes, message = MX_MATMUL_CASES[case]
    args = dict(a=FLOATS, b=FLOATS.T.copy())
    args.update(changes)
    with pytest.raises(ValueError, match=message):
        golden.mx_matmul(args.pop("a"), args.pop("b"), **args)


def test_quantize_rejects_bad_scale_and_zero_point():
    with pytest.raises(ValueError, match="scale must be positive"):
        golden.quantize(FLOATS, 0.0, 0)
    with pytest.raises(ValueError, match=r"zero_point must be in \[-128, 127\]"):
        golden.quantize(FLOATS, 0.1, 128, "int8")
    with pytest.raises(ValueError, match="x must be finite"):
        golden.quantize(np.array([np.nan]), 0.1, 0)


def test_pack_int4_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"values must hold values in \[-8, 7\] \(int4\)"):
        golden.pack_int4(np.array([8], np.int8))


def test_bfp_accumulate_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="partials and exponents must have the same shape"):
        golden.bfp_accumulate(np.zeros((2, 3), np.int64), np.zeros((2, 4), np.int64))
