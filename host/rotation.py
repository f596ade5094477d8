"""Block Hadamard rotation of a GEMM's K dimension (docs/mixed-precision.md, "Rotation").

With H the block-diagonal matrix of normalized Sylvester-Hadamard blocks of size b (a power
of two), H is symmetric and orthogonal (H H = I), so for activations x [M, K] and weights
W [K, N]

    (x H) (H W) = x W

exactly in real arithmetic. Quantizing x H and H W instead of x and W spreads an outlier of
one K-element over its block, which is what lets more layers run with 4-bit operands. The
transform is computed by the fast Walsh-Hadamard butterflies, element by element in float64
(every output element is the same sums in the same order whatever the batch), then rounded
once to the input's float type.

A convolution's K dimension is (channel, kh, kw) of its im2col patches. The rotation runs
over blocks of b input channels at every kernel position (`axis=1` of the input [N, C, H, W]
and of the weights [OC, C / group, KH, KW]), which is a block Hadamard transform of K in
(kh, kw, channel) order: it commutes with zero padding and im2col, so it is applied once to
the input instead of to every patch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BLOCK_SIZES", "hadamard_matrix", "rotate", "rotation_blocks"]

BLOCK_SIZES = (16, 32, 64)
"""Block sizes the search offers (each must divide the rotated length)."""


def _check_block(block: int) -> int:
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 2 \
            or block & (block - 1):
        raise ValueError(f"the Hadamard block must be a power of two of at least 2, not "
                         f"{block!r}")
    return int(block)


def hadamard_matrix(block: int) -> np.ndarray:
    """The normalized Sylvester-Hadamard matrix of size `block` (float64, symmetric,
    orthogonal): H_1 = [1], H_2n = [[H_n, H_n], [H_n, -H_n]] / sqrt(2)."""
    block = _check_block(block)
    matrix = np.ones((1, 1))
    while matrix.shape[0] < block:
        matrix = np.block([[matrix, matrix], [matrix, -matrix]])
    return matrix / np.sqrt(block)


def rotate(x: np.ndarray, block: int, axis: int = -1) -> np.ndarray:
    """x with `axis` multiplied by the block-diagonal normalized Hadamard matrix (blocks of
    `block` consecutive elements): the same as x @ H along that axis, by fast Walsh-Hadamard
    butterflies in float64, returned in x's float type."""
    block = _check_block(block)
    x = np.asarray(x)
    axis = axis % x.ndim
    length = x.shape[axis]
    if length % block:
        raise ValueError(f"the Hadamard block {block} does not divide the rotated length "
                         f"{length}")
    moved = np.moveaxis(x, axis, -1).astype(np.float64)
    lead = moved.shape[:-1]
    values = moved.reshape(*lead, length // block, block)
    half = 1
    while half < block:
        paired = values.reshape(*lead, length // block, block // (2 * half), 2, half)
        first, second = paired[..., 0, :], paired[..., 1, :]
        values = np.stack((first + second, first - second), axis=-2)
        half *= 2
    values = values.reshape(*lead, length) / np.sqrt(block)
    dtype = x.dtype if x.dtype.kind == "f" else np.float64
    return np.ascontiguousarray(np.moveaxis(values, -1, axis)).astype(dtype)


def rotation_blocks(length: int) -> tuple[int, ...]:
    """The block sizes of `BLOCK_SIZES` that divide `length`."""
    return tuple(block for block in BLOCK_SIZES if length % block == 0)
