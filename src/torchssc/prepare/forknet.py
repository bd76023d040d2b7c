"""ForkNet's prepared volumes on its 80x48x80 grid: input TSDF, labels and surface mask.

* ``tsdf``: the projective TSDF of :mod:`torchssc.prepare.projective_tsdf` (invalid = -2 kept;
  the dataset applies ForkNet's loader rule, invalid -> 0).
* ``label``: ForkNet's semantic target Y (Wang et al., ICCV 2019; docs/baselines.md "ForkNet").
  The 240x144x240 raw labels are mapped 36 -> 11 and each 3x3x3 block takes the **largest class
  id** it contains, outside-room voxels (255) counting as -1. So a block is empty only when all
  27 voxels are empty or outside, any occupied voxel makes it occupied, and among classes the
  highest id wins (objects 11 > furniture 10 > tvs 9 > ...). A block entirely outside the room
  is stored as 255 (ForkNet's loader then trains and scores it as empty).
* ``surface``: 1 on the 80-voxels that contain at least one back-projected depth point (the
  depth the TSDF uses, i.e. with values above 6 m read as missing), else 0. It builds the
  surface-semantic target S (Y on these voxels), whose generating tool ForkNet never released:
  this definition is torchssc's proposal.

Class maps (``class_map``):

``"standard"`` (default)
    The benchmark's 36 -> 11 map (:data:`torchssc.geometry.NYU36_TO_11`).
``"forknet_door_as_furniture"``
    ForkNet's data script applies the map as a chain of in-place replacements, which sends raw
    class 5 (door) to furniture (10) instead of objects (11); every other class maps as the
    standard map. Only for bit-fidelity to ForkNet's own data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torchssc.geometry import IGNORE_LABEL, NYU36_TO_11, NYU_INTRINSICS, Intrinsics
from torchssc.prepare.downsample import block_reduce
from torchssc.prepare.projective_tsdf import (
    FORKNET_FACTOR,
    FORKNET_VOXEL,
    ZERO_BEYOND,
    projective_tsdf,
)
from torchssc.prepare.tsdf import surface_voxels

CLASS_MAPS = ("standard", "forknet_door_as_furniture")
DOOR = 5
"""Raw NYU36 id of "door" (objects, 11, under the standard map)."""


def class_lut(class_map: str = "standard") -> np.ndarray:
    """``(256,) uint8`` lookup raw NYU36 id -> 0..11, 255 -> 255, anything else 254 (invalid)."""
    if class_map not in CLASS_MAPS:
        raise ValueError(f"class_map must be one of {CLASS_MAPS}, got {class_map!r}")
    lut = np.full(256, 254, dtype=np.uint8)
    lut[: len(NYU36_TO_11)] = NYU36_TO_11
    if class_map == "forknet_door_as_furniture":
        lut[DOOR] = 10
    lut[IGNORE_LABEL] = IGNORE_LABEL
    return lut


def forknet_labels(
    raw_labels: np.ndarray, *, class_map: str = "standard", factor: int = FORKNET_FACTOR
) -> np.ndarray:
    """ForkNet's target Y: 36 -> 11, then the largest class id of each ``factor³`` block.

    Args:
        raw_labels: ``(D, H, W)`` raw NYU36 ids 0..36 or 255, sizes divisible by ``factor``
            (``(240, 144, 240)`` -> ``(80, 48, 80)``).
        class_map: ``"standard"`` or ``"forknet_door_as_furniture"`` (module docstring).
        factor: block edge.
    Returns:
        ``(D/f, H/f, W/f) uint8``: 0..11, or 255 where all ``f³`` voxels are 255.
    """
    raw_labels = np.asarray(raw_labels)
    if raw_labels.ndim != 3 or any(s % factor or s == 0 for s in raw_labels.shape):
        raise ValueError(f"raw_labels must be a 3-D grid with sizes divisible by {factor}, got {raw_labels.shape}")
    if raw_labels.size and (raw_labels.min() < 0 or raw_labels.max() > 255):
        raise ValueError(f"raw labels must be in 0..36 or 255, got range {raw_labels.min()}..{raw_labels.max()}")
    mapped = class_lut(class_map)[raw_labels.astype(np.uint8)]
    if (mapped == 254).any():
        bad = np.unique(raw_labels[mapped == 254])[:10].tolist()
        raise ValueError(f"raw labels must be in 0..36 or 255, found {bad}")
    outside = mapped == IGNORE_LABEL
    inside = np.where(outside, np.uint8(0), mapped)
    label = block_reduce(inside, np.maximum, factor)
    all_outside = block_reduce(outside.view(np.uint8), np.minimum, factor).astype(bool)
    label[all_outside] = IGNORE_LABEL
    return label


def forknet_surface(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    *,
    shape: tuple[int, int, int],
    intrinsics: Intrinsics = NYU_INTRINSICS,
    voxel: float = FORKNET_VOXEL,
    zero_beyond: float = ZERO_BEYOND,
) -> np.ndarray:
    """``shape`` uint8: 1 on voxels containing a back-projected depth point (depth in
    ``(0, zero_beyond]`` m), else 0. Arguments as
    :func:`torchssc.prepare.projective_tsdf.projective_tsdf`."""
    depth = np.asarray(depth)
    depth = np.where(depth > zero_beyond, 0.0, depth.astype(np.float64))
    hit = surface_voxels(depth, pose, origin, intrinsics=intrinsics, voxel=voxel, shape=tuple(shape))
    return hit.astype(np.uint8)


@dataclass
class ForkNetVolumes:
    """ForkNet's prepared volumes, each ``(D, H, W)`` = ``(80, 48, 80)`` at full size.

    Attributes:
        tsdf: float32 projective TSDF, -2 = invalid (:func:`~torchssc.prepare.projective_tsdf.
            projective_tsdf`).
        label: uint8 0..11, 255 = block entirely outside the room (:func:`forknet_labels`).
        surface: uint8 0/1 (:func:`forknet_surface`).
    """

    tsdf: np.ndarray
    label: np.ndarray
    surface: np.ndarray


def forknet_volumes(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    raw_labels: np.ndarray,
    *,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    fine_voxel: float,
    class_map: str = "standard",
) -> ForkNetVolumes:
    """All of ForkNet's volumes for one frame.

    Args:
        depth: ``(H, W)`` metres. pose: ``(4, 4)`` camera-to-world. origin: ``(3,)`` grid corner.
        raw_labels: ``(D, H, W)`` fine raw NYU36 labels, sizes divisible by 3; ForkNet's grid is
            ``(D/3, H/3, W/3)`` with voxels of ``3 * fine_voxel``.
        fine_voxel: the fine voxel edge (m), 0.02 for NYU.
        class_map: see the module docstring.
    """
    labels = forknet_labels(raw_labels, class_map=class_map)
    shape, voxel = labels.shape, FORKNET_FACTOR * fine_voxel
    tsdf = projective_tsdf(depth, pose, origin, intrinsics=intrinsics, voxel=voxel, shape=shape)
    surface = forknet_surface(depth, pose, origin, shape=shape, intrinsics=intrinsics, voxel=voxel)
    return ForkNetVolumes(tsdf=tsdf, label=labels, surface=surface)
