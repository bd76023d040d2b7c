"""benchmarks/nyucad_camera_sample.py: the projection fit against a known camera, and the
sample's verdict on NYUCAD's camera (skips without ../shared/data/nyucad_sample)."""

from __future__ import annotations

import numpy as np
from nyucad_camera_sample import camera_fit, fit_projection, frame_pairs

from torchssc.geometry import RELEASE_INTRINSICS, SSCNET_INTRINSICS


def test_fit_projection_recovers_a_known_camera_and_pose():
    rng = np.random.default_rng(0)
    k = RELEASE_INTRINSICS.matrix
    # a left-handed grid frame (axes X, Z, Y), as the voxel indices are
    axes = np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
    angle = 0.3
    r = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]) @ axes
    t = np.array([-10.0, 40.0, 150.0])
    grid = rng.uniform([0, 0, 0], [240, 144, 240], size=(500, 3))
    cam = grid @ r.T + t
    keep = cam[:, 2] > 1
    proj = cam[keep] @ k.T
    pixels = proj[:, :2] / proj[:, 2:]
    k_fit, r_fit, t_fit = fit_projection(pixels, grid[keep])
    np.testing.assert_allclose(k_fit, k, atol=1e-6 * 600)
    np.testing.assert_allclose(r_fit, r, atol=1e-6)
    np.testing.assert_allclose(t_fit, t, atol=1e-4)


def test_the_sample_says_sscnets_camera(nyucad_sample):
    """Scenes 0358 and 1385 decide clearly (0524 does not: both cameras fit it alike)."""
    for scene in ("0358", "1385"):
        pixels, cells, lbl = frame_pairs(nyucad_sample / f"NYU{scene}_0000.npz")
        k, r, t = fit_projection(pixels, cells)
        assert abs(k[0, 2] - 320) < 2 and abs(k[1, 2] - 240) < 2  # the preprocessor's: SSCNet's
        z = (cells @ r.T + t)[:, 2]
        ssc, _ = camera_fit(pixels, z, r, t, SSCNET_INTRINSICS, lbl)
        release, _ = camera_fit(pixels, z, r, t, RELEASE_INTRINSICS, lbl)
        assert ssc < 0.1 and release > 0.7, (scene, ssc, release)
