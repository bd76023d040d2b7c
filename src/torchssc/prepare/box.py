"""Where the SSC box goes for a frame with a known camera-to-world pose (SSCNet's rule).

SSCNet places the box from gravity: its axes are the world's (z up), its corner
``p - (2.4, 2.4, 1.44)`` with ``p`` the point 3.4 m along the optical axis, and its bottom 5 cm
below the floor (:func:`torchssc.geometry.voxel_origin_for_pose`, which takes the floor at world
z = 0). A world whose floor is elsewhere (a ScanNet scan) gives the floor height: stated, or
estimated from the frame's depth (:func:`floor_height`). The origin is rounded to float32, as
SSCNet's ``.bin`` stores it, so a frame placed here and the same frame's depthbin agree bit for
bit.
"""

from __future__ import annotations

import numpy as np

from torchssc.geometry import ORIGIN_Z, Intrinsics, backproject, camera_to_world, voxel_origin_for_pose

FLOOR_BIN = 0.02
"""Height bin (m) of the floor search."""
FLOOR_SHARE = 0.01
"""The floor is searched from the lowest height bin holding at least this share of the points."""
FLOOR_WINDOW = 15
"""Bins (30 cm) above that one in which the floor's peak is taken."""


def floor_height(depth: np.ndarray, pose: np.ndarray, intrinsics: Intrinsics) -> float:
    """World height of the floor seen in a frame: from the lowest 2 cm height bin holding at least
    1 % of the points, the fullest bin within 30 cm above it, and the median height of the points
    in it and its two neighbours; with no such bin (no floor in view), the 1st percentile.

    Args:
        depth: ``(H, W)`` metres (0 = missing). pose: ``(4, 4)`` camera-to-world, world z up.
    Raises:
        ValueError: no valid depth.
    """
    depth = np.asarray(depth)
    points = backproject(depth, intrinsics)[depth > 0]
    if not len(points):
        raise ValueError("no valid depth to find the floor in")
    z = np.sort(camera_to_world(points, pose)[:, 2])
    bins = np.floor((z - z[0]) / FLOOR_BIN).astype(np.int64)
    counts = np.bincount(bins)
    dense = np.flatnonzero(counts >= FLOOR_SHARE * len(z))
    if not dense.size:
        return float(np.percentile(z, 1))
    # the floor's peak: the fullest bin within 30 cm above the lowest dense one (depth noise
    # spreads the floor over several bins), then the median height around it
    window = counts[dense[0]: dense[0] + FLOOR_WINDOW]
    peak = dense[0] + int(window.argmax())
    return float(np.median(z[np.abs(bins - peak) <= 1]))


def place_box(pose: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """``(3,) float64`` (float32-representable) world corner of the SSC box for ``pose``, the
    floor at world height ``floor``."""
    origin = voxel_origin_for_pose(np.asarray(pose, np.float64))
    origin[2] = floor + ORIGIN_Z
    return origin.astype(np.float32).astype(np.float64)
