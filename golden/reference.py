"""Reference executor of the lpmac protocol: what the accelerator must answer, word for word.

`ReferenceAccelerator(config).run(beats)` takes request beats (64-bit word, `last`) and
returns the response beats the hardware must produce, each with a mask of the bits that are
defined independently of timing (only the `cycles`, `input_stall` and `output_stall`
counters are not). It keeps the same state as the hardware (configuration, activation and
scale banks, requantization parameters, the deterministic counters), applies the same
validation in the same order, and computes COMPUTE results with the golden model
(`golden.matmul`, `golden.requantize`, `golden.bfp_accumulate`, `golden.bfp_to_float32`,
`golden.mx_quantize`), including the hardware's conventions for damaged packets (a truncated
COMPUTE runs with zero weights in place of the missing words). docs/protocol.md is the prose
version of this file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import golden

from .config import ArrayConfig
from .mx import MX_FORMATS
from .protocol import (
    COUNTER_NAMES,
    DETERMINISTIC_COUNTERS,
    REQUANT,
    WORD_MASK,
    Beat,
    Field,
    Geometry,
    Header,
    Opcode,
    Status,
    StatusWord,
    check_accelerator_config,
    check_configure,
    decode_configure,
    identify_words,
    pack_results,
    response_length,
    split_packets,
)
from .requant import RequantParams
from .rounding import wrap_int32

__all__ = ["ExpectedBeat", "ReferenceAccelerator", "compare_responses"]


@dataclass(frozen=True)
class ExpectedBeat:
    """One response beat: the word, `last`, and the mask of bits that must match."""

    word: int
    last: bool
    mask: int = WORD_MASK


_BANK_COMMANDS = (Opcode.LOAD_SCALES, Opcode.LOAD_ACTIVATIONS, Opcode.COMPUTE)
_CONFIGURED_COMMANDS = (Opcode.LOAD_REQUANT, *_BANK_COMMANDS)


class ReferenceAccelerator:
    """The accelerator's protocol behaviour, in NumPy (no timing)."""

    def __init__(self, config: ArrayConfig) -> None:
        check_accelerator_config(config)
        self.config = config
        half = config.activation_bank_depth
        self._act_half = half
        # Memories are not cleared by reset (like the hardware's); they start as zeros.
        self.activations = np.zeros((config.activation_buffer_depth, config.rows), np.uint8)
        self.scales = np.zeros((2, config.scale_bank_words * 8), np.uint8)
        self.requant_bias = np.zeros(config.requant_depth, np.int64)
        self.requant_multiplier = np.zeros(config.requant_depth, np.int64)
        self.requant_shift = np.zeros(config.requant_depth, np.int64)
        self.reset()

    def reset(self) -> None:
        """The effect of the `rst` input: unconfigured, counters zero, memories kept."""
        self.geometry: Geometry | None = None
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)

    # --- Stream level -----------------------------------------------------------------

    def run(self, beats: list[Beat]) -> list[ExpectedBeat]:
        """Responses to complete request packets in `beats` (a trailing packet without
        `last` is ignored: the hardware would still be waiting for its end)."""
        responses: list[ExpectedBeat] = []
        for packet in split_packets(beats):
            if packet[-1][1]:
                responses += self.packet(packet)
        return responses

    def packet(self, packet: list[Beat]) -> list[ExpectedBeat]:
        """The response to one request packet (its beats up to and including `last`)."""
        header = Header.decode(packet[0][0])
        payload = [word for word, _ in packet[1:]]
        opcode, tag = header.opcode, header.tag

        def respond(code: int, field: int = 0, value: int = 0,
                    data: list[int] | None = None, masks: list[int] | None = None
                    ) -> list[ExpectedBeat]:
            data = data or []
            masks = masks or [WORD_MASK] * len(data)
            beats = [ExpectedBeat(Header(opcode, tag, response_length(len(data))).encode(), False)]
            beats += [ExpectedBeat(word, False, mask) for word, mask in zip(data, masks,
                                                                           strict=True)]
            beats.append(ExpectedBeat(StatusWord(code, opcode, field, value).encode(), True))
            return beats

        if opcode == Opcode.CONFIGURE:
            self.geometry = None  # any CONFIGURE that does not succeed leaves it unconfigured
        try:
            command = Opcode(opcode)
        except ValueError:
            return respond(Status.BAD_OPCODE)
        if command in _BANK_COMMANDS and header.bank > 1:
            return respond(Status.BAD_FIELD, Field.BANK)
        geometry = self.geometry
        if command in _CONFIGURED_COMMANDS and geometry is None:
            return respond(Status.NOT_CONFIGURED)
        if (command == Opcode.LOAD_REQUANT and not geometry.requant) or \
                (command == Opcode.LOAD_SCALES and not geometry.mx):
            return respond(Status.NOT_APPLICABLE)
        expected = self._expected_length(command)
        if header.length != expected:
            return respond(Status.BAD_LENGTH, value=expected)

        received = len(payload)
        if received < expected:
            code, value = Status.TRUNCATED, received
        elif received > expected:
            code, value = Status.TOO_LONG, 0
        else:
            code, value = Status.OK, 0
        used = payload[:expected]
        bank = header.bank & 1

        if command == Opcode.IDENTIFY:
            return respond(code, value=value, data=identify_words(self.config))
        if command == Opcode.READ_COUNTERS:
            masks = [WORD_MASK if name in DETERMINISTIC_COUNTERS else 0
                     for name in COUNTER_NAMES]
            counter_mask = (1 << self.config.counter_bits) - 1
            data = [self.counters[name] & counter_mask for name in COUNTER_NAMES]
            return respond(code, value=value, data=data, masks=masks)
        if command == Opcode.CLEAR_COUNTERS:
            self.counters = dict.fromkeys(COUNTER_NAMES, 0)
            return respond(code, value=value)
        if command == Opcode.CONFIGURE:
            if code == Status.TRUNCATED:
                return respond(code, value=value)
            status, field, new = check_configure(self.config, decode_configure(used))
            if status != Status.OK:
                return respond(status, field)
            self.geometry = new
            return respond(code, value=value)
        if command == Opcode.LOAD_REQUANT:
            self._load_requant(used)
            return respond(code, value=value)
        if command == Opcode.LOAD_SCALES:
            codes = np.asarray(used, dtype=np.uint64).astype("<u8").view(np.uint8)
            self.scales[bank, :codes.size] = codes
            return respond(code, value=value)
        if command == Opcode.LOAD_ACTIVATIONS:
            # Whole vectors only: the words of a vector cut short are not written.
            rows, words = self.config.rows, geometry.vector_words
            whole = used[:len(used) // words * words]
            vectors = np.asarray(whole, dtype=np.uint64).astype("<u8").view(np.uint8)
            vectors = vectors.reshape(-1, 8 * words)[:, :rows]
            start = bank * self._act_half
            self.activations[start:start + len(vectors)] = vectors
            return respond(code, value=value)
        # COMPUTE: the job runs whatever happens to the packet; missing words are zeros.
        weights = used + [0] * (expected - len(used))
        results = self._compute(geometry, bank, weights)
        self.counters["busy"] += geometry.vectors
        self.counters["macs"] += geometry.macs
        return respond(code, value=value, data=results)

    def _expected_length(self, command: Opcode) -> int:
        geometry = self.geometry
        return {
            Opcode.IDENTIFY: 0, Opcode.READ_COUNTERS: 0, Opcode.CLEAR_COUNTERS: 0,
            Opcode.CONFIGURE: 2,
            Opcode.LOAD_REQUANT: geometry.requant_words if geometry else 0,
            Opcode.LOAD_SCALES: geometry.scale_words if geometry else 0,
            Opcode.LOAD_ACTIVATIONS: geometry.act_words if geometry else 0,
            Opcode.COMPUTE: geometry.compute_words if geometry else 0,
        }[command]

    def _load_requant(self, words: list[int]) -> None:
        channels = len(words) // 2
        if not channels:
            return
        array = np.asarray(words[:2 * channels], dtype=np.uint64).reshape(channels, 2)
        self.requant_bias[:channels] = REQUANT[0].decode_array(array[:, 0], "bias")
        self.requant_multiplier[:channels] = REQUANT[0].decode_array(array[:, 0], "multiplier")
        self.requant_shift[:channels] = REQUANT[1].decode_array(array[:, 1], "shift")

    # --- COMPUTE ----------------------------------------------------------------------

    def _activations(self, geometry: Geometry, bank: int) -> np.ndarray:
        """A [M, K] (int8 values) from activation bank `bank` (address k_tile * M + m)."""
        rows = self.config.rows
        start = bank * self._act_half
        vectors = self.activations[start:start + geometry.m * geometry.kt].view(np.int8)
        return vectors.reshape(geometry.kt, geometry.m, rows).transpose(1, 0, 2) \
            .reshape(geometry.m, geometry.k)

    def _weight_rows(self, geometry: Geometry, words: np.ndarray) -> np.ndarray:
        """Weight words [NT, K * row_words] -> W [K, N] (int8 values; int4 values in 4-bit
        modes)."""
        cols = self.config.cols
        rows = words.reshape(geometry.nt, geometry.k, geometry.row_words)
        as_bytes = rows.astype("<u8").view(np.uint8).reshape(
            geometry.nt, geometry.k, 8 * geometry.row_words)[..., :cols]
        if geometry.lanes == 1:
            tiles = as_bytes.view(np.int8)                              # [NT, K, C]
        else:
            low = (as_bytes & 0x0F).astype(np.int8)
            high = (as_bytes >> 4).astype(np.int8)
            tiles = np.concatenate([low, high], axis=-1)                 # [NT, K, 2C]
            tiles = np.where(tiles >= 8, tiles - 16, tiles).astype(np.int8)
        return tiles.transpose(1, 0, 2).reshape(geometry.k, geometry.n)

    def _compute(self, geometry: Geometry, bank: int, words: list[int]) -> list[int]:
        a = self._activations(geometry, bank)
        payload = np.asarray(words, dtype=np.uint64)
        if not geometry.mx:
            w = self._weight_rows(geometry, payload.reshape(geometry.nt, -1))
            if self.config.mode(geometry.mode).k_pack == 2:
                # K-pairs: every byte holds K-elements 2j (low nibble) and 2j + 1.
                a = golden.unpack_int4(a.astype(np.uint8))
                w = golden.unpack_int4(w.T.astype(np.uint8)).T
            acc = golden.matmul(a, w)
            if geometry.out_kind == "int32":
                values = acc.astype(np.int64) & 0xFFFFFFFF
            else:
                values = self._requantize(geometry, acc)
            return pack_results(geometry, values)

        block = self.config.block_size
        scale_words = geometry.block_scale_words
        per_block = payload.reshape(geometry.nt, geometry.nb,
                                    scale_words + block * geometry.row_words)
        code_bytes = per_block[..., :scale_words].astype("<u8").view(np.uint8)
        b_codes = code_bytes.reshape(geometry.nt, geometry.nb, -1)[..., :geometry.lc]
        b_codes = b_codes.transpose(1, 0, 2).reshape(geometry.nb, geometry.n)
        w = self._weight_rows(geometry, per_block[..., scale_words:].reshape(geometry.nt, -1))
        a_codes = self.scales[bank, :geometry.m * geometry.nb]
        a_codes = a_codes.reshape(geometry.nb, geometry.m).T
        fmt_a, fmt_b = self.config.mode(geometry.mode).mx_formats
        if np.any(np.abs(a) > MX_FORMATS[fmt_a].max_code) or \
                np.any(np.abs(w) > MX_FORMATS[fmt_b].max_code):
            raise ValueError(f"MX elements outside [-Pmax, Pmax] of {fmt_a} x {fmt_b}: the "
                             "hardware's result is unspecified")
        if np.any(a_codes == 255) or np.any(b_codes == 255):
            raise ValueError("the E8M0 NaN code 255: the hardware's result is unspecified")
        partials = golden.block_dot_products(a, w, block)
        exponents = golden.block_exponents(a_codes, b_codes, fmt_a, fmt_b)
        mantissa, exponent = golden.bfp_accumulate(
            partials, exponents, acc_bits=self.config.acc_bits,
            rounding=self.config.acc_rounding)
        if geometry.out_kind == "fp32":
            bits = golden.bfp_to_float32(mantissa, exponent).view(np.uint32).astype(np.int64)
            return pack_results(geometry, bits)
        elements, codes = golden.mx_quantize(golden.bfp_to_float64(mantissa, exponent),
                                             geometry.out_kind, block, axis=1)
        mask = (1 << (4 * (2 if geometry.out_kind == "mxint8" else 1))) - 1
        return pack_results(geometry, elements.astype(np.int64) & mask, codes)

    def _requantize(self, geometry: Geometry, acc: np.ndarray) -> np.ndarray:
        n = geometry.n
        bits = self.requant_multiplier[:n]
        bias = self.requant_bias[:n]
        special = np.zeros(n, dtype=bool)
        if geometry.rounding == "fp32":
            # The hardware has no infinities or NaNs: a multiplier whose exponent field is
            # 255 is the finite value +-2^128 * 1.m, so every non-zero x saturates and x = 0
            # gives the zero point (docs/protocol.md, LOAD_REQUANT). golden.requantize would
            # compute NaN there; those channels get a harmless multiplier and are fixed below.
            special = ((bits >> 23) & 0xFF) == 0xFF
            multiplier = np.where(special, 0, bits).astype(np.uint32).view(np.float32)
            shift = None
        else:
            multiplier = bits.astype(np.uint32).view(np.int32).astype(np.int64)
            shift = self.requant_shift[:n]
        params = RequantParams(geometry.rounding, multiplier, shift, bias, geometry.zero_point,
                               geometry.out_kind, geometry.relu)
        y = golden.requantize(acc, params).astype(np.int64)
        if special.any():
            x = wrap_int32(acc.astype(np.int64) + bias)
            negative = (x < 0) ^ ((bits >> 31) == 1)
            lo, hi = params.bounds
            saturated = np.where(x == 0, min(max(geometry.zero_point, lo), hi),
                                 np.where(negative, lo, hi))
            y = np.where(special, saturated, y)
        mask = 0xF if geometry.out_kind == "int4" else 0xFF
        return y & mask


def compare_responses(expected: list[ExpectedBeat], got: list[Beat]) -> list[str]:
    """Differences between expected and received response beats (empty when they agree
    on every defined bit and every `last` flag)."""
    problems = []
    for index, (want, (word, last)) in enumerate(zip(expected, got, strict=False)):
        if (word ^ want.word) & want.mask or bool(last) != want.last:
            problems.append(f"beat {index}: expected {want.word:#018x} last={int(want.last)} "
                            f"(mask {want.mask:#x}), got {word:#018x} last={int(last)}")
    if len(got) != len(expected):
        problems.append(f"expected {len(expected)} beats, got {len(got)}")
    return problems
