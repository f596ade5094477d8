"""Input validation shared by every public golden-model function.

Each check raises one ValueError sentence that names the argument and the expected form.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

INT_RANGES: dict[str, tuple[int, int]] = {
    "int4": (-8, 7),
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int32": (-(2**31), 2**31 - 1),
}


def int_array(name: str, value: Any, *, ndim: int | None = None,
              dtypes: tuple[str, ...] | None = None,
              value_range: tuple[int, int] | None = None,
              range_name: str | None = None) -> np.ndarray:
    """`value` as an integer ndarray, or a ValueError naming `name`."""
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a NumPy integer array, not {type(value).__name__}")
    if value.dtype.kind not in "iu":
        raise ValueError(f"{name} must have an integer dtype, not {value.dtype}")
    if dtypes is not None and value.dtype.name not in dtypes:
        raise ValueError(f"{name} must have dtype {' or '.join(dtypes)}, not {value.dtype}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, not of shape {value.shape}")
    if value.size == 0:
        raise ValueError(f"{name} must not be empty, but has shape {value.shape}")
    if value_range is not None:
        lo, hi = value_range
        vmin, vmax = int(value.min()), int(value.max())
        if vmin < lo or vmax > hi:
            what = f" ({range_name})" if range_name else ""
            raise ValueError(
                f"{name} must hold values in [{lo}, {hi}]{what}, but holds values in "
                f"[{vmin}, {vmax}]")
    return value


def int_scalar(name: str, value: Any, value_range: tuple[int, int] | None = None) -> int:
    """`value` as a Python int, or a ValueError naming `name`."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if value_range is not None and not value_range[0] <= value <= value_range[1]:
        raise ValueError(f"{name} must be in [{value_range[0]}, {value_range[1]}], not {value}")
    return value


def positive_scale(name: str, value: Any, *, length: int | None = None) -> np.ndarray:
    """A finite, positive scale: a scalar, or (when `length` is given) a 1-D array of that
    length. Returned as a float64 array (0-D for scalars)."""
    if isinstance(value, np.ndarray) and value.ndim > 0:
        if length is None:
            raise ValueError(f"{name} must be a scalar, not an array of shape {value.shape}")
        if value.ndim != 1 or value.shape[0] != length:
            raise ValueError(
                f"{name} must be a scalar or a 1-D array of length {length}, not an array "
                f"of shape {value.shape}")
        if value.dtype.kind not in "fiu":
            raise ValueError(f"{name} must hold real numbers, not dtype {value.dtype}")
        array = value.astype(np.float64)
    else:
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"{name} must be a positive finite number, not {value!r}")
        array = np.asarray(float(value), dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, but contains NaN or infinity")
    if not np.all(array > 0):
        raise ValueError(f"{name} must be positive, but contains {float(array.min())!r}")
    return array


def choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, not {value!r}")
    return value


def finite_float_array(name: str, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a NumPy float array, not {type(value).__name__}")
    if value.dtype.kind not in "fiu" or value.dtype.kind == "b":
        raise ValueError(f"{name} must hold real numbers, not dtype {value.dtype}")
    if value.size == 0:
        raise ValueError(f"{name} must not be empty, but has shape {value.shape}")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite, but contains NaN or infinity")
    return value


def axis_index(name: str, axis: Any, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer) \
            or not -ndim <= axis < ndim:
        raise ValueError(f"{name} must be an axis of a {ndim}-D array, not {axis!r}")
    return int(axis) % ndim


def is_power_of_two(value: float) -> bool:
    mantissa, _ = math.frexp(value)
    return mantissa == 0.5
