"""AMMNet: "Unleashing Network Potentials for Semantic Scene Completion" (Wang et al., CVPR 2024),
layer for layer as its authors' code builds it (docs/ammnet.md; the project's spec
AMMNET_CVSFORMER.md §4).

Two variants share the 3D part (feature width ``F`` = 256 in the paper, grid ``(D, H, W)`` =
``(60, 36, 60)``; every size must be divisible by 12 for the discriminator, by 4 otherwise):

* ``ammnet_prior`` (the paper's "AMMNet_DLabv3", 76.3 / 56.1 on NYU; not in the authors' release,
  assembled per their README): the NYU-13 2D prior (``batch["prior"]``, ids 0..13) one-hot,
  projected into the grid through ``mapping``, then ``complete.feature2d_proc`` = conv stem
  14 -> 3 -> 64 -> F, then the zero fill ("ThreeDinit"). Where that stem sits is the spec's
  inference (§4.4(b)): ``proc_placement="projection"`` (default, the spec's) applies it right after
  the projection and fills its output; ``"fill"`` fills the one-hot volume first and applies the
  stem after.
* ``ammnet_segformer`` (the released code, 75.6 / 48.5): RGB through a frozen MiT-B2 encoder
  (``encoder``, :mod:`torchssc.models.mit`) and a SegFormer head (``head``) -> ``feature2d``
  ``(B, F, H/4, W/4)`` and 2D logits ``semantic2d`` ``(B, 12, H, W)``; ``feature2d`` is read at
  the mapped pixels of its ``align_corners=False`` bilinear upsample to the image, then filled.

Then, for both (``TSDFNet``, ``complete``)::

    t   = TSDFNet(tsdf)                                   (B, F, D, H, W)  stem 1 -> 3 -> 64 -> F,
                                                          DDR encoder /2, /4, up x2 (+ Dropout 0.3) + skip, up x2
    x, t = aug3d(x, t)                                    training only: flip x, flip z, swap x <-> z (p = 0.5 each,
                                                          NumPy's global RNG, three draws per call as the authors)
    x   = x * (1 + sigmoid(R11(t))) + R12(t)              modulation 1 (Rij: 1x1x1 conv F -> F with bias)
    s1  = semantic_layer1(x); s2 = semantic_layer2(s1)    (B, F, D/2, ...), (B, 2F, D/4, ...)
    t2  = DownScale(t)                                    (B, F, D/2, ...)
    u1  = up1(s2) + s1;  u1 = u1 * (1 + sigmoid(R21(t2))) + R22(t2)
    u2  = up2(u1);       t3 = UpScale(t2);  u2 = u2 * (1 + sigmoid(R31(t3))) + R32(t3)
    logits = Dropout3d(0.1) -> 1x1x1 conv F -> 12         (B, 12, D, H, W), in the augmented orientation

and the discriminator ``disc`` (training only): 12-class volume -> 1x1x1 conv 12 -> 64 -> DDR
blocks (stride 2, 2, 3, 1) -> Linear(128 * D/12 * H/12 * W/12 -> 128) -> ReLU -> Linear(128 -> 1).

Parameter names are the authors' (``TSDFNet.*``, ``complete.*``, ``disc.*``, ``encoder.*``,
``head.*``: the key map to their checkpoints is the identity, :func:`authors_key_map`), and, as
theirs, every DDR block builds its three resizing branches even when its stride is 1 (unused in
forward, 378,816 parameters at F = 256), so the counts are theirs: ``ammnet_prior`` 22,166,936
(generator 20,853,335, discriminator 1,313,601); ``ammnet_segformer`` 46,442,800 of which
22,246,512 trainable (MiT-B2 24,196,288 frozen). Initialisation: PyTorch's defaults (the
authors' 3D code has no custom init).

Outputs of ``forward(batch)`` (dict): ``"semantic"`` ``(B, 12, D, H, W)`` logits in the canonical
orientation; ``"semantic2d"`` ``(B, 12, Hi, Wi)`` (SegFormer variant). In training also
``"semantic_augmented"`` (the logits in the augmented orientation, what the discriminator sees),
``"augmentation"`` ``(3,)`` bool (flip x, flip z, swap x z) and, when ``adversarial`` and the batch
has ``label_weight``, ``"adv_logit"`` ``(B, 1)`` = ``disc(semantic_augmented * label_weight)``
computed with the discriminator's weights detached (its BatchNorm statistics do update, as the
authors' forward). The authors multiply the augmented logits by the canonical ``label_weight``:
kept (spec §4.9.4). The training step that uses all this is
:class:`torchssc.losses.ammnet.AdversarialStep`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from torchssc.models.ddr import Bottleneck3D, _pool_conv_bn, _up_bn_relu, conv_bn_relu_3d
from torchssc.models.lifting import lift_and_fill, lift_labels
from torchssc.models.mit import MixVisionTransformer, SegFormerHead, load_matching, load_mit_weights
from torchssc.models.registry import register_model
from torchssc.models.sketch_aware import NYU13_CLASSES

FRONTS = ("prior", "segformer")
PLACEMENTS = ("projection", "fill")
NYU_GRID = (60, 36, 60)
log = logging.getLogger(__name__)


def _encoder1(f: int) -> nn.Sequential:
    """DDR stage to ``/2`` (F -> F): the authors' ``semantic_layer1`` / ``completion_layer1``."""
    return nn.Sequential(
        Bottleneck3D(f, f // 4, expansion=4, stride=2, downsample=_pool_conv_bn(f, f)),
        *(Bottleneck3D(f, f // 4, dilation=d, keep_unused=True) for d in (1, 2, 3)))


def _encoder2(f: int) -> nn.Sequential:
    """DDR stage to ``/4`` (F -> 2F): the authors' ``semantic_layer2`` / ``completion_layer2``."""
    return nn.Sequential(
        Bottleneck3D(f, f // 4, expansion=8, stride=2, downsample=_pool_conv_bn(f, 2 * f)),
        *(Bottleneck3D(2 * f, f // 2, dilation=d, keep_unused=True) for d in (1, 2, 3)))


def three_d_init(x: torch.Tensor) -> torch.Tensor:
    """The zero fill: ``x + avg_pool3d(x, 3, 1, 1) * (x == 0)`` (zero padding counted)."""
    return x + F.avg_pool3d(x, 3, stride=1, padding=1) * (x == 0).to(x.dtype)


class TSDFNet(nn.Module):
    """TSDF -> full-resolution feature ``(B, 1, D, H, W) -> (B, F, D, H, W)`` (module docstring)."""

    def __init__(self, *, feature: int = 256, stem_channels: int = 64) -> None:
        super().__init__()
        self.oper1 = conv_bn_relu_3d([1, 3, stem_channels, feature])
        self.completion_layer1 = _encoder1(feature)
        self.completion_layer2 = _encoder2(feature)
        self.enc_tsdf = nn.ModuleList([nn.Sequential(*_up_bn_relu(2 * feature, feature), nn.Dropout(0.3)),
                                       _up_bn_relu(feature, feature)])

    def forward(self, tsdf: torch.Tensor) -> torch.Tensor:
        c1 = self.completion_layer1(self.oper1(tsdf))
        c2 = self.completion_layer2(c1)
        return self.enc_tsdf[1](self.enc_tsdf[0](c2) + c1)


class Completion(nn.Module):
    """The semantic branch with three TSDF modulations (the authors' ``Unet3d``): ``(x (B, F, D,
    H, W) lifted and filled, t = TSDFNet output) -> logits (B, K, D, H, W)`` (module docstring).

    ``prior_classes > 0`` adds ``feature2d_proc`` (stem K2 -> 3 -> stem_channels -> F), used by
    :class:`AMMNet` on the one-hot prior."""

    def __init__(self, *, feature: int = 256, num_classes: int = 12, prior_classes: int = 0,
                 stem_channels: int = 64) -> None:
        super().__init__()
        f = feature
        self.pre_layer_R11 = nn.Conv3d(f, f, 1)
        self.pre_layer_R12 = nn.Conv3d(f, f, 1)
        self.semantic_layer1 = _encoder1(f)
        self.semantic_layer2 = _encoder2(f)
        self.classify_semantic = nn.ModuleList([
            _up_bn_relu(2 * f, f), _up_bn_relu(f, f), nn.Sequential(nn.Dropout3d(0.1), nn.Conv3d(f, num_classes, 1))])
        self.DownScale = nn.Sequential(
            Bottleneck3D(f, f // 4, expansion=4, stride=2, downsample=_pool_conv_bn(f, f)),
            Bottleneck3D(f, f // 4, expansion=8, stride=2, downsample=_pool_conv_bn(f, 2 * f)),
            *_up_bn_relu(2 * f, f))
        self.UpScale = _up_bn_relu(f, f)
        self.pre_layer_R21 = nn.Conv3d(f, f, 1)
        self.pre_layer_R22 = nn.Conv3d(f, f, 1)
        self.pre_layer_R31 = nn.Conv3d(f, f, 1)
        self.pre_layer_R32 = nn.Conv3d(f, f, 1)
        if prior_classes:
            self.feature2d_proc = conv_bn_relu_3d([prior_classes, 3, stem_channels, f])

    @staticmethod
    def _modulate(x: torch.Tensor, t: torch.Tensor, scale: nn.Conv3d, shift: nn.Conv3d) -> torch.Tensor:
        return x * (1 + torch.sigmoid(scale(t))) + shift(t)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = self._modulate(x, t, self.pre_layer_R11, self.pre_layer_R12)
        s1 = self.semantic_layer1(x)
        s2 = self.semantic_layer2(s1)
        t2 = self.DownScale(t)
        u1 = self._modulate(self.classify_semantic[0](s2) + s1, t2, self.pre_layer_R21, self.pre_layer_R22)
        u2 = self.classify_semantic[1](u1)
        u2 = self._modulate(u2, self.UpScale(t2), self.pre_layer_R31, self.pre_layer_R32)
        return self.classify_semantic[2](u2)


class Discriminator(nn.Module):
    """``(B, K, D, H, W)`` class volume -> ``(B, 1)`` logit (module docstring); ``grid`` fixes the
    linear layer's input size (every size divisible by 12)."""

    def __init__(self, *, num_classes: int = 12, plane: int = 64, grid: tuple[int, int, int] = NYU_GRID) -> None:
        super().__init__()
        if any(n % 12 for n in grid):
            raise ValueError(f"the discriminator needs grid sizes divisible by 12, got {tuple(grid)}")
        p = plane
        self.conv1 = nn.Conv3d(num_classes, p, 1, bias=False)
        self.layer1 = Bottleneck3D(p, p // 4, expansion=4, stride=2, downsample=_pool_conv_bn(p, p))
        self.layer2 = Bottleneck3D(p, p // 4, expansion=8, stride=2, downsample=_pool_conv_bn(p, 2 * p))
        self.layer3 = Bottleneck3D(2 * p, p // 2, expansion=4, stride=3, downsample=nn.Sequential(
            nn.AvgPool3d(3, 3), nn.Conv3d(2 * p, 2 * p, 1, bias=False), nn.BatchNorm3d(2 * p)))
        self.layer4 = Bottleneck3D(2 * p, p // 2, expansion=4, keep_unused=True)
        self.linear = nn.Linear(2 * p * math.prod(n // 12 for n in grid), 2 * p)
        self.logit = nn.Linear(2 * p, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.logit(F.relu(self.linear(x.flatten(1))))


def augment_3d(tensors: list[torch.Tensor], flips: tuple[bool, bool, bool]) -> list[torch.Tensor]:
    """The authors' ``aug3d`` on ``(B, C, D, H, W)`` tensors: flip dim 2 if ``flips[0]``, flip dim
    4 if ``flips[1]``, then swap dims 2 and 4 if ``flips[2]``."""
    out = []
    for x in tensors:
        if flips[0]:
            x = x.flip(2)
        if flips[1]:
            x = x.flip(4)
        if flips[2]:
            x = x.permute(0, 1, 4, 3, 2)
        out.append(x)
    return out


def unaugment_3d(x: torch.Tensor, flips: tuple[bool, bool, bool]) -> torch.Tensor:
    """Inverse of :func:`augment_3d` (the authors' order: swap back, flip z, flip x)."""
    if flips[2]:
        x = x.permute(0, 1, 4, 3, 2)
    if flips[1]:
        x = x.flip(4)
    if flips[0]:
        x = x.flip(2)
    return x


class AMMNet(nn.Module):
    """AMMNet (module docstring); build it with :func:`ammnet_prior` or :func:`ammnet_segformer`.

    Args:
        front: ``"prior"`` (2D prior, one-hot ``prior_classes``) or ``"segformer"`` (RGB).
        feature: the 3D width F (256; also the SegFormer head's embedding width).
        num_classes: 12. prior_classes: 14 (NYU-13 with void; ``"prior"`` only).
        stem_channels: middle width of the 3D stems (64).
        proc_placement: ``"projection"`` or ``"fill"`` (module docstring; ``"prior"`` only).
        disc_plane: the discriminator's base width (64). grid: the voxel grid (for its linear layer).
        encoder_weights: path to SegFormer's ``mit_b2.pth`` (``"segformer"``; None = random init:
            the model builds without ImageNet weights). The load report is ``encoder_report``.
        freeze_encoder: MiT-B2 without gradients (the authors'); it still runs in train mode, so its
            DropPath is active in training, as released.
    """

    def __init__(self, *, front: str = "prior", feature: int = 256, num_classes: int = 12,
                 prior_classes: int = NYU13_CLASSES, stem_channels: int = 64, proc_placement: str = "projection",
                 disc_plane: int = 64, grid: tuple[int, int, int] | list[int] = NYU_GRID,
                 encoder_weights: str | Path | None = None, freeze_encoder: bool = True) -> None:
        super().__init__()
        if front not in FRONTS:
            raise ValueError(f"front must be one of {FRONTS}, got {front!r}")
        if proc_placement not in PLACEMENTS:
            raise ValueError(f"proc_placement must be one of {PLACEMENTS}, got {proc_placement!r}")
        if feature < 4 or feature % 4:
            raise ValueError(f"feature must be a positive multiple of 4, got {feature}")
        if front == "prior" and encoder_weights is not None:
            raise ValueError("encoder_weights is for front='segformer' (the prior variant has no 2D encoder)")
        self.front = front
        self.prior_classes = prior_classes if front == "prior" else 0
        self.proc_placement = proc_placement
        self.encoder_report: str | None = None
        if front == "segformer":
            self.encoder = MixVisionTransformer()
            self.head = SegFormerHead(embedding_dim=feature, num_classes=num_classes)
            if encoder_weights is not None:
                self.encoder_report = load_mit_weights(self.encoder, encoder_weights)
                log.info("%s", self.encoder_report)
            if freeze_encoder:
                self.encoder.requires_grad_(False)
        self.TSDFNet = TSDFNet(feature=feature, stem_channels=stem_channels)
        self.complete = Completion(feature=feature, num_classes=num_classes, prior_classes=self.prior_classes,
                                   stem_channels=stem_channels)
        self.disc = Discriminator(num_classes=num_classes, plane=disc_plane, grid=tuple(grid))

    def required_keys(self) -> tuple[str, ...]:
        """The batch keys :meth:`forward` reads (training also reads ``label_weight`` for the
        adversarial logit; the loss reads ``label`` and ``label_weight``)."""
        return ("tsdf", "mapping", "prior") if self.front == "prior" else ("tsdf", "mapping", "rgb")

    def _check(self, batch: Mapping[str, Any]) -> None:
        for key in self.required_keys():
            if key not in batch:
                raise ValueError(f"AMMNet(front={self.front!r}) needs batch[{key!r}]")
        tsdf = batch["tsdf"]
        if tsdf.dim() != 5 or tsdf.shape[1] != 1 or any(n % 4 for n in tsdf.shape[2:]):
            raise ValueError(f"tsdf must be (B, 1, D, H, W) with sizes divisible by 4, got {tuple(tsdf.shape)}")
        image = batch["prior"] if self.front == "prior" else batch["rgb"]
        if image.shape[0] != tsdf.shape[0] or image.dim() != (3 if self.front == "prior" else 4):
            raise ValueError(f"batch[{'prior' if self.front == 'prior' else 'rgb'}] has shape {tuple(image.shape)}, "
                             f"expected {'(B, H, W) ids' if self.front == 'prior' else '(B, 3, H, W)'} with "
                             f"B = {tsdf.shape[0]}")

    def lift(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The filled 2D volume ``(B, F, D, H, W)`` and the 2D logits (SegFormer) or None."""
        tsdf, mapping = batch["tsdf"], batch["mapping"]
        grid = tuple(tsdf.shape[2:])
        if self.front == "prior":
            proc = self.complete.feature2d_proc
            if self.proc_placement == "projection":  # the spec's inference: stem, then fill
                onehot = lift_labels(batch["prior"], mapping, grid, self.prior_classes, fill=False, dtype=tsdf.dtype)
                return three_d_init(proc(onehot)), None
            onehot = lift_labels(batch["prior"], mapping, grid, self.prior_classes, fill=True, dtype=tsdf.dtype)
            return proc(onehot), None
        rgb = batch["rgb"]
        size = (rgb.shape[2], rgb.shape[3])
        feature2d, semantic2d = self.head(self.encoder(rgb), size)
        return lift_and_fill(feature2d, mapping, grid, size, align_corners=False), semantic2d

    def forward(self, batch: Mapping[str, Any], *, adversarial: bool = True) -> dict[str, torch.Tensor]:
        """See the module docstring. ``adversarial=False`` skips the discriminator (the
        discriminator step's generator pass)."""
        self._check(batch)
        x, semantic2d = self.lift(batch)
        t = self.TSDFNet(batch["tsdf"])
        flips = None
        if self.training:  # three draws every call, as the authors' np.random.rand() > 0.5
            flips = tuple(bool(np.random.rand() > 0.5) for _ in range(3))
            x, t = augment_3d([x, t], flips)
        logits = self.complete(x, t)
        out = {"semantic": logits if flips is None else unaugment_3d(logits, flips)}
        if semantic2d is not None:
            out["semantic2d"] = semantic2d
        if flips is not None:
            out["semantic_augmented"] = logits
            out["augmentation"] = torch.tensor(flips)
            if adversarial and "label_weight" in batch:
                weight = batch["label_weight"].reshape(logits.shape[0], 1, *batch["tsdf"].shape[2:])
                frozen = {name: p.detach() for name, p in self.disc.named_parameters()}
                out["adv_logit"] = functional_call(self.disc, frozen, (logits * (weight != 0).to(logits.dtype),))
        return out


def authors_key_map(model: AMMNet) -> dict[str, str]:
    """``{authors' key: our key}`` for every entry of ``model.state_dict()``: the identity (our
    module names are the authors', spec §5.4)."""
    return {key: key for key in model.state_dict()}


def load_authors_state_dict(model: AMMNet, state_dict: Mapping[str, torch.Tensor]) -> str:
    """Load an AMMNet checkpoint in the authors' naming (``torch.load(path, weights_only=True)``;
    its ``"state_dict"`` / ``"model"`` entry; a ``module.`` prefix on every key is removed),
    non-strictly, and return a one-line report of missing and unexpected keys.

    Raises:
        ValueError: a tensor whose shape differs from ours (named).
    """
    sd = dict(state_dict)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    key_map = authors_key_map(model)
    ours = model.state_dict()
    for key, value in sd.items():
        if key in key_map and tuple(value.shape) != tuple(ours[key_map[key]].shape):
            raise ValueError(f"{key!r} has shape {tuple(value.shape)}, ours is {tuple(ours[key_map[key]].shape)}")
    missing, unexpected = load_matching(model, {key_map.get(k, k): v for k, v in sd.items()})
    return (f"loaded {len(ours) - len(missing)} of {len(ours)} tensors; missing "
            f"{len(missing)}; unexpected {len(unexpected)}"
            + (f" (first: {(missing + unexpected)[0]})" if missing or unexpected else ""))



def _from_spec(spec) -> dict:
    """The dataset's classes and grid (the discriminator's linear layer is sized by the grid)."""
    return {"num_classes": spec.num_classes, "grid": tuple(spec.grid)}


@register_model("ammnet_prior", inputs=("tsdf", "mapping", "prior"), from_spec=_from_spec)
def ammnet_prior(**kwargs: Any) -> AMMNet:
    """AMMNet on the 2D prior ("AMMNet_DLabv3", the paper's 76.3 / 56.1; :class:`AMMNet` with
    ``front="prior"``): 22,166,936 parameters (generator 20,853,335, discriminator 1,313,601).

    Batch keys: ``tsdf`` ``(B, 1, 60, 36, 60)``, ``mapping`` ``(B, 129600)``, ``prior`` ``(B, 480,
    640)`` ids 0..13; training also ``label`` ``(B, 60, 36, 60)`` and ``label_weight``. Train it
    with the ``ammnet`` loss (configs/ammnet_prior_nyu.yaml), whose training step is the authors'
    adversarial one. Keyword arguments: those of :class:`AMMNet` (``feature``, ``stem_channels``,
    ``disc_plane`` give the CPU width).
    """
    return AMMNet(**{"front": "prior", **kwargs})


@register_model("ammnet_segformer", inputs=("tsdf", "mapping", "rgb"), from_spec=_from_spec)
def ammnet_segformer(**kwargs: Any) -> AMMNet:
    """AMMNet as released (MiT-B2 + SegFormer head on RGB, the paper's 75.6 / 48.5; :class:`AMMNet`
    with ``front="segformer"``): 46,442,800 parameters, 22,246,512 trainable (the MiT-B2 encoder,
    24,196,288, frozen). ``encoder_weights``: path to SegFormer's ImageNet ``mit_b2.pth``.

    Batch keys: ``tsdf`` ``(B, 1, 60, 36, 60)``, ``mapping`` ``(B, 129600)``, ``rgb`` ``(B, 3, 480,
    640)`` ImageNet-normalised; training also ``label`` and ``label_weight``.
    """
    return AMMNet(**{"front": "segformer", **kwargs})


__all__ = ["AMMNet", "Completion", "Discriminator", "TSDFNet", "ammnet_prior", "ammnet_segformer",
           "augment_3d", "authors_key_map", "load_authors_state_dict", "three_d_init", "unaugment_3d"]
