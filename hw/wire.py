"""The wire formats of docs/protocol.md on the gateware side, derived from the specification.

Every field of a protocol word is written once, as a `golden.protocol.WordLayout` (the host's
codec encodes and decodes with the same object). Here a `WordLayout` becomes a `lib.data`
layout with the same fields at the same offsets (`layout`), so the gateware reads a word's
fields through a view instead of slicing bits by hand, and builds a word from values with
`pack`. tests/accel/test_wire.py ties the two: values encoded by the host decode in the
gateware, and words packed by the gateware decode on the host.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Value, signed, unsigned
from amaranth.lib import data

from golden.protocol import WORD_BITS, WordLayout

__all__ = ["WORD_LAYOUT", "layout", "view", "pack"]

WORD_LAYOUT = data.StructLayout({"data": unsigned(WORD_BITS), "last": unsigned(1)})
"""Payload of the accelerator's streams: a protocol word and the end-of-packet flag."""


def layout(word: WordLayout) -> data.FlexibleLayout:
    """The `lib.data` layout of `word`: each field at its offset, signed where it is."""
    return data.FlexibleLayout(word.width, {
        name: data.Field(signed(field.width) if field.signed else unsigned(field.width),
                         field.offset)
        for name, field in word.fields.items()})


def view(word: WordLayout, value: Value) -> data.View:
    """`value` (a word) seen through the fields of `word`."""
    return data.View(layout(word), value)


def pack(word: WordLayout, **values: object) -> Value:
    """The word holding `values` in their fields (each zero-extended or truncated to its
    field's width; fields not given and the bits between fields are 0)."""
    unknown = set(values) - set(word.fields)
    if unknown:
        raise ValueError(f"{word.name} has no field {sorted(unknown)[0]!r}")
    parts: list[Value] = []
    position = 0
    for name, field in sorted(word.fields.items(), key=lambda item: item[1].offset):
        if name not in values:
            continue
        if field.offset > position:
            parts.append(Const(0, field.offset - position))
        value = Value.cast(values[name])
        if len(value) >= field.width:
            parts.append(value[:field.width])
        else:
            parts += [value, Const(0, field.width - len(value))]
        position = field.offset + field.width
    if position < word.width:
        parts.append(Const(0, word.width - position))
    return Cat(*parts)
