"""Fixtures of the model runner's tests: models built once per test session (in a temporary
directory: trained with fixed seeds, exported, quantized by onnxruntime.quantization)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mlp(tmp_path_factory, digits_data):
    from host.models.digits import DigitsMLP

    return DigitsMLP.build(tmp_path_factory.mktemp("digits-mlp"), data=digits_data)


@pytest.fixture(scope="session")
def minilm(tmp_path_factory):
    from host.models.minilm import MiniLM

    return MiniLM.build(tmp_path_factory.mktemp("minilm"))
