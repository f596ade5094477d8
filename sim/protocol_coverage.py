"""Functional coverage of the protocol, counted from the request and response beats that the
tests exchange with the RTL.

The bins (`protocol_bins(config)`, names and what each one means):

* `status/<OPCODE>/<STATUS>[/<FIELD>]`: every (opcode, status) pair the protocol allows,
  with the field for BAD_FIELD and TOO_LARGE; `ILLEGAL` stands for every opcode that is not
  a command. The set is not written by hand: `reachable_statuses` runs the protocol's
  reference executor (`golden.reference`, the executable form of docs/protocol.md
  "Errors") over every command in every configuration state, with the length, `last`
  and bank variants that the rules distinguish, and over a grid of CONFIGURE fields
  around every limit `golden.protocol.check_configure` applies;
* `output/<mode>/<out_kind>`: a COMPUTE that ran in each built mode with each output kind
  that mode offers (from `check_configure`); `requant/<rounding>/<relu>`: the
  requantizer's rounding semantics with and without ReLU;
* `bank/...`: LOAD_ACTIVATIONS, LOAD_SCALES and COMPUTE on bank 0 and on bank 1; a
  COMPUTE right after a COMPUTE (no fence between them: the jobs overlap) from bank a to
  bank b; a LOAD_ACTIVATIONS after a COMPUTE on the same bank (it must wait for the job)
  and on the other bank (it overlaps the job);
* `kslice/...`: a COMPUTE whose K is one K-tile or several (the accumulators overwrite or
  add), in MX modes one K-block or several (BFP accumulation across blocks), and K-slices
  proper: several int32 GEMMs of one mode and N between a CLEAR_COUNTERS and its
  READ_COUNTERS (`host.Accelerator.matmul` splits a K that does not fit a bank that way
  and adds the results);
* `stall/...`: a READ_COUNTERS whose input-stall or output-stall counter is non-zero (the
  array waited for weights; the sequencer waited for an accumulator bank);
* `stream/...`: the cycles the accelerator's stream ports saw an input gap inside a packet,
  input backpressure, an output stall and an output gap inside a packet; these come from
  the cover points of `sim.coverage.STREAM_COVER_VERILOG` in the Verilator data, not from
  the beats.

`ProtocolRecorder` counts the bins of one traffic source: it pairs request packets (cut at
`last`) with response packets in order, as the protocol guarantees, and follows the
configuration like the hardware does. With coverage on it saves its counts after every
exchange to `<LPMAC_COVERAGE>/protocol/<source>++<pid>-<random>.json`; `merge_counts` adds
the files up.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from golden.config import MODES, ArrayConfig
from golden.protocol import (
    COUNTER_NAMES,
    OUT_KINDS,
    REQUANT_KINDS,
    Beat,
    ConfigureFields,
    Field,
    Geometry,
    Header,
    Opcode,
    Packet,
    Status,
    StatusWord,
    check_configure,
    decode_configure,
)
from golden.reference import ReferenceAccelerator

from .coverage import STREAM_COVER_POINTS, coverage_dir, data_file

__all__ = ["ProtocolRecorder", "protocol_recorder", "protocol_bins", "reachable_statuses",
           "status_bin", "merge_counts", "total", "ILLEGAL"]

ILLEGAL = "ILLEGAL"
_EXECUTED = (Status.OK, Status.TRUNCATED, Status.TOO_LONG)
_BANK_COMMANDS = (Opcode.LOAD_ACTIVATIONS, Opcode.LOAD_SCALES, Opcode.COMPUTE)
_FENCES = (Opcode.CONFIGURE, Opcode.LOAD_REQUANT, Opcode.READ_COUNTERS)
_ILLEGAL_OPCODES = (0x00, len(Opcode) + 1, 0xFF)


def status_bin(opcode: int, status: int, field: int = 0) -> str:
    """The bin of one response: `status/<OPCODE>/<STATUS>[/<FIELD>]`."""
    try:
        command = Opcode(opcode).name
    except ValueError:
        command = ILLEGAL
    try:
        reason = Status(status).name
    except ValueError:
        reason = f"status_{status}"
    name = f"status/{command}/{reason}"
    if status in (Status.BAD_FIELD, Status.TOO_LARGE):
        try:
            name += f"/{Field(field).name}"
        except ValueError:
            name += f"/field_{field}"
    return name


# --- The bins ---------------------------------------------------------------------------------

def _small_configures(config: ArrayConfig) -> list[ConfigureFields]:
    """A valid CONFIGURE of the smallest tile for every (mode, output kind) the build takes."""
    valid = []
    for mode in config.modes:
        for kind, _name in enumerate(OUT_KINDS):
            for k in (config.rows, config.block_size):
                for n in (config.cols, 2 * config.cols, config.block_size):
                    fields = ConfigureFields(MODES.index(mode), kind, 0, 0, 0, 1, k, n)
                    if check_configure(config, fields)[0] == Status.OK:
                        valid.append(fields)
                        break
                else:
                    continue
                break
    return valid


def _configure_grid(config: ArrayConfig) -> Iterable[ConfigureFields]:
    """CONFIGURE fields at and around every limit `check_configure` applies."""
    r, c, bk = config.rows, config.cols, config.block_size
    widest = 0xFFFF // 64 * 64
    ms = sorted({0, 1, config.accumulator_bank_depth, config.accumulator_bank_depth + 1,
                 config.activation_bank_depth, config.activation_bank_depth + 1, 0xFFFF})
    ks = sorted({0, 1, r, bk, config.activation_bank_depth * r, widest})
    ns = sorted({0, 1, c, 2 * c, bk, config.requant_depth, config.requant_depth + 2 * bk,
                 widest})
    for mode in range(8):
        for kind in range(8):
            for zero_point in (0, 200, -200):
                for m in ms:
                    for k in ks:
                        for n in ns:
                            yield ConfigureFields(mode, kind, 0, 0, zero_point, m, k, n)


def _probes(opcode: int, length: int, bank_command: bool,
            payload: Sequence[int]) -> Iterable[list[Beat]]:
    """Packets of one command: exact, with a wrong length, cut short, too long (`last`
    one word late), and for bank commands on banks 1 and 2."""
    words = list(payload[:length]) + [0] * (length - len(payload[:length]))
    banks = (0, 1, 2) if bank_command else (0,)
    for args in banks:
        exact = Packet(Header(opcode, 1, length, args), tuple(words))
        yield exact.beats()
        yield Packet(Header(opcode, 1, length + 1, args), tuple(words)).beats()
        if length:
            beats = exact.beats()
            yield beats[:-2] + [(beats[-2][0], True)]
        yield [(word, False) for word, _ in exact.beats()] + [(0, True)]


@functools.cache
def reachable_statuses(config: ArrayConfig) -> frozenset[str]:
    """The `status/...` bins the protocol allows on a build of `config`, found by running
    the reference executor (see the module docstring); about a second per configuration."""
    seen: set[str] = set()
    states: list[ConfigureFields | None] = [None, *_small_configures(config)]
    commands = [*Opcode, *_ILLEGAL_OPCODES]
    for state in states:
        for opcode in commands:
            reference = ReferenceAccelerator(config)
            if state is not None:
                reference.run(Packet.make(Opcode.CONFIGURE, 0, state.encode()).beats())
            geometry = reference.geometry
            length = _expected_length(opcode, geometry)
            payload = state.encode() if opcode == Opcode.CONFIGURE and state else []
            for beats in _probes(opcode, length, opcode in _BANK_COMMANDS, payload):
                probe = ReferenceAccelerator(config)
                if state is not None:
                    probe.run(Packet.make(Opcode.CONFIGURE, 0, state.encode()).beats())
                response = probe.run(beats)
                status = StatusWord.decode(response[-1].word)
                seen.add(status_bin(opcode, status.code, status.field))
    for fields in _configure_grid(config):
        status, field, _geometry = check_configure(config, fields)
        seen.add(status_bin(Opcode.CONFIGURE, status, field))
    return frozenset(seen)


def _expected_length(opcode: int, geometry: Geometry | None) -> int:
    if opcode == Opcode.CONFIGURE:
        return 2
    if geometry is None:
        return 0
    return {Opcode.LOAD_REQUANT: geometry.requant_words, Opcode.LOAD_SCALES:
            geometry.scale_words, Opcode.LOAD_ACTIVATIONS: geometry.act_words,
            Opcode.COMPUTE: geometry.compute_words}.get(opcode, 0)


def _output_kinds(config: ArrayConfig) -> list[tuple[str, str]]:
    return [(MODES[fields.mode], OUT_KINDS[fields.out_kind])
            for fields in _small_configures(config)]


def protocol_bins(config: ArrayConfig) -> dict[str, str]:
    """Every bin of a build of `config` with what hitting it means (the `stream/` bins come
    from the Verilator data, the others from the traffic)."""
    bins: dict[str, str] = {}
    for name in sorted(reachable_statuses(config)):
        bins[name] = "a response with this opcode and status (and field)"
    outputs = _output_kinds(config)
    for mode, kind in outputs:
        bins[f"output/{mode}/{kind}"] = f"a COMPUTE in {mode} with {kind} outputs ran"
    if any(kind in REQUANT_KINDS for _mode, kind in outputs):
        for rounding in ("fp32", "gemmlowp"):
            for relu in ("relu", "no_relu"):
                bins[f"requant/{rounding}/{relu}"] = (
                    f"a requantized COMPUTE with {rounding} rounding, {relu.replace('_', ' ')}")
    commands = [Opcode.LOAD_ACTIVATIONS, Opcode.COMPUTE]
    if config.has_mx:
        commands.insert(1, Opcode.LOAD_SCALES)
    for command in commands:
        for bank in (0, 1):
            bins[f"bank/{command.name}/{bank}"] = f"{command.name} on bank {bank} executed"
    for first in (0, 1):
        for second in (0, 1):
            bins[f"bank/COMPUTE_after_COMPUTE/{first}->{second}"] = (
                f"a COMPUTE on bank {second} right after one on bank {first}, no fence between")
    bins["bank/LOAD_ACTIVATIONS_after_COMPUTE/same_bank"] = (
        "a LOAD_ACTIVATIONS into the bank the COMPUTE before it reads (it waits for the job)")
    bins["bank/LOAD_ACTIVATIONS_after_COMPUTE/other_bank"] = (
        "a LOAD_ACTIVATIONS into the other bank than the COMPUTE before it (they overlap)")
    bins["kslice/k_tiles/1"] = "a COMPUTE of one K-tile (K = R): accumulators overwritten only"
    bins["kslice/k_tiles/several"] = "a COMPUTE of several K-tiles: partial sums accumulated"
    if config.has_mx:
        bins["kslice/k_blocks/1"] = "an MX COMPUTE of one K-block"
        bins["kslice/k_blocks/several"] = "an MX COMPUTE of several K-blocks (BFP accumulation)"
    if any(kind == "int32" for _mode, kind in outputs):
        bins["kslice/host_slices"] = (
            "several int32 GEMMs of one mode and N between CLEAR_COUNTERS and READ_COUNTERS "
            "(the host's K-slices)")
    bins["stall/input_stall_counter"] = "READ_COUNTERS reported input-stall cycles"
    bins["stall/output_stall_counter"] = "READ_COUNTERS reported output-stall cycles"
    for label, meaning in STREAM_COVER_POINTS.items():
        bins[f"stream/{label}"] = meaning
    return bins


# --- Recording --------------------------------------------------------------------------------

class ProtocolRecorder:
    """Counts the bins of the traffic of one accelerator (see the module docstring).

    Feed it the request beats as they are sent (`requests`) and the response beats as they
    arrive (`responses`), or both at once (`exchange`); `reset` when the accelerator is
    reset. `path` (None: counts kept in memory only) is rewritten by `save`."""

    def __init__(self, config: ArrayConfig, source: str, path: Path | None = None) -> None:
        self.config = config
        self.source = source
        self.path = path
        self.counts: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        """The accelerator was reset: requests in flight get no response."""
        self._pending: list[list[Beat]] = []
        self._request_part: list[Beat] = []
        self._response_part: list[Beat] = []
        self._geometry: Geometry | None = None
        self._last_compute_bank: int | None = None
        self._bracket: list[tuple[str, str, int]] | None = None

    def requests(self, beats: Iterable[Beat]) -> None:
        for word, last in beats:
            self._request_part.append((int(word), bool(last)))
            if last:
                self._pending.append(self._request_part)
                self._request_part = []

    def responses(self, beats: Iterable[Beat]) -> None:
        for word, last in beats:
            self._response_part.append((int(word), bool(last)))
            if last:
                response, self._response_part = self._response_part, []
                request = self._pending.pop(0) if self._pending else None
                if request is not None:
                    self._classify(request, response)

    def exchange(self, requests: Sequence[Beat], responses: Sequence[Beat]) -> None:
        """Both directions of one exchange, then `save`."""
        self.requests(requests)
        self.responses(responses)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps({"source": self.source, "config": self.config.as_dict(),
                                       "counts": dict(sorted(self.counts.items()))}))
        os.replace(partial, self.path)

    def _classify(self, request: list[Beat], response: list[Beat]) -> None:
        header = Header.decode(request[0][0])
        payload = [word for word, _ in request[1:]]
        status = StatusWord.decode(response[-1][0])
        counts = self.counts
        counts[status_bin(header.opcode, status.code, status.field)] += 1
        executed = status.code in _EXECUTED
        try:
            command = Opcode(header.opcode)
        except ValueError:
            return
        if command == Opcode.CONFIGURE:
            self._geometry = None
            if executed and len(payload) >= 2:
                _status, _field, self._geometry = check_configure(
                    self.config, decode_configure(payload[:2]))
            if self._geometry is not None and self._bracket is not None:
                self._bracket.append((self._geometry.mode, self._geometry.out_kind,
                                      self._geometry.n))
        elif command == Opcode.CLEAR_COUNTERS and executed:
            self._bracket = []
        elif command == Opcode.READ_COUNTERS and executed:
            self._read_counters(response)
        if command in _FENCES:
            self._last_compute_bank = None
        geometry = self._geometry
        if not executed or command not in _BANK_COMMANDS or geometry is None:
            return
        bank = header.bank & 1
        counts[f"bank/{command.name}/{bank}"] += 1
        if command == Opcode.LOAD_ACTIVATIONS and self._last_compute_bank is not None:
            side = "same_bank" if bank == self._last_compute_bank else "other_bank"
            counts[f"bank/LOAD_ACTIVATIONS_after_COMPUTE/{side}"] += 1
        if command != Opcode.COMPUTE:
            return
        if self._last_compute_bank is not None:
            counts[f"bank/COMPUTE_after_COMPUTE/{self._last_compute_bank}->{bank}"] += 1
        self._last_compute_bank = bank
        counts[f"output/{geometry.mode}/{geometry.out_kind}"] += 1
        if geometry.requant:
            relu = "relu" if geometry.relu else "no_relu"
            counts[f"requant/{geometry.rounding}/{relu}"] += 1
        counts[f"kslice/k_tiles/{1 if geometry.kt == 1 else 'several'}"] += 1
        if geometry.mx:
            counts[f"kslice/k_blocks/{1 if geometry.nb == 1 else 'several'}"] += 1

    def _read_counters(self, response: list[Beat]) -> None:
        data = [word for word, _ in response[1:-1]]
        if len(data) == len(COUNTER_NAMES):
            counters = dict(zip(COUNTER_NAMES, data, strict=True))
            for name in ("input_stall", "output_stall"):
                if counters[name]:
                    self.counts[f"stall/{name}_counter"] += 1
        if self._bracket:
            int32 = Counter((mode, n) for mode, kind, n in self._bracket if kind == "int32")
            if int32 and max(int32.values()) >= 2:
                self.counts["kslice/host_slices"] += 1
        self._bracket = None


def protocol_recorder(config: ArrayConfig, source: str) -> ProtocolRecorder | None:
    """A recorder saving under the coverage directory, or None when coverage is off."""
    if coverage_dir() is None:
        return None
    return ProtocolRecorder(config, source, data_file("protocol", source, ".json"))


def merge_counts(paths: Iterable[Path]) -> dict[ArrayConfig, dict[str, Counter[str]]]:
    """The counts of several recorder files, added up per configuration of the accelerator
    and per traffic source."""
    merged: dict[ArrayConfig, dict[str, Counter[str]]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        fields = dict(data["config"])
        fields["modes"] = tuple(fields["modes"])
        by_source = merged.setdefault(ArrayConfig(**fields), {})
        by_source.setdefault(data["source"], Counter()).update(data["counts"])
    return merged


def total(counts: Mapping[str, Counter[str]]) -> Counter[str]:
    """The counts of all sources added up."""
    result: Counter[str] = Counter()
    for part in counts.values():
        result.update(part)
    return result
