"""DDRNet (Li et al., CVPR 2019) as in the public WLJ code (BASELINES §2), and its building blocks.

Inputs (batch keys):
    ``rgb`` ``(B, 3, H, W)`` ImageNet-normalised; ``depth`` ``(B, 1, H, W)`` metres (0 = missing);
    ``pose`` ``(B, 4, 4)``, ``origin`` ``(B, 3)``, ``intrinsics`` ``(B, 6)`` -- used to compute, in
    the model, the pixel -> fine-voxel index (:mod:`torchssc.models.projection`; invalid pixels go to
    a dummy voxel that is dropped). Full size: 480x640 images, 240x144x240 projection grid (0.02 m).
Output: ``{"semantic": (B, num_classes, S0/4, S1/4, S2/4)}`` logits (60x36x60 at full size).

The projection writes straight into the geometry axis order (X, Z-up, Y); WLJ permuted its volume
and transposed its labels instead, which gives the same network up to relabelling the axes of
its 1-D convolutions (BASELINES "Axis convention"). 195,748 parameters at 12 classes.
Initialisation as WLJ: Conv3d ``xavier_uniform_``, Conv2d Normal(0, 0.1), biases PyTorch default.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.geometry import FINE_SHAPE, FINE_VOXEL
from torchssc.models.projection import DepthProjection
from torchssc.models.registry import register_model


class BottleneckDDR2d(nn.Module):
    """2D DDR bottleneck: 1x1 (no bias) -> (1x3) -> (3x1) -> 1x1 (no bias), ReLUs, residual sum.

    ``(B, c_in, H, W) -> (B, c_out, H, W)``; ``residual`` needs ``c_in == c_out``.
    """

    def __init__(self, c_in: int, c: int, c_out: int, dilation: int = 1, residual: bool = True) -> None:
        super().__init__()
        if residual and c_in != c_out:
            raise ValueError(f"residual DDR block needs c_in == c_out, got {c_in} -> {c_out}")
        d = dilation
        self.residual = residual
        self.conv_in = nn.Conv2d(c_in, c, 1, bias=False)
        self.conv_w = nn.Conv2d(c, c, (1, 3), padding=(0, d), dilation=(1, d))
        self.conv_h = nn.Conv2d(c, c, (3, 1), padding=(d, 0), dilation=(d, 1))
        self.conv_out = nn.Conv2d(c, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv_in(x))
        y = F.relu(self.conv_w(y))
        y = F.relu(self.conv_h(y))
        y = self.conv_out(y)
        return F.relu(y + x) if self.residual else F.relu(y)


class BottleneckDDR3d(nn.Module):
    """3D DDR bottleneck (WLJ ``BottleneckDDR3d``), no normalisation.

    y0 = ReLU(1^3 c_in->c, no bias); y1 = ReLU(conv (1,1,3) along the last axis);
    y2 = ReLU(conv (1,3,1)(y1) + y1); y3 = ReLU(conv (3,1,1)(y2) + y2 + y1);
    out = ReLU(1^3 c->c_out, no bias (y3) [+ x if residual]). All 1-D convs have bias and dilation
    ``d`` (padding ``d``). ``(B, c_in, S0, S1, S2) -> (B, c_out, S0, S1, S2)``.
    """

    def __init__(self, c_in: int, c: int, c_out: int, dilation: int = 1, residual: bool = True) -> None:
        super().__init__()
        if residual and c_in != c_out:
            raise ValueError(f"residual DDR block needs c_in == c_out, got {c_in} -> {c_out}")
        d = dilation
        self.residual = residual
        self.conv_in = nn.Conv3d(c_in, c, 1, bias=False)
        self.conv_last = nn.Conv3d(c, c, (1, 1, 3), padding=(0, 0, d), dilation=(1, 1, d))
        self.conv_mid = nn.Conv3d(c, c, (1, 3, 1), padding=(0, d, 0), dilation=(1, d, 1))
        self.conv_first = nn.Conv3d(c, c, (3, 1, 1), padding=(d, 0, 0), dilation=(d, 1, 1))
        self.conv_out = nn.Conv3d(c, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = F.relu(self.conv_in(x))
        y1 = F.relu(self.conv_last(y0))
        y2 = F.relu(self.conv_mid(y1) + y1)
        y3 = F.relu(self.conv_first(y2) + y2 + y1)
        y = self.conv_out(y3)
        return F.relu(y + x) if self.residual else F.relu(y)


class DownsampleBlock3d(nn.Module):
    """``ReLU(cat[conv 3^3 s2 (c_in -> c_out - c_in, no bias)(x), maxpool 2(x)])``.

    ``(B, c_in, S0, S1, S2) -> (B, c_out, S0/2, S1/2, S2/2)``; every S must be even.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out <= c_in:
            raise ValueError(f"DownsampleBlock3d needs c_out > c_in, got {c_in} -> {c_out}")
        self.conv = nn.Conv3d(c_in, c_out - c_in, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool3d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(torch.cat([self.conv(x), self.pool(x)], dim=1))


class DDRASPP3d(nn.Module):
    """WLJ ``DDR_ASPP3d``: five parallel branches concatenated (5 * c_out channels), no ReLU after.

    (0) 1^3 conv no bias; (1)-(3) non-residual ``BottleneckDDR3d(c_in, c, c_out)`` with dilations
    ``dilations``; (4) global average pool -> 1^3 conv no bias -> broadcast to the input size.
    """

    def __init__(self, c_in: int = 256, c: int = 16, c_out: int = 64, dilations: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        self.branch0 = nn.Conv3d(c_in, c_out, 1, bias=False)
        self.dilated = nn.ModuleList(BottleneckDDR3d(c_in, c, c_out, dilation=d, residual=False) for d in dilations)
        self.pool_conv = nn.Conv3d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool_conv(x.mean(dim=(2, 3, 4), keepdim=True))  # (B, c_out, 1, 1, 1)
        # WLJ upsamples the 1^3 map trilinearly with align_corners: a broadcast.
        return torch.cat([self.branch0(x), *(m(x) for m in self.dilated), pooled.expand(-1, -1, *x.shape[2:])], dim=1)


def stream_2d(c_in: int) -> nn.Sequential:
    """Per-stream 2D features: Conv2d 1x1 (c_in -> 8, bias) + 2 x BottleneckDDR2d(8, 4, 8)."""
    return nn.Sequential(nn.Conv2d(c_in, 8, 1), BottleneckDDR2d(8, 4, 8), BottleneckDDR2d(8, 4, 8))


def stream_3d(c_mid: int) -> nn.Sequential:
    """Per-stream 3D stem: Downsample 8->16, DDR3d(16, c_mid, 16), Downsample 16->64, DDR3d(64, 16, 64).

    ``(B, 8, S) -> (B, 64, S/4)``; ``c_mid`` is 4 in DDRNet, 8 in AICNet.
    """
    return nn.Sequential(
        DownsampleBlock3d(8, 16),
        BottleneckDDR3d(16, c_mid, 16),
        DownsampleBlock3d(16, 64),
        BottleneckDDR3d(64, 16, 64),
    )


def head(c_in: int, num_classes: int) -> nn.Sequential:
    """1^3 conv c_in->128 + ReLU, 128->128 + ReLU, 128->num_classes (all with bias)."""
    return nn.Sequential(
        nn.Conv3d(c_in, 128, 1), nn.ReLU(inplace=True),
        nn.Conv3d(128, 128, 1), nn.ReLU(inplace=True),
        nn.Conv3d(128, num_classes, 1),
    )


def wlj_init_(model: nn.Module) -> None:
    """WLJ initialisation: Conv3d ``xavier_uniform_`` (gain 1), Conv2d Normal(0, 0.1); biases untouched."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.xavier_uniform_(m.weight)
        elif isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.1)


def check_rgbd_batch(batch: dict, name: str) -> None:
    """Raise ``ValueError`` naming the first missing key or bad shape of an RGB-D baseline batch."""
    for key in ("rgb", "depth", "pose", "origin", "intrinsics"):
        if key not in batch:
            raise ValueError(f"{name} needs batch[{key!r}] (load the dataset with depth=True and RGB present)")
    rgb, depth = batch["rgb"], batch["depth"]
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"{name}: rgb must be (B, 3, H, W), got {tuple(rgb.shape)}")
    if depth.dim() != 4 or depth.shape[1] != 1 or depth.shape[0] != rgb.shape[0] or depth.shape[2:] != rgb.shape[2:]:
        raise ValueError(f"{name}: depth must be (B, 1, H, W) matching rgb {tuple(rgb.shape)}, got {tuple(depth.shape)}")


def check_grid(grid_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    grid_shape = tuple(int(s) for s in grid_shape)
    if len(grid_shape) != 3 or any(s <= 0 or s % 4 for s in grid_shape):
        raise ValueError(f"grid_shape must be 3 positive sizes divisible by 4, got {grid_shape}")
    return grid_shape


class DDRNet(nn.Module):
    """DDRNet (BASELINES §2.3); inputs and outputs in the module docstring.

    Args:
        num_classes: output classes.
        grid_shape: projection grid (X, Z-up, Y), each dim divisible by 4; output is ``grid_shape/4``.
        voxel_size: projection voxel edge (m).
        index_rounding: ``"rint"`` (WLJ) or ``"floor"`` (SSCNet/TorchSSC lineage); kept as
            ``self.projection.index_rounding``.
    """

    def __init__(
        self,
        *,
        num_classes: int = 12,
        grid_shape: tuple[int, int, int] = FINE_SHAPE,
        voxel_size: float = FINE_VOXEL,
        index_rounding: str = "rint",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.projection = DepthProjection(
            grid_shape=check_grid(grid_shape), voxel_size=voxel_size, index_rounding=index_rounding, reduce="max"
        )
        self.dep_feature2d = stream_2d(1)
        self.rgb_feature2d = stream_2d(3)
        self.dep_feature3d = stream_3d(4)
        self.rgb_feature3d = stream_3d(4)
        self.dep_stages = nn.ModuleList(BottleneckDDR3d(64, 16, 64, dilation=d) for d in (2, 3, 5))
        self.rgb_stages = nn.ModuleList(BottleneckDDR3d(64, 16, 64, dilation=d) for d in (2, 3, 5))
        self.aspp = DDRASPP3d(256, 16, 64)
        self.head = head(320, num_classes)
        wlj_init_(self)

    @property
    def index_rounding(self) -> str:
        return self.projection.index_rounding

    def forward(self, batch: dict) -> dict:
        check_rgbd_batch(batch, "DDRNet")
        index = self.projection.index(batch)  # (B, H*W) flat fine-voxel index, dummy = numel
        x_d = self.dep_feature3d(self.projection(self.dep_feature2d(batch["depth"]), index))  # (B, 64, S/4)
        x_r = self.rgb_feature3d(self.projection(self.rgb_feature2d(batch["rgb"]), index))
        fused = [x_d + x_r]
        for dep, rgb in zip(self.dep_stages, self.rgb_stages):
            x_d, x_r = dep(x_d), rgb(x_r)
            fused.append(x_d + x_r)
        x = self.aspp(torch.cat(fused, dim=1))  # (B, 320, S/4)
        return {"semantic": self.head(x)}


@register_model("ddrnet")
def ddrnet(
    *,
    num_classes: int = 12,
    grid_shape: tuple[int, int, int] = FINE_SHAPE,
    voxel_size: float = FINE_VOXEL,
    index_rounding: str = "rint",
) -> DDRNet:
    """DDRNet (195,748 parameters at 12 classes); inputs rgb, depth, pose, origin, intrinsics."""
    return DDRNet(num_classes=num_classes, grid_shape=grid_shape, voxel_size=voxel_size, index_rounding=index_rounding)
