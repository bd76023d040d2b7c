"""AICNet (Li et al., CVPR 2020) as in the public WLJ code (BASELINES §3).

Inputs and output as DDRNet (:mod:`torchssc.models.ddrnet`): ``rgb (B,3,H,W)``, ``depth (B,1,H,W)``,
``pose``, ``origin``, ``intrinsics`` -> ``{"semantic": (B, num_classes, S0/4, S1/4, S2/4)}``.
848,108 parameters at 12 classes. Initialisation as WLJ (Conv3d ``xavier_uniform_``, Conv2d
Normal(0, 0.1)).

The anisotropic convolution (:class:`BasicAIC3d`) predicts, per voxel, softmax weights over the
kernel sizes (3, 5, 7) for each axis and runs three 1-D stages -- along the last axis, then the
middle (height) axis, then the first -- each a weighted sum of ReLU(conv) over the kernel sizes.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.geometry import FINE_SHAPE, FINE_VOXEL
from torchssc.models.ddrnet import check_grid, check_rgbd_batch, head, stream_2d, stream_3d, wlj_init_
from torchssc.models.projection import DepthProjection
from torchssc.models.registry import register_model


def _axis_conv(c: int, k: int, axis: int, dilation: int) -> nn.Conv3d:
    """1-D conv of length ``k`` along spatial ``axis`` (0 = first, 2 = last), size-preserving."""
    kernel, pad, dil = [1, 1, 1], [0, 0, 0], [1, 1, 1]
    kernel[axis], pad[axis], dil[axis] = k, dilation * (k // 2), dilation
    return nn.Conv3d(c, c, tuple(kernel), padding=tuple(pad), dilation=tuple(dil))


class BasicAIC3d(nn.Module):
    """Anisotropic convolution module (BASELINES §3.2). ``(B, c, S0, S1, S2) -> same``.

    Modulation: 1^3 conv c -> 3*len(kernels) (no bias), viewed as (axis, kernel) with channel
    ``len(kernels)*axis + kernel``, softmax over the kernel index. Stages along the last, middle,
    then first axis: ``y = sum_k w[axis][k] * ReLU(conv_{axis,k}(y))``; ``out = ReLU(y + x)``.
    """

    def __init__(
        self, c: int, kernels: tuple[int, ...] = (3, 5, 7), dilations: tuple[int, ...] = (1, 1, 1), residual: bool = True
    ) -> None:
        super().__init__()
        if len(dilations) != len(kernels):
            raise ValueError(f"dilations must have one value per kernel size, got {dilations} for {kernels}")
        self.kernels = tuple(kernels)
        self.residual = residual
        self.modulation = nn.Conv3d(c, 3 * len(kernels), 1, bias=False)
        # convs[axis][i]: kernel kernels[i] (dilation dilations[i], as WLJ) along spatial axis `axis`.
        self.convs = nn.ModuleList(
            nn.ModuleList(_axis_conv(c, k, axis, d) for k, d in zip(kernels, dilations)) for axis in range(3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, s0, s1, s2 = x.shape
        n_k = len(self.kernels)
        w = self.modulation(x).view(b, 3, n_k, 1, s0, s1, s2).softmax(dim=2)  # (B, axis, kernel, 1, S0, S1, S2)
        y = x
        for axis in (2, 1, 0):
            y = sum(w[:, axis, i] * F.relu(conv(y)) for i, conv in enumerate(self.convs[axis]))
        return F.relu(y + x) if self.residual else F.relu(y)


class BottleneckAIC3d(nn.Module):
    """``ReLU(1^3 c_in->c, no bias) -> BasicAIC3d(c) -> 1^3 c->c_out, no bias -> ReLU(+ x)``."""

    def __init__(self, c_in: int, c: int, c_out: int, kernels: tuple[int, ...] = (3, 5, 7)) -> None:
        super().__init__()
        if c_in != c_out:
            raise ValueError(f"residual AIC bottleneck needs c_in == c_out, got {c_in} -> {c_out}")
        self.conv_in = nn.Conv3d(c_in, c, 1, bias=False)
        self.aic = BasicAIC3d(c, kernels)
        self.conv_out = nn.Conv3d(c, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv_out(self.aic(F.relu(self.conv_in(x)))) + x)


class AICNet(nn.Module):
    """AICNet (BASELINES §3.3). Arguments as :class:`torchssc.models.ddrnet.DDRNet`."""

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
        self.dep_feature3d = stream_3d(8)
        self.rgb_feature3d = stream_3d(8)
        self.dep_stages = nn.ModuleList(BottleneckAIC3d(64, 32, 64) for _ in range(3))
        self.rgb_stages = nn.ModuleList(BottleneckAIC3d(64, 32, 64) for _ in range(3))
        self.fusion = nn.Sequential(BottleneckAIC3d(256, 64, 256), BottleneckAIC3d(256, 64, 256))
        self.head = head(256, num_classes)
        wlj_init_(self)

    @property
    def index_rounding(self) -> str:
        return self.projection.index_rounding

    def forward(self, batch: dict) -> dict:
        check_rgbd_batch(batch, "AICNet")
        index = self.projection.index(batch)  # (B, H*W), dummy = numel
        x_d = self.dep_feature3d(self.projection(self.dep_feature2d(batch["depth"]), index))  # (B, 64, S/4)
        x_r = self.rgb_feature3d(self.projection(self.rgb_feature2d(batch["rgb"]), index))
        fused = [x_d + x_r]
        for dep, rgb in zip(self.dep_stages, self.rgb_stages):
            x_d, x_r = dep(x_d), rgb(x_r)
            fused.append(x_d + x_r)
        x = self.fusion(torch.cat(fused, dim=1))  # (B, 256, S/4)
        return {"semantic": self.head(x)}


@register_model("aicnet")
def aicnet(
    *,
    num_classes: int = 12,
    grid_shape: tuple[int, int, int] = FINE_SHAPE,
    voxel_size: float = FINE_VOXEL,
    index_rounding: str = "rint",
) -> AICNet:
    """AICNet (848,108 parameters at 12 classes); inputs rgb, depth, pose, origin, intrinsics."""
    return AICNet(num_classes=num_classes, grid_shape=grid_shape, voxel_size=voxel_size, index_rounding=index_rounding)
