"""The one bit-exact mismatch count (`golden.mismatches`)."""

from __future__ import annotations

import numpy as np
import pytest

import golden


def test_counts_differing_elements() -> None:
    expected = np.arange(12, dtype=np.int32).reshape(3, 4)
    got = expected.copy()
    got[0, 1] += 1
    got[2, 3] = -got[2, 3]
    assert golden.mismatches(expected, got) == 2
    assert golden.mismatches(expected, expected.copy()) == 0


def test_floats_compare_bit_patterns() -> None:
    expected = np.array([0.0, 1.5, np.nan, np.inf], dtype=np.float32)
    got = np.array([-0.0, 1.5, np.nan, np.inf], dtype=np.float32)
    assert golden.mismatches(expected, got) == 1          # -0.0 is not 0.0
    other_nan = got.copy()
    other_nan.view(np.uint32)[2] ^= 1                     # another NaN encoding
    assert golden.mismatches(expected, other_nan) == 2


def test_mx_results_count_elements_and_codes() -> None:
    elements = np.zeros((2, 32), np.int8)
    codes = np.full((2, 1), 127, np.uint8)
    changed = (elements.copy(), codes.copy())
    changed[0][1, 3] = 5
    changed[1][0, 0] = 126
    assert golden.mismatches((elements, codes), changed) == 2


def test_refuses_what_cannot_be_compared() -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 3\) cannot be compared with the expected "
                                         r"shape \(3, 2\)"):
        golden.mismatches(np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="bit for bit"):
        golden.mismatches(np.zeros(3, np.int32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="dtype uint8 cannot be compared bit for bit with the "
                                         "expected dtype int8"):
        golden.mismatches(np.zeros(3, np.int8), np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="both be tuples"):
        golden.mismatches((np.zeros(2),), np.zeros(2))
