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
