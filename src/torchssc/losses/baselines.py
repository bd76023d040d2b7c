"""The public baselines' semantic losses, as named config choices (docs/baselines.md).

Each is called as ``loss(outputs, batch) -> {"total": scalar, "semantic": scalar}`` with
``outputs["semantic"]`` ``(B, C, D, H, W)`` logits and ``batch["label"]`` ``(B, D, H, W)`` int64
(0..C-1, 255 = ignore). The masks that need "occluded" read ``batch["tsdf"]`` ``(B, 1, D, H, W)``
or ``(B, D, H, W)``, the TorchSSC 60-res TSDF (mean of the 64 fine values, unobserved = 0;
negative behind the observed surface).

* ``sscnet_balanced`` -- SSCNet's Caffe loss: every foreground voxel (label 1..C-1) has weight 1,
  plus N_occ empty voxels drawn at random (with replacement) among the non-foreground voxels with
  TSDF < -0.5, N_occ = number of foreground voxels with TSDF < -0.5; drawn voxels labelled 255
  are skipped. Per sample ``sum(w * CE) / max(1, sum of weights of non-ignored voxels)``; the
  batch loss is the mean over samples (Caffe ran batch 1 with ``iter_size`` 4, i.e. averaged
  per-sample losses). The draw is re-made on every call from a CPU generator seeded with
  ``(seed, call number)``, so a run is repeatable and independent of the device.
* ``vvnet`` -- VVNet: unweighted CE averaged over the batch's voxels that are foreground or
  behind the surface (TSDF < ``occluded_below``, default 0: VVNet's mask is "flipped 60-res TSDF
  in (-1, 0)", i.e. any voxel behind the observed surface) and not 255.
* ``wlj`` -- the WLJ code (DDRNet/AICNet/PALNet): CE with class weights ``[empty_weight, 1, ...]``
  (0.05 for empty) over every voxel of the batch, 255 ignored, ``sum(w_y CE) / sum(w_y)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.geometry import IGNORE_LABEL
from torchssc.losses.registry import register_loss


def _logits_and_label(outputs: dict, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    if "semantic" not in outputs:
        raise ValueError("loss needs outputs['semantic'] (B, C, D, H, W) logits")
    if "label" not in batch:
        raise ValueError("loss needs batch['label'] (B, D, H, W)")
    logits, label = outputs["semantic"], batch["label"]
    if logits.dim() != 5 or label.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"semantic logits (B, C, D, H, W) and label (B, D, H, W) disagree: {tuple(logits.shape)} vs {tuple(label.shape)}"
        )
    return logits, label.long()


def _tsdf(batch: dict, label: torch.Tensor) -> torch.Tensor:
    """``(B, D, H, W)`` float TSDF from ``batch["tsdf"]`` (with or without the channel dim)."""
    if "tsdf" not in batch:
        raise ValueError("this loss needs batch['tsdf'] (B, 1, D, H, W) to find occluded voxels")
    tsdf = batch["tsdf"]
    if tsdf.dim() == 5 and tsdf.shape[1] == 1:
        tsdf = tsdf[:, 0]
    if tsdf.shape != label.shape:
        raise ValueError(f"batch['tsdf'] {tuple(batch['tsdf'].shape)} does not match label {tuple(label.shape)}")
    return tsdf


def _foreground(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    return (label > 0) & (label < num_classes)


def sscnet_sample_weights(
    label: torch.Tensor,
    tsdf: torch.Tensor,
    generator: torch.Generator,
    *,
    num_classes: int = 12,
    occluded_below: float = -0.5,
) -> torch.Tensor:
    """SSCNet's per-voxel weights (data balancing, docs/baselines.md) for a batch.

    Args:
        label: ``(B, ...)`` int64, 0..num_classes-1 or 255.
        tsdf: ``(B, ...)`` float, same shape; occluded where ``< occluded_below``.
        generator: a CPU ``torch.Generator``; the draws are made on the CPU, per sample in order.
    Returns:
        ``(B, ...)`` float32 on ``label``'s device: 1 on foreground voxels and on the empty voxels
        drawn, 0 elsewhere.
    """
    fg = _foreground(label, num_classes)
    occluded = tsdf < occluded_below
    weight = fg.to(torch.float32)
    b = label.shape[0]
    n_occ = (fg & occluded).reshape(b, -1).sum(dim=1).cpu()  # (B,)
    candidates = (~fg & occluded).reshape(b, -1)  # (B, N); 255 voxels are candidates too
    flat_label = label.reshape(b, -1)
    flat_weight = weight.view(b, -1)
    for i in range(b):  # per sample: the number of draws differs
        cand = candidates[i].nonzero().squeeze(1)  # (M,) flat voxel indices
        if n_occ[i] == 0 or cand.numel() == 0:
            continue
        pick = torch.randint(0, cand.numel(), (int(n_occ[i]),), generator=generator).to(cand.device)
        drawn = cand[pick]
        drawn = drawn[flat_label[i, drawn] != IGNORE_LABEL]  # drawn 255 voxels are skipped
        flat_weight[i, drawn] = 1.0
    return weight


@register_loss("sscnet_balanced", targets=("label", "tsdf"))
class SSCNetBalancedLoss(nn.Module):
    """SSCNet's weighted CE with random empty-voxel balancing (see module docstring).

    Args:
        num_classes: classes of the logits.
        occluded_below: TSDF threshold for "occluded" (SSCNet: -0.5 on the unflipped 60-res TSDF).
        seed: base seed; call ``k`` draws from a generator seeded with ``seed * 1_000_003 + k``.
    """

    def __init__(self, *, num_classes: int = 12, occluded_below: float = -0.5, seed: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.occluded_below = occluded_below
        self.seed = int(seed)
        self.calls = 0

    def forward(self, outputs: dict, batch: dict) -> dict:
        logits, label = _logits_and_label(outputs, batch)
        tsdf = _tsdf(batch, label)
        generator = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + self.calls)
        self.calls += 1
        weight = sscnet_sample_weights(
            label, tsdf, generator, num_classes=self.num_classes, occluded_below=self.occluded_below
        )
        valid = label != IGNORE_LABEL
        ce = F.cross_entropy(logits, torch.where(valid, label, torch.zeros_like(label)), reduction="none")
        weight = weight * valid  # ignored voxels never carry weight
        b = label.shape[0]
        per_sample = (weight * ce).reshape(b, -1).sum(1) / weight.reshape(b, -1).sum(1).clamp_min(1.0)
        total = per_sample.mean()
        return {"total": total, "semantic": total}


@register_loss("vvnet", targets=("label", "tsdf"))
class VVNetLoss(nn.Module):
    """VVNet's unweighted CE over foreground-or-occluded, non-ignored voxels (module docstring).

    Args:
        num_classes: classes of the logits.
        occluded_below: a voxel is "behind the surface" where ``batch["tsdf"] < occluded_below``.
    """

    def __init__(self, *, num_classes: int = 12, occluded_below: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.occluded_below = occluded_below

    def forward(self, outputs: dict, batch: dict) -> dict:
        logits, label = _logits_and_label(outputs, batch)
        tsdf = _tsdf(batch, label)
        mask = (_foreground(label, self.num_classes) | (tsdf < self.occluded_below)) & (label != IGNORE_LABEL)
        ce = F.cross_entropy(logits, torch.where(mask, label, torch.zeros_like(label)), reduction="none")
        total = (ce * mask).sum() / mask.sum().clamp_min(1)
        return {"total": total, "semantic": total}


@register_loss("wlj", targets=("label",))
class WLJLoss(nn.Module):
    """The WLJ (DDRNet/AICNet) CE: class weights ``[empty_weight, 1, ..., 1]``, 255 ignored.

    Args:
        num_classes: classes of the logits.
        empty_weight: weight of class 0 (0.05 in the public code).
    """

    def __init__(self, *, num_classes: int = 12, empty_weight: float = 0.05) -> None:
        super().__init__()
        weight = torch.ones(num_classes)
        weight[0] = empty_weight
        self.register_buffer("class_weight", weight, persistent=False)

    def forward(self, outputs: dict, batch: dict) -> dict:
        logits, label = _logits_and_label(outputs, batch)
        weight = self.class_weight.to(logits.dtype)
        ce_sum = F.cross_entropy(logits, label, weight=weight, ignore_index=IGNORE_LABEL, reduction="sum")
        valid = label != IGNORE_LABEL
        denom = weight[label[valid]].sum()  # = PyTorch's "mean" denominator; 0 only when all ignored
        total = ce_sum / denom.clamp_min(1e-12)
        return {"total": total, "semantic": total}
