"""Bit-exact comparison of results: the one mismatch count the CLI, the demo, the model
runner, the benchmarks and the tests report."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["mismatches"]


def mismatches(expected: Any, got: Any) -> int:
    """How many elements of `got` differ from `expected` bit for bit.

    Arrays of the same shape and dtype compare element by element: integers by value,
    floats by their bit patterns (so a NaN equals the same NaN, and -0.0 differs from
    +0.0). Tuples (MX results: elements and scale codes) add their members' counts. A shape
    or dtype that differs would make every element a mismatch in a way a count hides, so it
    is a `ValueError`."""
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
    if expected.dtype != got.dtype:
        raise ValueError(f"results of dtype {got.dtype} cannot be compared bit for bit with "
                         f"the expected dtype {expected.dtype}")
    if expected.dtype.kind == "f":
        bits = f"u{expected.dtype.itemsize}"
        return int(np.count_nonzero(np.ascontiguousarray(expected).view(bits)
                                    != np.ascontiguousarray(got).view(bits)))
    return int(np.count_nonzero(expected != got))
