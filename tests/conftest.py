"""pytest options and fixtures for the simulation tests.

--waves          record waveforms of every cocotb run (same as LPMAC_WAVES=1); the files
                 are listed at the end of the session
--sim-seed N     seed for the randomised simulation tests (default: a fresh random seed,
                 printed by each test so a failure can be replayed)
"""

from __future__ import annotations

import os
import random
import time

import pytest

_SESSION_START = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lpmac simulation")
    group.addoption("--waves", action="store_true",
                    help="record FST (or VCD) waveforms of cocotb runs (LPMAC_WAVES=1)")
    group.addoption("--sim-seed", type=int, default=None, metavar="N",
                    help="seed for randomised simulation tests (default: random, printed)")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SESSION_START] = time.time()
    if config.getoption("--waves"):
        os.environ["LPMAC_WAVES"] = "1"  # also reaches pytest-xdist workers' run_cocotb


@pytest.fixture(scope="session")
def digits_data():
    """scikit-learn's digits, split as the repository's models are trained."""
    from host.models.digits import load_data

    return load_data()


@pytest.fixture(scope="session")
def cnn(tmp_path_factory, digits_data):
    """The digits CNN, trained (seeded), exported and quantized once per session."""
    from host.models.digits import SEED, DigitsCNN

    print(f"digits CNN: seed {SEED}")
    return DigitsCNN.build(tmp_path_factory.mktemp("digits-cnn"), data=digits_data)


@pytest.fixture(scope="session")
def golden_accelerator():
    """One golden-model accelerator per test session."""
    from host import Accelerator

    with Accelerator(backend="golden") as accelerator:
        yield accelerator


@pytest.fixture(scope="session")
def verilator_accelerator():
    """One Verilator accelerator per test session (the build is cached on disk, so every
    pytest-xdist worker reuses it)."""
    from host import Accelerator

    with Accelerator(backend="verilator") as accelerator:
        yield accelerator


@pytest.fixture
def sim_seed(request: pytest.FixtureRequest) -> int:
    """The seed of a randomised simulation test; printed so that a failure can be replayed."""
    seed = request.config.getoption("--sim-seed")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    print(f"sim seed {seed}: replay with --sim-seed {seed}")
    return seed


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not (config.getoption("--waves") or os.environ.get("LPMAC_WAVES")):
        return
    from sim.build import cache_dir

    start = config.stash[_SESSION_START]
    waves = sorted(path for pattern in ("*/waves.fst", "*/waves.vcd")
                   for path in (cache_dir() / "runs").glob(pattern)
                   if path.stat().st_mtime >= start)
    terminalreporter.section("waveforms")
    for path in waves:
        terminalreporter.write_line(str(path))
    if not waves:
        terminalreporter.write_line("(no cocotb run recorded waveforms)")
