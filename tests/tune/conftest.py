"""Fixtures of the mixed-precision tests: the digits CNN's float model (trained once per test
session, seeded), a slice of its test images, a calibrated mixed assignment."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

ROWS = 48


@pytest.fixture(scope="session")
def float_cnn(tmp_path_factory, cnn):
    """The float digits CNN (float.onnx) in its own directory."""
    path = tmp_path_factory.mktemp("float") / "digits-float.onnx"
    shutil.copy(cnn.float_model, path)
    return path


@pytest.fixture(scope="session")
def images(digits_data):
    return np.ascontiguousarray(digits_data.x_test[:ROWS])


MIXED = {
    "/conv1/Conv": ("a8w4", None),
    "/conv2/Conv": ("a4w4", 16),
    "/depthwise/Conv": ("mxint8", None),
    "/pointwise/Conv": ("mxint8w4", 32),
    "/fc/Gemm": ("mxint4", 32),
}
"""Every layer kind (plain, strided, depthwise, pointwise convolutions and the Gemm) in a
different mode, rotated where the channels allow."""


@pytest.fixture(scope="session")
def mixed_assignment(float_cnn, digits_data):
    from host.tune import calibrate

    return calibrate(float_cnn, {"image": digits_data.x_test[:128]}, MIXED)
