"""Trivial baselines written as models, so that the evaluation code scores them like any model.

A baseline answers a batch dict with ``{"semantic": (B, 12, D, H, W) logits}`` and has no
parameters; :func:`torchssc.engine.evaluate.score_model` runs it as it runs a trained network
(same frames, same protocols, same counting). Another baseline is one more small class here,
e.g. a 2D prior lifted into the grid through ``batch["mapping"]``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.geometry import NUM_CLASSES
from torchssc.models.lifting import lift_labels


class ConstantSSC(nn.Module):
    """Every voxel gets class ``value``: ``0`` is "all empty", the most frequent occupied class of
    the training set is "most frequent class".

    Input: ``batch["tsdf"]`` ``(B, 1, D, H, W)`` (only its shape and device are used).
    Output: ``{"semantic": (B, C, D, H, W) float32}``, 1 for ``value`` and 0 elsewhere.
    """

    def __init__(self, value: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        if not 0 <= value < num_classes:
            raise ValueError(f"class {value} is not in 0..{num_classes - 1}")
        self.value = int(value)
        self.num_classes = int(num_classes)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        tsdf = batch["tsdf"]
        b, _, d, h, w = tsdf.shape
        semantic = torch.zeros(b, self.num_classes, d, h, w, device=tsdf.device)
        semantic[:, self.value] = 1.0
        return {"semantic": semantic}


PRIOR13_TO_CLASSES = (0, 6, 11, 1, 5, 2, 10, 11, 11, 7, 8, 9, 3, 4)
"""The NYU-13 ids of the 2D prior (void, bed, books, ceiling, chair, floor, furniture, objects,
picture, sofa, table, tv, wall, window) -> the 12 SSC labels: void -> empty; books, picture and
objects -> objects; each other class to its namesake."""


class LiftedPrior(nn.Module):
    """The 2D semantic prior alone: every voxel with a pixel takes that pixel's prior class
    (:data:`PRIOR13_TO_CLASSES`), every other voxel is empty. No learning, no completion.

    Inputs: ``batch["prior"]`` ``(B, H, W)`` NYU-13 ids 0..13, ``batch["mapping"]`` ``(B, N)``
    flat pixel index per voxel (``H * W`` = none), ``batch["tsdf"]`` ``(B, 1, D, H, W)`` for the
    grid's shape. Output: ``{"semantic": (B, 12, D, H, W)}`` one-hot logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("lut", torch.tensor(PRIOR13_TO_CLASSES, dtype=torch.int64), persistent=False)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        d, h, w = batch["tsdf"].shape[2:]
        onehot = lift_labels(batch["prior"], batch["mapping"], (d, h, w), len(PRIOR13_TO_CLASSES), fill=False)
        classes = self.lut[onehot.argmax(1)]  # no pixel: all-zero one-hot -> id 0 (void) -> empty
        semantic = F.one_hot(classes, NUM_CLASSES).movedim(-1, 1).to(onehot.dtype)
        return {"semantic": semantic}
