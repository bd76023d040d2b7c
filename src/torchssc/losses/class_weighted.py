"""Class-weighted cross-entropy on the ``label_weight > 0`` voxels: the loss of the plain 3D U-Net
baseline (``unet3d_prior``; docs/model.md).

``loss(outputs, batch) -> {"total", "semantic"}``: over the voxels with ``label_weight > 0``
(flattened over the batch) whose label is not 255, ``sum_v w[y_v] CE_v / sum_v w[y_v]`` (the
weighted mean of ``F.cross_entropy``), computed in float32; 0 when nothing is selected.

Default class weights (:data:`NYU_CLASS_WEIGHTS`): square-root median-frequency balancing,
``w_c = sqrt(median(f) / f_c)`` with ``f_c`` the frequency of class ``c`` among the scored voxels
(``label_weight > 0``, label not 255) of the 795 NYU training scenes of the released files
(:data:`NYU_TRAIN_CLASS_COUNTS`). Median-frequency balancing (``w_c = median(f) / f_c``) is
Eigen and Fergus, ICCV 2015; the square root softens it (empty 0.23 ... tvs 3.57 rather than
0.05 ... 12.7).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.geometry import IGNORE_LABEL
from torchssc.losses.registry import register_loss

NYU_TRAIN_CLASS_COUNTS = (7_049_946, 80_205, 1_072_333, 907_680, 116_952, 180_994, 436_852,
                          282_264, 255_113, 28_247, 1_806_927, 852_366)
"""Voxels per class 0..11 (empty, ceiling, floor, wall, window, chair, bed, sofa, table, tvs,
furniture, objects) with ``label_weight > 0`` and label not 255, summed over the 795 scenes of
``train.txt`` of the released NYU files (measured; a real-data test recomputes them)."""


def median_frequency_weights(counts: Sequence[int], power: float = 0.5) -> list[float]:
    """``(median(f) / f_c) ** power`` per class, ``f = counts / sum(counts)``, rounded to 3 decimals.

    ``power=1`` is median-frequency balancing, ``0.5`` (default) its square root. Classes with a
    zero count get weight 0 (there is nothing to weigh).
    """
    total = float(sum(counts))
    if total <= 0:
        raise ValueError("class counts must not all be zero")
    freq = [c / total for c in counts]
    present = sorted(f for f in freq if f > 0)
    mid = len(present) // 2
    median = present[mid] if len(present) % 2 else 0.5 * (present[mid - 1] + present[mid])
    return [round((median / f) ** power, 3) if f > 0 else 0.0 for f in freq]


NYU_CLASS_WEIGHTS = tuple(median_frequency_weights(NYU_TRAIN_CLASS_COUNTS))
"""The default weights: ``median_frequency_weights(NYU_TRAIN_CLASS_COUNTS)`` =
(0.226, 2.117, 0.579, 0.629, 1.753, 1.409, 0.907, 1.129, 1.187, 3.568, 0.446, 0.649)."""


class ClassWeightedCE(nn.Module):
    """See the module docstring.

    Args:
        class_weights: one weight per class (``num_classes`` of them); None = :data:`NYU_CLASS_WEIGHTS`.
        num_classes: classes of the logits (12).

    outputs: ``"semantic"`` ``(B, C, D, H, W)`` logits. batch: ``"label"`` ``(B, D, H, W)`` int
    0..C-1 or 255, ``"label_weight"`` ``(B, D, H, W)`` float.
    """

    def __init__(self, *, class_weights: Sequence[float] | None = None, num_classes: int = 12) -> None:
        super().__init__()
        weights = NYU_CLASS_WEIGHTS if class_weights is None else tuple(float(w) for w in class_weights)
        if len(weights) != num_classes:
            raise ValueError(f"class_weights must have {num_classes} entries, got {len(weights)}")
        if any(w < 0 or not math.isfinite(w) for w in weights) or not any(weights):
            raise ValueError(f"class_weights must be finite, non-negative and not all 0, got {list(weights)}")
        self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "semantic" not in outputs:
            raise ValueError("class_weighted_ce needs outputs['semantic'] (B, C, D, H, W) logits")
        for key in ("label", "label_weight"):
            if key not in batch:
                raise ValueError(f"class_weighted_ce needs batch[{key!r}]")
        logits = outputs["semantic"]
        grid = (logits.shape[0], *logits.shape[2:])
        if logits.dim() != 5 or logits.shape[1] != self.class_weights.numel():
            raise ValueError(f"semantic logits must be (B, {self.class_weights.numel()}, D, H, W), "
                             f"got {tuple(logits.shape)}")
        for key in ("label", "label_weight"):
            if batch[key].shape != grid:
                raise ValueError(f"batch[{key!r}] must be {grid}, got {tuple(batch[key].shape)}")
        index = (batch["label_weight"].reshape(-1) > 0).nonzero().squeeze(1)     # (n,)
        label = batch["label"].reshape(-1).index_select(0, index).long()          # (n,)
        selected = logits.movedim(1, -1).reshape(-1, logits.shape[1]).index_select(0, index).float()
        weight = self.class_weights.to(selected.device)
        ce = F.cross_entropy(selected, label, weight=weight, ignore_index=IGNORE_LABEL, reduction="sum")
        denom = weight[label[label != IGNORE_LABEL]].sum()
        total = ce / denom.clamp_min(1e-12)
        return {"total": total, "semantic": total}


@register_loss("class_weighted_ce", targets=("label", "label_weight"))
def class_weighted_ce(*, class_weights: Sequence[float] | None = None, num_classes: int = 12) -> ClassWeightedCE:
    """Class-weighted CE on ``label_weight > 0`` voxels (:class:`ClassWeightedCE`); the default
    weights are :data:`NYU_CLASS_WEIGHTS`."""
    return ClassWeightedCE(class_weights=class_weights, num_classes=num_classes)


__all__ = ["ClassWeightedCE", "NYU_CLASS_WEIGHTS", "NYU_TRAIN_CLASS_COUNTS", "class_weighted_ce",
           "median_frequency_weights"]
