"""The README's main job, `lpmac demo`: the digits CNN quantized by ONNX Runtime's own
quantizer, run by the model runner with every offloaded node on the Verilator model of the
RTL, 0 differing elements against ONNX Runtime, accuracy within 1 point of float."""

from __future__ import annotations

import json

import pytest

from host import Accelerator
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
    assert [m["name"] for m in demo_report["models"]] == ["QOperator per-channel",
                                                          "QDQ per-tensor"]
    for model in demo_report["models"]:
        assert model["offloaded_nodes"] == 5
        assert [node["op"] for node in model["nodes"]] == ["QLinearConv"] * 4 + ["QGemm"]
        assert all(node["cycles"] > 0 and 0 < node["utilization"] <= 1
                   for node in model["nodes"])
        assert model["cycles"] == sum(node["cycles"] for node in model["nodes"])
        assert 0 < model["utilization"] <= 1


def test_demo_accuracy_and_bit_exactness(demo_report):
    float_accuracy = demo_report["float_accuracy"]
    assert float_accuracy > 0.95
    for model in demo_report["models"]:
        assert abs(model["accuracy"] - float_accuracy) <= 0.01
        assert model["mismatches"] == 0
        assert all(node["mismatches"] == 0 for node in model["nodes"])


def test_demo_on_the_golden_model_agrees(demo_report):
    """The same demo with the golden model as the accelerator gives the same accuracies."""
    with Accelerator(backend="golden") as accelerator:
        report = run_demo(accelerator)
    assert report.float_accuracy == demo_report["float_accuracy"]
    assert [r.accuracy for r in report.results] == \
        [m["accuracy"] for m in demo_report["models"]]
    assert all(r.mismatches == 0 and r.cycles is None for r in report.results)


def test_cli_bad_usage_exits_2(capsys):
    assert main([]) == 2
    assert main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err
