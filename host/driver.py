"""The public host API: `Accelerator`, one GEMM call at a time over any transport.

    from host import Accelerator

    with Accelerator(backend="verilator") as acc:      # or "golden", "cocotb", "serial"
        c = acc.matmul(a, b)                           # exact int32, == golden.matmul(a, b)
        y = acc.qlinear(x_q, w_q, x_scale=..., ...)    # == golden.qlinear(...)
        f = acc.mx_matmul(a_f, b_f)                    # == golden.mx_matmul(...)
        print(acc.last_stats)                          # cycles, utilization, counters

Every call validates its arguments (one `ValueError` sentence, before anything is sent),
turns the GEMM into protocol packets with `host.tiling`, wraps them in CLEAR_COUNTERS ...
READ_COUNTERS, sends them through the transport in one exchange, decodes the results and
sets `last_stats` from the accelerator's own counters. The results are the golden
functions' results bit for bit (the tests check it on every backend).

Weight reuse ("load weights once, run many activation batches"): in the protocol the
weights are COMPUTE's payload (docs/protocol.md explains why there is no LOAD_WEIGHTS), so
what can be reused lives in two places:

* on the accelerator, each M-tile's activations are loaded once and reused across every
  N-tile of the COMPUTE, while the weights stream past them; the weights stream once per
  M-tile;
* on the host, `Accelerator.load_weights(w)` returns a `PreparedWeights` that does the
  weight-side work once: validation, the value range (which decides the mode and the int4
  check), and for MX GEMMs the quantization of B to MX elements and E8M0 codes along K.
  Pass it wherever the weight array would go (`matmul(a, weights)`, `qlinear(x_q,
  weights, ...)`, `mx_matmul(a, weights)`). Packing the COMPUTE payload words is redone per
  call; it costs a few milliseconds per 256 x 256 weight matrix.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

import golden
from golden import _checks
from golden.config import MODE_INFO, ArrayConfig, mx_mode
from golden.mx import MX_FORMATS
from golden.protocol import (
    COUNTER_NAMES,
    PROTOCOL_VERSION,
    Beat,
    Opcode,
    Packet,
    Response,
    check_accelerator_config,
    decode_identify,
    identified_fields,
    parse_responses,
)
from golden.reference import ReferenceAccelerator

from .tiling import (
    AcceleratorError,
    GemmPlan,
    GemmProgram,
    matmul_program,
    mx_matmul_quantized_program,
    plan_gemm,
    qlinear_program,
)
from .transport import Transport, TransportError

__all__ = ["Accelerator", "AcceleratorError", "GemmStats", "GoldenTransport",
           "PreparedWeights", "BACKENDS", "INTEGER_MODES", "MAX_DIMENSION", "MAX_ELEMENTS",
           "open_transport", "check_dimensions"]

BACKENDS = ("golden", "verilator", "cocotb", "serial")
"""Transport names `open_transport` and `Accelerator(backend=...)` accept."""

INTEGER_MODES = ("a4w4", "a8w4", "a8w8")
"""Integer modes, fastest first: the order in which a mode is chosen from value ranges."""

MAX_DIMENSION = 1 << 20
"""Largest M, K or N the driver accepts (larger ones are refused before any allocation)."""
MAX_ELEMENTS = 1 << 26
"""Largest operand or result (elements) the driver accepts: the host pads operands into
int64 arrays, so 2^26 elements already take 512 MiB."""

M_TILE_ROWS = 4
"""M-tiles are at most this many times R rows, unless the link paces the GEMM."""

EXCHANGE_WORDS = 1 << 20
"""Words per exchange above which a call is sent in parts (for progress reports)."""

_RANGES = {4: (-8, 7), 8: (-128, 127)}
_CLEAR_TAG, _READ_TAG = 0xFE, 0xFF

Progress = Callable[[str], None]


# --- Transports --------------------------------------------------------------------------

class GoldenTransport(Transport):
    """The protocol executed on the golden model (`golden.reference.ReferenceAccelerator`):
    no RTL and no clock, so the `cycles` and stall counters read 0."""

    name = "golden"

    def __init__(self, config: ArrayConfig | None = None) -> None:
        self.config = config or ArrayConfig()
        self._reference = ReferenceAccelerator(self.config)
        self._closed = False

    def _exchange(self, beats: list[Beat]) -> list[Beat]:
        if self._closed:
            raise TransportError("the golden transport is closed")
        requests = sum(1 for _, last in beats if last)
        answer = [(beat.word, beat.last) for beat in self._reference.run(beats)]
        if sum(1 for _, last in answer if last) != requests:
            raise TransportError(f"the golden model answered {requests} requests with a "
                                 "different number of responses")
        return answer

    def reset(self) -> None:
        self._reference.reset()

    def close(self) -> None:
        self._closed = True


def open_transport(backend: str, config: ArrayConfig | None = None, *,
                   port: str | None = None, baudrate: int = 115200,
                   progress: Progress | None = None) -> Transport:
    """A transport by name: "golden", "verilator", "cocotb" (simulated accelerators built
    from `config`, default `ArrayConfig()`) or "serial" (a board, or the board-top
    simulation, on `port`)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if config is not None and not isinstance(config, ArrayConfig):
        raise ValueError(f"config must be an ArrayConfig or None, not {config!r}")
    if backend != "serial" and port is not None:
        raise ValueError(f"port is only used by the serial backend, not by {backend!r}")
    if backend == "golden":
        return GoldenTransport(config)
    if backend == "serial":
        if not isinstance(port, str) or not port:
            raise ValueError("the serial backend needs a port, e.g. port='/dev/ttyUSB1'")
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"baudrate must be a positive integer, not {baudrate!r}")
    module_name, class_name = _TRANSPORT_CLASSES[backend]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ValueError(f"the {backend} backend is not available in this installation "
                         f"(module {error.name} is missing)") from None
    transport_class = getattr(module, class_name)
    if backend == "serial":
        return transport_class(port, baudrate=baudrate)
    return transport_class(config, progress=progress)


_TRANSPORT_CLASSES = {
    "verilator": ("sim.fastsim", "VerilatorTransport"),
    "cocotb": ("sim.cocotb_transport", "CocotbTransport"),
    "serial": ("host.serial_transport", "SerialTransport"),
}


# --- Statistics --------------------------------------------------------------------------

@dataclass(frozen=True)
class GemmStats:
    """What one API call cost, from the accelerator's performance counters.

    cycles, busy, input_stall, output_stall, macs: the counters (docs/protocol.md,
    READ_COUNTERS) over the call, from CLEAR_COUNTERS to READ_COUNTERS; `macs` counts the
    padded GEMM (M_pad * K_pad * N_pad), `useful_macs` is M * K * N. The golden backend
    has no clock: cycles and the stalls are None there, and so is `utilization`.
    utilization = macs / (cycles * peak MACs per cycle of the mode). wall_s: host wall time
    of the call (packing, exchange, decoding). simulated_cycles / sim_cycles_per_s: what
    the transport simulated during the exchange (None where nothing is simulated)."""

    operation: str
    mode: str
    out_kind: str
    m: int
    k: int
    n: int
    cycles: int | None
    busy: int
    input_stall: int | None
    output_stall: int | None
    macs: int
    useful_macs: int
    peak_macs_per_cycle: int
    utilization: float | None
    wall_s: float
    exchange_s: float
    simulated_cycles: int | None
    sim_cycles_per_s: float | None
    words_sent: int
    backend: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.m, self.k, self.n)

    def as_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


# --- Input checks --------------------------------------------------------------------------

def check_dimensions(m: Any, k: Any, n: Any) -> tuple[int, int, int]:
    """Refuse empty or absurdly large GEMMs before anything is allocated."""
    values = []
    for name, value in (("m", m), ("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not 1 <= value <= MAX_DIMENSION:
            raise ValueError(f"{name} must be in [1, {MAX_DIMENSION:,}], not {int(value):,}")
        values.append(int(value))
    m, k, n = values
    for what, count in (("the [M, K] operand", m * k), ("the [K, N] operand", k * n),
                        ("the [M, N] result", m * n)):
        if count > MAX_ELEMENTS:
            raise ValueError(f"{what} would have {count:,} elements; the driver accepts at "
                             f"most {MAX_ELEMENTS:,}")
    return m, k, n


def _matrix(name: str, value: Any) -> np.ndarray:
    """A 2-D ndarray with sane dimensions (checked before its values are looked at)."""
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a 2-D NumPy array, not {type(value).__name__}")
    if value.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, not of shape {value.shape}")
    for size in value.shape:
        if size < 1:
            raise ValueError(f"{name} must not be empty, but has shape {value.shape}")
        if size > MAX_DIMENSION:
            raise ValueError(f"{name} has shape {value.shape}; dimensions must be at most "
                             f"{MAX_DIMENSION:,}")
    return value


def _int_range(name: str, array: np.ndarray) -> tuple[int, int]:
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must have an integer dtype, not {array.dtype}")
    return int(array.min()), int(array.max())


def _fits(value_range: tuple[int, int], bits: int) -> bool:
    lo, hi = _RANGES[bits]
    return lo <= value_range[0] and value_range[1] <= hi


# --- Prepared weights ----------------------------------------------------------------------

class PreparedWeights:
    """A weight matrix prepared once for many calls (`Accelerator.load_weights`).

    Pass it where the weight array goes: `matmul(a, weights)` (b [K, N] integers),
    `qlinear(x_q, weights, ...)` (w_q [N, K] int8) or `mx_matmul(a, weights)` (float
    b [K, N], quantized to MX once per format)."""

    def __init__(self, array: np.ndarray, config: ArrayConfig) -> None:
        self.array = _matrix("weights", array)
        self.config = config
        if array.dtype.kind in "iu":
            self.value_range: tuple[int, int] | None = _int_range("weights", array)
        else:
            _checks.finite_float_array("weights", array)
            self.value_range = None
        self._mx: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def mx(self, fmt: str) -> tuple[np.ndarray, np.ndarray]:
        """(elements, codes) of the array as MX B operand [K, N] (blocks along K)."""
        if fmt not in self._mx:
            self._mx[fmt] = golden.mx_quantize(self.array, fmt, self.config.block_size, axis=0)
        return self._mx[fmt]


# --- The accelerator -----------------------------------------------------------------------

class Accelerator:
    """One accelerator behind a transport, with the golden functions' API.

    `backend` is "verilator" (default: the compiled Verilator model of the RTL), "golden",
    "cocotb" or "serial" (`port=`, `baudrate=`). For simulated backends `config` is the
    configuration that gets built (default `ArrayConfig()`); for serial the configuration
    comes from the hardware (IDENTIFY), and a `config` that differs is refused. An open
    `transport` may be given instead of a backend name. `progress` (a callable taking a
    message; with a `count(done, total, what)` method if it has one) hears about simulator
    builds and counts the words of calls longer than `EXCHANGE_WORDS`.

    Errors: `ValueError` for bad arguments (raised before anything is sent),
    `AcceleratorError` when the accelerator refuses a command, `TransportError` when the
    link fails."""

    def __init__(self, config: ArrayConfig | None = None, backend: str = "verilator", *,
                 port: str | None = None, baudrate: int = 115200,
                 progress: Progress | None = None, transport: Transport | None = None) -> None:
        if config is not None and not isinstance(config, ArrayConfig):
            raise ValueError(f"config must be an ArrayConfig or None, not {config!r}")
        if transport is None:
            transport = open_transport(backend, None if backend == "serial" else config,
                                       port=port, baudrate=baudrate, progress=progress)
        self.transport = transport
        self.progress = progress
        # M-tiles of at most 4 R rows where the link keeps up with the accelerator's clock:
        # the weights (R words per M-tile pass) then use at most a quarter of the link, and
        # the next M-tile's activation load hides behind the weights still in the weight FIFO.
        self._m_tile_factor = None if transport.paced_by_link else M_TILE_ROWS
        self.backend = getattr(transport, "name", backend)
        self.last_stats: GemmStats | None = None
        try:
            self.protocol_version, self.config = self._identify()
            if config is not None:
                # IDENTIFY does not carry how the hardware is built (the multiplier, the
                # pipeline), so those fields are the caller's.
                reported, expected = identified_fields(self.config), identified_fields(config)
                changed = [f"{name} {value!r} (not {expected[name]!r})"
                           for name, value in reported.items() if value != expected[name]]
                if changed:
                    raise ValueError(f"the accelerator reports {', '.join(changed)}; pass "
                                     "config=None to use what the hardware reports")
                self.config = config
        except BaseException:
            transport.close()
            raise

    # --- Life cycle ---

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Accelerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.config
        return (f"Accelerator(backend={self.backend!r}, {c.rows}x{c.cols}, "
                f"modes={','.join(c.modes)})")

    def _identify(self) -> tuple[tuple[int, int], ArrayConfig]:
        responses = self._exchange([Packet.make(Opcode.IDENTIFY, 0)])
        response = responses[0]
        if response.header.opcode != Opcode.IDENTIFY or not response.ok:
            raise AcceleratorError(f"the accelerator did not answer IDENTIFY "
                                   f"({response.status.describe()})")
        try:
            version, config = decode_identify(list(response.data))
        except ValueError as error:
            raise TransportError(f"the IDENTIFY answer is not lpmac's: {error}") from None
        if version[0] != PROTOCOL_VERSION[0]:
            raise AcceleratorError(
                f"the accelerator speaks protocol {version[0]}.{version[1]}; this host speaks "
                f"{PROTOCOL_VERSION[0]}.x")
        try:
            check_accelerator_config(config)
        except ValueError as error:
            raise AcceleratorError(f"this host cannot drive the accelerator IDENTIFY "
                                   f"describes: {error}") from None
        return version, config

    def _exchange(self, packets: Sequence[Packet]) -> list[Response]:
        beats = [beat for packet in packets for beat in packet.beats()]
        answer = self.transport.exchange(beats)
        try:
            responses = parse_responses(answer)
        except ValueError as error:
            raise TransportError(f"the {self.backend} link returned a damaged response: "
                                 f"{error}") from None
        if len(responses) != len(packets):
            raise TransportError(f"the {self.backend} link returned {len(responses)} "
                                 f"responses to {len(packets)} requests")
        return responses

    def _exchange_in_parts(self, packets: Sequence[Packet]) -> list[Response]:
        """`_exchange`, in parts of about `EXCHANGE_WORDS` words cut at packet boundaries,
        so that `progress` can count a long GEMM's progress. Splitting costs the accelerator
        only the pipeline refill at each cut (a few hundred cycles per part)."""
        total = sum(1 + len(packet.payload) for packet in packets)
        if total <= EXCHANGE_WORDS or self.progress is None:
            return self._exchange(packets)
        count = getattr(self.progress, "count", None)
        responses: list[Response] = []
        part: list[Packet] = []
        words = sent = 0
        for index, packet in enumerate(packets):
            part.append(packet)
            words += 1 + len(packet.payload)
            if words >= EXCHANGE_WORDS or index == len(packets) - 1:
                responses += self._exchange(part)
                sent += words
                if count is not None:
                    count(sent, total, "words")
                else:
                    self.progress(f"{sent:,} of {total:,} words")
                part, words = [], 0
        return responses

    def identify(self) -> dict[str, Any]:
        """What the accelerator reports: protocol version and configuration (the fields
        IDENTIFY carries, `golden.protocol.identified_fields`)."""
        return {"protocol": f"{self.protocol_version[0]}.{self.protocol_version[1]}",
                "config": identified_fields(self.config)}

    # --- Weights ---

    def load_weights(self, weights: np.ndarray) -> PreparedWeights:
        """Prepare a weight matrix once for many activation batches (see the module
        docstring for what is reused where)."""
        return PreparedWeights(weights, self.config)

    def _weights(self, name: str, value: Any) -> PreparedWeights:
        if isinstance(value, PreparedWeights):
            if value.config != self.config:
                raise ValueError(f"{name} was prepared for another accelerator configuration")
            return value
        return PreparedWeights(_matrix(name, value), self.config)

    # --- Modes ---

    def _choose_mode(self, a_range: tuple[int, int], w_range: tuple[int, int],
                     mode: str | None, a_name: str, w_name: str) -> str:
        if mode is not None:
            if mode not in INTEGER_MODES:
                raise ValueError(f"mode must be one of {', '.join(INTEGER_MODES)} or None, "
                                 f"not {mode!r}")
            self.config.mode(mode)
            return mode
        for candidate in INTEGER_MODES:
            info = MODE_INFO[candidate]
            if candidate in self.config.modes and _fits(a_range, info.activation_bits) \
                    and _fits(w_range, info.weight_bits):
                return candidate
        for name, value_range in ((a_name, a_range), (w_name, w_range)):
            if not _fits(value_range, 8):
                raise ValueError(f"{name} must hold int8 values in [-128, 127], but holds "
                                 f"values in [{value_range[0]}, {value_range[1]}]")
        raise ValueError(f"no integer mode of this accelerator ({', '.join(self.config.modes)})"
                         f" holds {a_name} in [{a_range[0]}, {a_range[1]}] and {w_name} in "
                         f"[{w_range[0]}, {w_range[1]}]")

    # --- GEMMs ---

    def matmul(self, a: np.ndarray, b: np.ndarray | PreparedWeights, *,
               mode: str | None = None, allow_wrap: bool = False) -> np.ndarray:
        """Exact int32 a [M, K] @ b [K, N] of integer arrays, wrapping modulo 2^32 like
        `golden.matmul`. `mode` (a4w4, a8w4, a8w8) defaults to the fastest one whose value
        ranges hold both operands. A K for which the int32 accumulator could wrap is refused
        unless `allow_wrap`."""
        a = _matrix("a", a)
        weights = self._weights("b", b)
        check_dimensions(a.shape[0], a.shape[1], weights.shape[1])
        if a.shape[1] != weights.shape[0]:
            raise ValueError(f"a [M, K] and b [K, N] must agree on K, not {a.shape} and "
                             f"{weights.shape}")
        a_range = _int_range("a", a)
        if weights.value_range is None:
            raise ValueError(f"b must have an integer dtype, not {weights.array.dtype}")
        chosen = self._choose_mode(a_range, weights.value_range, mode, "a", "b")
        start = time.perf_counter()
        k = a.shape[1]
        if k <= self.max_k:
            program = matmul_program(self.config, a, weights.array, mode=chosen,
                                     allow_wrap=allow_wrap, max_m_tile=self._m_tile())
            return self._run("matmul", [program], start)
        # K beyond one activation bank: K-slices, each a GEMM of its own, summed on the host
        # modulo 2^32 (exact: int32 accumulation wraps the same whatever the grouping).
        info = MODE_INFO[chosen]
        limit = golden.max_safe_k(_RANGES[info.activation_bits], _RANGES[info.weight_bits])
        if k > limit and not allow_wrap:
            raise ValueError(
                f"K = {k} can overflow the int32 accumulator in mode {chosen} (the safe "
                f"limit is {limit}); pass allow_wrap=True to accept wrapping modulo 2^32")
        # Slices narrow enough for M-tiles of up to 2R rows: a weight tile (R words) then
        # serves 2R cycles, so the stream keeps up (docs/protocol.md, "Tiling").
        config = self.config
        tile_rows = min(a.shape[0], 2 * config.rows)
        width = min(self.max_k, config.activation_bank_depth // tile_rows * config.rows)
        programs = [matmul_program(config, a[:, cut:cut + width], weights.array[cut:cut + width],
                                   mode=chosen, allow_wrap=allow_wrap,
                                   max_m_tile=self._m_tile())
                    for cut in range(0, k, width)]
        return self._run("matmul", programs, start, k=k)

    def _m_tile(self) -> int | None:
        """The tallest M-tile the host asks for (None: as tall as the banks allow)."""
        return None if self._m_tile_factor is None else self._m_tile_factor * self.config.rows

    def plan(self, m: int, k: int, n: int, *, mode: str, out_kind: str) -> GemmPlan:
        """How this accelerator's GEMMs of M x K x N in `mode` with output `out_kind` are
        tiled (`host.tiling.plan_gemm` with this link's M-tile limit): padding, M-tiles,
        N-chunks. `GemmStats.macs` counts the padded GEMM."""
        return plan_gemm(self.config, m=m, k=k, n=n, mode=mode, out_kind=out_kind,
                         max_m_tile=self._m_tile())

    @property
    def max_k(self) -> int:
        """Largest K of one accelerator GEMM (an activation bank holds the M-tile's whole
        K); `matmul` splits larger K into slices and adds the int32 results on the host."""
        config = self.config
        return min(config.activation_bank_depth * config.rows, 0xFFFF // config.rows
                   * config.rows)

    def qlinear(self, x_q: np.ndarray, w_q: np.ndarray | PreparedWeights, *, x_scale: float,
                x_zero_point: int, w_scale: float | np.ndarray, y_scale: float,
                y_zero_point: int, bias: np.ndarray | None = None, relu: bool = False,
                rounding: str = "fp32", out_dtype: str = "uint8",
                mode: str | None = None) -> np.ndarray:
        """The quantized linear layer of `golden.qlinear`, same arguments and result:
        x_q [M, K] uint8 or int8, w_q [N, K] int8, per-tensor or per-channel w_scale,
        int32 bias [N], fp32 (PyTorch) or gemmlowp (TFLite) rounding, uint8 / int8 / int4
        output. `mode` defaults to the fastest one whose ranges hold the activations as
        sent (uint8 x goes out as x - 128) and the weights."""
        x_q = _matrix("x_q", x_q)
        weights = self._weights("w_q", w_q)
        check_dimensions(x_q.shape[0], x_q.shape[1], weights.shape[0])
        lo, hi = _int_range("x_q", x_q)
        if x_q.dtype == np.uint8:
            sent = (lo - 128, hi - 128)
        else:
            sent = (lo, hi)
        w_range = weights.value_range or (0, 0)
        if x_q.dtype.name not in ("uint8", "int8") or weights.array.dtype.name != "int8" \
                or x_q.shape[1] != weights.shape[1]:
            # The program builder names the problem in golden.qlinear's words.
            chosen = mode or "a8w8"
        else:
            chosen = self._choose_mode(sent, w_range, mode, "x_q (as sent: x - 128 for "
                                       "uint8)", "w_q")
        start = time.perf_counter()
        program = qlinear_program(
            self.config, x_q, weights.array, x_scale=x_scale, x_zero_point=x_zero_point,
            w_scale=w_scale, y_scale=y_scale, y_zero_point=y_zero_point, bias=bias, relu=relu,
            rounding=rounding, out_dtype=out_dtype, mode=chosen, max_m_tile=self._m_tile())
        return self._run("qlinear", [program], start)

    def mx_matmul(self, a: np.ndarray, b: np.ndarray | PreparedWeights, *,
                  fmt_a: str = "mxint8", fmt_b: str = "mxint8", block: int = 32,
                  acc_bits: int = 32, out: str = "fp32", acc_rounding: str = "nearest"):
        """The MX GEMM of `golden.mx_matmul`, same arguments and result: float32 [M, N]
        for out="fp32", (elements int8 [M, N], scale codes uint8 [M, ceil(N / block)]) for
        out="mxint8" / "mxint4". The hardware computes MXINT8 x MXINT8 (mode "mxint8"),
        MXINT4 x MXINT4 ("mxint4") and MXINT8 activations x MXINT4 weights ("mxint8w4"), with
        its own block size, accumulator width and rounding: other values are refused."""
        a = _matrix("a", a)
        weights = self._weights("b", b)
        check_dimensions(a.shape[0], a.shape[1], weights.shape[1])
        _checks.finite_float_array("a", a)
        if a.shape[1] != weights.shape[0]:
            raise ValueError(f"a [M, K] and b [K, N] must agree on K, not {a.shape} and "
                             f"{weights.shape}")
        for name, fmt in (("fmt_a", fmt_a), ("fmt_b", fmt_b)):
            _checks.choice(name, fmt, tuple(MX_FORMATS))
        mode = mx_mode(fmt_a, fmt_b)
        if mode is None:
            raise ValueError(f"fmt_a x fmt_b must be MXINT8 x MXINT8, MXINT4 x MXINT4 or MXINT8 "
                             f"x MXINT4 (activations x weights), not {fmt_a} x {fmt_b}")
        self.config.mode(mode)
        _checks.choice("out", out, ("fp32", *MX_FORMATS))
        config = self.config
        for name, value, built in (("block", block, config.block_size),
                                   ("acc_bits", acc_bits, config.acc_bits),
                                   ("acc_rounding", acc_rounding, config.acc_rounding)):
            if value != built:
                raise ValueError(f"{name} must be {built!r} (this accelerator's {name}), "
                                 f"not {value!r}")
        start = time.perf_counter()
        a_elements, a_codes = golden.mx_quantize(a, fmt_a, block, axis=1)
        b_elements, b_codes = weights.mx(fmt_b)
        program = mx_matmul_quantized_program(config, a_elements, a_codes, b_elements,
                                              b_codes, mode=mode, out=out,
                                              max_m_tile=self._m_tile())
        return self._run("mx_matmul", [program], start)

    # --- Running a program ---

    def _run(self, operation: str, programs: list[GemmProgram], start: float,
             k: int | None = None):
        plan = programs[0].plan
        packets = [Packet.make(Opcode.CLEAR_COUNTERS, _CLEAR_TAG),
                   *(packet for program in programs for packet in program.packets),
                   Packet.make(Opcode.READ_COUNTERS, _READ_TAG)]
        cycles_before = self.transport.simulated_cycles
        exchange_start = time.perf_counter()
        responses = self._exchange_in_parts(packets)
        exchange_s = time.perf_counter() - exchange_start
        cycles_after = self.transport.simulated_cycles
        for response, opcode in ((responses[0], Opcode.CLEAR_COUNTERS),
                                 (responses[-1], Opcode.READ_COUNTERS)):
            if response.header.opcode != opcode:
                raise TransportError(f"the {self.backend} link answered {opcode.name} with "
                                     f"a response to opcode {response.header.opcode:#04x}")
            if not response.ok:
                raise AcceleratorError(f"the accelerator refused {response.status.describe()}")
        results = []
        first = 1
        for program in programs:
            results.append(program.decode(responses[first:first + len(program.packets)]))
            first += len(program.packets)
        if len(results) == 1:
            result = results[0]
        else:   # K-slices of an int32 GEMM: add modulo 2^32
            total = np.zeros(results[0].shape, np.int64)
            for part in results:
                total += part
            result = total.astype(np.uint32).view(np.int32)
        counters = dict(zip(COUNTER_NAMES, responses[-1].data, strict=True))
        timed = not isinstance(self.transport, GoldenTransport)
        peak = self.config.peak_macs_per_cycle(plan.mode)
        cycles = counters["cycles"] if timed else None
        simulated = None if cycles_before is None or cycles_after is None \
            else cycles_after - cycles_before
        self.last_stats = GemmStats(
            operation=operation, mode=plan.mode, out_kind=plan.out_kind,
            m=plan.m, k=k or plan.k, n=plan.n, cycles=cycles, busy=counters["busy"],
            input_stall=counters["input_stall"] if timed else None,
            output_stall=counters["output_stall"] if timed else None,
            macs=counters["macs"], useful_macs=plan.m * (k or plan.k) * plan.n,
            peak_macs_per_cycle=peak,
            utilization=counters["macs"] / (cycles * peak) if cycles else None,
            wall_s=time.perf_counter() - start, exchange_s=exchange_s,
            simulated_cycles=simulated,
            sim_cycles_per_s=simulated / exchange_s if simulated and exchange_s > 0 else None,
            words_sent=sum(1 + len(packet.payload) for packet in packets),
            backend=self.backend)
        return result
