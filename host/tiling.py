"""GEMM tiling: the one place that turns a GEMM into lpmac protocol packets and turns the
responses back into a result matrix.

The accelerator computes C[M, N] = A[M, K] @ W[K, N] weight-stationary (docs/protocol.md,
"Tiling"). For one configuration (an N-chunk, see below) the host sends

    CONFIGURE(mode, output, M_tile, K_pad, N_chunk)  [LOAD_REQUANT for 8/4-bit outputs]
    for every M-tile (activation banks alternate 0, 1, 0, ...):
        LOAD_ACTIVATIONS(bank)  [LOAD_SCALES(bank) in MX modes]  COMPUTE(bank, weights)

and each COMPUTE answers with the M_tile x N_chunk results. Loading the next M-tile's
activations into the other bank overlaps the current COMPUTE.

Padding (zeros, stripped from the results): K to a multiple of R (integer modes) or BK (MX
modes: whole K-blocks; a zero-padded trailing block has the same scale code as the partial
block golden.mx_quantize scales by its own elements); N to a multiple of the N-tile (C, or 2C
in 4-bit-weight modes) or of BK for MX outputs (re-blocked along N; zeros do not change a
block's maximum); M to M_tiles x M_tile, with M_tile = ceil(M / ceil(M / M_max)) so that
at most M_tiles - 1 rows are padding. M_max is the largest M-tile the activation bank
(M_tile * K_pad / R vectors) and the accumulator bank (M_tile * group rows) hold.

N-chunks: with 8/4-bit outputs the per-channel parameters of one configuration must fit the
requantization memory (`ArrayConfig.requant_depth` channels), so wider GEMMs are split into
N-chunks, each with its own CONFIGURE and LOAD_REQUANT (activations are sent again per
chunk). Chunks also keep packet lengths below the header's 2^24 - 1 words.

Numerics on the host (docs/numerics.md): uint8 activations become int8 by subtracting 128
with za' = za - 128 (section 3); the activation zero point is folded into the int32 bias with
`golden.fold_zero_point`; the requantization parameters come from `golden.requant_params`;
MX operands from `golden.mx_quantize` along K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

import golden
from golden.config import MODE_INFO, ArrayConfig
from golden.mx import MX_FORMATS
from golden.protocol import (
    MAX_LENGTH,
    MX_KINDS,
    REQUANT_KINDS,
    Beat,
    ConfigureFields,
    Geometry,
    Opcode,
    Packet,
    Response,
    Status,
    check_accelerator_config,
    check_configure,
    encode_configure,
    encode_requant_words,
    item_nibbles,
    unpack_results,
    vector_words,
    weight_row_words,
)

__all__ = ["GemmPlan", "GemmProgram", "plan_gemm", "matmul_program", "qlinear_program",
           "mx_matmul_program", "mx_matmul_quantized_program", "AcceleratorError"]

_OPERAND_RANGES = {8: (-128, 127), 4: (-8, 7)}


class AcceleratorError(RuntimeError):
    """The accelerator answered a command with an error status."""


@dataclass(frozen=True)
class GemmPlan:
    """How a GEMM of M x K x N maps onto the accelerator (see the module docstring)."""

    config: ArrayConfig
    mode: str
    out_kind: str
    m: int
    k: int
    n: int
    k_pad: int
    n_pad: int
    m_tile: int
    m_tiles: int
    n_chunks: tuple[tuple[int, int], ...]

    @property
    def m_pad(self) -> int:
        return self.m_tile * self.m_tiles

    @property
    def k_words(self) -> int:
        """The protocol's K: `k_pad`, or half of it with K-pairs (two K-elements a byte)."""
        return self.k_pad // self.config.mode(self.mode).k_pack

    @property
    def macs(self) -> int:
        """Useful MACs of the GEMM (M * K * N)."""
        return self.m * self.k * self.n


def plan_gemm(config: ArrayConfig, *, m: int, k: int, n: int, mode: str,
              out_kind: str, max_m_tile: int | None = None) -> GemmPlan:
    """Tile sizes and padding for a GEMM of M x K x N in `mode` with output `out_kind`.

    M-tiles are as tall as the banks allow, or `max_m_tile` rows if that is fewer
    (`M_TILE_FOR_SPEED` for a link as fast as the accelerator's clock)."""
    check_accelerator_config(config)
    info = config.mode(mode)
    for name, value in (("m", m), ("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    allowed = ("fp32", *MX_KINDS) if info.mx else ("int32", *REQUANT_KINDS)
    if out_kind not in allowed:
        raise ValueError(f"out_kind must be one of {', '.join(allowed)} in mode {mode}, "
                         f"not {out_kind!r}")
    block = config.block_size
    lc = config.cols * info.lanes
    k_granule = block if info.mx else config.rows
    n_granule = block if out_kind in MX_KINDS else lc
    # With K-pairs the protocol's K counts bytes of two K-elements (k_words of them).
    k_words = -(-k // (info.k_pack * k_granule)) * k_granule
    k_pad = k_words * info.k_pack
    n_pad = -(-n // n_granule) * n_granule
    kt = k_words // config.rows
    group = block // lc if out_kind in MX_KINDS else 1
    fits = min(config.activation_bank_depth // kt, config.accumulator_bank_depth // group,
               0xFFFF)
    m_max = fits if max_m_tile is None else max(1, min(fits, max_m_tile))
    if fits < 1 or k_words > 0xFFFF:
        raise ValueError(
            f"k = {k} is too large for this accelerator: one activation bank holds "
            f"{config.activation_bank_depth} vectors of {config.rows * info.k_pack} "
            f"elements, so K must be at most "
            f"{config.activation_bank_depth * config.rows * info.k_pack}")
    m_tiles = -(-m // m_max)
    m_tile = -(-m // m_tiles)
    # Widest N-chunk: requantization memory, 16-bit N field, packet length limits.
    scale_words = -(-lc // 8) if info.mx else 0
    per_tile_words = k_words * weight_row_words(config) + (k_words // block) * scale_words
    result_nibbles = m_tile * (item_nibbles(out_kind) + (2 / block if out_kind in MX_KINDS
                                                         else 0))
    widest = min(config.requant_depth if out_kind in REQUANT_KINDS else 0xFFFF,
                 0xFFFF, MAX_LENGTH // per_tile_words * lc,
                 int((MAX_LENGTH - 1) * 16 // result_nibbles))
    widest = widest // n_granule * n_granule
    if widest < n_granule:
        raise ValueError(f"k = {k} makes one N-tile longer than a packet can be")
    chunks = tuple((start, min(start + widest, n_pad)) for start in range(0, n_pad, widest))
    return GemmPlan(config, mode, out_kind, m, k, n, k_pad, n_pad, m_tile, m_tiles, chunks)


@dataclass
class GemmProgram:
    """The request packets of one GEMM and the knowledge to decode their responses.

    `beats()` is what goes on the input stream; `decode(responses)` checks that every
    response is OK and assembles the result ([M, N] bit patterns, plus MX codes)."""

    plan: GemmPlan
    packets: list[Packet] = field(default_factory=list)
    # (packet index, geometry, row offset, column offset) of every COMPUTE
    computes: list[tuple[int, Geometry, int, int]] = field(default_factory=list)
    host_requant: golden.RequantParams | None = None
    """Requantization `decode` applies to the int32 result on the host (`qlinear_program`
    on an accelerator built without the requantization unit)."""
    _tag: int = 0

    def add(self, opcode: Opcode, payload: Sequence[int] = (), args: int = 0) -> int:
        self.packets.append(Packet.make(opcode, self._tag, payload, args))
        self._tag = (self._tag + 1) & 0xFF
        return len(self.packets) - 1

    def beats(self) -> list[Beat]:
        return [beat for packet in self.packets for beat in packet.beats()]

    @property
    def word_count(self) -> int:
        return sum(1 + len(packet.payload) for packet in self.packets)

    def check(self, responses: Sequence[Response]) -> None:
        """Raise `AcceleratorError` unless there is one OK response per request, in order."""
        if len(responses) != len(self.packets):
            raise AcceleratorError(
                f"expected {len(self.packets)} responses, got {len(responses)}")
        for packet, response in zip(self.packets, responses, strict=True):
            if (response.header.opcode, response.header.tag) != (packet.header.opcode,
                                                                 packet.header.tag):
                raise AcceleratorError(
                    f"response {response.header} does not answer request {packet.header}")
            if not response.ok:
                raise AcceleratorError(f"the accelerator refused {response.status.describe()}")

    def decode_raw(self, responses: Sequence[Response]) -> tuple[np.ndarray, np.ndarray | None]:
        """(values [M, N] as unsigned bit patterns, MX codes [M, ceil(N / BK)] or None)."""
        self.check(responses)
        plan = self.plan
        values = np.zeros((plan.m_pad, plan.n_pad), dtype=np.int64)
        block = plan.config.block_size
        codes = np.zeros((plan.m_pad, plan.n_pad // block), dtype=np.int64) \
            if plan.out_kind in MX_KINDS else None
        for index, geometry, row, column in self.computes:
            tile, tile_codes = unpack_results(geometry, responses[index].data)
            values[row:row + geometry.m, column:column + geometry.n] = tile
            if codes is not None:
                codes[row:row + geometry.m, column // block:(column + geometry.n) // block] = \
                    tile_codes
        values = values[:plan.m, :plan.n]
        if codes is not None:
            codes = codes[:plan.m, :-(-plan.n // block)]
        return values, codes

    def decode(self, responses: Sequence[Response]
               ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The GEMM result in the form of the golden function the program was built for:
        int32 [M, N] (`matmul_program`), uint8 / int8 [M, N] (`qlinear_program`), float32
        [M, N] or (elements int8 [M, N], codes uint8) (`mx_matmul_program`)."""
        values, codes = self.decode_raw(responses)
        kind = self.plan.out_kind
        if self.host_requant is not None:
            return golden.requantize(values.astype(np.uint32).view(np.int32),
                                     self.host_requant)
        if kind == "uint8":
            return values.astype(np.uint8)
        if kind == "int8":
            return values.astype(np.uint8).view(np.int8)
        if kind == "int4":
            return np.where(values >= 8, values - 16, values).astype(np.int8)
        if kind == "int32":
            return values.astype(np.uint32).view(np.int32)
        if kind == "fp32":
            return values.astype(np.uint32).view(np.float32)
        bits = 4 * item_nibbles(kind)
        elements = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
        return elements.astype(np.int8), codes.astype(np.uint8)


# --- Building programs ------------------------------------------------------------------

def _padded(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    out = np.zeros((rows, cols), dtype=np.int64)
    out[:array.shape[0], :array.shape[1]] = array
    return out


def _activation_words(config: ArrayConfig, a_tile: np.ndarray) -> list[int]:
    """A [M_tile, K_pad] -> `vector_words` words per (k_tile, m): R int8 elements, element 0
    lowest, 8 per word."""
    rows, words = config.rows, vector_words(config)
    m_tile, k_pad = a_tile.shape
    vectors = a_tile.reshape(m_tile, k_pad // rows, rows).transpose(1, 0, 2)
    as_bytes = np.zeros((*vectors.shape[:2], 8 * words), dtype=np.uint8)
    as_bytes[..., :rows] = (vectors & 0xFF).astype(np.uint8)
    return [int(word) for word in as_bytes.reshape(-1, 8).view("<u8").reshape(-1)]


def _weight_words(config: ArrayConfig, w_chunk: np.ndarray, lanes: int) -> np.ndarray:
    """W [K_pad, N_chunk] -> words [NT, K_pad * row_words]: per N-tile, per K row, the C
    weight bytes of the array row, 8 per word (4-bit modes: column c in the low nibble,
    column c + C in the high one)."""
    cols, words = config.cols, weight_row_words(config)
    k_pad, n_chunk = w_chunk.shape
    lc = cols * lanes
    tiles = w_chunk.reshape(k_pad, n_chunk // lc, lc).transpose(1, 0, 2)   # [NT, K, lc]
    if lanes == 1:
        as_bytes = (tiles & 0xFF).astype(np.uint8)
    else:
        as_bytes = ((tiles[..., :cols] & 0xF) | ((tiles[..., cols:] & 0xF) << 4)) \
            .astype(np.uint8)
    padded = np.zeros((*as_bytes.shape[:2], 8 * words), dtype=np.uint8)
    padded[..., :cols] = as_bytes
    return padded.view("<u8").reshape(as_bytes.shape[0], -1)


def _code_words(codes: np.ndarray, words: int) -> np.ndarray:
    """Codes [..., n] (n <= 8 * words) -> [..., words] words, code 0 in the lowest byte."""
    padded = np.zeros((*codes.shape[:-1], 8 * words), dtype=np.uint8)
    padded[..., :codes.shape[-1]] = codes
    return padded.view("<u8")


def _build(plan: GemmPlan, a: np.ndarray, w: np.ndarray, *, rounding: str = "fp32",
           relu: bool = False, zero_point: int = 0,
           requant: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
           a_codes: np.ndarray | None = None, b_codes: np.ndarray | None = None
           ) -> GemmProgram:
    config = plan.config
    info = config.mode(plan.mode)
    a_pad = _padded(a, plan.m_pad, plan.k_pad)
    w_pad = _padded(w, plan.k_pad, plan.n_pad)
    if info.k_pack == 2:
        # K-pairs: ONNX's int4 packing along K (element 2j in the low nibble).
        a_pad = golden.pack_int4(a_pad)
        w_pad = golden.pack_int4(w_pad.T).T
    block = config.block_size
    if info.mx:
        a_codes = _padded(a_codes, plan.m_pad, plan.k_pad // block)
        b_codes = _padded(b_codes, plan.k_pad // block, plan.n_pad)
    program = GemmProgram(plan)
    bank = 0
    for start, stop in plan.n_chunks:
        fields = encode_configure(mode=plan.mode, out_kind=plan.out_kind, m=plan.m_tile,
                                  k=plan.k_words, n=stop - start, rounding=rounding, relu=relu,
                                  zero_point=zero_point)
        geometry = _geometry(config, fields)
        program.add(Opcode.CONFIGURE, fields.encode())
        if requant is not None:
            bias, multiplier, shift = (np.pad(np.asarray(x)[start:min(stop, plan.n)],
                                              (0, stop - min(stop, plan.n))) for x in requant)
            program.add(Opcode.LOAD_REQUANT, encode_requant_words(bias, multiplier, shift))
        weights = _weight_words(config, w_pad[:, start:stop], info.lanes)
        if info.mx:
            s = geometry.block_scale_words
            codes = b_codes[:, start:stop].reshape(geometry.nb, geometry.nt, geometry.lc)
            code_words = _code_words(codes.transpose(1, 0, 2).astype(np.uint8), s)
            payload = np.concatenate([code_words, weights.reshape(
                geometry.nt, geometry.nb, block * geometry.row_words)], axis=-1)
            compute_payload = [int(x) for x in payload.reshape(-1)]
        else:
            compute_payload = [int(x) for x in weights.reshape(-1)]
        for tile in range(plan.m_tiles):
            rows = slice(tile * plan.m_tile, (tile + 1) * plan.m_tile)
            program.add(Opcode.LOAD_ACTIVATIONS, _activation_words(config, a_pad[rows]),
                        args=bank)
            if info.mx:
                tile_codes = a_codes[rows].T.reshape(-1).astype(np.uint8)   # order (b, m)
                padded = np.zeros(geometry.scale_words * 8, dtype=np.uint8)
                padded[:tile_codes.size] = tile_codes
                program.add(Opcode.LOAD_SCALES,
                            [int(x) for x in padded.view("<u8")], args=bank)
            index = program.add(Opcode.COMPUTE, compute_payload, args=bank)
            program.computes.append((index, geometry, tile * plan.m_tile, start))
            bank ^= 1
    return program


def _geometry(config: ArrayConfig, fields: ConfigureFields) -> Geometry:
    status, which, geometry = check_configure(config, fields)
    if status != Status.OK:  # plan_gemm keeps within every limit; this is a bug guard
        raise AssertionError(f"internal tiling error: CONFIGURE would fail with "
                             f"{status.name} ({which.name})")
    return geometry


def _int_operands(a: np.ndarray, w: np.ndarray, mode: str, allow_wrap: bool,
                  a_name: str = "a", w_name: str = "w") -> None:
    info = MODE_INFO[mode]
    a_range = _OPERAND_RANGES[info.activation_bits]
    w_range = _OPERAND_RANGES[info.weight_bits]
    for name, array, (lo, hi), bits in ((a_name, a, a_range, info.activation_bits),
                                         (w_name, w, w_range, info.weight_bits)):
        if array.min() < lo or array.max() > hi:
            raise ValueError(
                f"{name} must hold int{bits} values in [{lo}, {hi}] in mode {mode}, but "
                f"holds values in [{int(array.min())}, {int(array.max())}]")
    limit = golden.max_safe_k(a_range, w_range)
    if a.shape[1] > limit and not allow_wrap:
        raise ValueError(
            f"K = {a.shape[1]} can overflow the int32 accumulator in mode {mode} (the safe "
            f"limit is {limit}); pass allow_wrap=True to accept wrapping modulo 2^32")


def matmul_program(config: ArrayConfig, a: np.ndarray, b: np.ndarray, *, mode: str = "a8w8",
                   allow_wrap: bool = False, max_m_tile: int | None = None) -> GemmProgram:
    """Exact int32 GEMM a [M, K] @ b [K, N] (int32 outputs, `golden.matmul`), with int8 or
    int4 operands as `mode` says."""
    a = golden._checks.int_array("a", a, ndim=2)
    b = golden._checks.int_array("b", b, ndim=2)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a [M, K] and b [K, N] must agree on K, not {a.shape} and {b.shape}")
    if config.mode(mode).mx:
        raise ValueError(f"mode must be an integer mode for matmul_program, not {mode!r}")
    _int_operands(a, b, mode, allow_wrap, "a", "b")
    plan = plan_gemm(config, m=a.shape[0], k=a.shape[1], n=b.shape[1], mode=mode,
                     out_kind="int32", max_m_tile=max_m_tile)
    return _build(plan, a, b)


def qlinear_program(config: ArrayConfig, x_q: np.ndarray, w_q: np.ndarray, *,
                    x_scale: float, x_zero_point: int, w_scale: float | np.ndarray,
                    y_scale: float, y_zero_point: int, bias: np.ndarray | None = None,
                    relu: bool = False, rounding: str = "fp32", out_dtype: str = "uint8",
                    mode: str = "a8w8", allow_wrap: bool = False,
                    max_m_tile: int | None = None) -> GemmProgram:
    """The quantized linear layer of `golden.qlinear` (same arguments, plus `mode`).

    uint8 activations are sent as x - 128 with zero point x_zero_point - 128; the zero point
    is folded into the bias (`golden.fold_zero_point`); in A4W4 the activations (after that)
    and in A8W4 / A4W4 the weights must be int4 values."""
    x_q = golden._checks.int_array("x_q", x_q, ndim=2, dtypes=("uint8", "int8"))
    w_q = golden._checks.int_array("w_q", w_q, ndim=2, dtypes=("int8",))
    if x_q.shape[1] != w_q.shape[1]:
        raise ValueError(f"x_q [M, K] and w_q [N, K] must agree on K, not {x_q.shape} and "
                         f"{w_q.shape}")
    if config.mode(mode).mx:
        raise ValueError(f"mode must be an integer mode for qlinear_program, not {mode!r}")
    x_zero = golden._checks.int_scalar("x_zero_point", x_zero_point,
                                       golden._checks.INT_RANGES[x_q.dtype.name])
    if x_q.dtype == np.uint8:
        x = x_q.astype(np.int64) - 128
        x_zero -= 128
    else:
        x = x_q.astype(np.int64)
    _int_operands(x, w_q, mode, allow_wrap, "x_q (as sent: x - 128 for uint8)", "w_q")
    folded = golden.fold_zero_point(w_q, x_zero, bias)
    params = golden.requant_params(x_scale=x_scale, w_scale=w_scale, y_scale=y_scale,
                                   y_zero_point=y_zero_point, bias=folded, relu=relu,
                                   rounding=rounding, out_dtype=out_dtype,
                                   channels=w_q.shape[0])
    channels = w_q.shape[0]
    if config.requant_depth == 0:
        # No requantization unit: int32 on the accelerator, `golden.requantize` on the host
        # (the function the hardware requantizer is verified against, so the result is
        # bit-identical to an accelerator with the unit; docs/protocol.md, CONFIGURE).
        plan = plan_gemm(config, m=x.shape[0], k=x.shape[1], n=channels, mode=mode,
                         out_kind="int32", max_m_tile=max_m_tile)
        program = _build(plan, x, w_q.T.astype(np.int64))
        program.host_requant = params
        return program
    if rounding == "fp32":
        bits = np.asarray(params.multiplier, np.float32).view(np.uint32).astype(np.int64)
        shift = np.zeros(channels, np.int64)
    else:
        bits = np.asarray(params.multiplier, np.int64)
        shift = np.broadcast_to(np.asarray(params.shift, np.int64), (channels,))
    requant = (np.broadcast_to(params.bias, (channels,)), np.broadcast_to(bits, (channels,)),
               shift)
    plan = plan_gemm(config, m=x.shape[0], k=x.shape[1], n=channels, mode=mode,
                     out_kind=out_dtype, max_m_tile=max_m_tile)
    return _build(plan, x, w_q.T.astype(np.int64), rounding=rounding, relu=relu,
                  zero_point=params.zero_point, requant=requant)


def mx_matmul_quantized_program(config: ArrayConfig, a_elements: np.ndarray,
                                a_codes: np.ndarray, b_elements: np.ndarray,
                                b_codes: np.ndarray, *, mode: str = "mxint8",
                                out: str = "fp32", max_m_tile: int | None = None
                                ) -> GemmProgram:
    """MX GEMM of quantized operands (as `golden.mx_matmul_quantized`, the formats given by
    `mode`: MXINT8 x MXINT8, MXINT4 x MXINT4 or MXINT8 x MXINT4 for "mxint8w4"), with FP32
    or re-blocked MX outputs."""
    info = config.mode(mode)
    if not info.mx:
        raise ValueError(f"mode must be an MX mode, not {mode!r}")
    block = config.block_size
    spec_a, spec_b = (MX_FORMATS[fmt] for fmt in info.mx_formats)
    a_elements = golden._checks.int_array("a_elements", a_elements, ndim=2,
                                          value_range=(-spec_a.max_code, spec_a.max_code))
    b_elements = golden._checks.int_array("b_elements", b_elements, ndim=2,
                                          value_range=(-spec_b.max_code, spec_b.max_code))
    m, k = a_elements.shape
    if b_elements.shape[0] != k:
        raise ValueError(f"a_elements [M, K] and b_elements [K, N] must agree on K, not "
                         f"{a_elements.shape} and {b_elements.shape}")
    n = b_elements.shape[1]
    blocks = -(-k // block)
    a_codes = golden._checks.int_array("a_codes", a_codes, ndim=2, value_range=(0, 254))
    b_codes = golden._checks.int_array("b_codes", b_codes, ndim=2, value_range=(0, 254))
    if a_codes.shape != (m, blocks) or b_codes.shape != (blocks, n):
        raise ValueError(f"a_codes must have shape {(m, blocks)} and b_codes {(blocks, n)}, "
                         f"not {a_codes.shape} and {b_codes.shape}")
    plan = plan_gemm(config, m=m, k=k, n=n, mode=mode, out_kind=out, max_m_tile=max_m_tile)
    return _build(plan, a_elements.astype(np.int64), b_elements.astype(np.int64),
                  a_codes=a_codes.astype(np.int64), b_codes=b_codes.astype(np.int64))


def mx_matmul_program(config: ArrayConfig, a: np.ndarray, b: np.ndarray, *,
                      mode: str = "mxint8", out: str = "fp32",
                      max_m_tile: int | None = None) -> GemmProgram:
    """The MX GEMM of `golden.mx_matmul` for float a [M, K], b [K, N], quantized to the
    formats of `mode` with the configuration's block size; the accumulator is the hardware's
    (W = config.acc_bits, config.acc_rounding)."""
    fmt_a, fmt_b = config.mode(mode).mx_formats
    block = config.block_size
    a_elements, a_codes = golden.mx_quantize(a, fmt_a, block, axis=1)
    b_elements, b_codes = golden.mx_quantize(b, fmt_b, block, axis=0)
    return mx_matmul_quantized_program(config, a_elements, a_codes, b_elements, b_codes,
                                       mode=mode, out=out, max_m_tile=max_m_tile)
