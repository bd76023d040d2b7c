"""2D backbones of SketchAwareSSC stage 2 and their weight loading (docs/model.md).

Every backbone maps ``rgb (B, 3, H, W)`` (ImageNet-normalised float) to one feature map
``(B, out_channels, ceil(H/16), ceil(W/16))`` (output stride 16) and has an ``out_channels``
attribute. Names accepted by :func:`build_backbone`:

``"resnet50_deepstem"`` (the paper's)
    ResNet-50 with a deep stem (3x3 convs 3->64 (stride 2) ->64->128, BN+ReLU each, then 3x3
    max-pool stride 2; inplanes 128), layers [3, 4, 6, 3], stride on each block's 3x3 conv, layer4
    with stride 1 and dilations 2, 4, 8 in its three blocks. 2048 channels, 23,631,808 parameters.
    Keys as in the ``resnet50-imagenet.pth`` file users of the original have: stem ``conv1, bn1,
    conv2, bn2, conv3, bn3``; blocks ``layerN.i.{conv1,bn1,conv2,bn2,conv3,bn3}`` and
    ``layerN.0.downsample.{0,1}``.
``"resnet50"``
    torchvision's ResNet-50 with ``replace_stride_with_dilation=[False, False, True]`` (layer4 at
    stride 1, dilation 2 -> output stride 16), classifier removed; 2048 channels. Weights: a local
    state-dict file or a torchvision weights name (``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``,
    ``"DEFAULT"``; downloads through torchvision's weights API).
``"resnet18"``
    torchvision's ResNet-18 truncated after layer3 (output stride 16 without dilation, which
    torchvision's BasicBlock does not support); 256 channels. Used by the CPU-friendly
    ``sketch_aware_ssc_lite`` variant.

Loading is loud: :func:`load_backbone_weights` returns a :class:`LoadReport` with missing,
unexpected and deliberately ignored keys, logs a warning when any key is missing or unexpected,
and raises with ``strict=True``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

BACKBONES = ("resnet50_deepstem", "resnet50", "resnet18")
TORCHVISION_WEIGHT_NAMES = ("IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT")


# --------------------------------------------------------------------------------------------
# Deep-stem dilated ResNet-50 (the original's backbone)


class _Bottleneck2D(nn.Module):
    """ResNet bottleneck (1x1, 3x3 with stride/dilation, 1x1 x4), keys as the original file."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int,
                 downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class DeepStemResNet50(nn.Module):
    """The original's dilated deep-stem ResNet-50: ``(B, 3, H, W) -> (B, 2048, H/16, W/16)``.

    See the module docstring for the architecture and key names. No classifier.
    """

    out_channels = 2048

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._inplanes = 128
        self.layer1 = self._make_layer(64, [1, 1, 1], stride=1)
        self.layer2 = self._make_layer(128, [1] * 4, stride=2)
        self.layer3 = self._make_layer(256, [1] * 6, stride=2)
        self.layer4 = self._make_layer(512, [2, 4, 8], stride=1)  # stride removed, dilated

    def _make_layer(self, planes: int, dilations: list[int], stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        blocks = []
        for i, d in enumerate(dilations):
            blocks.append(_Bottleneck2D(self._inplanes, planes, stride if i == 0 else 1, d,
                                        downsample if i == 0 else None))
            self._inplanes = planes * 4
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.maxpool(x)                                    # (B, 128, H/4, W/4)
        x = self.layer2(self.layer1(x))                        # (B, 512, H/8, W/8)
        return self.layer4(self.layer3(x))                     # (B, 2048, H/16, W/16)


# --------------------------------------------------------------------------------------------
# torchvision backbones


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet without its classifier (and optionally without layer4).

    Submodules keep torchvision's names (``conv1, bn1, layer1..``), so a torchvision state dict
    loads with only ``fc.*`` (and ``layer4.*`` when truncated) left over.
    ``(B, 3, H, W) -> (B, out_channels, H/16, W/16)``.
    """

    def __init__(self, net: nn.Module, *, use_layer4: bool, out_channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.layer4 = net.layer4 if use_layer4 else None
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer3(self.layer2(self.layer1(x)))           # (B, C3, H/16, W/16)
        return x if self.layer4 is None else self.layer4(x)


def _torchvision_resnet(name: str, weights_name: str | None) -> TorchvisionResNet:
    import torchvision

    if name == "resnet50":
        net = torchvision.models.resnet50(
            weights=weights_name, replace_stride_with_dilation=[False, False, True]
        )
        return TorchvisionResNet(net, use_layer4=True, out_channels=2048)
    net = torchvision.models.resnet18(weights=weights_name)
    return TorchvisionResNet(net, use_layer4=False, out_channels=256)


# --------------------------------------------------------------------------------------------
# Weight loading


@dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did.

    ``missing``: model keys absent from the file (left at their initial value);
    ``unexpected``: file keys the model has no place for (not loaded);
    ``ignored``: file keys dropped on purpose (an ImageNet classifier, a truncated layer4).
    ``BatchNorm.num_batches_tracked`` counters absent from old files are not reported.
    """

    path: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected


def _rename_original(key: str) -> str:
    """The original loader's key rule for ``resnet50-imagenet.pth``: ``.bn.`` -> ``.``."""
    return key.replace(".bn.", ".")


def load_backbone_weights(
    backbone: nn.Module,
    path: str | Path,
    *,
    strict: bool = False,
    rename: Callable[[str], str] | None = None,
    ignore_prefixes: tuple[str, ...] = ("fc.",),
) -> LoadReport:
    """Load a state-dict file into ``backbone`` and report every key that did not match.

    Args:
        backbone: the module to fill (parameters and buffers, on any device).
        path: a ``torch.save``-d state dict (optionally wrapped as ``{"state_dict": ...}``),
            loaded with ``torch.load(path, map_location="cpu", weights_only=True)``.
        strict: raise ``ValueError`` when anything is missing or unexpected.
        rename: applied to every file key first (e.g. the original's ``.bn.`` -> ``.``).
        ignore_prefixes: file keys starting with one of these are dropped and listed as ignored.
    Returns:
        :class:`LoadReport`. A warning is logged (and issued) when it is not ``ok``.
    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``strict`` and keys do not match, or the file holds no state dict.
        RuntimeError: a tensor's shape differs from the model's (from ``load_state_dict``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    report = LoadReport(path=str(path))
    kept: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = rename(key) if rename is not None else key
        if key.startswith(ignore_prefixes):
            report.ignored.append(key)
        else:
            kept[key] = value
    own = backbone.state_dict()
    report.missing = [k for k in own if k not in kept and not k.endswith("num_batches_tracked")]
    report.unexpected = [k for k in kept if k not in own]
    if not report.ok:
        message = (f"backbone weights {path}: {len(report.missing)} missing keys "
                   f"{report.missing[:8]}, {len(report.unexpected)} unexpected keys "
                   f"{report.unexpected[:8]}")
        if strict:
            raise ValueError(message)
        log.warning(message)
        warnings.warn(message, stacklevel=2)
    # Keys the file lacks keep the module's current values; every key is then loaded strictly.
    backbone.load_state_dict({**own, **{k: v for k, v in kept.items() if k in own}}, strict=True)
    return report


# --------------------------------------------------------------------------------------------
# Builder


def build_backbone(
    name: str,
    *,
    weights: str | Path | None = None,
    strict: bool = False,
) -> tuple[nn.Module, LoadReport | None]:
    """Build backbone ``name`` (see module docstring) and load ``weights`` into it.

    Args:
        name: one of :data:`BACKBONES`.
        weights: ``None`` (random init), a state-dict file, or for the torchvision backbones a
            torchvision weights name (:data:`TORCHVISION_WEIGHT_NAMES`; needs the network the
            first time).
        strict: passed to :func:`load_backbone_weights`.
    Returns:
        ``(backbone, report)``; ``report`` is ``None`` unless a file was loaded.
    Raises:
        ValueError: unknown name; FileNotFoundError: a weights path that does not exist.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)}")
    if name == "resnet50_deepstem":
        if weights is not None and str(weights) in TORCHVISION_WEIGHT_NAMES:
            raise ValueError(f"backbone {name!r} loads a state-dict file (resnet50-imagenet.pth), "
                             f"not torchvision weights {weights!r}")
        net = DeepStemResNet50()
        if weights is None:
            return net, None
        return net, load_backbone_weights(net, weights, strict=strict, rename=_rename_original)
    if weights is not None and str(weights) in TORCHVISION_WEIGHT_NAMES:
        return _torchvision_resnet(name, str(weights)), None
    net = _torchvision_resnet(name, None)
    if weights is None:
        return net, None
    ignore = ("fc.",) if name == "resnet50" else ("fc.", "layer4.")
    return net, load_backbone_weights(net, weights, strict=strict, ignore_prefixes=ignore)
