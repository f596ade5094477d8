"""`lpmac run`, checked as the contract says: `lpmac run MODEL.onnx --input NAME=FILE.npy
[--input ...] [--backend B] [--check] [--out DIR] [--json]`; outputs written as
DIR/<output name>.npy; JSON with mismatches, offloaded_nodes, cycles, macs, utilization,
wall_s; exit 1 on a mismatch with --check; exit 2 with one sentence for bad usage and bad
input."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import golden
from host.cli import main

pytestmark = pytest.mark.xdist_group("models-cnn")


@pytest.fixture(scope="module")
def model(cnn, digits_data):
    return cnn.quantized("qoperator", per_channel=True, data=digits_data)


@pytest.fixture(scope="module")
def images(tmp_path_factory, digits_data):
    path = tmp_path_factory.mktemp("inputs") / "images.npy"
    np.save(path, digits_data.x_test[:50])
    return path


def _run(capsys, *argv):
    code = main(["run", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_json_out_and_check(capsys, tmp_path, model, images):
    out = tmp_path / "results"
    code, stdout, _ = _run(capsys, model, "--input", f"image={images}", "--backend",
                           "golden", "--check", "--out", out, "--json", "--quiet")
    assert code == 0
    report = json.loads(stdout)
    for key in ("mismatches", "offloaded_nodes", "cycles", "macs", "utilization", "wall_s"):
        assert key in report
    assert report["mismatches"] == 0 and report["offloaded_nodes"] == 5
    assert report["macs"] > 0 and report["wall_s"] > 0
    assert report["cycles"] is None and report["utilization"] is None     # golden: no clock
    assert [node["op"] for node in report["nodes"]] == ["QLinearConv"] * 4 + ["QGemm"]
    assert report["out"] == [str(out / "logits.npy")]
    written = np.load(out / "logits.npy")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": np.load(images)})[0]
    assert golden.mismatches(expected, written) == 0


def test_run_text_report_on_verilator(capsys, model, images):
    code, stdout, stderr = _run(capsys, model, "--input", f"image={images}", "--check")
    assert code == 0
    assert "5 nodes on the accelerator (verilator backend)" in stdout
    assert "0 differing elements (bit-exact" in stdout
    assert "total: GEMM cycles" in stdout and "ms per inference" in stdout
    assert "CPU:" in stdout
    assert "5/5 offloaded nodes" in stderr                 # the progress bar


def test_run_exits_1_on_a_mismatch(capsys, monkeypatch, model, images):
    """A fault injected into one offloaded node's result is counted and exits 1."""
    from host.offload import OffloadedNode

    run = OffloadedNode.run

    def faulty(self, accelerator, values, log):
        out = run(self, accelerator, values, log)
        if self.op_type == "QGemm":
            out = out.copy()
            out.flat[0] ^= 1
        return out

    monkeypatch.setattr(OffloadedNode, "run", faulty)
    code, stdout, _ = _run(capsys, model, "--input", f"image={images}", "--backend",
                           "golden", "--check", "--json", "--quiet")
    assert code == 1
    report = json.loads(stdout)
    assert report["mismatches"] == 2          # the node's output and the model output
    assert [node["mismatches"] for node in report["nodes"]] == [0, 0, 0, 0, 1]


def _unloadable(path):
    node = helper.make_node("NoSuchOp", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                     [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def test_bad_usage_and_bad_input_exit_2_with_one_sentence(capsys, tmp_path, model, images,
                                                          digits_data):
    wrong_dtype = tmp_path / "f64.npy"
    np.save(wrong_dtype, digits_data.x_test[:3].astype(np.float64))
    wrong_shape = tmp_path / "shape.npy"
    np.save(wrong_shape, digits_data.x_test[:3, 0])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model\n" * 10)
    cases = [
        ([images, "--input", f"image={images}"], "is not an ONNX model"),
        ([tmp_path / "missing.onnx", "--input", f"image={images}"], "does not exist"),
        ([garbage, "--input", f"image={images}"], "is not an ONNX model"),
        ([_unloadable(tmp_path / "unknown.onnx"), "--input", f"x={images}"],
         "ONNX Runtime cannot load"),
        ([model], "input image of"),
        ([model, "--input", f"image={images}", "--input", f"extra={images}"],
         "has no input named extra"),
        ([model, "--input", f"image={wrong_dtype}"], "input image must be float32, not "
                                                     "float64"),
        ([model, "--input", f"image={wrong_shape}"], "input image must have shape [batch, 1, "
                                                     "8, 8], not [3, 8, 8]"),
        ([model, "--input", "image"], "--input takes NAME=FILE.npy"),
        ([model, "--input", f"image={tmp_path / 'none.npy'}"], "cannot read input image"),
        ([model, "--input", f"image={images}", "--input", f"image={images}"], "given twice"),
    ]
    for argv, sentence in cases:
        code, stdout, stderr = _run(capsys, *argv, "--backend", "golden", "--quiet")
        assert code == 2, (argv, stderr)
        assert stdout == ""
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lpmac run: ") \
            and sentence in lines[0], (argv, stderr)
        assert "Traceback" not in stderr


def test_strict_refusal_names_the_node(capsys, tmp_path):
    from tests.models.test_lowering import _qgemm_alpha_model

    model_bytes, a = _qgemm_alpha_model(np.random.default_rng(9000))
    path = tmp_path / "alpha.onnx"
    path.write_bytes(model_bytes)
    feed = tmp_path / "a.npy"
    np.save(feed, a)
    code, _, stderr = _run(capsys, path, "--input", f"a={feed}", "--backend", "golden",
                           "--strict", "--quiet")
    assert code == 2
    assert "QGemm" in stderr and "cannot run on the accelerator" in stderr
    code, stdout, _ = _run(capsys, path, "--input", f"a={feed}", "--backend", "golden",
                           "--check", "--quiet")
    assert code == 0 and "left to ONNX Runtime" in stdout


def test_run_help(capsys):
    assert main(["run", "--help"]) == 0
    assert "--input" in capsys.readouterr().out
