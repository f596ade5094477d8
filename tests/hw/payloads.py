"""Packing `lib.data.StructLayout` payloads to and from the integers on Verilog ports.

A struct payload is one flat port, the first field in the least significant bits (see
`sim.build`). `StructCodec` precomputes every field's offset, width and signedness from
the Amaranth layout once, so cocotb testbenches can pack and unpack millions of items
without going through `data.Const`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["StructCodec"]


class StructCodec:
    """Pack nested dicts of integers into a layout's bits and unpack them again.

    Field paths of nested structs are joined with "." (`"acc.mantissa"`); `pack` takes
    nested dicts, `unpack` returns a flat dict keyed by path."""

    def __init__(self, layout: data.StructLayout) -> None:
        self.layout = layout
        self.width = layout.size
        self.fields: list[tuple[str, int, int, bool]] = []
        self._collect(layout, "", 0)

    def _collect(self, layout: data.StructLayout, prefix: str, base: int) -> None:
        for name, field in layout:
            path = f"{prefix}{name}"
            if isinstance(field.shape, data.StructLayout):
                self._collect(field.shape, path + ".", base + field.offset)
            else:
                shape = Shape.cast(field.shape)
                self.fields.append((path, base + field.offset, field.width, shape.signed))

    @staticmethod
    def _lookup(values: Mapping[str, Any], path: str) -> int:
        value: Any = values
        for part in path.split("."):
            value = value[part]
        return int(value)

    def pack(self, values: Mapping[str, Any]) -> int:
        """The port value (non-negative integer) of a payload given as nested dicts."""
        packed = 0
        for path, offset, width, _signed in self.fields:
            packed |= (self._lookup(values, path) & ((1 << width) - 1)) << offset
        return packed

    def unpack(self, packed: int) -> dict[str, int]:
        """Field values (two's complement for signed fields) keyed by path."""
        values = {}
        for path, offset, width, is_signed in self.fields:
            value = (packed >> offset) & ((1 << width) - 1)
            if is_signed and value >> (width - 1):
                value -= 1 << width
            values[path] = value
        return values
