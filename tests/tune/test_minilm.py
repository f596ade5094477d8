"""`lpmac tune` on all-MiniLM-L6-v2 end to end (slow: several minutes): the float model of
`python -m host.models --float` on four of the shipped sentences, unlabelled, so the budget
is a mean cosine of 0.99 to the float embeddings; the chosen assignment then runs through
`lpmac run --precision` on the Verilator backend, bit-exact with the golden model, and its
embeddings are compared with ONNX Runtime's float model."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from host.cli import main

pytestmark = pytest.mark.slow

SENTENCES = 4


def _cli(argv: list) -> tuple[int, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main([str(a) for a in argv])
    return code, stdout.getvalue()


def test_tune_minilm_and_run_it_on_verilator(tmp_path):
    import onnxruntime as ort

    from host.models import model_dir
    from host.models.minilm import MiniLM, sentences

    minilm = MiniLM.build(model_dir() / "minilm")
    feeds = minilm.tokenize(sentences()[:SENTENCES])
    data = tmp_path / "minilm.npz"
    np.savez(data, **feeds)
    out = tmp_path / "tuned"
    code, stdout = _cli(["tune", minilm.float_model, "--data", data, "--out", out,
                         "--calibration", SENTENCES, "--samples", "2", "--refine", "0",
                         "--json", "--quiet"])
    assert code == 0
    summary = json.loads(stdout)
    assert summary["metric_name"] == "cosine" and summary["budget"] == 0.99
    assert summary["cycles"] < summary["baseline_cycles"]

    inputs = []
    for name, value in feeds.items():
        np.save(tmp_path / f"{name}.npy", value)
        inputs += ["--input", f"{name}={tmp_path / f'{name}.npy'}"]
    code, stdout = _cli(["run", minilm.float_model, "--precision", out / "precision.json",
                         *inputs, "--backend", "verilator", "--check", "--out",
                         tmp_path / "run", "--json", "--quiet"])
    assert code == 0
    report = json.loads(stdout)
    assert report["mismatches"] == 0 and report["offloaded_nodes"] == 36
    assert report["cycles"] == summary["cycles"]
    # The embeddings against ONNX Runtime's float model: within the budget.
    session = ort.InferenceSession(str(minilm.float_model),
                                   providers=["CPUExecutionProvider"])
    reference = session.run(None, feeds)[0]
    got = np.load(tmp_path / "run" / "embedding.npy")
    cosine = (got * reference).sum(axis=1) / (np.linalg.norm(got, axis=1)
                                             * np.linalg.norm(reference, axis=1))
    assert cosine.mean() >= 0.99
    assert cosine.mean() == pytest.approx(summary["metric"], abs=1e-5)
