"""Amaranth-simulator helpers for testing streaming components.

`stream_put` / `stream_get` move one payload through an `amaranth.lib.stream` interface;
`run_stream_test` drives a component with a producer testbench (random idle gaps on
`valid`), drains it with a consumer testbench (random `ready`), checks the stream rules
on the output and returns everything the consumer received, so each test compares that
against the golden model.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from amaranth.hdl import Value
from amaranth.lib import stream
from amaranth.sim import Simulator, SimulatorContext

__all__ = ["StreamTimeout", "stream_put", "stream_get", "run_stream_test"]


class StreamTimeout(AssertionError):
    """A stream transfer did not happen within the allowed number of cycles."""


async def stream_put(ctx: SimulatorContext, port: stream.Interface, payload: Any, *,
                     timeout: int = 10_000) -> None:
    """Present `payload` with `valid` high until the consumer takes it."""
    ctx.set(port.payload, payload)
    ctx.set(port.valid, 1)
    for _ in range(timeout):
        _, _, ready = await ctx.tick().sample(port.ready)
        if ready:
            ctx.set(port.valid, 0)
            return
    raise StreamTimeout(f"no ready within {timeout} cycles")


async def stream_get(ctx: SimulatorContext, port: stream.Interface, *,
                     timeout: int = 10_000) -> Any:
    """Raise `ready` until a payload arrives; return it."""
    ctx.set(port.ready, 1)
    for _ in range(timeout):
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if valid:
            ctx.set(port.ready, 0)
            return payload
    raise StreamTimeout(f"no valid within {timeout} cycles")


def run_stream_test(dut: Any, inputs: Sequence[Any], count: int, *, seed: int,
                    i_stream: str = "i_stream", o_stream: str = "o_stream",
                    convert: Callable[[Any], Any] = lambda payload: payload,
                    gap_probability: float = 0.3, stall_probability: float = 0.3,
                    setup: Callable[[SimulatorContext], None] | None = None,
                    timeout: int = 2_000) -> list[Any]:
    """Push `inputs` into `dut.<i_stream>` and collect `count` payloads from
    `dut.<o_stream>`, under random idle gaps and backpressure drawn from `seed`.

    `setup(ctx)` runs first (to drive configuration inputs); `convert` turns each received
    payload (a `data.Const`) into something comparable before the simulator moves on.
    A monitor fails the test if the output drops `valid` or changes its payload while
    waiting for `ready`; a transfer that takes more than `timeout` cycles fails it too.
    """
    rng_in = random.Random(seed * 3 + 1)
    rng_out = random.Random(seed * 3 + 2)
    source = getattr(dut, i_stream)
    sink = getattr(dut, o_stream)
    received: list[Any] = []
    violations: list[str] = []

    async def producer(ctx: SimulatorContext) -> None:
        if setup is not None:
            setup(ctx)
        for payload in inputs:
            while rng_in.random() < gap_probability:
                await ctx.tick()
            await stream_put(ctx, source, payload, timeout=timeout)

    async def consumer(ctx: SimulatorContext) -> None:
        for _ in range(count):
            while rng_out.random() < stall_probability:
                await ctx.tick()
            received.append(convert(await stream_get(ctx, sink, timeout=timeout)))

    async def monitor(ctx: SimulatorContext) -> None:
        waiting = None
        cycle = 0
        bits = Value.cast(sink.payload)
        async for _, _, valid, ready, payload in ctx.tick().sample(sink.valid, sink.ready,
                                                                   bits):
            cycle += 1
            if waiting is not None and (not valid or payload != waiting):
                violations.append(f"cycle {cycle}: output changed while not ready")
            waiting = payload if valid and not ready else None

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert not violations, violations[:5]
    assert len(received) == count, f"received {len(received)} of {count} outputs"
    return received
