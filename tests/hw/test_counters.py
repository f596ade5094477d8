"""The performance counters and the bank bookkeeping in the Amaranth simulator, against
models of their rules (docs/protocol.md "READ_COUNTERS"; docs/architecture.md)."""

from __future__ import annotations

import random

from amaranth.sim import Simulator

from golden.config import ArrayConfig
from golden.protocol import COUNTER_NAMES
from hw.banks import AccumulatorBanks, ActivationBankUses
from hw.counters import PerformanceCounters

SEED = 8080


def test_counters_count_clear_and_snapshot() -> None:
    """Random events, clears and snapshots; each counter equals the model's every cycle,
    across the wraps of narrow counters (9 bits here)."""
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    dut = PerformanceCounters(ArrayConfig(), bits=9)
    mask = (1 << 9) - 1
    problems = []

    async def testbench(ctx) -> None:
        counters = dict.fromkeys(COUNTER_NAMES, 0)
        pending = dict.fromkeys(COUNTER_NAMES[1:], 0)
        snapshot = 0
        for cycle in range(5000):
            events = {"busy": rng.random() < 0.6, "input_stall": rng.random() < 0.2,
                      "output_stall": rng.random() < 0.2,
                      "macs": rng.choice([0, 64, 128])}
            clear, take = rng.random() < 0.001, rng.random() < 0.02
            for name, value in events.items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.clear, clear)
            ctx.set(dut.snapshot, take)
            await ctx.tick()
            # The model of the same edge: events are registered, then added.
            if take:
                snapshot = counters["cycles"]
            if clear:
                counters = dict.fromkeys(COUNTER_NAMES, 0)
                pending = dict.fromkeys(COUNTER_NAMES[1:], 0)
            else:
                counters["cycles"] = (counters["cycles"] + 1) & mask
                for name in pending:
                    counters[name] = (counters[name] + pending[name]) & mask
                    pending[name] = int(events[name])
            words = [int(word) for word in ctx.get(dut.words)]
            want = [snapshot, *(counters[name] for name in COUNTER_NAMES[1:])]
            if words != want:
                problems.append(f"cycle {cycle}: {words} != {want}")

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    assert not problems, problems[:5]


def test_bank_bookkeeping() -> None:
    rng = random.Random(SEED + 1)
    uses, banks = ActivationBankUses(), AccumulatorBanks()
    problems = []

    async def uses_bench(ctx) -> None:
        count, delayed = [0, 0], 0
        for cycle in range(2000):
            # (at most a few jobs per bank: the job FIFO holds three)
            increment = rng.getrandbits(2) if rng.random() < 0.3 else 0
            increment &= sum(1 << b for b in range(2) if count[b] < 4)
            decrement = 0
            if rng.random() < 0.3:
                candidates = [b for b in range(2) if count[b] - ((delayed >> b) & 1) > 0
                              and not (increment >> b) & 1]
                decrement = sum(1 << b for b in candidates[:1])
            ctx.set(uses.increment, increment)
            ctx.set(uses.decrement, decrement)
            await ctx.tick()
            for b in range(2):
                count[b] += ((increment >> b) & 1) - ((delayed >> b) & 1)
            delayed = decrement
            idle = [int(ctx.get(uses.idle)) >> b & 1 for b in range(2)]
            if idle != [int(value == 0) for value in count]:
                problems.append(f"uses cycle {cycle}: idle {idle}, counts {count}")

    async def banks_bench(ctx) -> None:
        busy, full, last = [0, 0], [0, 0], [0, 0]
        for cycle in range(2000):
            claim = rng.random() < 0.2 and 0 in busy
            claim_bank = busy.index(0) if claim else 0
            release = rng.random() < 0.2 and 1 in busy
            release_bank = busy.index(1) if release else 0
            written = rng.random() < 0.2
            written_bank = rng.randrange(2)
            claim_last = rng.randrange(2)
            for name, value in (("claim", claim), ("claim_bank", claim_bank),
                                ("claim_last", claim_last), ("release", release),
                                ("release_bank", release_bank), ("written", written),
                                ("written_bank", written_bank)):
                ctx.set(getattr(banks, name), value)
            await ctx.tick()
            if claim:
                busy[claim_bank], last[claim_bank] = 1, claim_last
            if release:
                busy[release_bank], full[release_bank] = 0, 0
            if written:                     # a write wins over a release of its bank
                full[written_bank] = 1
            for name, model in (("busy", busy), ("full", full), ("last", last)):
                value = int(ctx.get(getattr(banks, name)))
                if [value >> b & 1 for b in range(2)] != model:
                    problems.append(f"banks cycle {cycle}: {name} {value:02b}, model {model}")

    for dut, bench in ((uses, uses_bench), (banks, banks_bench)):
        simulator = Simulator(dut)
        simulator.add_clock(1e-8)
        simulator.add_testbench(bench)
        simulator.run()
    assert not problems, problems[:5]
