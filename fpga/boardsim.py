"""The board top on Verilator behind a pseudo-terminal: the serial link without a board.

`BoardSimulation` builds (once, cached by `sim.harness.build_executable`) the Verilator
model of `fpga.top.BridgedAccelerator` with the C++ harness `fpga/harness/boardsim_main.cpp`,
starts it, and returns the path of the pseudo-terminal it opened. The UART runs bit by bit
at `divisor` clock cycles per bit, so `host.serial_transport.SerialTransport(path)` - the
driver that would open /dev/ttyUSB1 - talks to the simulated board exactly as to a real one.

    with BoardSimulation(config) as board:
        with SerialTransport(board.pty_path, timeout=0.5) as link:
            responses = link.exchange(program.beats())

Line faults: `flip_prob` / `drop_prob` per byte in both directions, at most `max_faults`,
at least `fault_gap` bytes apart, drawn from `seed`; `faults` lists what was injected (the
harness reports each one as it happens).
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from golden.config import ArrayConfig

__all__ = ["BoardSimulation", "Fault", "build_boardsim", "HARNESS_MAIN", "TOP_NAME"]

HARNESS_MAIN = Path(__file__).resolve().parent / "harness" / "boardsim_main.cpp"
TOP_NAME = "bridged_accelerator"
_START_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injected line fault: direction "h2d" (host to design) or "d2h", kind "drop" or
    "flip", the byte's index in its direction and the flipped bit (None for a drop)."""

    direction: str
    kind: str
    byte: int
    bit: int | None = None


def build_boardsim(config: ArrayConfig, *, divisor: int,
                   progress: Callable[[str], None] | None = None) -> Path:
    """Path of the cached harness executable for `config` at `divisor` cycles per bit."""
    from sim.build import config_build_name, generate_verilog
    from sim.harness import build_executable

    from .top import BridgedAccelerator

    verilog = generate_verilog(BridgedAccelerator(config, divisor=divisor), TOP_NAME)
    return build_executable(verilog, TOP_NAME, HARNESS_MAIN,
                            name=config_build_name(f"boardsim-d{divisor}", config),
                            progress=progress)


class BoardSimulation:
    """A running board-top simulation (a context manager; `close()` stops it).

    Parameters
    ----------
    config
        The accelerator's `ArrayConfig` (a small one simulates faster).
    divisor
        Clock cycles per UART bit (the RTL works with any divisor of at least 4).
    seed, flip_prob, drop_prob, max_faults, fault_gap
        Line-fault injection (see the module docstring); none by default.
    """

    def __init__(self, config: ArrayConfig, *, divisor: int = 8, seed: int = 1,
                 flip_prob: float = 0.0, drop_prob: float = 0.0,
                 max_faults: int | None = None, fault_gap: int = 1024,
                 progress: Callable[[str], None] | None = None) -> None:
        from .top import link_timeout_cycles

        for name, value in (("flip_prob", flip_prob), ("drop_prob", drop_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability from 0 to 1, not {value!r}")
        self.config = config
        self.divisor = divisor
        self.timeout_cycles = link_timeout_cycles(divisor)
        self._faults: list[Fault] = []
        self._summary: dict[str, int] | None = None
        self._lines: list[str] = []
        self._ready = threading.Event()
        self.pty_path: str | None = None
        executable = build_boardsim(config, divisor=divisor, progress=progress)
        command = [str(executable), "--divisor", str(divisor), "--seed", str(seed),
                   "--flip-prob", repr(flip_prob), "--drop-prob", repr(drop_prob),
                   "--max-faults", str(-1 if max_faults is None else max_faults),
                   "--fault-gap", str(fault_gap),
                   "--idle-cycles", str(2 * self.timeout_cycles + 100 * divisor)]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(_START_SECONDS) or self.pty_path is None:
            self.kill()
            error = self._process.stderr.read() if self._process.stderr else ""
            self.close()
            raise RuntimeError(f"the board simulation did not start: {error.strip()}")

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            line = line.strip()
            self._lines.append(line)
            words = line.split()
            if not words:
                continue
            if words[0] == "PTY":
                self.pty_path = words[1]
                self._ready.set()
            elif words[0] == "FAULT":
                bit = int(words[6]) if len(words) > 6 else None
                self._faults.append(Fault(words[1], words[2], int(words[4]), bit))
            elif words[0] == "SUMMARY":
                self._summary = {words[i]: int(words[i + 1]) for i in range(1, len(words), 2)}
        self._ready.set()

    @property
    def faults(self) -> list[Fault]:
        """The faults injected so far."""
        return list(self._faults)

    @property
    def summary(self) -> dict[str, int] | None:
        """{"flips", "drops", "cycles"} once the simulation has stopped."""
        return self._summary

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def kill(self) -> None:
        """Kill the simulation at once (a dead link: the pty disappears)."""
        if self.running:
            self._process.kill()
        self._process.wait()

    def close(self) -> None:
        """Stop the simulation; it prints its summary first."""
        if self.running:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(timeout=5)
        for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> BoardSimulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
