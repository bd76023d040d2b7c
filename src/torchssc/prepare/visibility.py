"""Visibility volume of the label grid (docs/data.md), for the SSCNet evaluation protocol.

Each fine voxel falls in one category (from :class:`torchssc.prepare.tsdf.FineTSDF`):

====================  ==========================================================  ========
category              fine voxel                                                  priority
====================  ==========================================================  ========
observed surface      contains a back-projected depth point                       4
occluded              observed, behind the measured surface (negative TSDF)       3
free                  observed, in front of the measured surface (positive TSDF)  2
missing depth         in front of the camera and inside the image, but the depth  1
                      there is missing or outside [0.5, 8] m
outside view          behind the camera or projecting outside the image           0
====================  ==========================================================  ========

A label-grid voxel takes the highest-priority category among its 4x4x4 fine voxels, and
:data:`~torchssc.geometry.VIS_OUTSIDE_ROOM` overrides everything where its label is 255.

Why this precedence: a block holding any measured surface is "observed surface" (SSCNet's
surface voxels); otherwise any part hidden behind the surface makes it "occluded" — the voxels
SSCNet's completion metric is computed on (in view, behind the depth, label != 255) — even when
the block also grazes free space at a depth edge; a block seen entirely as free space is free;
the rest is missing depth, then outside the view.
"""

from __future__ import annotations

import numpy as np

from torchssc.geometry import (
    DOWNSAMPLE,
    IGNORE_LABEL,
    VIS_FREE,
    VIS_MISSING_DEPTH,
    VIS_OCCLUDED,
    VIS_OUTSIDE_ROOM,
    VIS_OUTSIDE_VIEW,
    VIS_SURFACE,
)
from torchssc.prepare.downsample import block_reduce

PRIORITY_TO_CODE = np.array(
    [VIS_OUTSIDE_VIEW, VIS_MISSING_DEPTH, VIS_FREE, VIS_OCCLUDED, VIS_SURFACE], dtype=np.uint8
)
"""Visibility code of each fine-voxel priority 0..4 (module docstring)."""


def visibility_volume(tsdf, label: np.ndarray, factor: int = DOWNSAMPLE) -> np.ndarray:
    """Visibility code of every label-grid voxel.

    Args:
        tsdf: a :class:`~torchssc.prepare.tsdf.FineTSDF` on the fine grid ``(D, H, W)``.
        label: ``(D/f, H/f, W/f)`` labels 0..11 or 255.
        factor: fine voxels per label voxel along each axis.
    Returns:
        ``(D/f, H/f, W/f) uint8`` :mod:`torchssc.geometry` ``VIS_*`` codes.
    """
    shape = tsdf.distance.shape
    small = tuple(s // factor for s in shape)
    label = np.asarray(label)
    if any(s % factor for s in shape) or label.shape != small:
        raise ValueError(f"label shape {label.shape} does not match the fine grid {shape} / {factor}")
    # FineTSDF.state codes 0..4 are exactly the priorities of the table above
    block = block_reduce(tsdf.state, np.maximum, factor)
    vis = PRIORITY_TO_CODE[block]
    vis[label == IGNORE_LABEL] = VIS_OUTSIDE_ROOM
    return vis
