"""The functional coverage of the protocol (`sim.protocol_coverage`) on hand-built beat
sequences, answered by the reference executor (which the RTL tests hold the hardware to,
word for word): which bins exist for a build, and which ones a traffic hits."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from golden.config import ArrayConfig
from golden.protocol import (
    COUNTER_NAMES,
    Beat,
    Header,
    Opcode,
    Packet,
    Status,
    StatusWord,
    encode_configure,
)
from golden.reference import ReferenceAccelerator
from host import tiling
from sim.coverage import COVERAGE_VARIABLE
from sim.protocol_coverage import (
    ProtocolRecorder,
    merge_counts,
    protocol_bins,
    protocol_recorder,
    reachable_statuses,
    status_bin,
    total,
)

CONFIG = ArrayConfig()


def _record(beats: list[Beat], config: ArrayConfig = CONFIG) -> Counter[str]:
    """The bins of `beats` answered by the reference executor."""
    reference = ReferenceAccelerator(config)
    answer = [(beat.word, beat.last) for beat in reference.run(beats)]
    recorder = ProtocolRecorder(config, "test")
    recorder.exchange(beats, answer)
    return recorder.counts


def _matmul(m: int, k: int, n: int, seed: int = 0,
            max_m_tile: int | None = None) -> tiling.GemmProgram:
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k))
    b = rng.integers(-128, 128, (k, n))
    return tiling.matmul_program(CONFIG, a, b, mode="a8w8", max_m_tile=max_m_tile)


def test_status_bins_follow_the_documented_rules() -> None:
    """The (opcode, status) pairs found by running the reference executor are those of
    docs/protocol.md "Errors"."""
    bins = reachable_statuses(CONFIG)
    payload_commands = ("CONFIGURE", "LOAD_REQUANT", "LOAD_SCALES", "LOAD_ACTIVATIONS",
                        "COMPUTE")
    for opcode in Opcode:
        assert f"status/{opcode.name}/OK" in bins
        assert f"status/{opcode.name}/BAD_LENGTH" in bins
        assert f"status/{opcode.name}/TOO_LONG" in bins
        # Only a command with a payload can be cut short.
        assert (f"status/{opcode.name}/TRUNCATED" in bins) == (opcode.name in payload_commands)
        assert (f"status/{opcode.name}/NOT_CONFIGURED" in bins) == (
            opcode.name in payload_commands[1:])
        assert (f"status/{opcode.name}/NOT_APPLICABLE" in bins) == (
            opcode.name in ("LOAD_REQUANT", "LOAD_SCALES"))
        assert (f"status/{opcode.name}/BAD_FIELD/BANK" in bins) == (
            opcode.name in payload_commands[2:])
    too_large = {name for name in bins if "TOO_LARGE" in name}
    assert too_large == {f"status/CONFIGURE/TOO_LARGE/{field}" for field in
                         ("ACTIVATIONS", "ACCUMULATORS", "REQUANT", "LENGTH")}
    assert {f"status/CONFIGURE/BAD_FIELD/{field}" for field in
            ("MODE", "OUT_KIND", "ZERO_POINT", "M", "K", "N")} <= bins
    assert "status/ILLEGAL/BAD_OPCODE" in bins
    assert not any(name.startswith("status/ILLEGAL/") and not name.endswith("BAD_OPCODE")
                   for name in bins)


def test_the_bins_follow_the_build() -> None:
    default = protocol_bins(CONFIG)
    # Three integer modes x four output kinds, three MX modes x three.
    assert sum(name.startswith("output/") for name in default) == 3 * 4 + 3 * 3
    assert "bank/LOAD_SCALES/1" in default and "kslice/k_blocks/several" in default
    integer = ArrayConfig(modes=("a8w8",))
    bins = protocol_bins(integer)
    assert {name for name in bins if name.startswith("output/")} == {
        f"output/a8w8/{kind}" for kind in ("uint8", "int8", "int4", "int32")}
    assert not any("LOAD_SCALES/OK" in name or "k_blocks" in name for name in bins)
    assert "status/LOAD_SCALES/NOT_APPLICABLE" in bins
    # Without a requantizer: int32 outputs only, LOAD_REQUANT never applies.
    bare = protocol_bins(ArrayConfig(modes=("a8w8",), requant_depth=0))
    assert {name for name in bare if name.startswith("output/")} == {"output/a8w8/int32"}
    assert "status/LOAD_REQUANT/OK" not in bare and not any("requant/" in name for name in bare)
    assert "status/CONFIGURE/TOO_LARGE/REQUANT" in bare


def test_a_gemm_of_three_m_tiles_alternates_banks() -> None:
    program = _matmul(3 * 64, 64, 8, max_m_tile=64)     # M-tiles of 64 rows: banks 0, 1, 0
    assert sum(packet.header.opcode == Opcode.COMPUTE for packet in program.packets) == 3
    counts = _record(program.beats())
    assert counts["status/CONFIGURE/OK"] == 1 and counts["status/COMPUTE/OK"] == 3
    assert counts["bank/COMPUTE/0"] == 2 and counts["bank/COMPUTE/1"] == 1
    assert counts["bank/COMPUTE_after_COMPUTE/0->1"] == 1
    assert counts["bank/COMPUTE_after_COMPUTE/1->0"] == 1
    assert counts["bank/LOAD_ACTIVATIONS_after_COMPUTE/other_bank"] == 2
    assert counts["bank/LOAD_ACTIVATIONS_after_COMPUTE/same_bank"] == 0
    assert counts["output/a8w8/int32"] == 3
    assert counts["kslice/k_tiles/several"] == 3 and counts["kslice/k_tiles/1"] == 0
    assert set(counts) <= set(protocol_bins(CONFIG))


def test_errors_and_the_configuration_they_leave() -> None:
    good = encode_configure(mode="a8w8", out_kind="int8", m=4, k=8, n=8, rounding="gemmlowp",
                            relu=True).encode()
    bad_mode = list(good)
    bad_mode[0] |= 7                            # mode code 7 does not exist
    beats = (Packet.make(Opcode.CONFIGURE, 1, good).beats()
             + Packet.make(0x42, 2, [1, 2]).beats()
             + Packet.make(Opcode.LOAD_ACTIVATIONS, 3, [0] * 4, args=2).beats()
             + Packet.make(Opcode.LOAD_REQUANT, 4, [0] * 16).beats()
             + Packet.make(Opcode.LOAD_ACTIVATIONS, 5, [0] * 4, args=1).beats()
             + Packet.make(Opcode.COMPUTE, 6, [0] * 8, args=1).beats()
             + Packet.make(Opcode.CONFIGURE, 7, bad_mode).beats()
             + Packet.make(Opcode.COMPUTE, 8, [0] * 8).beats())
    counts = _record(beats)
    assert counts["status/ILLEGAL/BAD_OPCODE"] == 1
    assert counts["status/LOAD_ACTIVATIONS/BAD_FIELD/BANK"] == 1
    assert counts["status/CONFIGURE/BAD_FIELD/MODE"] == 1
    assert counts["status/COMPUTE/NOT_CONFIGURED"] == 1     # the failed CONFIGURE unconfigured
    assert counts["bank/COMPUTE/1"] == 1 and counts["output/a8w8/int8"] == 1
    assert counts["requant/gemmlowp/relu"] == 1 and counts["kslice/k_tiles/1"] == 1
    assert counts["bank/LOAD_ACTIVATIONS/1"] == 1 and counts["bank/LOAD_ACTIVATIONS/0"] == 0


def test_damaged_packets_that_still_execute() -> None:
    """A cut COMPUTE still runs (TRUNCATED) and counts as a job; a CONFIGURE whose `last`
    comes late configures (TOO_LONG)."""
    configure = encode_configure(mode="a8w8", out_kind="int32", m=4, k=8, n=8).encode()
    beats = [(word, False) for word, _ in Packet.make(Opcode.CONFIGURE, 1, configure).beats()]
    beats += [(0, True)]
    compute = Packet.make(Opcode.COMPUTE, 2, [0] * 8).beats()
    beats += compute[:4] + [(compute[4][0], True)]
    counts = _record(beats)
    assert counts["status/CONFIGURE/TOO_LONG"] == 1
    assert counts["status/COMPUTE/TRUNCATED"] == 1 and counts["bank/COMPUTE/0"] == 1


def test_responses_in_pieces_and_a_reset() -> None:
    """Beats may arrive in any pieces; a reset drops the requests still in flight."""
    beats = _matmul(20, 16, 8).beats()
    answer = [(beat.word, beat.last) for beat in ReferenceAccelerator(CONFIG).run(beats)]
    whole = _record(beats)
    recorder = ProtocolRecorder(CONFIG, "test")
    recorder.requests(beats)
    for start in range(0, len(answer), 3):
        recorder.responses(answer[start:start + 3])
    assert recorder.counts == whole
    recorder = ProtocolRecorder(CONFIG, "test")
    recorder.requests(beats + Packet.make(Opcode.IDENTIFY, 9).beats())
    recorder.reset()
    recorder.exchange(Packet.make(Opcode.IDENTIFY, 10).beats(),
                      [(beat.word, beat.last) for beat in ReferenceAccelerator(CONFIG).run(
                          Packet.make(Opcode.IDENTIFY, 10).beats())])
    assert recorder.counts == Counter({"status/IDENTIFY/OK": 1})


def test_k_slices_and_stall_counters() -> None:
    """Two int32 GEMMs of one mode and N between CLEAR_COUNTERS and READ_COUNTERS are
    K-slices; the READ_COUNTERS answer's stall counters feed the stall bins."""
    clear = Packet.make(Opcode.CLEAR_COUNTERS, 1).beats()
    read = Packet.make(Opcode.READ_COUNTERS, 2).beats()
    slices = _matmul(5, 64, 8, seed=1).beats() + _matmul(5, 24, 8, seed=2).beats()
    assert _record(clear + slices + read)["kslice/host_slices"] == 1
    assert _record(clear + _matmul(5, 64, 8).beats() + read)["kslice/host_slices"] == 0
    assert _record(slices + read)["kslice/host_slices"] == 0     # no bracket
    counters = dict.fromkeys(COUNTER_NAMES, 0) | {"input_stall": 3}
    response = [(Header(Opcode.READ_COUNTERS, 2, len(COUNTER_NAMES) + 1).encode(), False)]
    response += [(counters[name], False) for name in COUNTER_NAMES]
    response += [(StatusWord(Status.OK, Opcode.READ_COUNTERS).encode(), True)]
    recorder = ProtocolRecorder(CONFIG, "test")
    recorder.exchange(read, response)
    assert recorder.counts["stall/input_stall_counter"] == 1
    assert recorder.counts["stall/output_stall_counter"] == 0


def test_files_per_process_merge_by_configuration(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(COVERAGE_VARIABLE, raising=False)
    assert protocol_recorder(CONFIG, "off") is None
    monkeypatch.setenv(COVERAGE_VARIABLE, str(tmp_path))
    small = ArrayConfig(rows=4, cols=4, block_size=16)
    beats = Packet.make(Opcode.IDENTIFY, 1).beats()
    for config, source in ((CONFIG, "cocotb"), (CONFIG, "harness"), (CONFIG, "harness"),
                           (small, "harness")):
        recorder = protocol_recorder(config, source)
        answer = [(beat.word, beat.last) for beat in ReferenceAccelerator(config).run(beats)]
        recorder.exchange(beats, answer)
    files = sorted((tmp_path / "protocol").glob("*.json"))
    assert len(files) == 4
    assert json.loads(files[0].read_text())["counts"] == {"status/IDENTIFY/OK": 1}
    merged = merge_counts(files)
    assert set(merged) == {CONFIG, small}
    assert merged[CONFIG]["harness"]["status/IDENTIFY/OK"] == 2
    assert total(merged[CONFIG]) == Counter({"status/IDENTIFY/OK": 3})


def test_status_bin_names() -> None:
    assert status_bin(Opcode.COMPUTE, Status.OK) == "status/COMPUTE/OK"
    assert status_bin(0x99, Status.BAD_OPCODE) == "status/ILLEGAL/BAD_OPCODE"
    assert status_bin(Opcode.CONFIGURE, Status.TOO_LARGE, 8) == \
        "status/CONFIGURE/TOO_LARGE/ACTIVATIONS"


@pytest.mark.parametrize("config", [ArrayConfig(rows=4, cols=4, block_size=16,
                                                acc_bits=16, accumulator_depth=64)])
def test_every_bin_of_another_build_is_named(config: ArrayConfig) -> None:
    bins = protocol_bins(config)
    assert all(meaning for meaning in bins.values())
    assert "output/mxint4/mxint4" in bins and "stream/o_stream_stall" in bins
