"""label_weight: the voxels the loss and the metrics look at (docs/data.md).

1 where the label-grid label is a class (1..11 for NYU: any id but empty and 255), or where the downsampled TorchSSC TSDF is
< -0.5 (occluded), whatever the label there (255 included); 0 elsewhere. Deterministic: unlike
SSCNet/SATNet, empty voxels are not sub-sampled at random.
"""

from __future__ import annotations

import numpy as np

from torchssc.geometry import IGNORE_LABEL

OCCLUDED_BELOW = -0.5
"""Downsampled TSDF values below this count as occluded."""


def label_weight(label: np.ndarray, tsdf: np.ndarray) -> np.ndarray:
    """Per-voxel weight of the label grid.

    Args:
        label: ``(D, H, W)`` integer labels 0..K-1 (the dataset's classes) or 255.
        tsdf: ``(D, H, W)`` float downsampled TorchSSC TSDF (mean of fine values, unobserved 0).
    Returns:
        ``(D, H, W) uint8`` 0/1.
    """
    label = np.asarray(label)
    tsdf = np.asarray(tsdf)
    if label.shape != tsdf.shape:
        raise ValueError(f"label {label.shape} and tsdf {tsdf.shape} must have the same shape")
    weight = (label >= 1) & (label != IGNORE_LABEL)
    weight |= tsdf < OCCLUDED_BELOW
    return weight.astype(np.uint8)
