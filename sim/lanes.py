"""Packing lanes of integers into one payload integer, the way `data.ArrayLayout` does.

An Amaranth `data.ArrayLayout(signed(8), 4)` payload is one 32-bit port: element 0 in
bits 7..0, element 1 in bits 15..8, and so on. Testbenches move such payloads as Python
integers (the packed bits) and use these helpers at the edges.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

__all__ = ["pack_lanes", "unpack_lanes", "to_signed"]


def _check_width(width: int) -> None:
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be a positive integer, not {width!r}")


def pack_lanes(values: Iterable[int], width: int) -> int:
    """Pack `values` into one non-negative integer, element 0 in the low `width` bits.

    Each value may be signed or unsigned: it must lie in [-2**(width-1), 2**width) and is
    stored as its low `width` bits (two's complement for negative values).
    """
    _check_width(width)
    mask = (1 << width) - 1
    packed = 0
    for index, value in enumerate(values):
        value = operator.index(value)  # accepts NumPy integers, refuses floats
        if not -(1 << (width - 1)) <= value <= mask:
            raise ValueError(
                f"values[{index}] = {value} does not fit in {width} bits "
                f"(range {-(1 << (width - 1))} to {mask})")
        packed |= (value & mask) << (index * width)
    return packed


def to_signed(value: int, width: int) -> int:
    """The two's-complement value of the low `width` bits of `value`."""
    _check_width(width)
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def unpack_lanes(value: int, width: int, count: int, *, signed: bool = True) -> list[int]:
    """Split `value` into `count` lanes of `width` bits, element 0 from the low bits.

    Lanes are read as two's complement when `signed`, else as unsigned integers. Bits above
    `count * width` must be zero.
    """
    _check_width(width)
    value = operator.index(value)
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, not {count!r}")
    if value < 0 or value >> (width * count):
        raise ValueError(
            f"value {value:#x} is not a packed {count} x {width}-bit payload")
    mask = (1 << width) - 1
    lanes = [(value >> (index * width)) & mask for index in range(count)]
    if signed:
        sign = 1 << (width - 1)
        lanes = [lane - (1 << width) if lane & sign else lane for lane in lanes]
    return lanes
