"""cocotb drivers and monitors for `amaranth.lib.stream` interfaces.

A stream named `a` on the top level appears as ports `a__valid`, `a__ready` and
`a__payload` (see `sim.build`). Payloads are handled as integers holding the packed bits;
`sim.lanes.pack_lanes` / `unpack_lanes` convert `data.ArrayLayout` payloads.

Timing model. Every component wakes on the rising edge of the clock, drives its outputs
(cocotb's writes land in the same time step, after the edge, so the design's flip-flops
see the old values), then waits for `ReadOnly()` and samples. The sampled `valid`,
`ready` and `payload` are exactly what the next rising edge will capture: a transfer
happens at that edge if and only if the sample shows `valid and ready`. Sampling in
`ReadOnly` also makes a `ready` that depends combinationally on `valid` safe to read.
Start sources and sinks after reset has been released (`reset_dut`).

The stream rules checked by `StreamMonitor` (and obeyed by `StreamSource`): once `valid`
is high it stays high, and `payload` stays unchanged, until the cycle in which `ready` is
high too.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Self

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.task import Task
from cocotb.triggers import ClockCycles, Event, ReadOnly, RisingEdge

from .scoreboard import Scoreboard

__all__ = [
    "PauseGenerator",
    "no_pauses",
    "random_pauses",
    "StreamPorts",
    "stream_ports",
    "start_clock",
    "reset_dut",
    "StreamSource",
    "StreamSink",
    "StreamMonitor",
    "StreamBench",
    "StreamProtocolError",
    "StreamTimeout",
]

PauseGenerator = Iterator[bool]
"""An endless iterator: True means "pause" (no new `valid`, or `ready` low) this cycle."""


def no_pauses() -> PauseGenerator:
    """Never pause: full throughput."""
    while True:
        yield False


def random_pauses(probability: float, seed: int | None = None) -> PauseGenerator:
    """Pause each cycle independently with `probability`, from its own `random.Random(seed)`."""
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"probability must be in [0, 1), not {probability!r}")
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


class StreamProtocolError(AssertionError):
    """A stream broke the valid/ready rules."""


class StreamTimeout(AssertionError):
    """Waiting for stream items took longer than the allowed number of cycles."""


class StreamPorts:
    """The handles of one stream of a design: `valid`, `ready` (either may be None when the
    design has no such port) and `payload`."""

    def __init__(self, dut: Any, name: str) -> None:
        self.name = name
        self.valid = getattr(dut, f"{name}__valid", None)
        self.ready = getattr(dut, f"{name}__ready", None)
        self.payload = getattr(dut, f"{name}__payload", None)
        if self.payload is None and self.valid is None:
            raise AttributeError(
                f"the design has no stream {name!r} (looked for {name}__valid and "
                f"{name}__payload)")
        self.width = len(self.payload) if self.payload is not None else 0

    def __repr__(self) -> str:
        return f"StreamPorts({self.name!r}, width={self.width})"


def stream_ports(dut: Any, name: str) -> StreamPorts:
    """Handles of stream `name` of `dut` (ports `name__valid`, `name__ready`, `name__payload`)."""
    return StreamPorts(dut, name)


def _bit(handle: Any) -> bool:
    return handle is None or str(handle.value) == "1"


def _payload(ports: StreamPorts) -> int | None:
    """The payload as an unsigned integer, or None when it has X/Z bits."""
    if ports.payload is None:
        return 0
    try:
        return ports.payload.value.to_unsigned()
    except ValueError:  # X or Z bits (never on Verilator, which is two-state)
        return None


def start_clock(dut: Any, period_ns: float = 10, *, name: str = "clk") -> Clock:
    """Start a clock on `dut.clk` (Amaranth's `sync` clock) and return it."""
    clock = Clock(getattr(dut, name), period_ns, unit="ns")
    clock.start()
    return clock


async def reset_dut(dut: Any, cycles: int = 2, *, clock: str = "clk", reset: str = "rst") -> None:
    """Hold Amaranth's synchronous `rst` high for `cycles` rising edges, then release it.

    Returns right after the edge at which `rst` is driven low; the next edge is the first
    one out of reset.
    """
    clk, rst = getattr(dut, clock), getattr(dut, reset)
    rst.value = 1
    for _ in range(cycles):
        await RisingEdge(clk)
    rst.value = 0


class _Clocked:
    """Shared plumbing: one task per component, one drive and one sample per clock cycle."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._task: Task[None] | None = None
        self.cycle = 0
        """Rising edges seen since `start()`."""

    def start(self) -> Self:
        """Start the component's task (once); returns self for chaining."""
        if self._task is None:
            self._task = cocotb.start_soon(self._run())
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        edge, settled = RisingEdge(self._clock), ReadOnly()
        self._drive_initial()
        while True:
            await edge
            self.cycle += 1
            self._drive()
            await settled
            self._sample()

    def _drive_initial(self) -> None:
        pass

    def _drive(self) -> None:
        pass

    def _sample(self) -> None:
        pass


class StreamSource(_Clocked):
    """Drive items into a design's input stream `name`, honouring `ready`.

    `pauses` decides, each cycle in which a new item could be presented, whether to leave
    `valid` low instead (idle gaps); once presented, an item is held until it is accepted.
    `idle_payload` (optional) gives the payload to drive while `valid` is low, to catch
    designs that capture payloads without `valid`. Negative items are driven as two's
    complement of the payload width.
    """

    def __init__(self, dut: Any, name: str, clock: Any, *,
                 pauses: PauseGenerator | None = None,
                 idle_payload: Callable[[], int] | None = None) -> None:
        super().__init__(clock)
        self.ports = stream_ports(dut, name)
        if self.ports.valid is None:
            raise AttributeError(f"stream {name!r} has no valid port to drive")
        self._pauses = pauses if pauses is not None else no_pauses()
        self._idle_payload = idle_payload
        self._mask = (1 << self.ports.width) - 1
        self._queue: deque[int] = deque()
        self._presented: int | None = None
        self._accepted_at_next_edge = False
        self._valid_driven = False
        self._idle = Event()
        self._idle.set()
        self.sent = 0
        """Items the design has accepted."""

    def send(self, item: int) -> None:
        """Queue one item (an integer holding the packed payload bits)."""
        if not -(1 << max(self.ports.width - 1, 0)) <= item <= self._mask:
            raise ValueError(f"item {item} does not fit stream {self.ports.name!r} "
                             f"of {self.ports.width} bits")
        self._queue.append(item & self._mask)
        self._idle.clear()

    def send_all(self, items: Iterable[int]) -> None:
        """Queue several items in order."""
        for item in items:
            self.send(item)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing waiting to be accepted."""
        return self._idle.is_set()

    async def wait_idle(self) -> None:
        """Return once every queued item has been accepted by the design."""
        await self._idle.wait()

    def _drive_initial(self) -> None:
        self.ports.valid.value = 0

    def _drive(self) -> None:
        if self._presented is not None and self._accepted_at_next_edge:
            self._presented = None
            self.sent += 1
        if self._presented is None:
            if self._queue and not next(self._pauses):
                self._presented = self._queue.popleft()
                self.ports.payload.value = self._presented
                if not self._valid_driven:
                    self.ports.valid.value = 1
                    self._valid_driven = True
            else:
                if self._valid_driven:
                    self.ports.valid.value = 0
                    self._valid_driven = False
                if self._idle_payload is not None:
                    self.ports.payload.value = self._idle_payload() & self._mask
                if not self._queue:
                    self._idle.set()

    def _sample(self) -> None:
        self._accepted_at_next_edge = self._presented is not None and _bit(self.ports.ready)


class StreamSink(_Clocked):
    """Accept items from a design's output stream `name`, with `ready` from `pauses`.

    `items` collects the payloads (unsigned integers) in arrival order; `callback`, if
    given, is called with each one as it arrives.
    """

    def __init__(self, dut: Any, name: str, clock: Any, *,
                 pauses: PauseGenerator | None = None,
                 callback: Callable[[int], None] | None = None) -> None:
        super().__init__(clock)
        self.ports = stream_ports(dut, name)
        self._pauses = pauses if pauses is not None else no_pauses()
        self._callback = callback
        self.items: list[int] = []
        self._ready = False
        self._target = 0
        self._deadline: int | None = None
        self._reached = Event()

    def _drive_initial(self) -> None:
        if self.ports.ready is not None:
            self.ports.ready.value = 0

    def _drive(self) -> None:
        ready = not next(self._pauses)
        if ready != self._ready and self.ports.ready is not None:
            self.ports.ready.value = int(ready)
        self._ready = ready
        if self._deadline is not None and self.cycle >= self._deadline:
            self._reached.set()

    def _sample(self) -> None:
        if (self._ready or self.ports.ready is None) and _bit(self.ports.valid):
            payload = _payload(self.ports)
            if payload is None:
                raise StreamProtocolError(
                    f"stream {self.ports.name!r}: payload has X/Z bits during a transfer "
                    f"at {get_sim_time('ns')} ns")
            self.items.append(payload)
            if self._callback is not None:
                self._callback(payload)
            if len(self.items) >= self._target:
                self._reached.set()

    async def wait_for(self, count: int, *, timeout_cycles: int = 100_000) -> list[int]:
        """Wait until `count` items have arrived in total; return `items`.

        Raises `StreamTimeout` if they have not after `timeout_cycles` more clock cycles.
        """
        if len(self.items) < count:
            self._target = count
            self._deadline = self.cycle + timeout_cycles
            self._reached.clear()
            await self._reached.wait()
            self._deadline = None
        if len(self.items) < count:
            raise StreamTimeout(
                f"stream {self.ports.name!r}: received {len(self.items)} of {count} items "
                f"after waiting {timeout_cycles} cycles (now {get_sim_time('ns')} ns)")
        return self.items


class StreamMonitor(_Clocked):
    """Observe stream `name` (driven by anyone), record its transfers and check its rules.

    `transfers` collects accepted payloads; `callback` is called with each. Rule breaks
    (`valid` dropped, or `payload` changed, while waiting for `ready`; X/Z on `valid`,
    `ready` or a transferred payload) are appended to `errors` and, when
    `raise_on_error`, raised at once as `StreamProtocolError` so the test fails at the
    offending time. Cycles in which `reset` (a handle) is high are ignored.
    """

    def __init__(self, dut: Any, name: str, clock: Any, *,
                 callback: Callable[[int], None] | None = None,
                 reset: Any = None, raise_on_error: bool = True) -> None:
        super().__init__(clock)
        self.ports = stream_ports(dut, name)
        self._callback = callback
        self._reset = reset
        self._raise = raise_on_error
        self.transfers: list[int] = []
        self.errors: list[str] = []
        self._waiting_payload: int | None = None  # payload held while valid and not ready

    def _error(self, message: str) -> None:
        text = (f"stream {self.ports.name!r}: {message} "
                f"(cycle {self.cycle}, {get_sim_time('ns')} ns)")
        self.errors.append(text)
        if self._raise:
            raise StreamProtocolError(text)

    def _sample(self) -> None:
        if self._reset is not None and str(self._reset.value) != "0":
            self._waiting_payload = None
            return
        ports = self.ports
        valid_text = "1" if ports.valid is None else str(ports.valid.value)
        ready_text = "1" if ports.ready is None else str(ports.ready.value)
        for text, label in ((valid_text, "valid"), (ready_text, "ready")):
            if text not in ("0", "1"):
                self._error(f"{label} is {text}")
                self._waiting_payload = None
                return
        valid, ready = valid_text == "1", ready_text == "1"
        payload = _payload(ports) if valid else None
        waiting = self._waiting_payload
        if waiting is not None:
            if not valid:
                self._error(f"valid dropped before the transfer of payload {waiting:#x}")
            elif payload != waiting:
                shown = "X/Z" if payload is None else f"{payload:#x}"
                self._error(f"payload changed from {waiting:#x} to {shown} while valid "
                            "and not ready")
        if valid and payload is None:
            self._error("payload has X/Z bits while valid")
            self._waiting_payload = None
            return
        if valid and ready:
            self.transfers.append(payload)
            if self._callback is not None:
                self._callback(payload)
            self._waiting_payload = None
        else:
            self._waiting_payload = payload if valid else None

    def check(self) -> None:
        """Raise `StreamProtocolError` listing the recorded rule breaks, if any."""
        if self.errors:
            shown = "\n".join(self.errors[:10])
            more = f"\n... and {len(self.errors) - 10} more" if len(self.errors) > 10 else ""
            raise StreamProtocolError(f"{len(self.errors)} stream rule break(s):\n{shown}{more}")


class StreamBench:
    """A unit test bench of one `i_stream` -> `o_stream` unit: a source and a sink with the
    given pauses, a monitor on each stream (stream rules), and an in-order `Scoreboard`
    that hears every output transfer through `decode` (None: the test adds outputs itself).
    Everything starts on construction; `finish` lets the pipeline settle, stops, and raises
    on any rule break or mismatch."""

    def __init__(self, dut: Any, decode: Callable[[int], Any] | None, *, name: str,
                 source_pauses: PauseGenerator, sink_pauses: PauseGenerator) -> None:
        self.scoreboard = Scoreboard(name=name)
        self.inputs = StreamMonitor(dut, "i_stream", dut.clk, reset=dut.rst)
        callback = None if decode is None else lambda p: self.scoreboard.add_output(decode(p))
        self.outputs = StreamMonitor(dut, "o_stream", dut.clk, reset=dut.rst, callback=callback)
        self.source = StreamSource(dut, "i_stream", dut.clk, pauses=source_pauses)
        self.sink = StreamSink(dut, "o_stream", dut.clk, pauses=sink_pauses)
        self.components = (self.inputs, self.outputs, self.source, self.sink)
        for component in self.components:
            component.start()

    async def finish(self, dut: Any, settle_cycles: int) -> None:
        await ClockCycles(dut.clk, settle_cycles)
        for component in self.components:
            component.stop()
        self.inputs.check()
        self.outputs.check()
        dut._log.info("%s", self.scoreboard.summary())
        self.scoreboard.check()
