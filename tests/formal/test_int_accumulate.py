"""Formal proof: integer accumulation never wraps within the K bound the host enforces.

The host refuses K > `golden.max_safe_k((-128, 127), (-128, 127))` = 131071 for int8
operands. On an R-row array each accumulator update adds one partial sum of R products, so
a GEMM with K <= max_safe_k adds at most N = max_safe_k // R partial sums.

The harness plays the accumulator SRAM for one output element and drives
`hw.accumulate.IntAccumulator` read-modify-write: the first update has `first` set, every
later one carries the value the unit last produced; the partial sum is the sum of R
products of free int8 x int8 operands (new ones every cycle). Input `valid` gaps,
backpressure on the output and resets are arbitrary (the input obeys the stream rules).
It counts accepted partial sums (at most N) and keeps their exact sum in 48 bits, and
asserts

* the property: every output equals the exact sum (as integers: no wrap modulo 2^32);
* the inductive invariants that let k-induction prove it for any number of cycles:
  |exact| <= count * R * 16384, count <= N, the output is valid exactly while an update
  is in flight, and between updates the stored accumulator equals the exact sum.

`prove` (k-induction, k = 2) proves it for all traces from reset. The bound is tight for
R = 1: with N = max_safe_k + 1 partial sums the equality is not inductive (all products
(-128) * (-128) reach 2^31, which wraps), which `test_bound_is_tight` checks.
"""

from __future__ import annotations

import inspect
import re

import pytest
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Cover, Elaboratable, Module, Mux, Signal, signed

from golden import max_safe_k
from hw.accumulate import IntAccumulator
from sim.formal import assume_stream_rules, check_formal, run_formal

INT8 = (-128, 127)
# |a * w| <= 128 * 128 for int8 a, w.
LARGEST_PRODUCT = 128 * 128


class NoWrapHarness(Elaboratable):
    """Up to `max_partials` partial sums of `products` int8 products each, accumulated
    through an IntAccumulator (module docstring)."""

    def __init__(self, products: int, max_partials: int) -> None:
        self.products = products
        self.max_partials = max_partials
        self.dut = IntAccumulator()

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.dut = dut = self.dut
        products, limit = self.products, self.max_partials
        per_partial = products * LARGEST_PRODUCT

        count = Signal(range(limit + 1))  # partial sums accepted
        exact = Signal(signed(48))        # their exact sum
        stored = Signal(signed(32))       # the accumulator SRAM word
        in_flight = Signal()

        activations = [Signal(signed(8), name=f"a_{k}") for k in range(products)]
        weights = [Signal(signed(8), name=f"w_{k}") for k in range(products)]
        m.d.comb += [operand.eq(AnySeq(8)) for operand in activations + weights]
        partial = Signal(signed(32))
        m.d.comb += partial.eq(sum(a * w for a, w in zip(activations, weights, strict=True)))

        i, o = dut.i_stream, dut.o_stream
        m.d.comb += [
            i.valid.eq(AnySeq(1) & (count < limit) & ~in_flight),
            i.payload.acc.eq(stored),
            i.payload.partial.eq(partial),
            i.payload.first.eq(count == 0),
            o.ready.eq(AnySeq(1)),
        ]
        assume_stream_rules(m, i)
        with m.If(i.valid & i.ready):
            m.d.sync += [
                count.eq(count + 1),
                exact.eq(Mux(count == 0, 0, exact) + partial),
                in_flight.eq(1),
            ]
        with m.If(o.valid & o.ready):
            m.d.sync += [stored.eq(o.payload.acc), in_flight.eq(0)]

        # Invariants (k-induction assumes them in the steps before the one it checks).
        m.d.comb += [
            Assert(count <= limit),
            Assert(exact <= count * per_partial),
            Assert(exact >= -(count * per_partial)),
            Assert(o.valid == in_flight),
        ]
        with m.If(~in_flight & (count != 0)):
            m.d.comb += Assert(stored == exact)
        # The property: no wrap.
        with m.If(o.valid):
            m.d.comb += Assert(o.payload.acc == exact, "the int32 accumulator wrapped")
        m.d.comb += Cover(o.valid & o.ready & (count == 3))
        return m


def _partials(rows: int) -> int:
    """Partial sums of a K <= max_safe_k GEMM on an array of `rows` rows (each partial sum
    is one column's dot product over the rows)."""
    return max_safe_k(INT8, INT8) // rows


@pytest.mark.parametrize("rows", [
    1, 2, 8, pytest.param(64, marks=pytest.mark.slow)], ids=lambda rows: f"R{rows}")
def test_no_wrap_within_max_safe_k(rows: int) -> None:
    harness = NoWrapHarness(products=rows, max_partials=_partials(rows))
    check_formal(harness, name=f"int-acc-no-wrap-R{rows}", mode="prove", depth=2,
                 timeout=600)


def test_no_wrap_harness_not_vacuous() -> None:
    """Three read-modify-write updates are reachable under the assumptions."""
    harness = NoWrapHarness(products=2, max_partials=_partials(2))
    check_formal(harness, name="int-acc-no-wrap-cover", mode="cover", depth=8)


def test_bound_is_tight() -> None:
    """One partial sum more than max_safe_k // 1 allows and the proof no longer goes
    through, on the wrap assertion."""
    limit = max_safe_k(INT8, INT8) + 1
    harness = NoWrapHarness(products=1, max_partials=limit)
    result = run_formal(harness, name="int-acc-wrap-R1", mode="prove", depth=2, timeout=300)
    assert result.status == "UNKNOWN", result.describe()
    wrap_line = re.compile(rf":{_line_of(NoWrapHarness, 'accumulator wrapped')}(\s|$)")
    assert any(wrap_line.search(line) for line in result.failed), result.describe()


def _line_of(cls: type, text: str) -> int:
    lines, first = inspect.getsourcelines(cls)
    return next(first + offset for offset, line in enumerate(lines) if text in line)
