"""Voxel -> pixel mapping of the label grid (docs/data.md).

For every label-grid voxel, the flat pixel index ``v * W + u`` of a pixel whose back-projected
depth point falls in it — the **largest** such index when several do — and ``W * H`` where none
does. A point falls in label voxel ``floor(fine_index / factor)``, with the fine index computed
exactly as for the TSDF's surface voxels (:func:`torchssc.prepare.tsdf.depth_hits`), so a mapped
voxel always contains a fine surface voxel.
"""

from __future__ import annotations

import numpy as np

from torchssc.geometry import DOWNSAMPLE, FINE_SHAPE, FINE_VOXEL, NYU_INTRINSICS, Intrinsics
from torchssc.prepare.tsdf import depth_hits


def voxel_pixel_mapping(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    *,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    voxel: float = FINE_VOXEL,
    fine_shape: tuple[int, int, int] = FINE_SHAPE,
    factor: int = DOWNSAMPLE,
    hits: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Largest pixel index per label-grid voxel.

    Args:
        depth: ``(H, W)`` metres, 0 = missing. pose: ``(4, 4)`` camera-to-world.
        origin: ``(3,)`` world corner of the grid. voxel, fine_shape: the fine grid.
        factor: fine voxels per label voxel along each axis.
        hits: the result of :func:`~torchssc.prepare.tsdf.depth_hits` for these arguments, if
            already computed.
    Returns:
        ``(prod(fine_shape) / factor³,) int64`` flat pixel indices in C order of the label grid
        ``fine_shape / factor``; ``W * H`` = no pixel.
    """
    depth = np.asarray(depth)
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth must be ({intrinsics.height}, {intrinsics.width}), got {depth.shape}")
    if any(s % factor for s in fine_shape):
        raise ValueError(f"fine grid {fine_shape} is not divisible by {factor}")
    small = tuple(s // factor for s in fine_shape)
    if hits is None:
        hits = depth_hits(depth, pose, origin, intrinsics=intrinsics, voxel=voxel, shape=fine_shape)
    pixels, fine_idx = hits  # pixels: increasing flat pixel indices
    cell = fine_idx // factor
    voxels = np.ravel_multi_index((cell[:, 0], cell[:, 1], cell[:, 2]), small)
    # unbuffered scatter-max (fast since NumPy 1.25: ~3 ms for a NYU frame, vs ~40 ms for the
    # equivalent stable sort by voxel keeping the last pixel of each run)
    mapping = np.full(int(np.prod(small)), -1, dtype=np.int64)
    np.maximum.at(mapping, voxels, pixels)
    mapping[mapping < 0] = intrinsics.num_pixels
    return mapping
