"""`lpmac tune` and `lpmac run --precision` as the contract says: `lpmac tune MODEL.onnx --data
DATA.npz --out DIR [--budget X] [--metric ...] [--workers N] [--cluster ADDR] [--backend B]
[--json]` (here on a Dask LocalCluster given by its address) writes DIR/precision.json,
pareto.md and pareto.png and prints a JSON object with cycles, baseline_cycles, metric and
float_metric; the chosen assignment runs with `lpmac run --precision` on the Verilator
backend, bit-exact with the golden model, and counts the cycles the tuner priced; bad usage
and bad files exit 2 with one sentence."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from host.cli import main

pytestmark = pytest.mark.xdist_group("tune-cnn")

BATCH = 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, digits_data):
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, image=digits_data.x_test[:64], labels=digits_data.y_test[:64])
    return path


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, float_cnn, dataset):
    """(out, exit code, stdout) of one `lpmac tune` run, shared by the tests of this module;
    its evaluations on a Dask LocalCluster of two worker processes, by address."""
    from distributed import LocalCluster

    out = tmp_path_factory.mktemp("tuned")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        argv = ["tune", str(float_cnn), "--data", str(dataset), "--out", str(out), "--budget",
                "3", "--batch", str(BATCH), "--calibration", "32", "--samples", "2",
                "--cluster", cluster.scheduler_address, "--json", "--quiet"]
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = main(argv)
    return out, code, stdout.getvalue()


def _main(capsys, argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tune_writes_the_assignment_and_the_report(tuned, float_cnn, dataset):
    import onnxruntime as ort

    out, code, stdout = tuned
    assert code == 0
    summary = json.loads(stdout)
    for key in ("cycles", "baseline_cycles", "metric", "float_metric"):
        assert isinstance(summary[key], int | float), key
    # The float model's accuracy, by ONNX Runtime on its own.
    with np.load(dataset) as data:
        session = ort.InferenceSession(str(float_cnn), providers=["CPUExecutionProvider"])
        logits = session.run(None, {"image": data["image"]})[0]
        assert summary["float_metric"] == pytest.approx(
            100 * np.mean(logits.argmax(axis=1) == data["labels"]))
    assert summary["metric_name"] == "accuracy" and summary["budget"] == 3
    assert summary["where"].startswith("Dask cluster tcp://") and "(2 workers)" in summary["where"]
    assert summary["cycles"] <= summary["baseline_cycles"]
    assert summary["metric"] >= summary["float_metric"] - 3
    for name in ("precision.json", "pareto.md", "pareto.png", "tune.json"):
        assert (out / name).stat().st_size > 0, name
    precision = json.loads((out / "precision.json").read_text())
    assert precision["cycles"] == summary["cycles"] and len(precision["layers"]) == 5
    table = (out / "pareto.md").read_text()
    for row in ("uniform a8w8", "uniform a8w4", "uniform a4w4", "uniform mxint8",
                "uniform mxint4", "augmented prefix", "hessian prefix"):
        assert row in table, row
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_run_precision_on_verilator(capsys, tmp_path, tuned, float_cnn, digits_data):
    """The tuned assignment on the RTL: 0 differences from the golden model, and the cycles
    the counters count for one batch are the tuner's price."""
    out, _, _ = tuned
    summary = json.loads((out / "precision.json").read_text())
    images = tmp_path / "images.npy"
    np.save(images, digits_data.x_test[:BATCH])
    code, stdout, _ = _main(capsys, ["run", float_cnn, "--precision", out / "precision.json",
                                     "--input", f"image={images}", "--check", "--out",
                                     tmp_path / "results", "--json", "--quiet"])
    assert code == 0
    report = json.loads(stdout)
    assert report["checked_against"] == "the golden model"
    assert report["mismatches"] == 0 and report["offloaded_nodes"] == 5
    assert report["cycles"] == summary["cycles"]
    assert np.load(tmp_path / "results" / "logits.npy").shape == (BATCH, 10)


def test_bad_usage_exits_2(capsys, tmp_path, float_cnn, dataset, tuned):
    out, _, _ = tuned
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "lpmac-precision", "version": 1}')
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((2, 1, 8, 8), np.float32))
    other = tmp_path / "other.onnx"
    other.write_bytes(float_cnn.read_bytes() + b"")
    model = bytearray(float_cnn.read_bytes())
    cases = [
        (["run", float_cnn, "--precision", bad, "--input", f"image={images}",
          "--backend", "golden"], "has no model_sha256"),
        (["tune", float_cnn, "--data", tmp_path / "none.npz", "--out", tmp_path / "o"],
         "does not exist"),
        (["tune", float_cnn, "--data", dataset, "--out", tmp_path / "o", "--workers", "0"],
         "--workers must be a positive integer"),
        (["tune", float_cnn, "--data", dataset, "--out", tmp_path / "o", "--metric",
          "accuracy", "--workers", "2", "--cluster", "tcp://127.0.0.1:1"], "exclude"),
        (["tune", float_cnn, "--data", dataset, "--out", tmp_path / "o", "--budget", "150"],
         "from 0 to 100, not 150"),
        (["tune", float_cnn, "--data", dataset, "--out", tmp_path / "o", "--metric", "cosine",
          "--budget", "2"], "at most 1, not 2"),
    ]
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pixels=np.zeros((4, 64), np.float32))
    cases.append((["tune", float_cnn, "--data", wrong, "--out", tmp_path / "o"],
                  "has no array image"))
    # Another model: the same graph with one weight byte changed.
    model[-100] ^= 1
    other.write_bytes(bytes(model))
    cases.append((["run", other, "--precision", out / "precision.json", "--input",
                   f"image={images}", "--backend", "golden"], "made for another model"))
    for argv, message in cases:
        code, _, stderr = _main(capsys, [*argv, "--quiet"])
        assert code == 2, argv
        assert message in stderr, (message, stderr)
        assert len(stderr.strip().splitlines()) == 1, stderr
