"""Bit-exact comparison of results: the one mismatch count the CLI, the demo, the benchmarks
and the tests report."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["mismatches"]


def _bits(array: np.ndarray) -> np.ndarray:
    """The array's elements as unsigned bit patterns (floats by their IEEE encoding)."""
    if array.dtype.kind == "f":
        return array.view(f"u{array.dtype.itemsize}")
    return array


def mismatches(expected: Any, got: Any) -> int:
    """How many elements of `got` differ from `expected` bit for bit.

    Arrays of the same shape compare element by element: integers by value, floats by
    their bit patterns (so -0.0 differs from 0.0 and a NaN from another NaN's encoding);
    an integer array and a float array never compare equal elementwise, so their dtype
    kinds must agree. Tuples (MX results: elements and scale codes) add their members'
    counts. A shape or kind that differs is a `ValueError`, not a count."""
    if isinstance(expected, tuple) or isinstance(got, tuple):
        if not (isinstance(expected, tuple) and isinstance(got, tuple)) \
                or len(expected) != len(got):
            raise ValueError("expected and got must both be tuples of the same length "
                             "(MX elements and scale codes) or both arrays")
        return sum(mismatches(e, g) for e, g in zip(expected, got, strict=True))
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        raise ValueError(f"results of shape {got.shape} cannot be compared with the expected "
                         f"shape {expected.shape}")
    if (expected.dtype.kind == "f") != (got.dtype.kind == "f"):
        raise ValueError(f"results of dtype {got.dtype} cannot be compared bit for bit with "
                         f"the expected dtype {expected.dtype}")
    if expected.dtype.kind == "f" and expected.dtype != got.dtype:
        raise ValueError(f"float results of dtype {got.dtype} cannot be compared bit for bit "
                         f"with the expected dtype {expected.dtype}")
    return int(np.count_nonzero(_bits(expected) != _bits(got)))
