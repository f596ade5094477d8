"""An in-order scoreboard: the Checker of Driver -> Monitor -> Model -> Checker.

Inputs go in as they are accepted by the design (usually from a `StreamMonitor` on an
input stream); the model turns each into the item the design should produce. Outputs go
in as the design produces them. The scoreboard pairs them in order and, at the end,
`check()` reports the first mismatch with its index, the inputs that produced it, the
expected and the received item, and any lost or extra items.

It has no simulator dependency, so it also checks Amaranth-simulator testbenches and
host-level runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["Scoreboard", "ScoreboardError"]


class ScoreboardError(AssertionError):
    """The design produced something other than what the model expected."""


def _equal(expected: Any, got: Any) -> bool:
    """`==`, also for NumPy arrays (same shape and all elements equal)."""
    if getattr(expected, "shape", None) != getattr(got, "shape", None):
        return False
    result = expected == got
    if isinstance(result, bool):
        return result
    return bool(result.all())


@dataclasses.dataclass
class _Expected:
    inputs: Any
    value: Any


class Scoreboard:
    """Compare a design's outputs, in order, against a model's predictions.

    `model` maps one input item to the one expected output (use `add_expected` for
    models that are not one-to-one). `formatter` renders items in reports (e.g. unpacked
    lanes); `compare` decides equality (default `==`, NumPy-aware).
    """

    def __init__(self, model: Callable[[Any], Any] | None = None, *,
                 name: str = "scoreboard", formatter: Callable[[Any], str] = repr,
                 compare: Callable[[Any, Any], bool] = _equal) -> None:
        self.name = name
        self._model = model
        self._format = formatter
        self._compare = compare
        self._expected: list[_Expected] = []
        self._got: list[Any] = []
        self._mismatches: list[int] = []
        self._compared = 0

    # Feeding

    def add_input(self, item: Any) -> None:
        """Record an input accepted by the design and the model's prediction for it."""
        if self._model is None:
            raise TypeError(f"scoreboard {self.name!r} has no model; use add_expected()")
        self.add_expected(self._model(item), inputs=item)

    def add_expected(self, expected: Any, *, inputs: Any = None) -> None:
        """Record the next expected output, with the inputs that produce it (for reports)."""
        self._expected.append(_Expected(inputs, expected))
        self._compare_pending()

    def add_output(self, got: Any) -> None:
        """Record the next output the design produced."""
        self._got.append(got)
        self._compare_pending()

    def _compare_pending(self) -> None:
        while self._compared < min(len(self._expected), len(self._got)):
            index = self._compared
            if not self._compare(self._expected[index].value, self._got[index]):
                self._mismatches.append(index)
            self._compared += 1

    # Results

    @property
    def expected_count(self) -> int:
        return len(self._expected)

    @property
    def received_count(self) -> int:
        return len(self._got)

    @property
    def mismatch_count(self) -> int:
        return len(self._mismatches)

    @property
    def passed(self) -> bool:
        return not self._mismatches and len(self._expected) == len(self._got)

    def summary(self) -> str:
        """One line: items compared and mismatches."""
        return (f"scoreboard {self.name!r}: {len(self._got)} received, "
                f"{len(self._expected)} expected, {len(self._mismatches)} mismatched")

    def report(self) -> str:
        """Multi-line description of every problem; empty when `passed`."""
        lines: list[str] = []
        fmt = self._format
        if self._mismatches:
            index = self._mismatches[0]
            entry = self._expected[index]
            got = self._got[index]
            lines += [
                f"{len(self._mismatches)} of {min(len(self._expected), len(self._got))} "
                f"compared items mismatched; first at item {index}:",
                f"  inputs:   {fmt(entry.inputs) if entry.inputs is not None else '(not given)'}",
                f"  expected: {fmt(entry.value)}",
                f"  got:      {fmt(got)}",
            ]
            hint = self._hint(index)
            if hint:
                lines.append(f"  ({hint})")
            if len(self._mismatches) > 1:
                more = ", ".join(map(str, self._mismatches[1:6]))
                lines.append(f"  other mismatched items: {more}"
                             + (", ..." if len(self._mismatches) > 6 else ""))
        missing = len(self._expected) - len(self._got)
        if missing > 0:
            first = self._expected[len(self._got)]
            lines += [
                f"{missing} expected item(s) never arrived (lost); the first is item "
                f"{len(self._got)}:",
                f"  inputs:   {fmt(first.inputs) if first.inputs is not None else '(not given)'}",
                f"  expected: {fmt(first.value)}",
            ]
        elif missing < 0:
            index = len(self._expected)
            lines += [
                f"{-missing} unexpected extra item(s) arrived (duplicated or spurious); "
                f"the first is item {index}:",
                f"  got:      {fmt(self._got[index])}",
            ]
        return "\n".join(lines)

    def _hint(self, index: int) -> str:
        got = self._got[index]
        if index + 1 < len(self._expected) and self._compare(self._expected[index + 1].value,
                                                             got):
            return f"got equals expected item {index + 1}: an item may have been lost"
        if index > 0 and self._compare(self._got[index - 1], got):
            return f"got equals received item {index - 1}: an item may have been duplicated"
        return ""

    def check(self) -> None:
        """Raise `ScoreboardError` describing the first mismatch and any lost/extra items."""
        if not self.passed:
            raise ScoreboardError(f"scoreboard {self.name!r}: {self.report()}")
