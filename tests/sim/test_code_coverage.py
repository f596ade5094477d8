"""The code-coverage machinery on a real Verilator coverage build of a tiny design: the
cocotb runs write `coverage.dat` files when LPMAC_COVERAGE is set, `sim.code_coverage`
reads and merges them and maps points back to the Amaranth source, and
`sim.coverage_report` writes the summary, the annotated Verilog and the uncovered list."""

from __future__ import annotations

import inspect
import json
from collections import Counter
from pathlib import Path

import pytest

from sim.build import generate_verilog, run_cocotb
from sim.code_coverage import (
    DatPoint,
    collect_designs,
    demangle,
    merge_dat,
    parse_lines,
    read_dat,
    write_dat,
)
from sim.coverage import (
    COVERAGE_VARIABLE,
    code_coverage_flags,
    coverage_dir,
    prepare_verilog,
)
from sim.coverage_report import WRAPPER_MODULES, write_report
from tests.sim.test_sim_streams import COCOTB_MODULE, TOPLEVEL, AddOne

REPO = Path(__file__).resolve().parents[2]
SOURCE = "tests/sim/test_sim_streams.py"


def _line_of(text: str) -> int:
    """The line of AddOne's source that contains `text`."""
    lines, first = inspect.getsourcelines(AddOne)
    return first + next(index for index, line in enumerate(lines) if text in line)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two cocotb runs of the add-one design built with coverage: random traffic, and the
    rule-breaking source that holds the output's ready low (so the output register never
    loads from the skid register). Returns each run's coverage file."""
    data = tmp_path_factory.mktemp("coverage")
    verilog = generate_verilog(AddOne(), TOPLEVEL)
    files = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(COVERAGE_VARIABLE, str(data))
        for testcase in ("add_one_under_backpressure", "monitor_flags_rule_breaking_source"):
            before = set((data / "verilator").glob("*.dat"))
            run_cocotb(verilog, TOPLEVEL, COCOTB_MODULE, testcase=testcase, seed=11,
                       extra_env={"LPMAC_ITEMS": 60}, build_name="add_one-coverage")
            (new,) = set((data / "verilator").glob("*.dat")) - before
            files[testcase] = new
    return files


def test_coverage_is_off_without_the_variable(monkeypatch) -> None:
    monkeypatch.delenv(COVERAGE_VARIABLE, raising=False)
    assert coverage_dir() is None and code_coverage_flags() == ()
    monkeypatch.setenv(COVERAGE_VARIABLE, "some/dir")
    assert coverage_dir() == Path("some/dir").resolve()
    assert "--coverage-toggle" in code_coverage_flags()


def test_prepare_verilog_leaves_out_anonymous_nets_and_the_dump_trigger() -> None:
    verilog = generate_verilog(AddOne(), TOPLEVEL)
    prepared = prepare_verilog(verilog)
    assert len(prepared.splitlines()) == len(verilog.splitlines())
    changed = [(old, new) for old, new in zip(verilog.splitlines(), prepared.splitlines(),
                                               strict=True) if old != new]
    assert changed
    for old, new in changed:
        assert new == f"/*verilator coverage_off*/ {old} /*verilator coverage_on*/"
        assert "\\$" in old          # an anonymous net or the dump trigger, nothing named
    assert any("dump_module" in old and "if (" in old for old, _ in changed)
    assert not any("skid_valid" in old for old, _ in changed)


def test_each_run_writes_points_of_every_kind(runs: dict[str, Path]) -> None:
    for path in runs.values():
        counts = read_dat(path)
        kinds = Counter(point.kind for point in counts)
        assert kinds["line"] and kinds["branch"] and kinds["toggle"], kinds
        assert {point.module for point in counts} == {TOPLEVEL}
        verilog = Path(next(iter(counts)).filename).read_text().splitlines()
        # No point on the lines prepare_verilog switched off.
        assert not any("coverage_off" in verilog[line - 1] for point in counts
                       for line in point.line_numbers())
        # Named signals toggle; the anonymous nets have no toggle points.
        toggled = {demangle(point.comment.split("[")[0].split(":")[0]) for point in counts
                   if point.kind == "toggle"}
        assert {"skid_valid", "o__valid", "i__ready"} <= toggled
        assert not any(name.startswith("$") for name in toggled)


def test_merging_adds_counts_and_round_trips(runs: dict[str, Path], tmp_path: Path) -> None:
    first, second = (read_dat(path) for path in runs.values())
    merged = merge_dat(runs.values())
    assert set(merged) == set(first) | set(second)
    assert all(merged[point] == first[point] + second[point] for point in merged)
    assert sum(merged.values()) == sum(first.values()) + sum(second.values())
    copy = tmp_path / "merged.dat"
    write_dat(merged, copy)
    assert read_dat(copy) == merged
    assert merge_dat([copy, copy]) == Counter({point: 2 * count
                                               for point, count in merged.items()})


def test_points_map_back_to_the_amaranth_source(runs: dict[str, Path]) -> None:
    """With ready held low the output register never loads from the skid register: that
    branch is uncovered, and it maps to the skid register's and `skid_valid`'s lines."""
    counts = read_dat(runs["monitor_flags_rule_breaking_source"])
    (design,) = collect_designs(counts, wrappers=WRAPPER_MODULES, repo_root=REPO)
    source = design.source
    missed = [point for point, count in design.counts.items()
              if count == 0 and point.kind == "branch" and point.comment == "if"
              and "skid_valid" in source.text(point.module, point.offset)]
    assert missed
    skid_valid = f"{SOURCE}:{_line_of('skid_valid = Signal()')}"
    for point in missed:
        origin = source.source_of(point.module, point)
        assert skid_valid in origin.condition, origin
    # A register's own block maps to the line that declares it.
    owners = {source.source_of(point.module, point).signal:
              source.source_of(point.module, point).owner
              for point in design.counts if point.kind == "line"}
    assert owners["skid"] == (f"{SOURCE}:{_line_of('skid = Signal(')}",)
    # The random run took that branch: merged, it is covered.
    merged = collect_designs(merge_dat(runs.values()), wrappers=WRAPPER_MODULES,
                             repo_root=REPO)[0]
    assert all(merged.counts[point] > 0 for point in missed)


def test_report_lists_the_uncovered_points(runs: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "verilator").mkdir(parents=True)
    rule_breaking = runs["monitor_flags_rule_breaking_source"]
    (data / "verilator" / rule_breaking.name).write_bytes(rule_breaking.read_bytes())
    out = tmp_path / "report"
    report = write_report(data, out, primary="add_one-coverage")
    (design,) = report["designs"]
    assert design["label"] == "add_one-coverage"
    assert 0 < design["lines"]["hit"] < design["lines"]["total"]
    holes = [entry for entry in design["uncovered"] if entry["kind"] == "branch"]
    assert holes and all(entry["file"] == SOURCE for entry in holes)
    assert json.loads((out / "summary.json").read_text())["designs"][0]["lines"] \
        == design["lines"]
    summary = (out / "summary.md").read_text()
    assert "| add_one-coverage |" in summary and SOURCE in summary
    annotated = (out / "annotated" / "add_one-coverage.v").read_text().splitlines()
    marked = [line for line in annotated if line.startswith("%000000")]
    assert any("skid_valid" in line for line in marked)
    assert str(holes[0]["verilog_line"]) in (out / "uncovered" / "add_one-coverage.md"
                                            ).read_text()


def test_bad_files_are_refused_with_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "not.dat"
    path.write_text("hello\n")
    with pytest.raises(ValueError, match="is not a Verilator coverage file"):
        read_dat(path)
    path.write_text("# SystemC::Coverage-3\nC 'broken\n")
    with pytest.raises(ValueError, match=r"not\.dat:2 is not a coverage point line"):
        read_dat(path)
    with pytest.raises(ValueError, match="holds no coverage data"):
        write_report(tmp_path, tmp_path / "out")


def test_point_lines() -> None:
    assert parse_lines("5,11") == (5, 11)
    assert parse_lines("8-10,12") == (8, 9, 10, 12)
    assert parse_lines("") == ()
    point = DatPoint("x.v", 7, 1, "branch", "m", "else", "")
    assert point.line_numbers() == (7,)
