"""Label volumes as the renderers see them: checks, what is drawn, default voxel size.

Volumes follow :mod:`torchssc.geometry`: arrays ``(D, H, W)`` with axes [world X, world Z (up),
world Y]; voxel ``(a, b, c)`` spans ``origin + voxel * (a, c, b)`` to ``+ voxel`` in world
(x, y, z) metres. Labels 1..11 are drawn with :data:`~torchssc.geometry.PALETTE`; 0 (empty) and
255 (ignore) are never drawn.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from torchssc.geometry import FINE_SHAPE, FINE_VOXEL, IGNORE_LABEL, LABEL_VOXEL, NUM_CLASSES

BACKGROUND = (255, 255, 255)
"""Default background colour (white: not in the palette)."""

def default_voxel(shape: Sequence[int]) -> float:
    """Voxel edge (m) assumed for a volume of ``shape``: 0.02 for the fine grid, else 0.08."""
    return FINE_VOXEL if tuple(shape) == FINE_SHAPE else LABEL_VOXEL


def check_labels(labels: np.ndarray, name: str = "labels", num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Validate a ``(D, H, W)`` label volume with values ``0..num_classes-1`` or 255; returns it as
    ``uint8`` (``num_classes``: the dataset spec's, 12 for NYU).

    Raises:
        ValueError: wrong number of dimensions or a value outside 0..11 and 255.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"{name}: expected a (D, H, W) volume, got shape {labels.shape}")
    if labels.size:
        bad = (labels < 0) | ((labels >= num_classes) & (labels != IGNORE_LABEL))
        if bad.any():
            values = np.unique(labels[bad])[:10].tolist()
            raise ValueError(f"{name}: labels must be 0..{num_classes - 1} or 255, found {values}")
    return labels.astype(np.uint8, copy=False)


def occupied(labels: np.ndarray) -> np.ndarray:
    """``(D, H, W) bool``: voxels that are drawn (class labels >= 1; not 0, not 255)."""
    labels = np.asarray(labels)
    return (labels >= 1) & (labels != IGNORE_LABEL)
