"""The slow simulation transport: every exchange is one cocotb run on Verilator.

`CocotbTransport(config)` runs `sim.cocotb_exchange` against the accelerator with
`sim.build.run_cocotb`, on the same cached build as the cocotb tests of tests/accel (same
Verilog, same `COCOTB_BUILD_ARGS`). The cocotb test drives the request beats with
`sim.cocotb_streams` sources and sinks, so this transport exercises exactly the testbench
path the tests use; it is also the baseline the Verilator harness (`sim.fastsim`) is
measured against.

A simulator run starts from power-up, while a transport keeps the accelerator's state from
one exchange to the next. So each run first replays the exchanges since the last `reset()`
(their responses are dropped; the simulation is deterministic, so they come out as before)
and then runs the new one: k exchanges without a reset cost O(k^2) simulated work. After
`reset()` the buffers start as zeros again, where the hardware would keep their contents
(docs/protocol.md: the host does not rely on them).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from golden.config import ArrayConfig
from golden.protocol import Beat
from host.transport import Transport, TransportError

from .build import (
    CocotbTestFailure,
    SimulationError,
    _complete_entry,
    build_cocotb,
    cache_dir,
    cocotb_build_key,
    config_build_name,
    run_cocotb,
    waves_format,
)
from .fastsim import (
    ACCELERATOR_TOP,
    RESET_EDGES,
    accelerator_verilog,
    prepare_request,
)
from .protocol_coverage import protocol_recorder

__all__ = ["COCOTB_BUILD_ARGS", "COCOTB_MODULE", "CocotbTransport"]

COCOTB_BUILD_ARGS = ("--no-public-flat-rw", "--public-depth", "1", "-CFLAGS", "-O1")
"""Verilator flags of the accelerator's cocotb build, shared with tests/accel. Only the top
level public (cocotb's runner asks for --public-flat-rw, which keeps every internal signal
and makes this model 3-4x slower) and -O1: about 45 s to build on two cores, ~50k cycles/s
bare, ~30k cycles/s with a stream source and sink (-O0 with every signal public: 3,400
cycles/s)."""

COCOTB_MODULE = "sim.cocotb_exchange"

_OK, _TIMEOUT = 0, 1


class CocotbTransport(Transport):
    """The accelerator under cocotb on Verilator, one simulator run per exchange (see the
    module docstring). `progress` hears about Verilog generation and the first build."""

    name = "cocotb"

    def __init__(self, config: ArrayConfig | None = None, *,
                 progress: Callable[[str], None] | None = None) -> None:
        self.config = config if config is not None else ArrayConfig()
        self._verilog = accelerator_verilog(self.config, progress)
        waves = waves_format()
        key = cocotb_build_key(self._verilog, ACCELERATOR_TOP, build_args=COCOTB_BUILD_ARGS,
                               waves=waves)
        if progress is not None and _complete_entry(cache_dir(), key) is None:
            progress("building the cocotb model of the accelerator (about a minute the first "
                     "time; later runs use the cache)")
        build_cocotb(self._verilog, ACCELERATOR_TOP, build_args=COCOTB_BUILD_ARGS, waves=waves,
                     name=config_build_name(ACCELERATOR_TOP, self.config))
        self._history: list[tuple[np.ndarray, np.ndarray, int]] = []
        self._recorder = protocol_recorder(self.config, "cocotb-transport")
        self._geometry = None
        self._total_cycles = RESET_EDGES
        self._closed = False
        self.last_cycles = 0
        """Cycles of the most recent exchange (from its first word to its last response)."""

    @property
    def simulated_cycles(self) -> int:
        """Cycles the exchanges and resets took (as `VerilatorTransport` counts them; the
        replays of earlier exchanges are not counted again)."""
        return self._total_cycles

    def _exchange(self, beats: list[Beat], *, timeout_cycles: int | None = None
                  ) -> list[Beat]:
        """Send `beats`, return the response beats (see `Transport.exchange`); one cocotb
        run. `timeout_cycles` overrides the cycle budget (`sim.fastsim.cycle_budget`)."""
        if self._closed:
            raise TransportError("the cocotb transport is closed.")
        count = len(beats)
        if count == 0:
            self.last_cycles = 0
            return []
        words, lasts, budget, geometry = prepare_request(self.config, beats, self._geometry,
                                                         timeout_cycles)
        segments = [*self._history, (words, lasts, budget)]
        with tempfile.TemporaryDirectory(prefix="lpmac-cocotb-exchange-") as scratch:
            request = Path(scratch) / "request.npz"
            response = Path(scratch) / "response.npz"
            arrays: dict[str, np.ndarray] = {"budgets": np.array([b for *_, b in segments])}
            for index, (segment_words, segment_lasts, _budget) in enumerate(segments):
                arrays[f"words_{index}"] = segment_words
                arrays[f"lasts_{index}"] = segment_lasts
            np.savez(request, **arrays)
            self._run(request, response)
            with np.load(response) as answer:
                status = int(answer["status"])
                cycles = int(answer["cycles"])
                accepted = int(answer["accepted"])
                out_words = answer["words"].astype(np.uint64)
                out_lasts = answer["lasts"].astype(bool)
        self.last_cycles = cycles
        self._total_cycles += cycles
        if status == _TIMEOUT:
            raise TransportError(
                f"the accelerator did not answer within {budget} simulated cycles (it took "
                f"{accepted} of {count} request words and returned {int(out_lasts.sum())} of "
                f"{int(lasts.sum())} response packets); reset() before the next exchange")
        self._history.append((words, lasts, budget))
        self._geometry = geometry
        answer = list(zip(out_words.tolist(), out_lasts.tolist(), strict=True))
        if self._recorder is not None:
            self._recorder.exchange(beats, answer)
        return answer

    def reset(self) -> None:
        """Reset the accelerator: the next run starts from power-up, without replays."""
        self._history.clear()
        self._geometry = None
        self._total_cycles += RESET_EDGES
        if self._recorder is not None:
            self._recorder.reset()

    def close(self) -> None:
        self._closed = True
        self._history.clear()

    def _run(self, request: Path, response: Path) -> None:
        try:
            run_cocotb(self._verilog, ACCELERATOR_TOP, COCOTB_MODULE, testcase="exchange",
                       seed=0, build_name=config_build_name(ACCELERATOR_TOP, self.config),
                       build_args=COCOTB_BUILD_ARGS,
                       extra_env={"LPMAC_EXCHANGE_REQUEST": request,
                                  "LPMAC_EXCHANGE_RESPONSE": response})
        except (CocotbTestFailure, SimulationError) as error:
            first_line = str(error).strip().splitlines()[0].rstrip(".")
            raise TransportError(f"the cocotb simulation failed: {first_line}.") from None
        if not response.is_file():
            raise TransportError("the cocotb simulation ended without writing its responses.")
