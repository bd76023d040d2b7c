"""A plain 3D U-Net on the TSDF and the lifted 2D semantic prior: the baseline a prior model has
to beat on the released NYU files (docs/model.md, "unet3d_prior").

Input: ``tsdf (B, 1, D, H, W)`` and the NYU-13 prior ``(B, Hi, Wi)`` lifted into the grid through
``mapping`` as one-hot vectors with the zero fill (:func:`~torchssc.models.lifting.lift_labels`,
the same lifting as the prior SketchAwareSSC), concatenated: ``(B, 1 + K, D, H, W)``.

Network (``c1, c2, c3`` = 32, 64, 128; every conv 3x3x3, bias-free, + BatchNorm + ReLU,
padding = dilation; D, H, W divisible by 4)::

    enc1   conv(1+K -> c1)                                                     D x H x W
    enc2   maxpool 2, conv(c1 -> c2), conv(c2 -> c2, dilation 2)               D/2
    bottom maxpool 2, conv(c2 -> c3), conv(c3 -> c3, d 2), conv(c3 -> c3, d 3) D/4
    dec2   up(c3 -> c2), concat enc2, conv(2 c2 -> c2), conv(c2 -> c2, d 2)    D/2
    dec1   up(c2 -> c1), concat enc1, conv(2 c1 -> c1)                         D
    head   1x1x1 conv (with bias) c1 -> 12

``up`` = ConvTranspose3d (k3, stride 2, padding 1, output_padding 1, bias-free) + BatchNorm +
ReLU, as the decoders of the SketchAwareSSC. 1,950,316 trainable parameters at the defaults.
The full-resolution level has one conv on each side: on the CPU its weight gradients dominate
the step, and a second (dilated) conv per side there made the step ~1.4x slower (docs/model.md).

Memory format: the input volume is made ``channels_last_3d`` (NDHWC) and the convolutions keep
it, which cut the CPU time of a training step by about a quarter here; the values are the same
(to float rounding), the output is a logits tensor in that memory format.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.models.lifting import lift_labels
from torchssc.models.registry import register_model, spec_classes
from torchssc.models.sketch_aware import NYU13_CLASSES


def conv3_bn_relu(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    """3x3x3 conv (no bias, padding = dilation) + BatchNorm3d + ReLU: ``(B, cin, D, H, W) ->
    (B, cout, D, H, W)``."""
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


def up_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """ConvTranspose3d (k3, s2, p1, output_padding 1, no bias) + BatchNorm3d + ReLU: doubles
    ``D, H, W``."""
    return nn.Sequential(nn.ConvTranspose3d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False),
                         nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class UNet3D(nn.Module):
    """Three-level 3D U-Net with dilated convolutions and skip connections (module docstring).

    Args:
        channels: ``(c1, c2, c3)``, the widths of the three levels.
        num_classes: output classes (12).
        prior_classes: one-hot channels of the 2D prior (14 for NYU-13); 0 = TSDF only.
        prior_fill: apply the zero fill after lifting the prior (default, as SketchAwareSSC)
            or feed the plain lifted one-hot volume.

    Inputs (a batch dict): ``"tsdf"`` ``(B, 1, D, H, W)`` float; with a prior also ``"prior"``
    ``(B, Hi, Wi)`` int64 ids in ``[0, prior_classes)`` and ``"mapping"`` ``(B, D*H*W)`` int64
    flat pixel ``v*Wi + u`` per voxel (``Hi*Wi`` = none). Output: ``{"semantic": (B, num_classes,
    D, H, W) logits}``.
    """

    def __init__(self, *, channels: tuple[int, int, int] | list[int] = (32, 64, 128), num_classes: int = 12,
                 prior_classes: int = NYU13_CLASSES, prior_fill: bool = True) -> None:
        super().__init__()
        if len(channels) != 3 or any(c < 1 for c in channels):
            raise ValueError(f"channels must be three positive widths, got {channels}")
        if prior_classes < 0:
            raise ValueError(f"prior_classes must be >= 0, got {prior_classes}")
        c1, c2, c3 = channels
        self.prior_classes = prior_classes
        self.prior_fill = prior_fill
        self.enc1 = conv3_bn_relu(1 + prior_classes, c1)
        self.enc2 = nn.Sequential(conv3_bn_relu(c1, c2), conv3_bn_relu(c2, c2, 2))
        self.bottom = nn.Sequential(conv3_bn_relu(c2, c3), conv3_bn_relu(c3, c3, 2), conv3_bn_relu(c3, c3, 3))
        self.up2 = up_bn_relu(c3, c2)
        self.dec2 = nn.Sequential(conv3_bn_relu(2 * c2, c2), conv3_bn_relu(c2, c2, 2))
        self.up1 = up_bn_relu(c2, c1)
        self.dec1 = conv3_bn_relu(2 * c1, c1)
        self.head = nn.Conv3d(c1, num_classes, 1)

    def required_keys(self) -> tuple[str, ...]:
        """The batch keys :meth:`forward` reads."""
        return ("tsdf", "mapping", "prior") if self.prior_classes else ("tsdf",)

    def inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        """``(B, 1 + K, D, H, W)`` (channels-last): the TSDF and the lifted one-hot prior, concatenated."""
        for key in self.required_keys():
            if key not in batch:
                raise ValueError(f"UNet3D needs batch[{key!r}]")
        tsdf = batch["tsdf"]
        if tsdf.dim() != 5 or tsdf.shape[1] != 1:
            raise ValueError(f"tsdf must be (B, 1, D, H, W), got {tuple(tsdf.shape)}")
        if any(n % 4 for n in tsdf.shape[2:]):
            raise ValueError(f"grid dimensions must be divisible by 4, got {tuple(tsdf.shape[2:])}")
        if not self.prior_classes:
            return tsdf.contiguous(memory_format=torch.channels_last_3d)
        prior = batch["prior"]
        if prior.dim() != 3 or prior.shape[0] != tsdf.shape[0]:
            raise ValueError(f"prior must be (B, H, W) class ids with B = {tsdf.shape[0]}, got {tuple(prior.shape)}")
        onehot = lift_labels(prior, batch["mapping"], tuple(tsdf.shape[2:]), self.prior_classes,
                             fill=self.prior_fill, dtype=tsdf.dtype)     # (B, K, D, H, W)
        return torch.cat([tsdf, onehot], 1).contiguous(memory_format=torch.channels_last_3d)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        e1 = self.enc1(self.inputs(batch))                               # (B, c1, D, H, W)
        e2 = self.enc2(F.max_pool3d(e1, 2))                              # (B, c2, D/2, H/2, W/2)
        x = self.bottom(F.max_pool3d(e2, 2))                             # (B, c3, D/4, H/4, W/4)
        x = self.dec2(torch.cat([self.up2(x), e2], 1))                   # (B, c2, D/2, H/2, W/2)
        x = self.dec1(torch.cat([self.up1(x), e1], 1))                   # (B, c1, D, H, W)
        return {"semantic": self.head(x)}                                # (B, classes, D, H, W)


@register_model("unet3d_prior", inputs=("tsdf", "mapping", "prior"), from_spec=spec_classes)
def unet3d_prior(**kwargs: Any) -> UNet3D:
    """The plain 3D U-Net baseline on TSDF + the lifted NYU-13 prior (:class:`UNet3D` defaults:
    32/64/128 channels, 14 prior classes, filled lifting): 1,950,316 trainable parameters. Train
    it with the ``class_weighted_ce`` loss (configs/unet3d_prior_nyu.yaml)."""
    return UNet3D(**kwargs)


@register_model("unet3d", inputs=("tsdf",), from_spec=spec_classes)
def unet3d(**kwargs: Any) -> UNet3D:
    """The plain 3D U-Net on the TSDF alone (:class:`UNet3D` with ``prior_classes=0``): for frames
    with no 2D prior, such as a depth frame of your own. 1,938,220 trainable parameters at the
    defaults. Train it with the ``class_weighted_ce`` loss (configs/unet3d_nyu_cpu.yaml)."""
    kwargs.setdefault("prior_classes", 0)
    if kwargs["prior_classes"]:
        raise ValueError("unet3d reads the TSDF alone (prior_classes=0); use unet3d_prior for a 2D prior")
    return UNet3D(**kwargs)


__all__ = ["UNet3D", "conv3_bn_relu", "unet3d", "unet3d_prior", "up_bn_relu"]
