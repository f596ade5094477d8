"""Scoreboard, lane packing and pause generators: plain Python, no simulator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sim.cocotb_streams import no_pauses, random_pauses
from sim.lanes import pack_lanes, to_signed, unpack_lanes
from sim.scoreboard import Scoreboard, ScoreboardError


def _fed(model, inputs, outputs, **options) -> Scoreboard:
    scoreboard = Scoreboard(model, name="unit", **options)
    for item in inputs:
        scoreboard.add_input(item)
    for item in outputs:
        scoreboard.add_output(item)
    return scoreboard


def test_scoreboard_passes_matching_streams():
    scoreboard = _fed(lambda a: a + 1, range(100), range(1, 101))
    scoreboard.check()
    assert scoreboard.passed and scoreboard.received_count == 100
    assert scoreboard.summary() == "scoreboard 'unit': 100 received, 100 expected, 0 mismatched"


def test_scoreboard_reports_the_first_mismatch_of_a_wrong_model():
    wrong = lambda a: a + 2 if a in (40, 70) else a + 1  # noqa: E731
    scoreboard = _fed(wrong, range(100), range(1, 101))
    with pytest.raises(ScoreboardError) as failure:
        scoreboard.check()
    assert str(failure.value) == (
        "scoreboard 'unit': 2 of 100 compared items mismatched; first at item 40:\n"
        "  inputs:   40\n"
        "  expected: 42\n"
        "  got:      41\n"
        "  other mismatched items: 70")


def test_scoreboard_compares_outputs_that_arrive_before_their_inputs():
    scoreboard = Scoreboard(lambda a: -a)
    scoreboard.add_output(-1)
    scoreboard.add_input(1)
    scoreboard.add_output(5)
    scoreboard.add_input(2)
    assert scoreboard.mismatch_count == 1
    assert "first at item 1:" in scoreboard.report()


def test_scoreboard_detects_a_lost_item():
    outputs = [a + 1 for a in range(10) if a != 4]
    report = _fed(lambda a: a + 1, range(10), outputs).report()
    assert "first at item 4:\n  inputs:   4\n  expected: 5\n  got:      6\n" in report
    assert "got equals expected item 5: an item may have been lost" in report
    assert "1 expected item(s) never arrived (lost); the first is item 9:" in report


def test_scoreboard_detects_a_duplicated_item():
    outputs = [1, 2, 3, 3, 4, 5]
    report = _fed(lambda a: a + 1, range(5), outputs).report()
    assert "got equals received item 2: an item may have been duplicated" in report
    assert "1 unexpected extra item(s) arrived (duplicated or spurious); the first is item 5:"\
        in report


def test_scoreboard_compares_numpy_arrays_and_formats_items():
    scoreboard = Scoreboard(lambda a: a * 2, formatter=lambda v: str(np.asarray(v).tolist()))
    scoreboard.add_input(np.array([1, 2]))
    scoreboard.add_output(np.array([2, 5]))
    scoreboard.add_input(np.array([3]))
    scoreboard.add_output(np.array([6, 0]))  # wrong shape
    assert scoreboard.mismatch_count == 2
    assert "expected: [2, 4]\n  got:      [2, 5]" in scoreboard.report()


def test_scoreboard_without_model_takes_expected_items():
    scoreboard = Scoreboard()
    with pytest.raises(TypeError, match="has no model; use add_expected"):
        scoreboard.add_input(1)
    scoreboard.add_expected(3, inputs=(1, 2))
    scoreboard.add_output(4)
    assert "inputs:   (1, 2)" in scoreboard.report()


def test_lanes_round_trip_with_element_zero_in_the_low_bits():
    assert pack_lanes([1, -1, 0, -8], 4) == 0x80F1
    assert unpack_lanes(0x80F1, 4, 4) == [1, -1, 0, -8]
    assert unpack_lanes(0x80F1, 4, 4, signed=False) == [1, 15, 0, 8]
    values = [-128, 127, 0, -1, 5, np.int8(-7)]
    assert unpack_lanes(pack_lanes(values, 8), 8, len(values)) == [int(v) for v in values]
    assert to_signed(0x1FF, 9) == -1 and to_signed(0xFF, 9) == 255


def test_lanes_refuse_values_that_do_not_fit():
    with pytest.raises(ValueError, match=r"values\[1\] = 8 does not fit in 3 bits"):
        pack_lanes([0, 8], 3)
    with pytest.raises(ValueError, match="is not a packed 2 x 4-bit payload"):
        unpack_lanes(0x100, 4, 2)


def test_pause_generators():
    assert not any(itertools.islice(no_pauses(), 100))
    first = list(itertools.islice(random_pauses(0.25, seed=7), 4000))
    assert first == list(itertools.islice(random_pauses(0.25, seed=7), 4000))
    assert 0.2 < sum(first) / len(first) < 0.3
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\), not 1.0"):
        next(random_pauses(1.0))
