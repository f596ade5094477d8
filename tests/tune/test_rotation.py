"""The block Hadamard rotation against independent oracles: the matrix's orthogonality and
symmetry in exact arithmetic where the entries are dyadic, the butterflies against a dense
NumPy product, and rotated GEMMs and convolutions equal to the unrotated ones in float64."""

from __future__ import annotations

import numpy as np
import pytest

from host.lowering import ConvGeometry, conv_patches, conv_weights
from host.rotation import hadamard_matrix, rotate, rotation_blocks


@pytest.mark.parametrize("block", [2, 4, 16, 32, 64])
def test_hadamard_is_orthogonal_and_symmetric(block):
    matrix = hadamard_matrix(block)
    assert np.array_equal(matrix, matrix.T)
    assert np.allclose(matrix @ matrix.T, np.eye(block), atol=1e-14)
    # Entries are +-1/sqrt(block); with block 4^j they are dyadic and H H = I exactly.
    assert np.allclose(np.abs(matrix), 1 / np.sqrt(block))
    if block in (4, 16, 64):
        assert np.array_equal(matrix @ matrix, np.eye(block))


@pytest.mark.parametrize("block", [16, 32])
def test_butterflies_equal_the_dense_block_diagonal_product(block):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 4 * block))
    dense = np.kron(np.eye(4), hadamard_matrix(block))
    assert np.allclose(rotate(x, block), x @ dense, rtol=0, atol=1e-13)
    # Along another axis, and float32 in, float32 out.
    y = rng.standard_normal((3, 2 * block, 5)).astype(np.float32)
    expected = np.einsum("akb,kj->ajb", y.astype(np.float64),
                         np.kron(np.eye(2), hadamard_matrix(block)))
    got = rotate(y, block, axis=1)
    assert got.dtype == np.float32
    assert np.allclose(got, expected, atol=1e-5)


def test_rotated_gemm_is_the_gemm():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((9, 96)), rng.standard_normal((96, 5))
    assert np.allclose(rotate(x, 32) @ rotate(w, 32, axis=0), x @ w, atol=1e-12)


def test_rotated_convolution_is_the_convolution():
    """Channels rotated on the input and on the weights' input-channel axis: the same
    convolution (zero padding commutes with the rotation)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 32, 5, 5))
    w = rng.standard_normal((6, 32, 3, 3))
    geometry = ConvGeometry.from_attributes({"pads": [1, 1, 1, 1]}, x.shape, w.shape)

    def conv(x, w):
        patches, _ = conv_patches(x, geometry, 0.0)
        return patches[0] @ conv_weights(w, 1)[0]

    assert np.allclose(conv(rotate(x, 16, axis=1), rotate(w, 16, axis=1)), conv(x, w),
                       atol=1e-12)


def test_bad_blocks():
    with pytest.raises(ValueError, match="power of two"):
        rotate(np.zeros((2, 12)), 12)
    with pytest.raises(ValueError, match="does not divide"):
        rotate(np.zeros((2, 24)), 16)
    assert rotation_blocks(96) == (16, 32)
    assert rotation_blocks(9) == ()
