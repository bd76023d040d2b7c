"""ForkNet's projective TSDF on the 80x48x80 grid (Wang et al., ForkNet, ICCV 2019), vectorised.

The grid is SSCNet's box at 3x the fine voxel: 80 (world X) x 48 (world Z, up) x 80 (world Y)
voxels of 0.06 m, with the origin of the fine 240x144x240 grid, axes in the order of
:mod:`torchssc.geometry`. Voxel ``(a, b, c)`` covers fine voxels ``3a..3a+2``, ``3b..3b+2``,
``3c..3c+2``. The definition, as ForkNet's ICCV-era back-projection kernel computes it
(docs/baselines.md, "ForkNet"):

1. The sample point of voxel ``(a, b, c)`` is its **corner** ``origin + 0.06 * (a, c, b)``
   (world x, y, z; no +0.5), moved into the camera: ``p_cam = R^T (p_world - t)``.
2. It is projected with round-half-away-from-zero to the pixel ``(u, v)``.
3. The voxel is *invalid* (value ``INVALID = -2``) when ``z_cam <= 0``, the pixel lies outside
   the image, or the depth there is above ``invalid_depth`` (8 m).
4. The depth image is read with every value above ``zero_beyond`` (6 m) set to 0 (missing),
   before step 3 (so with the defaults step 3's depth test never fires, as in the kernel).
5. ``diff = depth - z_cam``. If ``|diff| < truncation`` (0.8 m) the value is
   ``sign * (truncation - |diff|) / truncation`` with ``sign = +1`` when ``diff > 0`` (in front of
   the measured surface) and -1 otherwise; else it is 0. A missing depth (0) gives
   ``diff = -z_cam``, so the few voxels within 0.8 m of the camera along such rays get a
   negative value, as in the kernel.

ForkNet's loader then sets values below -1 (the invalid code) to 0: :func:`forknet_input`. The
network input is therefore in [-1, 1]: about +-1 at the observed surface, decaying linearly to 0
at 0.8 m along the ray, 0 far away, out of view and where the depth is missing.

Computed in float64 (the kernel used float32: values may differ in the last float32 digits and
a corner exactly on a pixel boundary may round differently). Every voxel is handled at once
(307,200 voxels at full size: a few temporaries of that length).
"""

from __future__ import annotations

import numpy as np

from torchssc.geometry import (
    NYU_INTRINSICS,
    Intrinsics,
    grid_to_world,
    project,
    world_to_camera,
)
from torchssc.prepare.tsdf import _check_inputs

FORKNET_VOXEL = 0.06
"""ForkNet's voxel edge (m): 3 fine voxels."""
FORKNET_SHAPE = (80, 48, 80)
"""ForkNet's grid shape, axes [world X, world Z (up), world Y]."""
FORKNET_FACTOR = 3
"""Fine voxels per ForkNet voxel along each axis."""
TRUNCATION = 0.8
"""Truncation distance along the ray (m) at the ICCV-era commit."""
ZERO_BEYOND = 6.0
"""Depths above this (m) are read as missing (0)."""
INVALID_DEPTH = 8.0
"""A voxel whose pixel's depth is above this (m) is invalid."""
INVALID = -2.0
"""Value of an invalid voxel (behind the camera, outside the image)."""


def projective_tsdf(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    *,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    voxel: float = FORKNET_VOXEL,
    shape: tuple[int, int, int] = FORKNET_SHAPE,
    truncation: float = TRUNCATION,
    zero_beyond: float = ZERO_BEYOND,
    invalid_depth: float = INVALID_DEPTH,
) -> np.ndarray:
    """ForkNet's projective TSDF (module docstring), invalid voxels coded ``INVALID``.

    Args:
        depth: ``(H, W)`` metres, 0 = missing (``H, W`` as in ``intrinsics``).
        pose: ``(4, 4)`` camera-to-world. origin: ``(3,)`` world (x, y, z) of the grid corner.
        intrinsics: pinhole intrinsics and image size.
        voxel: voxel edge (m). shape: grid shape, axes [world X, world Z (up), world Y].
        truncation: truncation distance along the ray (m).
        zero_beyond: depths above this are read as 0 (missing).
        invalid_depth: a pixel depth above this makes the voxel invalid.
    Returns:
        ``shape`` float32: values in [-1, 1], and ``INVALID`` (-2) where the corner is behind the
        camera, projects outside the image, or its pixel's depth is above ``invalid_depth``.
    """
    depth, pose, origin = _check_inputs(depth, pose, origin, intrinsics)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"grid shape must be 3 positive sizes, got {shape}")
    if not truncation > 0:
        raise ValueError(f"truncation must be positive, got {truncation}")
    depth = np.where(depth > zero_beyond, 0.0, depth.astype(np.float64))  # (H, W)

    index = np.indices(shape, dtype=np.float64).reshape(3, -1).T  # (N, 3) voxel (a, b, c)
    cam = world_to_camera(grid_to_world(index, origin, voxel), pose)  # (N, 3) camera x, y, z
    z = cam[:, 2]
    u, v = project(cam, intrinsics)  # (N,) int64 column, row
    in_image = (z > 0) & (u >= 0) & (u < intrinsics.width) & (v >= 0) & (v < intrinsics.height)
    d = np.zeros_like(z)
    d[in_image] = depth[v[in_image], u[in_image]]
    valid = in_image & ~(d > invalid_depth)

    diff = d - z
    magnitude = (truncation - np.abs(diff)) / truncation
    value = np.where(diff > 0, magnitude, -magnitude)
    value = np.where(np.abs(diff) < truncation, value, 0.0)
    value = np.where(valid, value, INVALID)
    return value.astype(np.float32).reshape(shape)


def forknet_input(tsdf: np.ndarray) -> np.ndarray:
    """ForkNet's loader rule: values below -1 (the invalid code) set to 0.

    Args:
        tsdf: any shape, float, as :func:`projective_tsdf`.
    Returns:
        ``float32`` array of the same shape with values in [-1, 1].
    """
    tsdf = np.asarray(tsdf, dtype=np.float32)
    return np.where(tsdf < -1.0, np.float32(0.0), tsdf)
