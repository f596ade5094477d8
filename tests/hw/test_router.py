"""The COMPUTE payload router in the Amaranth simulator: weight rows and MX weight scales
split from the payload words, under random input gaps and output stalls."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from golden.config import ArrayConfig
from golden.protocol import weight_row_words
from hw.accumulation import scale_row_words
from hw.router import PayloadRouter
from tests.hw.streams import stream_get, stream_put

SEED = 4242
CONFIGS = {
    "default": ArrayConfig(),                                  # MX with 16 lanes: 2 scale words
    "small": ArrayConfig(rows=4, cols=4, block_size=16, weight_buffer_depth=64),
    "integer": ArrayConfig(modes=("a8w8", "a8w4")),
    # Protocol 2.1: weight rows of two words, scale codes of two or four.
    "16x16": ArrayConfig(rows=16, cols=16),
    "16x16-integer": ArrayConfig(rows=16, cols=16, modes=("a8w8", "a8w4")),
}


def _scale_words(config: ArrayConfig, lanes2: bool) -> int:
    """Words of one MX block's weight scale codes: one code byte per output column."""
    return -(-config.cols * (2 if lanes2 else 1) // 8)


def _computes(config: ArrayConfig, rng: random.Random) -> list[tuple[dict, list[int]]]:
    """COMPUTE payloads: (mode flags, words)."""
    computes = []
    for _ in range(6):
        mx = config.has_mx and rng.random() < 0.6
        lanes2 = config.lanes == 2 and rng.random() < 0.5
        if mx:
            period = _scale_words(config, lanes2) + config.block_size * weight_row_words(config)
            count = period * rng.randrange(1, 4)
            if rng.random() < 0.4:      # a COMPUTE cut short (the next one starts afresh)
                count -= rng.randrange(1, period)
        else:
            count = rng.randrange(1, 90)
        words = [rng.getrandbits(64) for _ in range(count)]
        computes.append(({"mx": int(mx), "lanes2": int(lanes2)}, words))
    return computes


def _expected(config: ArrayConfig, computes: list) -> tuple[list[int], list[int]]:
    """The weight rows and the scale rows the router must deliver (a row or a block's codes
    cut short by the end of its COMPUTE is not delivered)."""
    row_words = weight_row_words(config)
    row_mask = (1 << (8 * config.cols)) - 1

    def joined(words: list[int]) -> int:
        return sum(word << (64 * index) for index, word in enumerate(words))

    def rows(words: list[int]) -> list[int]:
        return [joined(words[start:start + row_words]) & row_mask
                for start in range(0, len(words) - row_words + 1, row_words)]

    weights, scales = [], []
    for flags, words in computes:
        if not flags["mx"]:
            weights += rows(words)
            continue
        scale_words = _scale_words(config, flags["lanes2"])
        period = scale_words + config.block_size * row_words
        for start in range(0, len(words), period):
            codes = words[start:start + scale_words]
            if len(codes) == scale_words:
                scales.append(joined(codes))
            weights += rows(words[start + scale_words:start + period])
    return weights, scales


@pytest.mark.parametrize("name", list(CONFIGS))
def test_router_splits_weights_and_scales(name: str) -> None:
    config = CONFIGS[name]
    seed = f"{SEED}-{name}"
    rng = random.Random(seed)
    print(f"seed {seed}")
    computes = _computes(config, rng)
    weights, scales = _expected(config, computes)
    dut = PayloadRouter(config)
    got_weights: list[int] = []
    got_scales: list[int] = []
    done = {"producer": False}

    async def producer(ctx) -> None:
        for flags, words in computes:
            ctx.set(dut.config.mx, flags["mx"])
            ctx.set(dut.config.lanes2, flags["lanes2"])
            for index, word in enumerate(words):
                while rng.random() < 0.3:
                    await ctx.tick()
                await stream_put(ctx, dut.words, {"word": word, "first": index == 0},
                                 timeout=2000)
            # The next COMPUTE's flags may change only once this one's words are routed.
            for _ in range(4):
                await ctx.tick()
        done["producer"] = True

    async def weight_consumer(ctx) -> None:
        stall = random.Random(seed + "w")
        while len(got_weights) < len(weights):
            while stall.random() < 0.4:
                await ctx.tick()
            got_weights.append(await stream_get(ctx, dut.weights, timeout=5000))

    async def scale_consumer(ctx) -> None:
        stall = random.Random(seed + "s")
        while len(got_scales) < len(scales):
            while stall.random() < 0.4:
                await ctx.tick()
            got_scales.append(await stream_get(ctx, dut.scales, timeout=5000))

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(producer)
    simulator.add_testbench(weight_consumer)
    if config.has_mx:
        simulator.add_testbench(scale_consumer)
    simulator.run()
    assert done["producer"]
    assert got_weights == weights
    assert got_scales == scales
    assert len(scales) > 0 or not config.has_mx
    if config.has_mx:
        assert scale_row_words(config) == _scale_words(config, config.lanes == 2)
