"""The two-stream RGB-D network shared by DDRNet and AICNet, written once.

DDRNet (Li et al., "RGBD based dimensional decomposition residual network for 3D semantic scene
completion", CVPR 2019) and AICNet (Li et al., "Anisotropic convolutional networks for 3D semantic
scene completion", CVPR 2020) are the same network up to three choices: the width of one stem
block, the block of the three per-stream stages, and the fusion module after the concatenation
(``docs/baselines.md``). :class:`TwoStreamRGBD` is that network; ``ddrnet.py`` and ``aicnet.py``
only make the three choices.

Per stream (depth: 1 channel, RGB: 3 channels)::

    2D features (B, 8, H, W) --lift (scatter-max)--> (B, 8, S) --3D stem--> (B, 64, S/4)
    --3 stages--> x1, x2, x3 (B, 64, S/4)

then ``f_i = depth_i + rgb_i`` (i = 0..3, 0 = stem output), ``fuse(cat f_0..f_3)`` and a 1^3 head.

Also here: the DDR blocks both networks use (2D and 3D bottlenecks, the downsampling block), the
head, the authors' initialisation and the batch checks.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.models.projection import DepthProjection

STEM_OUT = 64  # channels of each stream after its 3D stem, and of every stage


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
    """3D DDR bottleneck (Li et al., CVPR 2019), no normalisation.

    y0 = ReLU(1^3 c_in->c, no bias); y1 = ReLU(conv (1,1,3) along the last axis);
    y2 = ReLU(conv (1,3,1)(y1) + y1); y3 = ReLU(conv (3,1,1)(y2) + y2 + y1);
    out = ReLU(1^3 c->c_out, no bias (y3) [+ x if residual]). All 1-D convs have bias and dilation
    ``d`` (padding ``d``). ``(B, c_in, S0, S1, S2) -> (B, c_out, S0, S1, S2)``.

    The fixed order (last axis, then middle, then first, with the intermediate sums) makes the
    block depend on which horizontal axis comes last: transposing the input's first and last axes
    gives a different function, whatever the weights (``docs/baselines.md``, "Grid layout").
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
        DownsampleBlock3d(16, STEM_OUT),
        BottleneckDDR3d(STEM_OUT, 16, STEM_OUT),
    )


def head(c_in: int, num_classes: int) -> nn.Sequential:
    """1^3 conv c_in->128 + ReLU, 128->128 + ReLU, 128->num_classes (all with bias)."""
    return nn.Sequential(
        nn.Conv3d(c_in, 128, 1), nn.ReLU(inplace=True),
        nn.Conv3d(128, 128, 1), nn.ReLU(inplace=True),
        nn.Conv3d(128, num_classes, 1),
    )


def wlj_init_(model: nn.Module) -> None:
    """The authors' initialisation: Conv3d ``xavier_uniform_`` (gain 1), Conv2d Normal(0, 0.1);
    biases keep PyTorch's defaults. Draws from the global torch RNG in module order."""
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
    """``grid_shape`` as 3 ints, each positive and divisible by 4; ``ValueError`` otherwise."""
    grid_shape = tuple(int(s) for s in grid_shape)
    if len(grid_shape) != 3 or any(s <= 0 or s % 4 for s in grid_shape):
        raise ValueError(f"grid_shape must be 3 positive sizes divisible by 4, got {grid_shape}")
    return grid_shape


class TwoStreamRGBD(nn.Module):
    """Depth and RGB streams lifted into one voxel grid, summed after each stage, fused, classified.

    Inputs (batch keys): ``rgb`` ``(B, 3, H, W)`` ImageNet-normalised; ``depth`` ``(B, 1, H, W)``
    metres (0 = missing); ``pose`` ``(B, 4, 4)``, ``origin`` ``(B, 3)``, ``intrinsics`` ``(B, 6)``,
    from which the model computes the pixel -> voxel index (:mod:`torchssc.models.projection`).
    Output: ``{"semantic": (B, num_classes, S0/4, S1/4, S2/4)}`` logits, grid axes (X, Z-up, Y).

    Args:
        name: the network's name, for error messages.
        num_classes: output classes.
        grid_shape: projection grid ``(S0, S1, S2)`` (X, Z-up, Y), each divisible by 4.
        voxel_size: projection voxel edge (m).
        index_rounding: ``"rint"`` or ``"floor"`` (:func:`torchssc.models.projection.pixel_to_voxel_index`).
        index_precision: ``"float32"`` (the authors' arithmetic) or ``"float64"``
            (:func:`torchssc.models.projection.pixel_to_grid_coords`).
        trunk_layout: axis order the 3D network runs in. ``"yzx"`` (world Y, up, world X) is the
            authors' (they permute the lifted volume so), and only it computes their function;
            ``"xzy"`` (world X, up, world Y) is our geometry order, a different network
            (``docs/baselines.md``, "Grid layout"). Inputs and outputs are in our order either way.
        stem_width: bottleneck width of the first DDR block of each 3D stem.
        make_stage: ``make_stage(i)`` builds stage ``i`` (0, 1, 2) of one stream: a 64 -> 64 module;
            called three times for the depth stream, then three times for the RGB stream.
        fusion_name: attribute (and state-dict prefix) of the fusion module.
        make_fusion: builds the fusion module, ``(B, 256, S/4) -> (B, fusion_channels, S/4)``.
        fusion_channels: its output channels (the head's input).

    With ``trunk_layout="yzx"`` the volume is lifted straight into the permuted grid (the pixel
    index is computed in that order) and the logits are permuted back: ``(B, C, S2/4, S1/4, S0/4)
    -> (B, C, S0/4, S1/4, S2/4)``.

    Modules are built, and initialised (:func:`wlj_init_`), in this order: projection, depth 2D,
    RGB 2D, depth 3D stem, RGB 3D stem, depth stages, RGB stages, fusion, head.
    """

    def __init__(
        self,
        *,
        name: str,
        num_classes: int,
        grid_shape: tuple[int, int, int],
        voxel_size: float,
        index_rounding: str,
        index_precision: str,
        trunk_layout: str,
        stem_width: int,
        make_stage: Callable[[int], nn.Module],
        fusion_name: str,
        make_fusion: Callable[[], nn.Module],
        fusion_channels: int,
    ) -> None:
        super().__init__()
        self.name = name
        self.num_classes = num_classes
        self.projection = DepthProjection(
            grid_shape=check_grid(grid_shape),
            voxel_size=voxel_size,
            index_rounding=index_rounding,
            index_precision=index_precision,
            layout=trunk_layout,
            reduce="max",
        )
        self.dep_feature2d = stream_2d(1)
        self.rgb_feature2d = stream_2d(3)
        self.dep_feature3d = stream_3d(stem_width)
        self.rgb_feature3d = stream_3d(stem_width)
        self.dep_stages = nn.ModuleList(make_stage(i) for i in range(3))
        self.rgb_stages = nn.ModuleList(make_stage(i) for i in range(3))
        self.fusion_name = fusion_name
        self.add_module(fusion_name, make_fusion())
        self.head = head(fusion_channels, num_classes)
        wlj_init_(self)

    @property
    def index_rounding(self) -> str:
        return self.projection.index_rounding

    @property
    def index_precision(self) -> str:
        return self.projection.index_precision

    @property
    def trunk_layout(self) -> str:
        return self.projection.layout

    def forward(self, batch: dict) -> dict:
        check_rgbd_batch(batch, self.name)
        index = self.projection.index(batch)  # (B, H*W) flat voxel index in the trunk's layout, dummy = numel
        # trunk grid T = S ("xzy") or (S2, S1, S0) ("yzx")
        x_d = self.dep_feature3d(self.projection(self.dep_feature2d(batch["depth"]), index))  # (B, 64, T/4)
        x_r = self.rgb_feature3d(self.projection(self.rgb_feature2d(batch["rgb"]), index))
        fused = [x_d + x_r]
        for dep, rgb in zip(self.dep_stages, self.rgb_stages):
            x_d, x_r = dep(x_d), rgb(x_r)
            fused.append(x_d + x_r)
        x = getattr(self, self.fusion_name)(torch.cat(fused, dim=1))  # (B, fusion_channels, T/4)
        logits = self.head(x)  # (B, num_classes, T/4)
        if self.trunk_layout == "yzx":
            logits = logits.permute(0, 1, 4, 3, 2).contiguous()  # back to (B, num_classes, S0/4, S1/4, S2/4)
        return {"semantic": logits}

