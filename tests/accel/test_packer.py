"""ResultPacker in the Amaranth simulator against golden.protocol's nibble-stream packing."""

from __future__ import annotations

import numpy as np
import pytest

from golden.protocol import nibbles_to_words
from hw.packer import ResultPacker
from tests.hw.streams import run_stream_test


@pytest.mark.parametrize("granule, choices, most", [
    (1, [1, 2, 3, 4, 8], 8), (2, [2, 4, 8], 8), (8, [8], 8),
    (1, [1, 2, 4, 8, 10, 16], 16), (8, [8, 16], 16)])
def test_packer_matches_the_protocol_packing(sim_seed: int, granule: int,
                                             choices: list[int], most: int) -> None:
    rng = np.random.default_rng(sim_seed)
    items, expected = [], []
    for result in range(12):
        widths = rng.choice(choices, size=int(rng.integers(1, 40)))
        if result % 3 == 0:       # uniform widths, as in the integer outputs
            widths[:] = widths[0]
        nibbles = []
        for index, width in enumerate(widths):
            value = int.from_bytes(rng.bytes(8), "little") & ((1 << (4 * int(width))) - 1)
            items.append({"value": value, "nibbles": int(width),
                          "last": int(index == len(widths) - 1)})
            nibbles += [(value >> (4 * n)) & 0xF for n in range(int(width))]
        expected += nibbles_to_words(np.array(nibbles, dtype=np.uint8))
    got = run_stream_test(ResultPacker(granule, most), items, len(expected), seed=sim_seed,
                          convert=lambda payload: int(payload.data))
    assert got == expected


def test_packer_refuses_a_bad_granule() -> None:
    with pytest.raises(ValueError, match="granule must be 1, 2, 4 or 8"):
        ResultPacker(3)
    with pytest.raises(ValueError, match="max_nibbles must be 8 or 16, not 12"):
        ResultPacker(1, 12)
