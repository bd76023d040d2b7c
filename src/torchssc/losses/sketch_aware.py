"""The SketchAwareSSC training loss (docs/model.md).

All terms look only at the voxels with ``label_weight > 0``, flattened over the batch ("the
selected voxels", ``n`` of them):

* ``semantic``: 12-class cross-entropy against ``label`` with 255 ignored. ``semantic_reduction=
  "all_selected"`` (default, the paper's code) divides the summed loss by ``n``, ignored voxels
  included; ``"valid"`` divides by the number of selected voxels whose label is not 255 (the
  standard mean).
* ``sketch_raw``, ``sketch_posterior``, ``sketch_prior``: 2-class cross-entropy of the stage-1,
  posterior and prior sketch logits against ``sketch_gt``, mean over the ``n`` voxels.
* ``kl``: ``-0.5 * mean(1 + logvar - mean^2 - exp(logvar))`` over every latent element.
* ``total`` = semantic + 1 * sketch_raw + 1 * sketch_posterior + 1.5 * sketch_prior + 2 * kl
  (weights configurable).

Terms whose outputs are absent (``sketch_posterior``, ``latent_*`` outside training) are left
out of the result and of ``total``. An empty selection gives 0 (not NaN). Everything is computed
in float32 whatever the logits' dtype (autocast-safe).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.geometry import IGNORE_LABEL
from torchssc.losses.registry import register_loss

REDUCTIONS = ("all_selected", "valid")


def _selected_logits(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(B, K, D, H, W)`` logits -> ``(n, K)`` float32 rows of the selected flat voxels."""
    k = logits.shape[1]
    return logits.movedim(1, -1).reshape(-1, k).index_select(0, index).float()


class SketchAwareLoss(nn.Module):
    """``loss(outputs, batch) -> {"semantic", "sketch_raw", "sketch_posterior", "sketch_prior",
    "kl", "total"}`` (0-dim float32 tensors).

    outputs: ``"semantic"`` ``(B, C, D, H, W)``, ``"sketch_raw"``/``"sketch_posterior"``/
    ``"sketch_prior"`` ``(B, 2, D, H, W)`` logits, ``"latent_mean"``/``"latent_logvar"`` any equal
    shapes. batch: ``"label"`` ``(B, D, H, W)`` int 0..C-1 or 255, ``"label_weight"``
    ``(B, D, H, W)`` float, ``"sketch_gt"`` ``(B, D, H, W)`` int 0/1.
    """

    def __init__(
        self,
        *,
        semantic_reduction: str = "all_selected",
        sketch_raw_weight: float = 1.0,
        sketch_posterior_weight: float = 1.0,
        sketch_prior_weight: float = 1.5,
        kl_weight: float = 2.0,
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        if semantic_reduction not in REDUCTIONS:
            raise ValueError(f"semantic_reduction must be one of {REDUCTIONS}, "
                             f"got {semantic_reduction!r}")
        self.semantic_reduction = semantic_reduction
        self.weights = {"semantic": 1.0, "sketch_raw": sketch_raw_weight,
                        "sketch_posterior": sketch_posterior_weight,
                        "sketch_prior": sketch_prior_weight, "kl": kl_weight}
        cw = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", cw, persistent=False)

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        for key in ("label", "label_weight", "sketch_gt"):
            if key not in batch:
                raise ValueError(f"sketch_aware loss needs batch[{key!r}]")
        for key in ("semantic", "sketch_raw", "sketch_prior"):
            if key not in outputs:
                raise ValueError(f"sketch_aware loss needs outputs[{key!r}]")
        semantic = outputs["semantic"]
        grid = semantic.shape[2:]
        for key in ("label", "label_weight", "sketch_gt"):
            if batch[key].shape != (semantic.shape[0], *grid):
                raise ValueError(f"batch[{key!r}] must be {(semantic.shape[0], *grid)}, "
                                 f"got {tuple(batch[key].shape)}")
        index = (batch["label_weight"].reshape(-1) > 0).nonzero().squeeze(1)   # (n,)
        n = max(int(index.numel()), 1)
        label = batch["label"].reshape(-1).index_select(0, index).long()
        sketch = batch["sketch_gt"].reshape(-1).index_select(0, index).long()

        terms: dict[str, torch.Tensor] = {}
        ce = F.cross_entropy(_selected_logits(semantic, index), label, weight=self.class_weights,
                             ignore_index=IGNORE_LABEL, reduction="sum")
        if self.semantic_reduction == "all_selected":
            denom = n
        else:
            denom = max(int((label != IGNORE_LABEL).sum()), 1)
        terms["semantic"] = ce / denom
        for key in ("sketch_raw", "sketch_posterior", "sketch_prior"):
            if key in outputs:
                terms[key] = F.cross_entropy(_selected_logits(outputs[key], index), sketch,
                                             reduction="sum") / n
        if "latent_mean" in outputs and "latent_logvar" in outputs:
            mean, logvar = outputs["latent_mean"].float(), outputs["latent_logvar"].float()
            terms["kl"] = -0.5 * torch.mean(1 + logvar - mean.pow(2) - logvar.exp())
        terms["total"] = sum(self.weights[k] * v for k, v in terms.items())
        return terms


@register_loss("sketch_aware", targets=("label", "label_weight", "sketch_gt"))
def sketch_aware(
    *,
    semantic_reduction: str = "all_selected",
    sketch_raw_weight: float = 1.0,
    sketch_posterior_weight: float = 1.0,
    sketch_prior_weight: float = 1.5,
    kl_weight: float = 2.0,
    class_weights: list[float] | None = None,
) -> SketchAwareLoss:
    """The SketchAwareSSC loss of docs/model.md (paper-faithful defaults); see :class:`SketchAwareLoss`."""
    return SketchAwareLoss(
        semantic_reduction=semantic_reduction, sketch_raw_weight=sketch_raw_weight,
        sketch_posterior_weight=sketch_posterior_weight, sketch_prior_weight=sketch_prior_weight,
        kl_weight=kl_weight, class_weights=class_weights,
    )
