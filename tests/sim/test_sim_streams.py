"""The cocotb stream components, scoreboard and runner, on Verilator, with a tiny design."""

# No `from __future__ import annotations` here: wiring.Component reads its members from
# the class annotations, which that import turns into strings.
import pytest
from amaranth import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sim.build import CocotbTestFailure, generate_verilog, run_cocotb

TOPLEVEL = "add_one"
COCOTB_MODULE = "tests.sim.cocotb_add_one"


class AddOne(wiring.Component):
    """Adds one to each signed 8-bit item, through a one-entry skid buffer.

    Latency 1 cycle, throughput one item per cycle. `i.ready` is registered (it is low
    exactly when the skid register is full), so no combinational path runs from `o.ready`
    to `i.ready`; `o.valid` is registered and never depends on `o.ready`.
    """

    i: In(stream.Signature(signed(8)))
    o: Out(stream.Signature(signed(9)))

    latency = 1

    def elaborate(self, platform):
        m = Module()
        skid = Signal(signed(9))
        skid_valid = Signal()
        incoming = self.i.payload + 1
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(self.o.ready | ~self.o.valid):  # the output register may load
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(incoming), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & self.i.ready):  # output stalled: park the item
            m.d.sync += [skid.eq(incoming), skid_valid.eq(1)]
        return m


class AddOnePipelined(AddOne):
    """Like AddOne but without the skid register: `i.ready` is `o.ready or not o.valid`,
    a combinational path from the sink's `ready`, which the testbench must sample right."""

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(self.o.ready | ~self.o.valid)
        with m.If(self.i.ready):
            m.d.sync += [self.o.payload.eq(self.i.payload + 1), self.o.valid.eq(self.i.valid)]
        return m


@pytest.fixture(scope="module")
def add_one_verilog() -> str:
    return generate_verilog(AddOne(), TOPLEVEL)


@pytest.mark.parametrize("design", [AddOne, AddOnePipelined])
def test_add_one_under_backpressure(design, add_one_verilog, sim_seed):
    verilog = add_one_verilog if design is AddOne else generate_verilog(design(), TOPLEVEL)
    result = run_cocotb(verilog, TOPLEVEL, COCOTB_MODULE, testcase="add_one_under_backpressure",
                        seed=sim_seed, extra_env={"LPMAC_ITEMS": 2000},
                        build_name=design.__name__.lower())
    assert result.tests == (f"{COCOTB_MODULE}.add_one_under_backpressure",)


def test_wrong_model_reports_first_mismatch(add_one_verilog, sim_seed, tmp_path):
    with pytest.raises(CocotbTestFailure) as failure:
        run_cocotb(add_one_verilog, TOPLEVEL, COCOTB_MODULE,
                   testcase="wrong_model_is_reported", seed=sim_seed, test_dir=tmp_path)
    message = str(failure.value)
    assert f"{COCOTB_MODULE}.wrong_model_is_reported failed: ScoreboardError" in message
    assert "1 of 256 compared items mismatched; first at item 133:" in message
    assert "inputs:   5" in message
    assert "expected: 7" in message
    assert "got:      6" in message
    assert f"seed {sim_seed}" in message


def test_monitor_flags_rule_breaking_source(add_one_verilog, sim_seed):
    run_cocotb(add_one_verilog, TOPLEVEL, COCOTB_MODULE,
               testcase="monitor_flags_rule_breaking_source", seed=sim_seed)
