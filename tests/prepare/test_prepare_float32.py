"""Exact float32 arithmetic (fused multiply-add, roundf) vs exact rational references, and the
fast TSDF observation (float64 + exact recompute near thresholds) vs the exact kernel everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from _prepare_tiny import fma_reference, look_pose
from torchssc.geometry import Intrinsics
from torchssc.prepare.float32 import fma32, roundf
from torchssc.prepare.tsdf import _observe_exact, _observe_fast, _observe_grid


def test_fma32_matches_exact_rounding():
    rng = np.random.default_rng(0)
    n = 3000
    a, b, c = (rng.standard_normal(n) * 10.0 ** rng.integers(-4, 4, n) for _ in range(3))
    a, b, c = a.astype(np.float32), b.astype(np.float32), c.astype(np.float32)
    # near-cancellation cases: c close to -a*b, where double rounding would bite
    c[: n // 3] = -(a[: n // 3].astype(np.float64) * b[: n // 3]).astype(np.float32)
    c[n // 3 : n // 2] = np.nextafter(c[: n // 6], np.float32(np.inf))
    got = fma32(a, b, c)
    ref = np.array([fma_reference(x, y, z) for x, y, z in zip(a, b, c)], dtype=np.float32)
    np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
    # the fused result differs from two roundings somewhere (else the test proves nothing)
    assert (got != a * b + c).any()


def test_fma32_double_rounding_case():
    """a*b + c exactly halfway between two float32 after float64 rounding, but not before."""
    a = np.float32(1 + 2.0 ** -23)
    b = np.float32(1 + 2.0 ** -23)
    # exact a*b = 1 + 2^-22 + 2^-46; c shifts it so that float64 rounding lands on a float32 tie
    c = np.float32(2.0 ** -24 - 2.0 ** -22)
    got = fma32(a, b, c)
    assert got == fma_reference(a, b, c)


def test_roundf_half_away_from_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, -0.49999997, 639.5, 3.0], np.float32)
    np.testing.assert_array_equal(roundf(x), [1, 2, 3, -1, -3, 0, 0, 640, 3])


@pytest.mark.parametrize("seed", range(6))
def test_fast_observation_equals_the_exact_kernel_everywhere(seed):
    """Realistic camera and grid (NYU-like intrinsics, a far-away origin for seed 5): the fast
    path's states equal the exact float32 kernel on every voxel, including those where plain
    float64 decides differently."""
    rng = np.random.default_rng(seed)
    intr = Intrinsics(518.8579, 519.4696, 325.58, 253.74)
    shape, voxel = (48, 30, 52), 0.08
    pose = look_pose(rng.uniform(-0.5, 0.5), rng.uniform(0.2, 0.5))
    offset = 150.0 if seed == 5 else 0.0
    pose[:3, 3] += offset
    origin = pose[:3, 3] + 1.5 * pose[:3, 2] - voxel * np.array([shape[0], shape[2], shape[1]]) / 2
    v, u = np.mgrid[0:480, 0:640]
    depth = (1.0 + 0.002 * u + 0.003 * v + rng.uniform(0, 0.3, (480, 640))).astype(np.float32)
    depth[rng.random(depth.shape) < 0.05] = 0
    state, sign = _observe_grid(depth, pose, origin, intr, voxel, shape)
    every = np.indices(shape).reshape(3, -1).T
    exact = _observe_exact(every, depth, pose, origin, intr, voxel).reshape(shape)
    np.testing.assert_array_equal(state, exact)
    np.testing.assert_array_equal(sign, np.select([state == 2, state == 3], [1.0, -1.0], 0.0))
    _, unsure = _observe_fast(depth, pose, origin, intr, voxel, shape)
    # the band grows with the magnitudes involved (far from the world origin float32 is coarser)
    assert 0 < len(unsure) < (0.5 if offset else 0.1) * np.prod(shape)
