"""Accelerators shared by the host API tests: one per backend and test session (the
Verilator backend's build is cached on disk, so every pytest-xdist worker reuses it)."""

from __future__ import annotations

import pytest

from host import Accelerator


@pytest.fixture(scope="session")
def golden_accelerator():
    with Accelerator(backend="golden") as accelerator:
        yield accelerator


@pytest.fixture(scope="session")
def verilator_accelerator():
    with Accelerator(backend="verilator") as accelerator:
        yield accelerator


@pytest.fixture(params=["golden", "verilator"])
def accelerator(request):
    """The API under test, on the golden model and on the Verilator model of the RTL."""
    return request.getfixturevalue(f"{request.param}_accelerator")
