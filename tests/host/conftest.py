"""The host API tests run on the golden model and on the Verilator model of the RTL (the
session's accelerators are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["golden", "verilator"])
def accelerator(request):
    """The API under test, on the golden model and on the Verilator model of the RTL."""
    return request.getfixturevalue(f"{request.param}_accelerator")
