"""The coverage report: `python -m sim.coverage_report DATA_DIR [--out DIR]`.

Reads what the simulations wrote with `LPMAC_COVERAGE=DATA_DIR` (`sim.coverage`): the
Verilator counters (`DATA_DIR/verilator/*.dat`) and the protocol bins
(`DATA_DIR/protocol/*.json`), and writes to `--out` (default: DATA_DIR's parent):

* `summary.md` and `summary.json`: per design (one per accelerator configuration
  simulated) the line, branch and toggle coverage with a table per Verilog module and
  per Amaranth source file (each engine of the accelerator is its own file in hw/), the
  uncovered line points with the Python lines they come from, and the functional bins
  of the protocol with their counts per traffic source and every bin not hit;
* `annotated/<design>.v`: the design's Verilog with each line's coverage count in front
  (`%000000` marks a line with a point never hit), as Verilator's `verilator_coverage
  --annotate` writes it;
* `uncovered/<design>.md`: every uncovered point (line, branch and toggle) with its
  Verilog text and the Python source that generated it;
* `merged/<design>.dat`: the merged counters in Verilator's format.

Verilator's line points stand for statement blocks (an always block, a case item, an
`else if`), its branch points for the two ways of an `if` or a `? :`; a Verilog line is
covered when every line or branch point standing for it was hit. Points Yosys's idioms
would add with nothing to test are not in the data at all (`sim.coverage.prepare_verilog`).
`--compact` replaces the per-process Verilator files by one merged file per build first.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from golden.config import ArrayConfig

from .build import config_build_name
from .code_coverage import (
    DatPoint,
    DesignData,
    ModulePoint,
    PointSource,
    collect_designs,
    merge_dat,
    read_dat,
    write_dat,
)
from .coverage import STREAM_COVER_MODULE, STREAM_COVER_POINTS, data_label
from .fastsim import ACCELERATOR_TOP, HARNESS_TOP
from .protocol_coverage import merge_counts, protocol_bins, total

__all__ = ["WRAPPER_MODULES", "compact", "design_summary", "functional_summary", "write_report",
           "main"]

WRAPPER_MODULES = (HARNESS_TOP, STREAM_COVER_MODULE)
"""Modules the simulation adds around a design; not part of its code coverage."""

_REPO = Path(__file__).resolve().parent.parent
_LINE_KINDS = ("line", "branch")
_LIBRARY = "amaranth/"


def _group(module: str) -> str:
    """Instances of one generator share a row: `accelerator.array.grid.pe_3_4` ->
    `accelerator.array.grid.pe_*_*`, `accelerator.bfp_acc_12.datapath` ->
    `accelerator.bfp_acc_*.datapath`."""
    return re.sub(r"(?<=_)\d+(?=[_.]|$)", "*", module)


def _source_file(origin: PointSource) -> str:
    """The Python file a point is charged to: its signal's declaration, unless that is in
    the Amaranth library (a stream port's `valid`), then its condition's; a placeholder
    when the Verilog names no source."""
    ours = [location for location in origin.owner + origin.condition
            if not location.startswith(_LIBRARY)]
    locations = ours or list(origin.locations)
    if not locations:
        return "(no src attribute)"
    return locations[0].rsplit(":", 1)[0]


def _percent(hit: int, count: int) -> float | None:
    return round(100.0 * hit / count, 2) if count else None


def _figure(hit: int, count: int) -> dict[str, Any]:
    return {"hit": hit, "total": count, "percent": _percent(hit, count)}


def design_summary(design: DesignData) -> dict[str, Any]:
    """Code coverage figures of one design (see the module docstring)."""
    source = design.source
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # kind -> [hit, total]
    by_module: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0]))
    by_file: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    line_state: dict[tuple[str, int], bool] = {}
    uncovered: list[dict[str, Any]] = []
    for point, count in sorted(design.counts.items()):
        if point.kind == "user":
            continue
        hit = count > 0
        origin = source.source_of(point.module, point)
        for table in (by_kind, by_module[_group(point.module)], by_file[_source_file(origin)]):
            table[point.kind][0] += hit
            table[point.kind][1] += 1
        if point.kind in _LINE_KINDS:
            for offset in point.offsets:
                key = (point.module, offset)
                line_state[key] = line_state.get(key, True) and hit
        if not hit:
            uncovered.append(_describe(design, point, origin))
    lines_hit = sum(line_state.values())
    kinds = {kind: _figure(*cell) for kind, cell in sorted(by_kind.items())}
    return {
        "label": design.label,
        "design_id": design.design_id,
        "files": sorted(design.files),
        "lines": _figure(lines_hit, len(line_state)),
        "points": kinds,
        "modules": {name: {kind: _figure(*cell) for kind, cell in sorted(cells.items())}
                    for name, cells in sorted(by_module.items())},
        "sources": {name: {kind: _figure(*cell) for kind, cell in sorted(cells.items())}
                    for name, cells in sorted(by_file.items())},
        "uncovered": uncovered,
    }


def _describe(design: DesignData, point: ModulePoint, origin: PointSource) -> dict[str, Any]:
    module = design.source.modules[point.module]
    return {
        "kind": point.kind,
        "module": point.module,
        "verilog_line": module.first + point.offset,
        "comment": point.comment,
        "text": design.source.text(point.module, point.offset).strip(),
        "signal": origin.signal,
        "owner": list(origin.owner),
        "condition": list(origin.condition),
        "file": _source_file(origin),
    }


def stream_counts(design: DesignData) -> Counter[str]:
    """The stream cover points' counts of one design, as `stream/<label>` bins."""
    counts: Counter[str] = Counter()
    for (module, comment), count in design.wrapper_counts.items():
        if module == STREAM_COVER_MODULE:
            counts[f"stream/{comment}"] += count
    return counts


def functional_summary(config: ArrayConfig, by_source: dict[str, Counter[str]],
                       streams: Counter[str] | None) -> dict[str, Any]:
    """Every bin of `config` with its counts per source, and the bins not hit (or the
    stream bins without Verilator data)."""
    bins = protocol_bins(config)
    sources = dict(by_source)
    if streams is not None:
        sources["verilog cover points"] = Counter(
            {name: count for name, count in streams.items() if name in bins})
    counts = total(sources)
    table = {name: {"meaning": meaning, "count": counts.get(name, 0),
                    "by_source": {source: part[name] for source, part in sorted(sources.items())
                                  if part.get(name)}}
             for name, meaning in bins.items()}
    unexpected = sorted(set(counts) - set(bins))
    hit = sum(1 for entry in table.values() if entry["count"])
    return {"config": config.as_dict(), "bins": table, "hit": hit, "total": len(table),
            "percent": _percent(hit, len(table)),
            "holes": [name for name, entry in table.items() if not entry["count"]],
            "outside_the_bins": unexpected}


# --- Writing ------------------------------------------------------------------------------

def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_REPO,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=_REPO, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes" if dirty else "")


def _cell(figure: dict[str, Any] | None) -> str:
    if not figure or not figure["total"]:
        return ""
    return f"{figure['hit']:,} / {figure['total']:,} ({figure['percent']:.1f}%)"


def _annotate(design: DesignData, path: Path) -> None:
    """The design's modules with each line's lowest count in front."""
    source = design.source
    lowest: dict[int, int] = {}
    for point, count in design.counts.items():
        if point.kind not in _LINE_KINDS:
            continue
        first = source.modules[point.module].first
        for offset in point.offsets:
            line = first + offset
            lowest[line] = min(lowest.get(line, count), count)
    out = []
    for number, text in enumerate(source.lines, start=1):
        if number in lowest:
            count = lowest[number]
            prefix = f"%{count:06d}" if count == 0 else f" {min(count, 999999):06d}"
        else:
            prefix = " " * 7
        out.append(f"{prefix} {text}")
    path.write_text("\n".join(out) + "\n")


def _where(entry: dict[str, Any]) -> str:
    """An uncovered point's Python locations: the signal's declaration, then the
    condition's."""
    parts = []
    if entry["owner"]:
        parts.append(", ".join(entry["owner"]))
    if entry["condition"]:
        parts.append("condition " + ", ".join(entry["condition"]))
    return "; ".join(parts) or "(no src attribute)"


def _uncovered_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# Uncovered points of {summary['label']}", "",
             "Each point with the Verilog it stands for and the Amaranth source of the signal "
             "it drives (and, for a branch, of the signals in its condition).", ""]
    line_points = [entry for entry in summary["uncovered"] if entry["kind"] in _LINE_KINDS]
    lines += [f"## Line and branch points ({len(line_points)})", "",
              "| Verilog line | module | point | statement | drives | Amaranth source |",
              "|---|---|---|---|---|---|"]
    for entry in line_points:
        text = entry["text"][:70].replace("|", "\\|")
        lines.append(f"| {entry['verilog_line']} | `{entry['module']}` | {entry['comment']} | "
                     f"`{text}` | `{entry['signal'] or ''}` | {_where(entry)} |")
    toggles: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for entry in summary["uncovered"]:
        if entry["kind"] == "toggle":
            toggles[(entry["module"], entry["signal"] or "")].append(entry)
    lines += ["", f"## Toggle points ({sum(map(len, toggles.values()))} in {len(toggles)} "
              "signals)", "", "| module | signal | bit transitions never seen | "
              "Amaranth source |", "|---|---|---|---|"]
    for (module, signal), entries in sorted(toggles.items()):
        seen = [entry["comment"].split(":", 1)[-1] if "[" not in entry["comment"]
                else entry["comment"][entry["comment"].index("["):] for entry in entries]
        shown = ", ".join(seen[:8]) + (f", ... ({len(seen)} in all)" if len(seen) > 8 else "")
        lines.append(f"| `{module}` | `{signal}` | {shown} | {_where(entries[0])} |")
    return "\n".join(lines) + "\n"


def _table(rows: dict[str, dict[str, Any]], first: str) -> list[str]:
    out = [f"| {first} | line points | branch points | toggle points |", "|---|---|---|---|"]
    for name, figures in rows.items():
        out.append(f"| {name} | {_cell(figures.get('line'))} | {_cell(figures.get('branch'))} | "
                   f"{_cell(figures.get('toggle'))} |")
    return out


def _summary_markdown(report: dict[str, Any]) -> str:
    out = [f"# lpmac coverage (commit {report['commit']}, {report['date']})", "",
           f"Data: {report['dat_files']} Verilator coverage files, {report['protocol_files']} "
           "protocol traffic files. Lines: Verilog lines with a line or branch point, covered "
           "when every point standing for the line was hit.", "",
           "## Code coverage", "",
           "| design | lines | line points | branch points | toggle points |",
           "|---|---|---|---|---|"]
    for design in report["designs"]:
        points = design["points"]
        out.append(f"| {design['label']} | {_cell(design['lines'])} | "
                   f"{_cell(points.get('line'))} | {_cell(points.get('branch'))} | "
                   f"{_cell(points.get('toggle'))} |")
    for design in report["designs"]:
        label = design["label"]
        out += ["", f"### {label}: per Amaranth source file", "",
                "Points charged to the file that declares the signal they drive (the engine "
                "that owns it).", ""]
        out += _table(design["sources"], "source")
        out += ["", f"### {label}: per Verilog module", ""]
        out += _table({f"`{name}`": figures for name, figures in design["modules"].items()},
                      "module")
        holes = [entry for entry in design["uncovered"] if entry["kind"] in _LINE_KINDS]
        out += ["", f"### {label}: uncovered line and branch points ({len(holes)})", "",
                f"Each with its Verilog line; all of them in uncovered/{label}.md.", ""]
        by_location: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in holes:
            by_location[_where(entry)].append(entry)
        for location, entries in sorted(by_location.items()):
            signals = sorted({entry["signal"] or "?" for entry in entries})
            verilog = ", ".join(f"{entry['verilog_line']} {entry['comment']}"
                                for entry in entries[:4])
            more = f" ... ({len(entries)} points)" if len(entries) > 4 else ""
            out.append(f"- {location}: drives `{'`, `'.join(signals[:3])}`"
                       f"{' ...' if len(signals) > 3 else ''} (Verilog {verilog}{more})")
    for index, functional in enumerate(report["functional"]):
        out += ["", f"## Functional coverage of the protocol ({functional['label']})", "",
                f"{functional['hit']} of {functional['total']} bins hit."]
        if index:   # another build: the tests run only part of the protocol on it
            holes = ", ".join(f"`{name}`" for name in functional["holes"])
            out += ["", f"Not hit: {holes or 'none'}."]
            continue
        out += ["", "| bin | count | by source | meaning |", "|---|---|---|---|"]
        for name, entry in functional["bins"].items():
            by_source = ", ".join(f"{source} {count:,}"
                                  for source, count in entry["by_source"].items())
            mark = "" if entry["count"] else " **not hit**"
            out.append(f"| `{name}` | {entry['count']:,}{mark} | {by_source} | "
                       f"{entry['meaning']} |")
        if functional["outside_the_bins"]:
            out += ["", "Seen but outside the bins (a protocol rule the bins do not know): "
                    + ", ".join(f"`{name}`" for name in functional["outside_the_bins"])]
    return "\n".join(out) + "\n"


def compact(data_dir: Path) -> int:
    """Replace the Verilator files under `data_dir` by one merged file per design build
    (a run of the suite leaves one file of tens of megabytes per simulator process);
    return how many files were merged. The report reads the result as before."""
    directory = data_dir / "verilator"
    files = sorted(directory.glob("*.dat"))
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path in files:
        with open(path, errors="replace") as handle:
            handle.readline()
            first = handle.readline()
        filename = first.split("\x01f\x02", 1)[-1].split("\x01", 1)[0]
        groups[(filename, data_label(path))].append(path)
    for index, ((_filename, label), paths) in enumerate(sorted(groups.items())):
        if len(paths) == 1:
            continue
        merged = merge_dat(paths)
        target = data_file_name(directory, label, index)
        write_dat(merged, target)
        for path in paths:
            if path != target:
                path.unlink()
    return len(files)


def data_file_name(directory: Path, label: str, index: int) -> Path:
    """The name of a merged file (same pattern as `sim.coverage.data_file`)."""
    return directory / f"merged+{label}+{index}-0.dat"


def write_report(data_dir: Path, out_dir: Path, *, primary: str | None = None
                 ) -> dict[str, Any]:
    """Merge the data under `data_dir` and write the report files to `out_dir` (see the
    module docstring); return the summary as written to `summary.json`. `primary` is the
    label of the design listed first (default: the default configuration's accelerator)."""
    dat_files = sorted((data_dir / "verilator").glob("*.dat"))
    protocol_files = sorted((data_dir / "protocol").glob("*.json"))
    if not dat_files and not protocol_files:
        raise ValueError(f"{data_dir} holds no coverage data (no verilator/*.dat, no "
                         "protocol/*.json): run the tests with LPMAC_COVERAGE set to it")
    primary = primary or config_build_name(ACCELERATOR_TOP, ArrayConfig())
    merged: Counter[DatPoint] = Counter()
    labels: dict[str, str] = {}
    for path in dat_files:
        counts = read_dat(path)
        merged.update(counts)
        for point in counts:
            labels.setdefault(point.filename, data_label(path))
            break
    designs = collect_designs(merged, wrappers=WRAPPER_MODULES, repo_root=_REPO,
                              labels=labels)
    designs.sort(key=lambda design: (design.label != primary, design.label))
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = []
    for sub in ("annotated", "uncovered", "merged"):
        (out_dir / sub).mkdir(exist_ok=True)
    for design in designs:
        summary = design_summary(design)
        summaries.append(summary)
        _annotate(design, out_dir / "annotated" / f"{design.label}.v")
        (out_dir / "uncovered" / f"{design.label}.md").write_text(_uncovered_markdown(summary))
        write_dat({point: count for point, count in merged.items()
                   if point.filename in design.files}, out_dir / "merged" / f"{design.label}.dat")
    functional = []
    streams_by_label = {design.label: stream_counts(design) for design in designs}
    for config, by_source in sorted(merge_counts(protocol_files).items(),
                                    key=lambda item: item[0] != ArrayConfig()):
        label = config_build_name(ACCELERATOR_TOP, config)
        matching = [name for name in streams_by_label if name.startswith(label)]
        streams = streams_by_label[matching[0]] if len(matching) == 1 else None
        entry = functional_summary(config, by_source, streams)
        entry["label"] = label
        functional.append(entry)
    report = {
        "commit": _commit(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "dat_files": len(dat_files),
        "protocol_files": len(protocol_files),
        "designs": summaries,
        "functional": functional,
        "stream_points": STREAM_COVER_POINTS,
    }
    (out_dir / "summary.json").write_text(json.dumps(report, indent=1))
    (out_dir / "summary.md").write_text(_summary_markdown(report))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.coverage_report",
        description="Merge the coverage data of simulations run with LPMAC_COVERAGE=DATA_DIR "
                    "and write the summary, the annotated Verilog and the lists of uncovered "
                    "points.")
    parser.add_argument("data_dir", type=Path, help="the LPMAC_COVERAGE directory")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the report (default: DATA_DIR's parent)")
    parser.add_argument("--design", default=None,
                        help="label of the design to list first (default: the default "
                             "configuration's accelerator)")
    parser.add_argument("--compact", action="store_true",
                        help="first replace the per-process Verilator files by one merged "
                             "file per design build (they take tens of megabytes each)")
    args = parser.parse_args(argv)
    try:
        if args.compact:
            compact(args.data_dir.resolve())
        report = write_report(args.data_dir.resolve(),
                              (args.out or args.data_dir.resolve().parent).resolve(),
                              primary=args.design)
    except ValueError as error:
        print(f"lpmac coverage: {error}", file=sys.stderr)
        return 2
    out = (args.out or args.data_dir.resolve().parent)
    for design in report["designs"]:
        points = design["points"]
        print(f"{design['label']}: lines {_cell(design['lines'])}, toggle points "
              f"{_cell(points.get('toggle'))}")
    for functional in report["functional"]:
        print(f"{functional['label']}: functional bins {functional['hit']} / "
              f"{functional['total']}")
    print(f"report: {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
