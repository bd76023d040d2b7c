"""Sketch ground truth: the paper's 3D sketch of the label grid (docs/data.md).

On the label grid with 255 set to 0, correlate (zero padding) with three 3x3x3 kernels, each the
outer product of a derivative ``(1, 0, -1)`` along one axis, a smoothing ``(1, 2, 1)`` along a
second and a box ``(1, 1, 1)`` along the third:

* ``K0``: derivative on the last axis, smoothing on the first (box on the middle);
* ``K1``: derivative on the first axis, smoothing on the last (box on the middle);
* ``K2``: derivative on the middle axis, smoothing on the last (box on the first).

A voxel is sketch when at least two of the three responses are non-zero.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from torchssc.geometry import IGNORE_LABEL

_DERIV = np.array([1.0, 0.0, -1.0])
_SMOOTH = np.array([1.0, 2.0, 1.0])
_BOX = np.array([1.0, 1.0, 1.0])


def sketch_kernels() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three ``(3, 3, 3) float64`` kernels ``K0, K1, K2`` (module docstring)."""
    k0 = np.einsum("i,j,k->ijk", _SMOOTH, _BOX, _DERIV)
    k1 = np.einsum("i,j,k->ijk", _DERIV, _BOX, _SMOOTH)
    k2 = np.einsum("i,j,k->ijk", _BOX, _DERIV, _SMOOTH)
    return k0, k1, k2


def sketch_from_labels(label: np.ndarray, ignore_id: int = IGNORE_LABEL) -> np.ndarray:
    """3D sketch of a label grid.

    Args:
        label: ``(D, H, W)`` integer labels 0..11 or 255 (``ignore_id`` counts as 0).
    Returns:
        ``(D, H, W) uint8`` 0/1.
    """
    label = np.asarray(label)
    if label.ndim != 3:
        raise ValueError(f"label must be a 3-D grid, got shape {label.shape}")
    values = np.where(label == ignore_id, 0, label).astype(np.float64)
    votes = np.zeros(label.shape, dtype=np.uint8)
    for kernel in sketch_kernels():
        # integer inputs and kernels: the float64 responses are exact integers
        votes += ndimage.correlate(values, kernel, mode="constant", cval=0.0) != 0
    return (votes >= 2).astype(np.uint8)
