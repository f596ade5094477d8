"""Bad input: the Python API raises one ValueError sentence before anything is sent, and
the CLI exits with 2 and one sentence on stderr (never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from golden.config import ArrayConfig
from host import Accelerator, AcceleratorError
from host.cli import main
from host.driver import GoldenTransport
from host.transport import TransportError


class CountingTransport(GoldenTransport):
    """The golden transport, counting the exchanges: bad input must send nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges = 0

    def exchange(self, beats):
        self.exchanges += 1
        return super().exchange(beats)


@pytest.fixture
def accelerator():
    transport = CountingTransport()
    with Accelerator(transport=transport) as accelerator:
        assert transport.exchanges == 1          # IDENTIFY
        yield accelerator
        assert transport.exchanges == 1, "bad input must be refused before anything is sent"


def _cli_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if not line.startswith("[")]
    assert len(lines) == 1, captured.err
    return lines[0]


def _save(tmp_path: Path, name: str, array: np.ndarray) -> str:
    path = tmp_path / name
    np.save(path, array)
    return str(path)


A8 = np.ones((4, 16), np.int8)
B8 = np.ones((16, 8), np.int8)
GEMM = ["gemm", "--backend", "golden", "--quiet"]


# --- Mismatched shapes ---

def test_mismatched_shapes(accelerator, capsys, tmp_path):
    with pytest.raises(ValueError, match=r"must agree on K"):
        accelerator.matmul(A8, np.ones((15, 8), np.int8))
    with pytest.raises(ValueError, match=r"must agree on K"):
        accelerator.qlinear(A8, np.ones((8, 15), np.int8), x_scale=0.1, x_zero_point=0,
                            w_scale=0.1, y_scale=0.1, y_zero_point=0, out_dtype="int8")
    with pytest.raises(ValueError, match=r"must agree on K"):
        accelerator.mx_matmul(np.ones((4, 16), np.float32), np.ones((15, 8), np.float32))
    with pytest.raises(ValueError, match=r"w_scale must be a scalar or a 1-D array of length"):
        accelerator.qlinear(A8, np.ones((8, 16), np.int8), x_scale=0.1, x_zero_point=0,
                            w_scale=np.ones(7), y_scale=0.1, y_zero_point=0)
    message = _cli_error(capsys, [*GEMM, "--a", _save(tmp_path, "a.npy", A8),
                                  "--b", _save(tmp_path, "b.npy", np.ones((15, 8), np.int8))])
    assert "must agree on K" in message


# --- Wrong dtypes ---

def test_wrong_dtypes(accelerator, capsys, tmp_path):
    with pytest.raises(ValueError, match=r"a must have an integer dtype, not float32"):
        accelerator.matmul(A8.astype(np.float32), B8)
    with pytest.raises(ValueError, match=r"x_q must have dtype uint8 or int8, not int16"):
        accelerator.qlinear(A8.astype(np.int16), B8.T.copy(), x_scale=0.1, x_zero_point=0,
                            w_scale=0.1, y_scale=0.1, y_zero_point=0)
    with pytest.raises(ValueError, match=r"w_q must have dtype int8, not int32"):
        accelerator.qlinear(A8, B8.T.astype(np.int32), x_scale=0.1, x_zero_point=0,
                            w_scale=0.1, y_scale=0.1, y_zero_point=0)
    with pytest.raises(ValueError, match=r"a must be a 2-D NumPy array, not list"):
        accelerator.matmul([[1, 2]], B8)
    with pytest.raises(ValueError, match=r"must hold real numbers"):
        accelerator.mx_matmul(np.ones((4, 16), np.complex64), np.ones((16, 8), np.float32))
    message = _cli_error(capsys, [*GEMM, "--a", _save(tmp_path, "a.npy", A8 * 0.5),
                                  "--b", _save(tmp_path, "b.npy", B8)])
    assert "a must have an integer dtype" in message


# --- Values outside the mode's range ---

def test_values_outside_the_mode(accelerator, capsys, tmp_path):
    b = B8.copy()
    b[0, 0] = 100
    with pytest.raises(ValueError, match=r"b must hold int4 values in \[-8, 7\] in mode a8w4"):
        accelerator.matmul(A8, b, mode="a8w4")
    with pytest.raises(ValueError, match=r"a must hold int8 values in \[-128, 127\]"):
        accelerator.matmul(A8.astype(np.int16) * 200, B8)
    with pytest.raises(ValueError, match=r"x_q \(as sent: x - 128 for uint8\) must hold int4"):
        accelerator.qlinear(A8.astype(np.uint8), B8.T.copy(), x_scale=0.1, x_zero_point=0,
                            w_scale=0.1, y_scale=0.1, y_zero_point=0, mode="a4w4")
    message = _cli_error(capsys, [*GEMM, "--mode", "a4w4",
                                  "--a", _save(tmp_path, "a.npy", A8 * 100),
                                  "--b", _save(tmp_path, "b.npy", B8)])
    assert "must hold int4 values" in message


# --- K beyond the overflow bound ---

def test_k_beyond_the_overflow_bound(accelerator, capsys):
    a = np.ones((1, 140_000), np.int8)
    b = np.ones((140_000, 1), np.int8)
    with pytest.raises(ValueError, match=r"K = 140000 can overflow the int32 accumulator"):
        accelerator.matmul(a, b, mode="a8w8")
    message = _cli_error(capsys, [*GEMM, "--m", "1", "--k", "140000", "--n", "1"])
    assert "can overflow the int32 accumulator" in message and "allow_wrap" in message


# --- NaN, infinite, zero and negative scales; non-finite MX inputs ---

@pytest.mark.parametrize("name, value, message", [
    ("x_scale", float("nan"), "x_scale must be finite"),
    ("y_scale", float("inf"), "y_scale must be finite"),
    ("w_scale", 0.0, "w_scale must be positive"),
    ("y_scale", -0.5, "y_scale must be positive"),
    ("w_scale", np.array([0.1] * 7 + [np.nan]), "w_scale must be finite"),
])
def test_bad_scales(accelerator, name, value, message):
    kwargs = dict(x_scale=0.1, x_zero_point=0, w_scale=0.1, y_scale=0.1, y_zero_point=0)
    kwargs[name] = value
    with pytest.raises(ValueError, match=message):
        accelerator.qlinear(A8, B8.T.copy(), **kwargs)


def test_non_finite_mx_input(accelerator, capsys, tmp_path):
    a = np.ones((4, 32), np.float32)
    a[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"a must be finite, but contains NaN or infinity"):
        accelerator.mx_matmul(a, np.ones((32, 8), np.float32))
    message = _cli_error(capsys, [*GEMM, "--mode", "mxint8",
                                  "--a", _save(tmp_path, "a.npy", a),
                                  "--b", _save(tmp_path, "b.npy", np.ones((32, 8), np.float32))])
    assert "must be finite" in message


# --- Empty and absurdly large dimensions ---

def test_empty_dimensions(accelerator, capsys):
    with pytest.raises(ValueError, match=r"a must not be empty, but has shape \(0, 16\)"):
        accelerator.matmul(np.ones((0, 16), np.int8), B8)
    with pytest.raises(ValueError, match=r"b must not be empty"):
        accelerator.mx_matmul(np.ones((4, 16), np.float32), np.ones((16, 0), np.float32))
    assert "m must be in [1," in _cli_error(capsys, [*GEMM, "--m", "0", "--k", "4", "--n", "4"])
    assert "k must be in [1," in _cli_error(capsys, [*GEMM, "--m", "2", "--k", "-3", "--n", "4"])


def test_absurd_dimensions_are_refused_before_allocating(accelerator, capsys):
    huge = np.broadcast_to(np.int8(1), (10**9, 16))        # a view: nothing allocated
    with pytest.raises(ValueError, match=r"dimensions must be at most"):
        accelerator.matmul(huge, B8)
    wide = np.broadcast_to(np.int8(1), (100_000, 16))
    with pytest.raises(ValueError, match=r"result would have 10,000,000,000 elements"):
        accelerator.matmul(wide, np.broadcast_to(np.int8(1), (16, 100_000)))
    message = _cli_error(capsys, [*GEMM, "--m", str(10**9), "--k", "8", "--n", "8"])
    assert "m must be in [1, 1,048,576], not 1,000,000,000" in message


# --- Unknown backend, mode, output; MX parameters the hardware does not have ---

def test_unknown_backend_and_mode(accelerator, capsys):
    with pytest.raises(ValueError, match=r"backend must be one of golden, verilator, cocotb, "
                                         r"serial, not 'fpga'"):
        Accelerator(backend="fpga")
    with pytest.raises(ValueError, match=r"mode must be one of a4w4, a8w4, a8w8 or None, "
                                         r"not 'a16w16'"):
        accelerator.matmul(A8, B8, mode="a16w16")
    with pytest.raises(ValueError, match=r"out_dtype must be one of"):
        accelerator.qlinear(A8, B8.T.copy(), x_scale=0.1, x_zero_point=0, w_scale=0.1,
                            y_scale=0.1, y_zero_point=0, out_dtype="int16")
    with pytest.raises(ValueError, match=r"block must be 32 \(this accelerator's block\)"):
        accelerator.mx_matmul(np.ones((4, 16), np.float32), np.ones((16, 8), np.float32),
                              block=16)
    with pytest.raises(ValueError, match=r"fmt_a x fmt_b must be MXINT8 x MXINT8, MXINT4 x "
                                         r"MXINT4 or MXINT8 x MXINT4 \(activations x weights\), "
                                         r"not mxint4 x mxint8"):
        accelerator.mx_matmul(np.ones((4, 16), np.float32), np.ones((16, 8), np.float32),
                              fmt_a="mxint4", fmt_b="mxint8")
    with pytest.raises(ValueError, match=r"the serial backend needs a port"):
        Accelerator(backend="serial")
    for argv in (["gemm", "--backend", "fpga"], ["gemm", "--mode", "a16w16"],
                 ["gemm", "--out-dtype", "int16"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "invalid choice" in err and "Traceback" not in err
    message = _cli_error(capsys, [*GEMM, "--m", "2", "--k", "8", "--n", "8",
                                  "--out-dtype", "fp32"])
    assert message == "lpmac gemm: --out-dtype must be one of uint8, int8, int4, int32 in " \
                      "mode a8w8, not 'fp32'"


def test_serial_port_that_does_not_exist(capsys, tmp_path):
    port = str(tmp_path / "no-such-tty")
    with pytest.raises((TransportError, ValueError)):
        Accelerator(backend="serial", port=port)
    _cli_error(capsys, ["info", "--backend", "serial", "--port", port, "--quiet"])


# --- A missing compiler or toolchain ---

def test_missing_toolchain_is_one_sentence(tmp_path):
    """PATH holds no compiler, make or perl: opening the Verilator backend fails with
    ToolchainError naming what is missing; the CLI says it in one sentence, exit code 2."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "VERILATOR_ROOT"}
    env["PATH"] = str(empty)
    script = ("from host import Accelerator\n"
              "from sim.toolchain import ToolchainError\n"
              "try:\n"
              "    Accelerator(backend='verilator')\n"
              "except ToolchainError as error:\n"
              "    print('ToolchainError:', error)\n")
    api = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert api.stdout.startswith("ToolchainError: Verilator builds need 'c++'"), api
    cli = subprocess.run([sys.executable, "-m", "host.cli", "gemm", "--m", "4", "--k", "8",
                          "--n", "8", "--quiet"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert cli.returncode == 2, cli
    assert "Traceback" not in cli.stderr
    assert cli.stderr.strip().splitlines() == [
        line for line in cli.stderr.strip().splitlines() if line.startswith("lpmac gemm: ")]
    assert "c++" in cli.stderr and "install a C++ compiler" in cli.stderr


# --- What the hardware says: another configuration, another protocol, refused commands ---

def test_a_config_that_differs_from_the_hardware_is_refused():
    with pytest.raises(ValueError, match=r"the accelerator reports rows 8 \(not 4\)"):
        Accelerator(ArrayConfig(rows=4), transport=GoldenTransport(ArrayConfig()))


class FutureProtocol(GoldenTransport):
    def exchange(self, beats):
        answer = super().exchange(beats)
        word, last = answer[1]
        return [answer[0], (word & ~(0xFF << 32) | 3 << 32, last), *answer[2:]]


def test_another_protocol_major_version_is_refused():
    with pytest.raises(AcceleratorError, match=r"speaks protocol 3\.0; this host speaks 2\.x"):
        Accelerator(transport=FutureProtocol())


def test_a_refused_command_is_an_accelerator_error():
    """The host believes in a bigger activation buffer than the hardware has: the
    accelerator answers CONFIGURE with TOO_LARGE."""
    with Accelerator(transport=GoldenTransport()) as accelerator:
        accelerator.config = ArrayConfig(activation_buffer_depth=65536)
        with pytest.raises(AcceleratorError, match=r"refused CONFIGURE: TOO_LARGE"):
            accelerator.matmul(np.ones((8, 16384), np.int8), np.ones((16384, 8), np.int8))


class LosingTransport(GoldenTransport):
    def exchange(self, beats):
        answer = super().exchange(beats)
        return answer if len(beats) == 1 else answer[:-3]


def test_a_lost_response_is_a_transport_error():
    with Accelerator(transport=LosingTransport()) as accelerator:
        with pytest.raises(TransportError, match=r"damaged response|responses to"):
            accelerator.matmul(A8, B8)
