"""What the camera saw decides a prediction's voxels (docs/predict.md, "What the depth decides").

A network's output means something only where its loss looked: the label_weight voxels
(docs/data.md) are the occupied ones and the *occluded* ones, so the free space the camera saw
and everything it never saw are places where the output is arbitrary (a model trained on NYU
fills them with "wall" and "table"). One depth image, however, tells exactly which voxels were
seen to be empty and which were never seen. The rule, per label-grid voxel, from its
visibility code (:mod:`torchssc.prepare.visibility`: the highest "seen" state among its 4x4x4
fine voxels of the TSDF computed from the depth):

==================  =====================================================  ===============
visibility          how it is found (fine voxels of the TSDF)              written
==================  =====================================================  ===============
observed surface    one holds a back-projected depth point                 the model's
occluded            none is surface; one is in view behind the surface     the model's
free                none is surface or occluded; one is seen in front of   0 (empty)
                    the measured surface
missing depth       none of the above; one is in view, but its pixel has   255 (unknown)
                    no depth in [0.5, 8] m
outside the view    all are behind the camera or project outside the       255 (unknown)
                    image
outside the room    (only where a visibility volume has it: labelled 255)  255 (unknown)
==================  =====================================================  ===============

The model's output is kept exactly where the camera could not see *through*: the surface it
measured and the space hidden behind it. One depth image cannot tell the space behind a wall
(outside the room) from the space behind furniture, so both are occluded and the model decides.
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
from torchssc.prepare.visibility import PRIORITY_TO_CODE

KEEP = -1
"""In :data:`RULE`: the model's label is kept."""
EMPTY = 0
"""The label written where the depth shows free space."""
UNKNOWN = IGNORE_LABEL
"""The label written where the camera saw nothing (255, the datasets' "ignore")."""

RULE = {
    VIS_SURFACE: KEEP,
    VIS_OCCLUDED: KEEP,
    VIS_FREE: EMPTY,
    VIS_MISSING_DEPTH: UNKNOWN,
    VIS_OUTSIDE_VIEW: UNKNOWN,
    VIS_OUTSIDE_ROOM: UNKNOWN,
}
"""Visibility code -> what is written: :data:`KEEP` (the model's label), :data:`EMPTY` or
:data:`UNKNOWN` (module docstring)."""


def _rule_table() -> np.ndarray:
    """``(256,) int16`` lookup of :data:`RULE` by visibility code (codes not in it: KEEP)."""
    table = np.full(256, KEEP, dtype=np.int16)
    for code, written in RULE.items():
        table[code] = written
    return table


def observation_visibility(state: np.ndarray, factor: int = DOWNSAMPLE) -> np.ndarray:
    """Visibility code of every label-grid voxel from the fine TSDF's observation states.

    The same precedence as the prepared frames' visibility volume
    (:func:`torchssc.prepare.visibility.visibility_volume`), without labels: nothing is
    "outside the room" here.

    Args:
        state: ``(D, H, W) uint8`` :attr:`torchssc.prepare.tsdf.FineTSDF.state` codes 0..4.
        factor: fine voxels per label voxel along each axis (``D, H, W`` divisible by it).
    Returns:
        ``(D/f, H/f, W/f) uint8`` :mod:`torchssc.geometry` ``VIS_*`` codes.
    """
    state = np.asarray(state)
    if state.ndim != 3 or any(s % factor for s in state.shape):
        raise ValueError(f"fine observation states must be a 3-D grid divisible by {factor}, got {state.shape}")
    return PRIORITY_TO_CODE[block_reduce(state, np.maximum, factor)]


def apply_observation(labels: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """The labels the observation leaves: :data:`RULE` applied voxel by voxel.

    Args:
        labels: ``(..., D, H, W)`` integer labels (the model's argmax), any leading batch axes.
        visibility: ``VIS_*`` codes of the same shape (or broadcastable to it).
    Returns:
        ``uint8`` array of ``labels``' shape: the model's label on observed surface and occluded
        voxels, 0 on free ones, 255 on the rest.
    Raises:
        ValueError: the shapes do not match, or a label is outside 0..255.
    """
    labels = np.asarray(labels)
    visibility = np.asarray(visibility)
    try:
        fits = np.broadcast_shapes(visibility.shape, labels.shape) == labels.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"visibility of shape {visibility.shape} does not fit labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels must be in 0..255, found {labels.min()}..{labels.max()}")
    written = _rule_table()[visibility.astype(np.intp)]
    return np.where(written == KEEP, labels, written).astype(np.uint8)


def region_counts(visibility: np.ndarray) -> dict[str, int]:
    """Voxels decided by the model, written empty and written unknown (for a summary line).

    Args:
        visibility: ``VIS_*`` codes, any shape.
    Returns:
        ``{"model": n, "empty": n, "unknown": n}``.
    """
    written = _rule_table()[np.asarray(visibility).astype(np.intp)]
    return {"model": int((written == KEEP).sum()), "empty": int((written == EMPTY).sum()),
            "unknown": int((written == UNKNOWN).sum())}
