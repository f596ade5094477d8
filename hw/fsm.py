"""A state machine with one flag register per state (one-hot), for control paths that
must be short.

Amaranth's `m.FSM` keeps its state in a binary-encoded register, and Yosys does not
re-encode it (its `fsm_detect` skips registers with an initial value, which every Amaranth
FSM state has). Every decision that depends on the state then decodes several state bits,
and every next-state bit combines the transitions of all states: on a state machine of a
dozen states that is several LUT levels before and after the conditions themselves.
`OneHotFSM` keeps a flag register per state instead: "in state S" is one register, and a
flag's next value only combines the transitions into and out of its own state.

    fsm = OneHotFSM(m, ("IDLE", "BUSY", "DONE"), name="job")    # the first is the initial
    with fsm.state("IDLE"):
        with m.If(start):
            fsm.goto("BUSY")
    m.d.comb += busy.eq(fsm.ongoing("BUSY"))

`goto` behaves like `m.next`: the last one that applies in a cycle wins, and a state that
takes no `goto` stays. After a reset exactly the initial state's flag is set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from amaranth.hdl import Module, Signal

__all__ = ["OneHotFSM"]


class OneHotFSM:
    """One-hot state machine on `m` in clock domain `domain` (see the module docstring).

    Parameters
    ----------
    m
        The module the state logic goes into.
    states
        The state names; the first is the initial (reset) state.
    name
        Prefix of the flag registers' names (`{name}_{state.lower()}`).
    domain
        Clock domain of the flag registers.
    """

    def __init__(self, m: Module, states: Sequence[str], *, name: str = "fsm",
                 domain: str = "sync") -> None:
        if not states or len(set(states)) != len(states):
            raise ValueError(f"states must be distinct names, at least one, not {states!r}")
        self._m = m
        self._domain = domain
        self._flags = {state: Signal(name=f"{name}_{state.lower()}", init=index == 0)
                       for index, state in enumerate(states)}
        self._current: str | None = None
        self._named: list[str] = []     # the current state and the targets named so far
        self._defined: set[str] = set()

    def ongoing(self, state: str) -> Signal:
        """The flag register that is high in `state`."""
        return self._flags[self._state_name(state)]

    @contextmanager
    def state(self, state: str) -> Iterator[None]:
        """The statements of `state`: they apply in the cycles its flag is high."""
        self._state_name(state)
        if self._current is not None:
            raise ValueError(f"state {state!r} is inside state {self._current!r}")
        if state in self._defined:
            raise ValueError(f"state {state!r} is defined twice")
        self._defined.add(state)
        with self._m.If(self._flags[state]):
            self._current, self._named = state, [state]
            try:
                yield
            finally:
                self._current, self._named = None, []

    def goto(self, target: str) -> None:
        """Be in `target` from the next cycle (inside a `state` block; the last `goto`
        that applies wins, as with `m.next`)."""
        self._state_name(target)
        if self._current is None:
            raise ValueError(f"goto({target!r}) outside a state")
        # Clear the current state and every target an earlier goto of this state may have
        # set in the same cycle; then set this one.
        self._m.d[self._domain] += [self._flags[named].eq(0)
                                    for named in self._named if named != target]
        self._m.d[self._domain] += self._flags[target].eq(1)
        if target not in self._named:
            self._named.append(target)

    def _state_name(self, state: str) -> str:
        if state not in self._flags:
            raise ValueError(f"no state {state!r}; the states are {', '.join(self._flags)}")
        return state
