"""Which camera took (or rendered) a depthbin frame: its depth against the ground truth's surface.

A depth image back-projected with the right intrinsics lands on the occupied voxels of the
frame's ground truth; with wrong ones it is shifted (a principal point 13.7 px off moves a point
at 3 m by 8 cm, four fine voxels) and lands beside them. :func:`surface_fit` measures it:
the mean distance from the back-projected depth points (the fine voxels
:func:`~torchssc.prepare.tsdf.depth_hits` gives, exactly as ``prepare`` computes them) to the
nearest occupied ground-truth voxel (a class, not 0 or 255). :func:`compare_cameras` does it
for candidate cameras over frames; the camera with the smallest distance took the depth. docs/nyucad.md ("Which camera") applies it to NYUCAD's rendered depth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torchssc.geometry import FINE_VOXEL, IGNORE_LABEL, Intrinsics
from torchssc.io.depthbin import read_bin, read_depth_png
from torchssc.prepare.tsdf import depth_hits


CAP_VOXELS = 5.0
"""Distances beyond this (0.1 m at 0.02 m voxels) count as this much: a few stray points (beyond
the room, on a window) must not outweigh the many on the surface."""


@dataclass(frozen=True)
class SurfaceFit:
    """How one camera's back-projected depth sits on the ground truth.

    Attributes:
        distance: mean distance (fine voxels, each capped at :data:`CAP_VOXELS`) from a depth
            point's voxel to the nearest occupied ground-truth voxel; lower is better.
        on_surface: share of the points within one voxel of an occupied voxel.
        points: the depth points inside the grid.
    """

    distance: float
    on_surface: float
    points: int


def occupied_distance(raw_labels: np.ndarray) -> np.ndarray:
    """``float`` grid: Euclidean distance (voxels) to the nearest occupied ground-truth voxel (a
    class, not 0 or ``IGNORE_LABEL``); 0 on them. ``scipy.ndimage.distance_transform_edt``."""
    from scipy.ndimage import distance_transform_edt

    raw_labels = np.asarray(raw_labels)
    return distance_transform_edt((raw_labels == 0) | (raw_labels == IGNORE_LABEL))


def surface_fit(depth: np.ndarray, pose: np.ndarray, origin: np.ndarray, distance: np.ndarray, *,
                intrinsics: Intrinsics, voxel: float = FINE_VOXEL) -> SurfaceFit:
    """Fit of one camera: the depth points' voxels (exactly as ``prepare`` computes them) against
    ``distance`` (:func:`occupied_distance` of the frame's labels).

    Args:
        depth: ``(H, W)`` metres. pose: ``(4, 4)`` camera-to-world. origin: ``(3,)``.
    """
    _, cells = depth_hits(depth, pose, origin, intrinsics=intrinsics, voxel=voxel, shape=distance.shape)
    if not len(cells):
        return SurfaceFit(distance=float("inf"), on_surface=0.0, points=0)
    d = distance[cells[:, 0], cells[:, 1], cells[:, 2]]
    return SurfaceFit(distance=float(np.minimum(d, CAP_VOXELS).mean()), on_surface=float((d <= 1.0).mean()),
                      points=int(len(d)))


def compare_cameras(bin_paths: list[str | os.PathLike], candidates: dict[str, Intrinsics]) -> dict[str, SurfaceFit]:
    """:func:`surface_fit` per candidate camera, averaged over depthbin frames (``.bin`` + the
    ``.png`` beside it); the camera with the smallest ``distance`` took the depth.

    Raises:
        FileNotFoundError / ValueError naming a missing or malformed frame.
    """
    fits: dict[str, list[SurfaceFit]] = {name: [] for name in candidates}
    for path in bin_paths:
        path = Path(path)
        raw = read_bin(path)
        depth = read_depth_png(path.with_suffix(".png"))
        distance = occupied_distance(raw.labels)
        for name, cam in candidates.items():
            fits[name].append(surface_fit(depth, raw.pose, raw.origin, distance, intrinsics=cam))
    return {name: SurfaceFit(distance=float(np.mean([f.distance for f in got])),
                             on_surface=float(np.mean([f.on_surface for f in got])),
                             points=int(sum(f.points for f in got))) for name, got in fits.items()}
