"""The `lpmac` command line: every subcommand's --help, `gemm` in-process and as a real
subprocess, `info` with a backend, `bench --quick`, the hook for other subcommands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import golden
from golden.config import ArrayConfig
from host import cli
from host.cli import main

LPMAC = Path(sys.executable).with_name("lpmac")


@pytest.mark.parametrize("command", ["gemm", "run", "demo", "bench", "info"])
def test_every_subcommand_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lpmac {command}") and "--json" in out


def test_no_command_is_bad_usage(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


GEMM_MODES = [
    ("a8w8", None), ("a8w4", None), ("a4w4", None), ("a8w8", "uint8"), ("a8w4", "int8"),
    ("a4w4", "int4"), ("mxint8", None), ("mxint4", "mxint8"), ("mxint8", "mxint4")]


def _gemm_json(capsys, backend: str, mode: str, out_dtype: str | None,
               shape: tuple[int, int, int]) -> dict:
    m, k, n = shape
    argv = ["gemm", "--m", str(m), "--k", str(k), "--n", str(n), "--mode", mode, "--backend",
            backend, "--check", "--json", "--seed", "5", "--quiet"]
    if out_dtype:
        argv += ["--out-dtype", out_dtype]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    print(payload, file=sys.stderr)        # shown on failure, not part of the next stdout
    assert payload["mismatches"] == 0 and payload["checked"] is True
    assert (payload["m"], payload["k"], payload["n"], payload["mode"]) == (m, k, n, mode)
    for key in ("cycles", "utilization", "macs", "wall_s", "sim_cycles_per_s"):
        assert key in payload
    if backend != "golden":       # a simulated clock: the counters and the speed are real
        assert payload["cycles"] > 0 and 0 < payload["utilization"] <= 1
        assert payload["sim_cycles_per_s"] > 0
    return payload


@pytest.mark.parametrize("backend", ["golden", "verilator"])
@pytest.mark.parametrize("mode, out_dtype", GEMM_MODES)
def test_gemm_json(backend, mode, out_dtype, capsys):
    """`lpmac gemm --check --json` on a non-multiple shape, every mode and output kind."""
    _gemm_json(capsys, backend, mode, out_dtype, (37, 100, 29))


@pytest.mark.xdist_group("cocotb")
def test_gemm_json_on_the_cocotb_backend(capsys):
    """The same through the cocotb testbench (one simulator run per exchange), every mode
    and output kind on a smaller non-multiple shape."""
    for mode, out_dtype in GEMM_MODES:
        _gemm_json(capsys, "cocotb", mode, out_dtype, (11, 40, 19))


def test_gemm_operands_from_files_and_result_to_a_file(tmp_path, capsys):
    rng = np.random.default_rng(11)
    print("seed=11")
    a = rng.integers(-128, 128, (13, 70)).astype(np.int8)
    b = rng.integers(-8, 8, (70, 19)).astype(np.int8)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    assert main(["gemm", "--a", str(tmp_path / "a.npy"), "--b", str(tmp_path / "b.npy"),
                 "--mode", "a8w4", "--backend", "golden", "--out", str(tmp_path / "c.npy"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "13 x 70 x 19 a8w4" in out
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), golden.matmul(a, b))


def test_gemm_subprocess_on_verilator():
    """The installed console script, as a user runs it."""
    result = subprocess.run(
        [str(LPMAC), "gemm", "--m", "64", "--k", "64", "--n", "64", "--mode", "a8w8",
         "--backend", "verilator", "--check", "--json"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    print(payload)
    assert payload["mismatches"] == 0
    assert payload["backend"] == "verilator"
    assert payload["macs"] == 64**3
    assert payload["cycles"] > 64**3 // 64
    assert payload["utilization"] == pytest.approx(payload["macs"] / (payload["cycles"] * 64))
    assert payload["wall_s"] > 0
    assert "running 64 x 64 x 64 a8w8" in result.stderr      # progress on stderr


def test_info(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["default_config"] == json.loads(json.dumps(ArrayConfig().as_dict()))
    assert "verilator" in info["toolchain"] and "hardware" not in info
    assert main(["info", "--backend", "verilator", "--json", "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["hardware"]["protocol"] == "2.0"
    assert info["hardware"]["backend"] == "verilator"
    assert info["hardware"]["config"]["rows"] == ArrayConfig().rows
    assert "multiplier" not in info["hardware"]["config"]   # IDENTIFY does not carry it
    assert main(["info", "--backend", "golden"]) == 0
    assert "accelerator on the golden backend (IDENTIFY), protocol 2.0" in \
        capsys.readouterr().out


def test_bench_quick(tmp_path, capsys):
    assert main(["bench", "--quick", "--no-cocotb", "--out", str(tmp_path), "--json",
                 "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (tmp_path / "bench.md").read_text().startswith("Machine:")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "bench.json").read_text())["speed"]["cycles"] > 0
    assert report["speed"]["mismatches"] == 0
    assert all(row["mismatches"] == 0 for row in report["sweep"])
    assert all(0 < row["utilization"] <= 1 for row in report["sweep"])
    assert {row["mode"] for row in report["sweep"]} == {"a8w8", "a8w4", "mxint8"}
    gold = report["golden"]
    assert gold["mxint8_shape"] == gold["int8_shape"] and gold["mxint8_over_int8"] > 0


def test_other_packages_can_register_subcommands(monkeypatch, capsys):
    module = type(sys)("lpmac_test_plugin")

    def register(subparsers):
        extra = subparsers.add_parser("extra", help="a registered subcommand")
        extra.set_defaults(func=lambda args: print("extra ran") or 0)

    module.register = register
    monkeypatch.setitem(sys.modules, "lpmac_test_plugin", module)
    monkeypatch.setattr(cli, "COMMAND_PLUGINS", (*cli.COMMAND_PLUGINS,
                                                 "lpmac_test_plugin:register"))
    assert main(["extra"]) == 0
    assert capsys.readouterr().out == "extra ran\n"


def test_importing_the_cli_is_cheap():
    code = ("import sys, host, host.cli\n"
            "heavy = [m for m in ('numpy', 'torch', 'amaranth', 'sim.fastsim') "
            "if m in sys.modules]\n"
            "print(heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "[]", result
