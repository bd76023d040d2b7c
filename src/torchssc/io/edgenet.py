"""The EdgeNet-style preprocessed npz (docs/nyucad.md, layout ``edgenet``), read as it is.

One file per frame, ``NYUxxxx_0000.npz``, in a folder that is the split (that preprocessor
writes no split list: the scenes are the files)::

    tsdf     (240, 144, 240, 1) float32   flipped fine TSDF: surface and unobserved 1.0,
                                          truncated free +0.001, occluded -0.001
    lbl      (60, 36, 60) int             labels 0..11 (0 where NYU's release has 255)
    weights  (60, 36, 60) float           0/1, the voxels that preprocessor trains on
    masks    (60, 36, 60) float           its per-voxel weighting (0, 0.25, 0.5, 1)
    mapping  (N,) int                     entries 0..W*H-1: pixel -> flat fine voxel, -1 = none;
                                          the rest -1 (padding)
    rgb, label2d                          0-d strings: paths the preprocessor read (no image)

:func:`read_edgenet` returns the arrays checked for shape, dtype and range; the model inputs are
derived from them by :mod:`torchssc.prepare.derive` (in :mod:`torchssc.data.layouts`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torchssc.io.prepared import load_npz

KEYS = ("tsdf", "lbl", "weights", "mapping")
"""The arrays every EdgeNet npz has (``masks``, ``rgb``, ``label2d`` are not read)."""
FILE_PATTERN = re.compile(r"^NYU(\d{4})_0000\.npz$")


@dataclass
class EdgeNetFrame:
    """One EdgeNet npz: ``tsdf (Df, Hf, Wf) float32``, ``label (D, H, W) uint8``,
    ``weights (D, H, W) float32``, ``pixel_voxels (W*H,) int64`` (fine voxel per pixel, -1)."""

    tsdf: np.ndarray
    label: np.ndarray
    weights: np.ndarray
    pixel_voxels: np.ndarray


def frame_id_of(path: Path) -> str:
    """``NYU0358_0000.npz`` -> ``"0358"``; any other ``name.npz`` -> ``"name"``."""
    match = FILE_PATTERN.match(path.name)
    return match.group(1) if match else path.stem


def frame_file(folder: str | os.PathLike, frame_id: str) -> Path:
    """The npz of ``frame_id`` in a split folder (``NYU<id>_0000.npz``, else ``<id>.npz``)."""
    folder = Path(folder)
    named = folder / f"NYU{frame_id}_0000.npz"
    return named if named.is_file() or not (folder / f"{frame_id}.npz").is_file() else folder / f"{frame_id}.npz"


def list_frames(folder: str | os.PathLike) -> list[str]:
    """Frame ids of the npz files in a split folder, sorted."""
    return sorted(frame_id_of(p) for p in Path(folder).glob("*.npz"))


def read_edgenet(path: str | os.PathLike, grid: tuple[int, int, int], fine_grid: tuple[int, int, int],
                 num_pixels: int, num_classes: int) -> EdgeNetFrame:
    """Read and check one EdgeNet npz.

    Args:
        grid, fine_grid: the spec's label and fine grids; num_pixels: ``W * H``;
        num_classes: labels must be ``0..num_classes-1``.
    Raises:
        FileNotFoundError / ValueError naming the file and the key: a missing key, a wrong size
        or dtype, a label or voxel index out of range, a non-finite or out-of-range TSDF.
    """
    path = Path(path)
    tsdf, lbl, weights, mapping = load_npz(path, *KEYS)
    for key, arr, shape in (("tsdf", tsdf, fine_grid), ("lbl", lbl, grid), ("weights", weights, grid)):
        if arr.size != int(np.prod(shape)):
            raise ValueError(f"{path}: '{key}' has shape {arr.shape}, expected {shape} (edgenet layout)")
    if not np.issubdtype(tsdf.dtype, np.floating):
        raise ValueError(f"{path}: 'tsdf' must be floating-point, got {tsdf.dtype}")
    tsdf = tsdf.reshape(fine_grid).astype(np.float32)
    if not np.all(np.isfinite(tsdf)) or np.abs(tsdf).max() > 1:
        raise ValueError(f"{path}: 'tsdf' must be finite and within [-1, 1]")
    if not np.issubdtype(lbl.dtype, np.integer):
        raise ValueError(f"{path}: 'lbl' must be integers, got {lbl.dtype}")
    if lbl.min() < 0 or lbl.max() >= num_classes:
        raise ValueError(f"{path}: 'lbl' must be 0..{num_classes - 1}, found {int(lbl.min())}..{int(lbl.max())}")
    weights = weights.reshape(grid).astype(np.float32)
    if not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise ValueError(f"{path}: 'weights' must be finite and >= 0")
    mapping = np.asarray(mapping).reshape(-1)
    if not np.issubdtype(mapping.dtype, np.integer):
        raise ValueError(f"{path}: 'mapping' must be integers, got {mapping.dtype}")
    if mapping.size < num_pixels:
        raise ValueError(f"{path}: 'mapping' has {mapping.size} entries, fewer than the {num_pixels} pixels")
    if (mapping[num_pixels:] >= 0).any():
        raise ValueError(f"{path}: 'mapping' maps entries past the {num_pixels} pixels (expected -1 padding)")
    pixel_voxels = mapping[:num_pixels].astype(np.int64)
    if pixel_voxels.max(initial=-1) >= tsdf.size or pixel_voxels.min(initial=-1) < -1:
        raise ValueError(f"{path}: 'mapping' values must be -1 or fine voxel indices 0..{tsdf.size - 1}")
    return EdgeNetFrame(tsdf=tsdf, label=lbl.reshape(grid).astype(np.uint8), weights=weights,
                        pixel_voxels=pixel_voxels)
