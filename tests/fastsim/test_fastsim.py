"""The Verilator harness transport (`sim.fastsim.VerilatorTransport`) and the cocotb
transport (`sim.cocotb_transport.CocotbTransport`) against the golden model and the protocol
reference.

Every GEMM is built by the host packer (`host.tiling`, through tests/accel/scenarios.py);
its decoded result must equal the golden function bit for bit, and every response beat must
equal what `golden.reference.ReferenceAccelerator` predicts. One build of the default
configuration serves every test (cached; the first build takes a minute or two).
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from golden.config import MODE_INFO, ArrayConfig
from golden.protocol import COUNTER_NAMES, Beat, Opcode, Packet, Status, parse_responses
from golden.reference import ReferenceAccelerator, compare_responses
from host.transport import TransportError
from sim.coverage import coverage_dir
from sim.fastsim import RESET_EDGES, VerilatorTransport, harness_executable
from tests.accel.scenarios import (
    GemmCase,
    fuzz_streams,
    gemm_cases,
    malformed_cases,
    matmul_case,
    mx_case,
    qlinear_case,
)

CONFIG = ArrayConfig()
ODD_SHAPE = (37, 515, 29)   # M x K x N: a multiple of nothing


class Checked:
    """A transport and a reference executor fed the same beats."""

    def __init__(self, transport: VerilatorTransport) -> None:
        self.transport = transport
        self.reference = ReferenceAccelerator(transport.config)

    def reset(self) -> None:
        self.transport.reset()
        self.reference.reset()

    def exchange(self, beats: list[Beat]) -> list[Beat]:
        """Exchange `beats`; assert every response beat is the reference's."""
        expected = self.reference.run(beats)
        got = self.transport.exchange(beats)
        problems = compare_responses(expected, got)
        assert not problems, "responses differ from the reference:\n" + "\n".join(problems[:8])
        return got

    def fuzz(self, rng: np.random.Generator, count: int) -> None:
        """`count` corrupted GEMM programs of each kind (MX first, see `fuzz_streams`):
        every response beat as the reference says."""
        for mx in (True, False):
            streams = fuzz_streams(self.transport.config, rng, count, mx)
            for index, (beats, what) in enumerate(streams):
                try:
                    self.exchange(beats)
                except AssertionError as error:
                    raise AssertionError(f"stream {index} ({what}): {error}") from None

    def mismatches(self, case: GemmCase) -> int:
        """Run a GEMM case; mismatches of the decoded result against golden."""
        got = self.exchange(case.program.beats())
        return case.mismatches(case.expected, case.program.decode(parse_responses(got)))


@pytest.fixture(scope="module")
def transport():
    with VerilatorTransport(CONFIG, progress=print) as shared:
        yield shared


@pytest.fixture
def checked(transport: VerilatorTransport) -> Checked:
    checker = Checked(transport)
    checker.reset()
    return checker


def odd_shape_cases(config: ArrayConfig, rng: np.random.Generator,
                    shape: tuple[int, int, int] = ODD_SHAPE) -> list[GemmCase]:
    """Every mode of `config` on `shape`: int32 and both roundings (uint8, int8, int4
    outputs) in the integer modes, FP32, MXINT8 and MXINT4 outputs in the MX modes."""
    cases = []
    for mode in config.modes:
        if MODE_INFO[mode].mx:
            for out in ("fp32", "mxint8", "mxint4"):
                cases.append(mx_case(config, rng, mode=mode, out=out, shape=shape))
        else:
            cases.append(matmul_case(config, rng, mode=mode, shape=shape))
            for rounding, out_dtype in (("fp32", "uint8"), ("gemmlowp", "int8"),
                                        ("fp32", "int4")):
                cases.append(qlinear_case(config, rng, mode=mode, rounding=rounding,
                                          out_dtype=out_dtype, shape=shape))
    return cases


def test_every_mode_on_a_shape_that_is_a_multiple_of_nothing(checked: Checked,
                                                              sim_seed: int) -> None:
    """37 x 515 x 29 in every mode of the default configuration, every output kind of the
    MX modes, int32 and both roundings of the integer modes: 0 mismatches against
    `golden.matmul` / `golden.qlinear` / `golden.mx_matmul`."""
    for case in odd_shape_cases(CONFIG, np.random.default_rng(sim_seed)):
        assert checked.mismatches(case) == 0, case.name


def test_case_groups_of_the_cocotb_tests(checked: Checked, sim_seed: int) -> None:
    """The GEMM groups tests/accel runs on cocotb (every mode, rounding and output kind;
    1 x 1 x 1 to several M-tiles and N-chunks; one-row batches with short drains; loads
    waiting for a COMPUTE on the same bank; cancellation in the BFP accumulator), back to
    back on one accelerator."""
    rng = np.random.default_rng(sim_seed)
    groups = ["qlinear", "matmul", "mx", "shapes", "one_row", "same_bank", "cancel",
              "tiny_scales"]
    for case in gemm_cases(CONFIG, rng, groups):
        assert checked.mismatches(case) == 0, case.name


FAST = ArrayConfig(rows=4, cols=4, block_size=16, weight_buffer_depth=64,
                        activation_buffer_depth=256, accumulator_depth=64, requant_depth=32,
                        multiplier="lut", pipeline="fast", drain_pairs=False)
"""A 4 x 4 array with every mode, built like the ECP5 board: shift-and-add products
registered before the partial-sum adder, registered accumulator reads, one output drained
per cycle (`ArrayConfig.multiplier`, `pipeline`, `drain_pairs`)."""


def test_fast_pipeline_under_gaps_and_backpressure(sim_seed: int) -> None:
    """The fast pipeline (longer array and accumulation latencies): the GEMM groups of
    every mode and output kind under random gaps and backpressure, 0 mismatches against
    golden and every response beat the reference's."""
    rng = np.random.default_rng(sim_seed)
    with VerilatorTransport(FAST, gaps=0.3, stalls=0.4, seed=sim_seed) as transport:
        checked = Checked(transport)
        cases = gemm_cases(FAST, rng, ["qlinear", "matmul", "mx", "shapes"])
        assert {case.program.plan.mode for case in cases} == set(FAST.modes)
        for case in cases:
            assert checked.mismatches(case) == 0, case.name


def test_fast_pipeline_protocol_errors(sim_seed: int) -> None:
    """The corrupted GEMM programs (MX first: see `fuzz_streams`) and the malformed packets
    on the fast pipeline's build too: every response beat as the reference says."""
    rng = np.random.default_rng(sim_seed)
    with VerilatorTransport(FAST, gaps=0.2, stalls=0.3, seed=sim_seed) as transport:
        checked = Checked(transport)
        checked.fuzz(rng, 10)
        follow_up = gemm_cases(FAST, rng, ["a8w8_small"])[0]
        for name, beats in malformed_cases(FAST, rng):
            checked.exchange(beats)
            assert checked.mismatches(follow_up) == 0, f"after {name}"


def test_all_cases_in_one_exchange(checked: Checked, sim_seed: int) -> None:
    """Several GEMM programs in one exchange: the responses come back in order."""
    rng = np.random.default_rng(sim_seed)
    cases = gemm_cases(CONFIG, rng, ["a8w8_small", "matmul"])
    beats = [beat for case in cases for beat in case.program.beats()]
    responses = parse_responses(checked.exchange(beats))
    for case in cases:
        count = len(case.program.packets)
        mine, responses = responses[:count], responses[count:]
        assert case.mismatches(case.expected, case.program.decode(mine)) == 0, case.name
    assert not responses


def test_malformed_packets_then_a_correct_gemm(checked: Checked, sim_seed: int) -> None:
    """Each malformed packet gets the documented error response (as the reference says),
    and the GEMM after it is right."""
    rng = np.random.default_rng(sim_seed)
    follow_up = gemm_cases(CONFIG, rng, ["a8w8_small"])[0]
    statuses = set()
    for name, beats in malformed_cases(CONFIG, rng):
        responses = parse_responses(checked.exchange(beats))
        statuses |= {response.status.code for response in responses}
        assert checked.mismatches(follow_up) == 0, f"after {name}"
    assert {Status.BAD_OPCODE, Status.BAD_LENGTH, Status.TRUNCATED, Status.TOO_LONG,
            Status.BAD_FIELD, Status.TOO_LARGE, Status.NOT_CONFIGURED,
            Status.NOT_APPLICABLE} <= statuses


def test_fuzzed_packets_under_gaps_and_backpressure(sim_seed: int) -> None:
    """Corrupted GEMM programs with random input gaps and output stalls inside the harness:
    every response beat as the reference says, then a correct GEMM."""
    rng = np.random.default_rng(sim_seed)
    with VerilatorTransport(CONFIG, gaps=0.3, stalls=0.4, seed=sim_seed) as stressed:
        checked = Checked(stressed)
        checked.fuzz(rng, 20)
        for case in gemm_cases(CONFIG, rng, ["a8w8_small", "matmul"]):
            assert checked.mismatches(case) == 0, case.name


def test_gemms_under_heavy_gaps_and_backpressure(sim_seed: int) -> None:
    """At 0.8 idle input cycles and 0.9 ready-low output cycles the weight FIFO runs dry
    and the accumulator banks wait for the drain; results stay exact."""
    rng = np.random.default_rng(sim_seed)
    with VerilatorTransport(CONFIG, gaps=0.8, stalls=0.9, seed=sim_seed) as stressed:
        checked = Checked(stressed)
        for case in gemm_cases(CONFIG, rng, ["a8w8_small", "matmul", "mx"]):
            assert checked.mismatches(case) == 0, case.name
        assert stressed.simulated_cycles > 0


def test_reset_in_the_middle_of_a_gemm(checked: Checked, sim_seed: int) -> None:
    """Send a GEMM program only up to the middle of a packet (a load or a COMPUTE), reset:
    the accelerator is unconfigured, and the next GEMMs are right."""
    rng = np.random.default_rng(sim_seed)
    big = qlinear_case(CONFIG, rng, mode="a8w4", rounding="fp32", out_dtype="int8",
                       shape=(48, 256, 64))
    beats = big.program.beats()
    after = gemm_cases(CONFIG, rng, ["a8w8_small"]) + [
        mx_case(CONFIG, rng, mode="mxint4", out="fp32", shape=(9, 64, 24))]
    for cut in (3, len(beats) // 3, len(beats) // 2, int(rng.integers(4, len(beats) - 1))):
        checked.transport.exchange(beats[:cut], partial=True)   # answers: not checked
        checked.reset()
        response = parse_responses(checked.exchange(
            Packet.make(Opcode.LOAD_ACTIVATIONS, 0, [0]).beats()))[0]
        assert response.status.code == Status.NOT_CONFIGURED
        for case in after:
            assert checked.mismatches(case) == 0, f"{case.name} after a reset at beat {cut}"


def _counters(checked: Checked, beats: list[Beat]) -> dict[str, int]:
    responses = parse_responses(checked.exchange(
        beats + Packet.make(Opcode.READ_COUNTERS, 0xC0).beats()))
    return dict(zip(COUNTER_NAMES, responses[-1].data, strict=True))


def test_reported_cycles_equal_the_cycle_counter(checked: Checked, sim_seed: int) -> None:
    """Between two READ_COUNTERS the accelerator's `cycles` counter advances by exactly the
    cycles the harness reports for the exchange, for GEMMs of any shape and mode; and the
    counts repeat exactly after a reset."""
    rng = np.random.default_rng(sim_seed)
    cases = [qlinear_case(CONFIG, rng, mode="a8w8", rounding="fp32", out_dtype="int8",
                          shape=(64, 128, 32), uint8=False),
             matmul_case(CONFIG, rng, mode="a4w4", shape=ODD_SHAPE),
             mx_case(CONFIG, rng, mode="mxint8", out="mxint8", shape=(20, 96, 40))]
    transport = checked.transport
    runs = []
    for _repeat in range(2):
        checked.reset()
        before = _counters(checked, [])
        assert transport.last_cycles > before["cycles"] > 0
        cycles = []
        for case in cases:
            total_before = transport.simulated_cycles
            after = _counters(checked, case.program.beats())
            assert after["cycles"] - before["cycles"] == transport.last_cycles, case.name
            assert transport.simulated_cycles == total_before + transport.last_cycles
            assert after["macs"] - before["macs"] == sum(
                geometry.macs for _, geometry, _, _ in case.program.computes)
            cycles.append(transport.last_cycles)
            before = after
        runs.append(cycles)
    assert runs[0] == runs[1]
    total_before = transport.simulated_cycles
    transport.reset()
    assert transport.simulated_cycles == total_before + RESET_EDGES


def test_a_hang_is_reported_not_waited_for(checked: Checked, sim_seed: int) -> None:
    """A cycle budget too small for the work ends the exchange with one sentence; after a
    reset the transport works again."""
    rng = np.random.default_rng(sim_seed)
    case = gemm_cases(CONFIG, rng, ["a8w8_small"])[0]
    with pytest.raises(TransportError) as caught:
        checked.transport.exchange(case.program.beats(), timeout_cycles=50)
    message = str(caught.value)
    assert "did not answer within 50 simulated cycles" in message
    assert "\n" not in message
    checked.reset()
    assert checked.mismatches(case) == 0


def test_a_dead_harness_raises_transport_error() -> None:
    transport = VerilatorTransport(CONFIG)
    transport._process.kill()
    with pytest.raises(TransportError) as caught:
        transport.exchange(Packet.make(Opcode.IDENTIFY, 1).beats())
    message = str(caught.value)
    assert message.startswith("the Verilator harness process died") and "\n" not in message
    assert "exit status -9" in message
    with pytest.raises(TransportError, match="closed"):
        transport.exchange(Packet.make(Opcode.IDENTIFY, 2).beats())
    transport.close()


def test_bad_arguments_are_refused_with_one_sentence(transport: VerilatorTransport) -> None:
    with pytest.raises(ValueError, match="gaps must be a probability"):
        VerilatorTransport(CONFIG, gaps=1.0)
    with pytest.raises(ValueError, match="64-bit unsigned"):
        transport.exchange([(-1, True)])
    with pytest.raises(ValueError, match="timeout_cycles"):
        transport.exchange([(1, True)], timeout_cycles=0)
    with pytest.raises(ValueError, match="ice40-sb-mac16"):
        VerilatorTransport(CONFIG.replace(multiplier="ice40-sb-mac16"))


def test_the_coverage_file_option_follows_the_build(tmp_path) -> None:
    """A normal build refuses `--coverage-file` with one sentence; a coverage build (the
    suite run by `make coverage`) writes Verilator's counters there when the host closes
    the pipe."""
    target = tmp_path / "run.dat"
    result = subprocess.run([str(harness_executable(CONFIG)), "--coverage-file", str(target)],
                            input=b"", capture_output=True, timeout=60, check=False)
    if coverage_dir() is None:
        assert result.returncode == 2
        assert result.stderr.decode().strip() == (
            "accelerator harness: --coverage-file needs a model built with coverage")
        assert not target.exists()
    else:
        assert result.returncode == 0
        assert target.read_text().startswith("# SystemC::Coverage-3\n")


def test_empty_exchange(transport: VerilatorTransport) -> None:
    total = transport.simulated_cycles
    assert transport.exchange([]) == []
    assert transport.simulated_cycles == total and transport.last_cycles == 0


@pytest.mark.slow
@pytest.mark.parametrize("offset", range(3))
def test_random_gemm_soak(offset: int, sim_seed: int) -> None:
    """Random shapes, modes and outputs under random gaps and backpressure."""
    rng = np.random.default_rng(sim_seed + offset)
    with VerilatorTransport(CONFIG, gaps=0.4, stalls=0.5, seed=sim_seed + offset) as stressed:
        checked = Checked(stressed)
        for case in gemm_cases(CONFIG, rng, ["random"]):
            assert checked.mismatches(case) == 0, case.name
        checked.fuzz(rng, 100)
