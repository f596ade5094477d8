"""The formal flow itself (`sim.formal`): failures are reported with their trace, missing
tools with their names, and the stream-rule checker catches a broken stream."""

from __future__ import annotations

import pytest
from amaranth.asserts import AnySeq
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

import sim.formal
from sim.formal import (
    FormalFailure,
    FormalToolError,
    check_formal,
    formal_tools,
    sby_config,
    stream_rules,
)


class ImpatientSource(wiring.Component):
    """Breaks the stream rules: offers a new payload every cycle whether or not it was
    taken."""

    def __init__(self) -> None:
        super().__init__({"o": Out(stream.Signature(8))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        counter = Signal(8)
        m.d.sync += counter.eq(counter + 1)
        m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(counter)]
        return m


class ImpatientHarness(Elaboratable):
    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.source = source = ImpatientSource()
        m.d.comb += source.o.ready.eq(AnySeq(1))
        stream_rules(m, source.o)
        return m


def test_stream_rule_violation_is_a_failure_with_a_trace() -> None:
    with pytest.raises(FormalFailure) as caught:
        check_formal(ImpatientHarness(), name="flow-impatient-source", mode="bmc", depth=4)
    result = caught.value.result
    assert result.status == "FAIL"
    assert result.traces and all(trace.suffix == ".vcd" and trace.is_file()
                                 for trace in result.traces)
    message = str(caught.value)
    assert str(result.traces[0]) in message
    # The failed property is reported at the harness line that called stream_rules.
    assert "test_formal_flow.py" in message


def test_missing_tools_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim.formal, "_find_tool", lambda executable: None)
    formal_tools.cache_clear()
    try:
        with pytest.raises(FormalToolError, match="'yowasp-sby'.*'z3' \\(from the 'z3-solver'"):
            formal_tools()
    finally:
        formal_tools.cache_clear()


def test_sby_config_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="mode must be one of bmc, prove, cover, not 'live'"):
        sby_config(mode="live", depth=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="depth must be a positive integer, not 0"):
        sby_config(mode="bmc", depth=0)
    text = sby_config(mode="prove", depth=3, timeout=60, script=["flatten"])
    assert "mode prove\ndepth 3\n" in text and "prep -top top\nflatten\n" in text
