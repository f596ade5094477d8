"""The README's main job, `lpmac demo`: every inference GEMM on the Verilator model of the
RTL, accuracies asserted, every result bit for bit equal to the golden model."""

from __future__ import annotations

import json

import pytest

from host.cli import main
from host.demo import run_demo

# One worker runs the demo once for every test here (`make test` uses --dist loadgroup).
pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(scope="module")
def demo_report() -> dict:
    """`lpmac demo --json` with its default backend (verilator), run once."""
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["demo", "--json", "--quiet"])
    report = json.loads(out.getvalue())
    print(json.dumps(report, indent=2))
    assert code == 0
    return report


def test_demo_runs_on_the_simulated_rtl(demo_report):
    assert demo_report["backend"] == "verilator"
    assert demo_report["test_samples"] == 540
    assert [m["mode"] for m in demo_report["modes"]] == ["a8w8", "a8w4", "mxint8"]
    for mode in demo_report["modes"]:
        assert mode["gemms"] == 2
        assert mode["cycles"] > 0
        assert 0 < mode["utilization"] <= 1


def test_demo_accuracy_and_bit_exactness(demo_report):
    float_accuracy = demo_report["float_accuracy"]
    assert float_accuracy > 0.9
    by_mode = {m["mode"]: m for m in demo_report["modes"]}
    assert abs(by_mode["a8w8"]["accuracy"] - float_accuracy) <= 0.01
    assert abs(by_mode["a8w4"]["accuracy"] - float_accuracy) <= 0.03
    assert abs(by_mode["mxint8"]["accuracy"] - float_accuracy) <= 0.03
    assert all(m["mismatches"] == 0 for m in demo_report["modes"])


def test_demo_on_the_golden_model_agrees(demo_report):
    """The same demo with the golden model's GEMMs gives the same accuracies."""
    report = run_demo()
    assert report.float_accuracy == demo_report["float_accuracy"]
    assert [r.accuracy for r in report.results] == \
        [m["accuracy"] for m in demo_report["modes"]]
    assert all(r.mismatches == 0 and r.cycles is None for r in report.results)


def test_cli_bad_usage_exits_2(capsys):
    assert main([]) == 2
    assert main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err
