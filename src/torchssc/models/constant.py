"""Trivial baselines written as models, so that the evaluation code scores them like any model.

A baseline answers a batch dict with ``{"semantic": (B, 12, D, H, W) logits}`` and has no
parameters; :func:`torchssc.engine.evaluate.score_model` runs it as it runs a trained network
(same frames, same protocols, same counting). Another baseline is one more small class here,
e.g. a 2D prior lifted into the grid through ``batch["mapping"]``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from torchssc.geometry import NUM_CLASSES


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
        prior, mapping, tsdf = batch["prior"], batch["mapping"], batch["tsdf"]
        b, _, d, h, w = tsdf.shape
        pixels = prior.reshape(b, -1)  # (B, H*W)
        if mapping.shape != (b, d * h * w):
            raise ValueError(f"mapping must be (B, {d * h * w}), got {tuple(mapping.shape)}")
        mapped = (mapping >= 0) & (mapping < pixels.shape[1])
        ids = torch.gather(pixels, 1, torch.where(mapped, mapping, 0).long())  # (B, N)
        classes = torch.where(mapped, self.lut.to(ids.device)[ids.clamp(0, len(PRIOR13_TO_CLASSES) - 1)], 0)
        semantic = torch.zeros(b, NUM_CLASSES, d * h * w, device=tsdf.device)
        semantic.scatter_(1, classes[:, None], 1.0)
        return {"semantic": semantic.reshape(b, NUM_CLASSES, d, h, w)}
