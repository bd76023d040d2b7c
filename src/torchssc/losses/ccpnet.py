"""The CCPNet-style training loss (a proposal, as the model: docs/baselines.md "CCPNet-style").

Full-resolution softmax cross-entropy, class weights 1, mean over the selected voxels.

* Prediction: ``outputs["semantic"]`` ``(B, 12, S0, S1, S2)`` logits.
* Target: ``batch["label_fine"]`` ``(B, S0, S1, S2)``, the fine labels mapped 36 -> 11
  (0..11, 255 = outside the room), axes as :mod:`torchssc.geometry`.
* Selected voxels (``mask``): ``"label_weight"`` (default) -- the label grid's
  ``batch["label_weight"]`` ``(B, S0/4, S1/4, S2/4)`` repeated 4x per axis, and label != 255, so
  training looks at the voxels the ``torchssc`` protocol scores; ``"all"`` -- every voxel with
  label != 255.
* Side heads (when the model returns them): ``ccpnet_side60`` against ``batch["label"]`` on the
  label grid and ``ccpnet_side120`` against the fine labels reduced 2x per axis by the
  benchmark's label rule (:func:`torchssc.label_grid_rule.reduce_labels`), with the same mask at
  their resolution, each weighted ``side_weight`` (0.5).

Terms: ``semantic``, [``side60``, ``side120``,] ``total``; an empty selection gives 0, not NaN.
Computed in float32 whatever the logits' dtype.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.label_grid_rule import reduce_labels, repeat_grid
from torchssc.geometry import IGNORE_LABEL
from torchssc.losses.registry import register_loss

MASKS = ("label_weight", "all")


def _masked_ce(logits: torch.Tensor, label: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Mean CE of ``(B, K, ...)`` logits against ``(B, ...)`` labels over ``select`` (bool)."""
    target = torch.where(select, label, torch.zeros_like(label))
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (ce * select).sum() / select.sum().clamp_min(1)


class CCPNetStyleLoss(nn.Module):
    """See the module docstring.

    Args:
        mask: ``"label_weight"`` or ``"all"``.
        side_weight: weight of each side-head term.
    """

    def __init__(self, *, mask: str = "label_weight", side_weight: float = 0.5) -> None:
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        self.mask = mask
        self.side_weight = side_weight

    def _select(self, label: torch.Tensor, batch: dict, factor: int) -> torch.Tensor:
        """Selected voxels of a grid ``factor`` times finer than the label grid."""
        select = label != IGNORE_LABEL
        if self.mask == "label_weight":
            if "label_weight" not in batch:
                raise ValueError("ccpnet_style loss with mask='label_weight' needs batch['label_weight']")
            weight = batch["label_weight"] > 0
            select = select & (repeat_grid(weight, factor) if factor > 1 else weight)
        return select

    def forward(self, outputs: dict, batch: dict) -> dict:
        if "label_fine" not in batch:
            raise ValueError("ccpnet_style loss needs batch['label_fine'] (B,240,144,240): prepare with "
                             "--fine-labels and load the dataset with fine_labels=True")
        logits, fine = outputs["semantic"], batch["label_fine"].long()
        if fine.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(f"label_fine {tuple(fine.shape)} does not match the logits {tuple(logits.shape)}")
        terms = {"semantic": _masked_ce(logits, fine, self._select(fine, batch, 4))}
        if "ccpnet_side60" in outputs:
            label = batch["label"].long()
            terms["side60"] = _masked_ce(outputs["ccpnet_side60"], label, self._select(label, batch, 1))
        if "ccpnet_side120" in outputs:
            half = reduce_labels(fine, 2).long()
            terms["side120"] = _masked_ce(outputs["ccpnet_side120"], half, self._select(half, batch, 2))
        total = terms["semantic"]
        for key in ("side60", "side120"):
            if key in terms:
                total = total + self.side_weight * terms[key]
        terms["total"] = total
        return terms


@register_loss("ccpnet_style", targets=("label", "label_weight", "label_fine"))
def ccpnet_style_loss(*, mask: str = "label_weight", side_weight: float = 0.5) -> CCPNetStyleLoss:
    """The CCPNet-style loss (module docstring)."""
    return CCPNetStyleLoss(mask=mask, side_weight=side_weight)
