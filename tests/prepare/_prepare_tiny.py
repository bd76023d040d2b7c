"""Tiny synthetic scenes shared by the preparation tests (imported, not a conftest)."""

from __future__ import annotations

import numpy as np

from torchssc.geometry import Intrinsics

TINY_INTRINSICS = Intrinsics(fx=21.3, fy=19.7, cx=7.4, cy=5.3, width=15, height=11)
TINY_VOXEL = 0.1


def look_pose(yaw: float, pitch: float, height: float = 1.2) -> np.ndarray:
    """Camera-to-world pose: camera at (0.1, -0.2, height) looking along yaw, pitched down."""
    forward = np.array([np.sin(yaw) * np.cos(pitch), np.cos(yaw) * np.cos(pitch), -np.sin(pitch)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = right, down, forward
    pose[:3, 3] = (0.1, -0.2, height)
    return pose


def tiny_scene(seed: int, shape=(13, 9, 11), voxel: float = TINY_VOXEL, ahead: float = 0.9, near: float = 0.6):
    """A random depth image looking into a small odd-sized grid centred ``ahead`` m in front.

    With ``ahead`` = 0 the camera sits inside the grid (voxels behind it and beside it).

    Returns:
        ``(depth (11, 15) float32, pose (4, 4), origin (3,), intrinsics)``; the depth has
        holes (0) and out-of-range values (< 0.5 and > 8 m).
    """
    rng = np.random.default_rng(seed)
    pose = look_pose(rng.uniform(-0.6, 0.6), rng.uniform(0.2, 0.5))
    forward = pose[:3, 2]
    size_xyz = voxel * np.array([shape[0], shape[2], shape[1]], dtype=np.float64)
    origin = pose[:3, 3] + ahead * forward - size_xyz / 2 + rng.uniform(-0.05, 0.05, 3)
    h, w = TINY_INTRINSICS.height, TINY_INTRINSICS.width
    v, u = np.mgrid[0:h, 0:w]
    depth = near + 0.05 * u + 0.04 * v + rng.uniform(0.0, 0.5, (h, w))  # a tilted rough surface
    depth[rng.random((h, w)) < 0.1] = 0.0
    depth[rng.random((h, w)) < 0.04] = 0.3
    depth[rng.random((h, w)) < 0.04] = 9.0
    return depth.astype(np.float32), pose, origin, TINY_INTRINSICS


def round_to_float32(q) -> np.float32:
    """The float32 nearest to the exact rational ``q`` (ties to even), by brute force."""
    from fractions import Fraction

    q = Fraction(q)
    f = np.float32(float(q))  # within one float32 ulp of the answer
    candidates = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - q), int(np.array(c).view(np.int32)) & 1))


def fma_reference(a, b, c) -> np.float32:
    """``a * b + c`` of float32 values with one rounding, in exact rational arithmetic."""
    from fractions import Fraction

    a, b, c = (Fraction(float(np.float32(x))) for x in (a, b, c))
    return round_to_float32(a * b + c)
