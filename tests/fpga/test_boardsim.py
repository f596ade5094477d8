"""The board top (`fpga.top.BridgedAccelerator`) on Verilator behind a pseudo-terminal,
driven by `host.serial_transport.SerialTransport` - the driver of a real board - with GEMMs
from `host.tiling` checked against the golden model, line faults injected by the harness,
and a link that dies."""

from __future__ import annotations

import numpy as np
import pytest

import golden
from fpga.boardsim import BoardSimulation
from golden.config import ArrayConfig
from golden.protocol import parse_responses
from host.serial_transport import SerialTransport
from host.tiling import GemmProgram, matmul_program, qlinear_program
from host.transport import TransportError

CONFIG = ArrayConfig(rows=4, cols=4, modes=("a8w8", "a8w4", "a4w4"), weight_buffer_depth=64,
                     activation_buffer_depth=256, accumulator_depth=64, requant_depth=64)
"""Small enough to build and simulate quickly; every integer mode."""
DIVISOR = 8


def _run(link: SerialTransport, program: GemmProgram):
    return program.decode(parse_responses(link.exchange(program.beats())))


def _gemms(rng: np.random.Generator):
    """(program, golden result, label) for a few modes and shapes that are not multiples of
    the array (13 x 10 x 11 pads M, K and N)."""
    cases = []
    a = rng.integers(-128, 128, (13, 10))
    b = rng.integers(-128, 128, (10, 11))
    cases.append((matmul_program(CONFIG, a, b), golden.matmul(a, b), "a8w8 13x10x11"))
    a = rng.integers(-128, 128, (6, 20))
    b = rng.integers(-8, 8, (20, 9))
    cases.append((matmul_program(CONFIG, a, b, mode="a8w4"), golden.matmul(a, b),
                  "a8w4 6x20x9"))
    x = rng.integers(0, 256, (9, 12)).astype(np.uint8)
    w = rng.integers(-128, 128, (7, 12)).astype(np.int8)
    bias = rng.integers(-2000, 2000, 7)
    args = dict(x_scale=0.05, x_zero_point=131, w_scale=rng.uniform(0.001, 0.01, 7),
                y_scale=0.4, y_zero_point=120, bias=bias)
    cases.append((qlinear_program(CONFIG, x, w, **args), golden.qlinear(x, w, **args),
                  "qlinear a8w8 uint8 per-channel"))
    x = rng.integers(-8, 8, (5, 16)).astype(np.int8)
    w = rng.integers(-8, 8, (10, 16)).astype(np.int8)
    args = dict(x_scale=0.5, x_zero_point=0, w_scale=0.25, y_scale=0.3, y_zero_point=-3,
                rounding="gemmlowp", out_dtype="int8")
    cases.append((qlinear_program(CONFIG, x, w, mode="a4w4", **args),
                  golden.qlinear(x, w, **args), "qlinear a4w4 int8 gemmlowp"))
    return cases


@pytest.fixture(scope="module")
def board():
    with BoardSimulation(CONFIG, divisor=DIVISOR, progress=print) as simulation:
        yield simulation


def test_gemms_over_the_pty_match_the_golden_model(board: BoardSimulation,
                                                   sim_seed: int) -> None:
    rng = np.random.default_rng(sim_seed)
    with SerialTransport(board.pty_path, timeout=1.0, retries=4) as link:
        for program, expected, label in _gemms(rng):
            result = _run(link, program)
            mismatches = int(np.count_nonzero(result != expected))
            print(f"{label}: {mismatches} mismatches, link {link.stats}")
            assert result.dtype == expected.dtype
            assert mismatches == 0, label
        assert link.stats.errors == 0          # a clean line needs no repair
        assert link.stats.retransmissions == 0


def test_transport_reopens_and_resets(board: BoardSimulation) -> None:
    # A half-finished exchange (requests sent, responses never read) leaves responses
    # behind; opening the transport again resets the board, so none of them leak.
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (4, 8))
    b = rng.integers(-128, 128, (8, 4))
    program = matmul_program(CONFIG, a, b)
    with SerialTransport(board.pty_path, timeout=1.0) as link:
        link.exchange(program.beats()[:1 + len(program.packets[0].payload)])   # CONFIGURE
    with SerialTransport(board.pty_path, timeout=1.0) as link:
        result = _run(link, program)
    assert np.array_equal(result, golden.matmul(a, b))


def _faulty_gemms(seed: int, *, flip_prob: float, drop_prob: float, max_faults: int,
                  rounds: int) -> None:
    rng = np.random.default_rng(seed)
    with BoardSimulation(CONFIG, divisor=DIVISOR, seed=seed, flip_prob=flip_prob,
                         drop_prob=drop_prob, max_faults=max_faults, fault_gap=700) as board:
        with SerialTransport(board.pty_path, timeout=0.5, retries=8) as link:
            wrong = 0
            for _ in range(rounds):
                for program, expected, _label in _gemms(rng):
                    result = _run(link, program)
                    wrong += int(np.count_nonzero(result != expected))
            stats = link.stats
    faults = board.faults
    summary = board.summary
    kinds = {(f.direction, f.kind) for f in faults}
    print(f"seed {seed}: injected {len(faults)} faults {sorted(kinds)}; harness summary "
          f"{summary}; link {stats}; wrong results {wrong}")
    assert wrong == 0
    assert summary is not None and summary["flips"] + summary["drops"] == len(faults)
    assert len(faults) > 0
    # Every fault was noticed: each one costs the host at least one NAK, timeout or damaged
    # answer (faults are at least one frame exchange apart, so no two share one).
    assert stats.errors >= len(faults)


def test_line_faults_are_all_detected_and_repaired(sim_seed: int) -> None:
    _faulty_gemms(sim_seed, flip_prob=0.004, drop_prob=0.004, max_faults=12, rounds=1)


@pytest.mark.slow
@pytest.mark.parametrize("offset", range(4))
def test_line_fault_soak(sim_seed: int, offset: int) -> None:
    _faulty_gemms(sim_seed + offset, flip_prob=0.01, drop_prob=0.01, max_faults=200,
                  rounds=6)


def test_dead_link_raises_transport_error() -> None:
    board = BoardSimulation(CONFIG, divisor=DIVISOR)
    try:
        link = SerialTransport(board.pty_path, timeout=0.2, retries=2)
        board.kill()
        a = np.ones((4, 4), dtype=np.int64)
        with pytest.raises(TransportError) as failure:
            link.exchange(matmul_program(CONFIG, a, a).beats())
        message = str(failure.value)
        print(message)
        assert "\n" not in message and board.pty_path in message
        link.close()
    finally:
        board.close()


def test_missing_port_raises_transport_error(tmp_path) -> None:
    with pytest.raises(TransportError, match="cannot open serial port"):
        SerialTransport(str(tmp_path / "no-such-tty"))
