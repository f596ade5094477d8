"""Counting differing elements: the one definition of "mismatches" the model runner reports."""

from __future__ import annotations

import numpy as np

__all__ = ["count_mismatches"]


def count_mismatches(actual: np.ndarray, expected: np.ndarray) -> int:
    """The number of elements of `actual` that differ from `expected`.

    Exact equality: integers by value, floating-point numbers by their bit patterns (so a
    NaN equals the same NaN, and -0.0 differs from +0.0). Both arrays must have the same
    shape and dtype; otherwise every element is a mismatch in a way that a count would hide,
    so that is a `ValueError`."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        raise ValueError(f"cannot compare arrays of shapes {actual.shape} and "
                         f"{expected.shape}")
    if actual.dtype != expected.dtype:
        raise ValueError(f"cannot compare arrays of dtypes {actual.dtype} and "
                         f"{expected.dtype}")
    if actual.dtype.kind in "fc":
        # Floats by bit pattern; a complex number is two floats, equal when both are.
        parts = 2 if actual.dtype.kind == "c" else 1
        bits = np.dtype(f"u{actual.dtype.itemsize // parts}")
        differ = (np.ascontiguousarray(actual).view(bits).reshape(*actual.shape, parts)
                  != np.ascontiguousarray(expected).view(bits).reshape(*actual.shape, parts))
        return int(np.count_nonzero(differ.any(axis=-1)))
    return int(np.count_nonzero(actual != expected))
