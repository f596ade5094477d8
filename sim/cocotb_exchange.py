"""cocotb side of `sim.cocotb_transport.CocotbTransport`: one simulator run, one exchange.

The request file (LPMAC_EXCHANGE_REQUEST, a NumPy .npz) holds the segments to run after
reset, in order: `words_<i>` (uint64) and `lasts_<i>` (uint8) of each segment, and
`budgets` (cycles allowed per segment). The earlier segments replay the exchanges since the
transport's last reset (a simulator run starts from power-up, the transport's state does
not); only the responses of the final segment are written to LPMAC_EXCHANGE_RESPONSE:
`words`, `lasts`, `status` (0 OK, 1 timeout), `cycles` (rising edges from the one that can
take the segment's first word to the one that transfers its last response beat, the
definition the Verilator harness uses) and `accepted` (request words the design took).

A segment ends, as in the Verilator harness, when every word was accepted and as many
response packets (beats with `last`) came back as its words hold `last` flags.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, Event, First

from sim.cocotb_streams import StreamSink, StreamSource, reset_dut, start_clock
from sim.fastsim import RESET_CYCLES  # as many reset edges as the Verilator harness

LAST_BIT = 1 << 64

OK, TIMEOUT = 0, 1


class _Responses:
    """Collects o_stream beats; records the edge of every transfer; signals a target number
    of response packets."""

    def __init__(self) -> None:
        self.sink: StreamSink | None = None
        self.items: list[int] = []
        self.edges: list[int] = []
        self.packets = 0
        self.target = 0
        self.reached = Event()

    def __call__(self, item: int) -> None:
        self.items.append(item)
        # The sink samples after edge n what edge n + 1 transfers.
        self.edges.append(self.sink.cycle + 1)
        if item & LAST_BIT:
            self.packets += 1
            if self.packets >= self.target:
                self.reached.set()


@cocotb.test()
async def exchange(dut) -> None:
    """Run the segments of the request file and write the final segment's responses."""
    request = np.load(os.environ["LPMAC_EXCHANGE_REQUEST"])
    budgets = [int(budget) for budget in request["budgets"]]
    start_clock(dut)
    await reset_dut(dut, RESET_CYCLES)
    responses = _Responses()
    source = StreamSource(dut, "i_stream", dut.clk)
    sink = StreamSink(dut, "o_stream", dut.clk, callback=responses)
    responses.sink = sink
    source.start()
    sink.start()
    status, first_item, started = OK, 0, 0
    for index, budget in enumerate(budgets):
        words = request[f"words_{index}"].astype(np.uint64)
        lasts = request[f"lasts_{index}"].astype(bool)
        first_item = len(responses.items)
        # Queued now (after edge `sink.cycle`), the first word is presented after the next
        # edge and can be taken at the one after.
        started = sink.cycle + 2
        sent_before = source.sent
        responses.target = responses.packets + int(lasts.sum())
        responses.reached.clear()
        deadline = sink.cycle + budget
        source.send_all(int(word) | (LAST_BIT if last else 0)
                        for word, last in zip(words.tolist(), lasts.tolist(), strict=True))
        if responses.packets < responses.target:
            await First(responses.reached.wait(), ClockCycles(dut.clk, budget))
        if responses.packets >= responses.target and not source.idle:
            await First(source.wait_idle(), ClockCycles(dut.clk, max(1, deadline - sink.cycle)))
        if responses.packets < responses.target or not source.idle:
            status = TIMEOUT
            break
    accepted = source.sent - sent_before
    items = responses.items[first_item:]
    last_edge = responses.edges[-1] if status == OK and items else sink.cycle
    np.savez(os.environ["LPMAC_EXCHANGE_RESPONSE"],
             words=np.array([item & (LAST_BIT - 1) for item in items], dtype=np.uint64),
             lasts=np.array([bool(item & LAST_BIT) for item in items], dtype=np.uint8),
             status=status, cycles=max(0, last_edge - started + 1), accepted=accepted)
