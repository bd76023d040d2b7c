"""AICNet (Li et al., "Anisotropic convolutional networks for 3D semantic scene completion",
CVPR 2020), as the authors' public code builds it (layer table: ``docs/baselines.md``).

The two-stream skeleton, its inputs and outputs are :class:`torchssc.models.two_stream.TwoStreamRGBD`;
AICNet's choices: stem width 8, stages ``BottleneckAIC3d(64, 32, 64)``, and two
``BottleneckAIC3d(256, 64, 256)`` in series as fusion. 848,108 parameters at 12 classes.
Initialisation as the authors (Conv3d ``xavier_uniform_``, Conv2d Normal(0, 0.1)).

The anisotropic convolution (:class:`BasicAIC3d`) predicts, per voxel, softmax weights over the
kernel sizes (3, 5, 7) for each axis and runs three 1-D stages -- along the last axis, then the
middle (height) axis, then the first -- each a weighted sum of ReLU(conv) over the kernel sizes.
Like the DDR block, it is not symmetric in the first and last axes."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.geometry import FINE_SHAPE, FINE_VOXEL
from torchssc.models.registry import register_model
from torchssc.models.two_stream import STEM_OUT, TwoStreamRGBD


def _axis_conv(c: int, k: int, axis: int, dilation: int) -> nn.Conv3d:
    """1-D conv of length ``k`` along spatial ``axis`` (0 = first, 2 = last), size-preserving."""
    kernel, pad, dil = [1, 1, 1], [0, 0, 0], [1, 1, 1]
    kernel[axis], pad[axis], dil[axis] = k, dilation * (k // 2), dilation
    return nn.Conv3d(c, c, tuple(kernel), padding=tuple(pad), dilation=tuple(dil))


class BasicAIC3d(nn.Module):
    """Anisotropic convolution module (Li et al., CVPR 2020). ``(B, c, S0, S1, S2) -> same``.

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
        # convs[axis][i]: kernel kernels[i] (dilation dilations[i], as the authors) along spatial axis `axis`.
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


class AICNet(TwoStreamRGBD):
    """AICNet; inputs and outputs as :class:`torchssc.models.two_stream.TwoStreamRGBD`, arguments
    as :class:`torchssc.models.ddrnet.DDRNet`."""

    def __init__(
        self,
        *,
        num_classes: int = 12,
        grid_shape: tuple[int, int, int] = FINE_SHAPE,
        voxel_size: float = FINE_VOXEL,
        index_rounding: str = "rint",
        index_precision: str = "float32",
        trunk_layout: str = "yzx",
    ) -> None:
        super().__init__(
            name="AICNet",
            num_classes=num_classes,
            grid_shape=grid_shape,
            voxel_size=voxel_size,
            index_rounding=index_rounding,
            index_precision=index_precision,
            trunk_layout=trunk_layout,
            stem_width=8,
            make_stage=lambda i: BottleneckAIC3d(STEM_OUT, 32, STEM_OUT),
            fusion_name="fusion",
            make_fusion=lambda: nn.Sequential(
                BottleneckAIC3d(4 * STEM_OUT, 64, 4 * STEM_OUT), BottleneckAIC3d(4 * STEM_OUT, 64, 4 * STEM_OUT)
            ),
            fusion_channels=4 * STEM_OUT,
        )


aicnet = register_model("aicnet", inputs=("rgb", "depth", "pose", "origin", "intrinsics"),
                        from_spec=lambda s: {"grid_shape": s.fine_grid, "voxel_size": s.fine_voxel})(AICNet)
"""AICNet (848,108 parameters at 12 classes), registered as it is: ``get_model("aicnet", **kwargs)``
takes the keywords of :class:`AICNet`."""
