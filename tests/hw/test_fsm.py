# amaranth: UnusedElaboratable=no
"""hw.fsm.OneHotFSM against Amaranth's own `m.FSM` in the Amaranth simulator."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator, SimulatorContext

from hw.fsm import OneHotFSM

STATES = ("A", "B", "C", "D", "E")


def _transitions(rng: np.random.Generator) -> dict[str, list[tuple[int, str]]]:
    """Per state, (input bit, target) pairs applied in order, so that later ones override
    earlier ones when several input bits are high (including gotos to the state itself);
    the initial state's first one leaves it."""
    transitions = {state: [(int(rng.integers(0, 4)), STATES[int(rng.integers(0, len(STATES)))])
                           for _ in range(int(rng.integers(0, 4)))]
                   for state in STATES}
    transitions["A"].insert(0, (int(rng.integers(0, 4)), STATES[int(rng.integers(1, 5))]))
    return transitions


def _machines(transitions: dict[str, list[tuple[int, str]]]) -> tuple[Module, Signal, Signal,
                                                                       OneHotFSM, dict]:
    m = Module()
    inputs = Signal(4)
    reference_state = Signal(range(len(STATES)))
    with m.FSM(name="reference") as reference:
        for state in STATES:
            with m.State(state):
                for bit, target in transitions[state]:
                    with m.If(inputs[bit]):
                        m.next = target
    for index, state in enumerate(STATES):
        with m.If(reference.ongoing(state)):
            m.d.comb += reference_state.eq(index)
    onehot = OneHotFSM(m, STATES, name="onehot")
    for state in STATES:
        with onehot.state(state):
            for bit, target in transitions[state]:
                with m.If(inputs[bit]):
                    onehot.goto(target)
    return m, inputs, reference_state, onehot, transitions


@pytest.mark.parametrize("structure", range(12))
def test_one_hot_machine_follows_the_binary_one(structure: int) -> None:
    rng = np.random.default_rng(structure)
    m, inputs, reference_state, onehot, _ = _machines(_transitions(rng))
    stimulus = rng.integers(0, 16, 300)
    visited = set()

    async def testbench(ctx: SimulatorContext) -> None:
        for value in stimulus:
            ctx.set(inputs, int(value))
            flags = [ctx.get(onehot.ongoing(state)) for state in STATES]
            assert sum(flags) == 1, f"flags {flags} are not one-hot"
            assert STATES[flags.index(1)] == STATES[ctx.get(reference_state)]
            visited.add(ctx.get(reference_state))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert len(visited) > 1     # the comparison saw transitions, not one idle state


def test_last_goto_wins_and_a_state_without_goto_stays() -> None:
    transitions = {"A": [(0, "B"), (1, "C"), (2, "A")], "B": [], "C": [(0, "D"), (0, "E")],
                   "D": [], "E": []}
    m, inputs, _, onehot, _ = _machines(transitions)
    expected = [(0b0011, "C"), (0b0000, "C"), (0b0001, "E"), (0b1111, "E")]

    async def testbench(ctx: SimulatorContext) -> None:
        assert ctx.get(onehot.ongoing("A")) == 1
        for value, state in expected:
            ctx.set(inputs, value)
            await ctx.tick()
            assert [ctx.get(onehot.ongoing(s)) for s in STATES] == \
                [int(s == state) for s in STATES]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def test_misuse_is_refused_by_name() -> None:
    m = Module()
    fsm = OneHotFSM(m, ("IDLE", "RUN"))
    with pytest.raises(ValueError, match="^no state 'STOP'; the states are IDLE, RUN$"):
        fsm.ongoing("STOP")
    with pytest.raises(ValueError, match=r"^goto\('RUN'\) outside a state$"):
        fsm.goto("RUN")
    with fsm.state("IDLE"):
        with pytest.raises(ValueError, match="^state 'RUN' is inside state 'IDLE'$"):
            with fsm.state("RUN"):
                pass
    with pytest.raises(ValueError, match="^state 'IDLE' is defined twice$"):
        with fsm.state("IDLE"):
            pass
    with pytest.raises(ValueError, match="^states must be distinct names"):
        OneHotFSM(m, ("A", "A"))
