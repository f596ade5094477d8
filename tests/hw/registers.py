"""The configuration registers a CONFIGURE leaves, computed from the specification's
geometry (`golden.protocol.check_configure`): what the CONFIGURE unit must produce, and
what the engines' unit tests drive."""

from __future__ import annotations

from typing import Any

from golden.config import MODES, ArrayConfig
from golden.protocol import MX_KINDS, OUT_KINDS, Geometry, check_configure, encode_configure
from golden.requant import output_range
from hw.accumulate import pass_min

__all__ = ["expected_registers", "registers_for", "set_registers"]


def expected_registers(config: ArrayConfig, geometry: Geometry) -> dict[str, int]:
    info = config.mode(geometry.mode)
    expected = {
        "mode": MODES.index(geometry.mode), "out_kind": OUT_KINDS.index(geometry.out_kind),
        "rounding": int(geometry.rounding == "gemmlowp"), "relu": int(geometry.relu),
        "zero_point": geometry.zero_point, "m": geometry.m, "m_last": geometry.m - 1,
        "k_last": geometry.kt - 1, "groups_last": geometry.nt // geometry.group - 1,
        "group_last": geometry.group - 1, "group_log2": geometry.group.bit_length() - 1,
        "lc": geometry.lc, "pass_last": max(geometry.m, pass_min(config, geometry.mode)) - 1,
        "mx": int(info.mx), "lanes2": int(info.lanes == 2),
        "double_macs": int(info.macs_per_pe == 2), "requant": int(geometry.requant),
        "act_words": geometry.act_words, "requant_words": geometry.requant_words,
        "compute_words": geometry.compute_words, "result_words": geometry.result_words,
        # A paired drain packs a two-lane mode's outputs in pairs (MX elements one by one).
        "items_last": (geometry.items // 2 if config.drain_width == 2 and info.lanes == 2
                       and geometry.out_kind not in MX_KINDS else geometry.items) - 1,
    }
    if info.mx:
        expected["scale_words"] = geometry.scale_words
    if geometry.requant:
        expected["lo"], expected["hi"] = output_range(geometry.out_kind, geometry.zero_point,
                                                      geometry.relu)
    return expected



def registers_for(config: ArrayConfig, **fields: Any) -> tuple[Geometry, dict[str, int]]:
    """(geometry, registers) of a valid CONFIGURE given by `encode_configure` arguments."""
    status, field, geometry = check_configure(config, encode_configure(**fields))
    if geometry is None:
        raise ValueError(f"CONFIGURE {fields} is refused: {status.name} {field.name}")
    registers = expected_registers(config, geometry)
    registers.setdefault("scale_words", 0)
    registers.setdefault("lo", 0)
    registers.setdefault("hi", 0)
    return geometry, registers


def set_registers(ctx: Any, port: Any, registers: dict[str, int]) -> None:
    """Drive a `config_layout` port with `registers` in a testbench."""
    for name, value in registers.items():
        ctx.set(getattr(port, name), value)
