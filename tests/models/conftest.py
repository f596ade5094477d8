"""Fixtures of the model runner's tests: models built once per test session (in a temporary
directory: trained with fixed seeds, exported, quantized by onnxruntime.quantization) and
one accelerator per backend."""

from __future__ import annotations

import pytest

from host import Accelerator


@pytest.fixture(scope="session")
def digits_data():
    from host.models.digits import load_data

    return load_data()


@pytest.fixture(scope="session")
def cnn(tmp_path_factory, digits_data):
    from host.models.digits import SEED, DigitsCNN

    print(f"digits CNN: seed {SEED}")
    return DigitsCNN.build(tmp_path_factory.mktemp("digits-cnn"), data=digits_data)


@pytest.fixture(scope="session")
def mlp(tmp_path_factory, digits_data):
    from host.models.digits import DigitsMLP

    return DigitsMLP.build(tmp_path_factory.mktemp("digits-mlp"), data=digits_data)


@pytest.fixture(scope="session")
def minilm(tmp_path_factory):
    from host.models.minilm import MiniLM

    return MiniLM.build(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="session")
def golden_accelerator():
    with Accelerator(backend="golden") as accelerator:
        yield accelerator


@pytest.fixture(scope="session")
def verilator_accelerator():
    with Accelerator(backend="verilator") as accelerator:
        yield accelerator
