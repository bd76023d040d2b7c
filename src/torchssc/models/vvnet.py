"""VVNetR-120 (Guo & Tong, IJCAI 2018; code class ``VVNetAE120``), docs/baselines.md

Inputs (batch keys):
    ``depth`` ``(B, 1, H, W)`` metres (0 = missing), ``pose`` ``(B, 4, 4)``, ``origin`` ``(B, 3)``,
    ``intrinsics`` ``(B, 6)``. The normals are computed from the depth in the model
    (:func:`torchssc.models.projection.depth_normals`, VVNet's ``prepare_data.py`` rule), so the
    2D input is ``cat(depth, normals)`` with 4 channels. H and W must be even.
Output: ``{"semantic": (B, num_classes, S0/2, S1/2, S2/2)}`` logits; full size: projection grid
    ``(120, 72, 120)`` of 0.04 m voxels -> 60x36x60.

Pipeline: 2D convs with BatchNorm at full image size and half size (max pool), nearest x2
upsampling back to H x W, **average** view-volume projection of every valid depth pixel into the
0.04 m grid (``floor`` index by default, as VVNet), then a 3D residual network without
normalisation down to S/8, a stride-2 transposed conv back to S/2 and SSCNet's 1^3 head.
5,362,380 parameters at 12 classes.

Port notes (the original is TF 1.3 ``tf.contrib.layers``): convs use symmetric padding (TF
``SAME`` is identical for stride-1 odd kernels); the transposed conv uses ``padding=1,
output_padding=1`` (TF's ``SAME`` crop is one voxel off from this at the low end, a half-voxel
shift of the 60-res output like the one docs/baselines.md notes for SSCNet*); BatchNorm with
``eps=1e-3`` and running-average decay 0.999 as the TF defaults; weights Glorot-uniform
(``xavier_uniform_``), biases 0, as the TF layer defaults.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.geometry import FINE_VOXEL
from torchssc.models.projection import DepthProjection, depth_normals
from torchssc.models.registry import register_model

VVNET_GRID = (120, 72, 120)
VVNET_VOXEL = 2 * FINE_VOXEL


def _conv_bn_2d(c_in: int, c_out: int, k: int) -> nn.Sequential:
    """TF ``conv2d`` (with bias) followed by ``batch_norm(scale=True)``; no activation."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=k // 2),
        nn.BatchNorm2d(c_out, eps=1e-3, momentum=1e-3),
    )


class ResBlock2d(nn.Module):
    """``[conv-BN-ReLU, conv-BN] + [1x1 conv-BN]`` -> ReLU (``shortcut=False``: conv-BN-ReLU twice)."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv_bn_2d(c_in, c_out, 3)
        self.conv2 = _conv_bn_2d(c_out, c_out, 3)
        self.shortcut = _conv_bn_2d(c_in, c_out, 1) if shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(y if self.shortcut is None else y + self.shortcut(x))


class ResBlock3d(nn.Module):
    """``ReLU(conv3^3 linear(ReLU(conv3^3(x))) + shortcut(x))``; shortcut = 1^3 conv when the
    width changes, identity otherwise. All convs with bias, no normalisation."""

    def __init__(self, c_in: int, c_out: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=dilation, dilation=dilation)
        self.shortcut = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class VVNetR120(nn.Module):
    """VVNetR-120 (docs/baselines.md); inputs and outputs in the module docstring.

    Args:
        num_classes: output classes.
        grid_shape: projection grid (X, Z-up, Y), each dim divisible by 8; output ``grid_shape/2``.
        voxel_size: projection voxel edge (m); 0.04 for the 120-res volume.
        index_rounding: ``"floor"`` (VVNet) or ``"rint"``; kept as ``self.projection.index_rounding``.
    """

    def __init__(
        self,
        *,
        num_classes: int = 12,
        grid_shape: tuple[int, int, int] = VVNET_GRID,
        voxel_size: float = VVNET_VOXEL,
        index_rounding: str = "floor",
    ) -> None:
        super().__init__()
        grid_shape = tuple(int(s) for s in grid_shape)
        if len(grid_shape) != 3 or any(s <= 0 or s % 8 for s in grid_shape):
            raise ValueError(f"grid_shape must be 3 positive sizes divisible by 8, got {grid_shape}")
        self.num_classes = num_classes
        self.projection = DepthProjection(
            grid_shape=grid_shape, voxel_size=voxel_size, index_rounding=index_rounding, reduce="mean"
        )
        self.res640 = ResBlock2d(4, 8, shortcut=False)  # full image size
        self.res320 = ResBlock2d(8, 16)  # half size
        self.volume120 = ResBlock3d(16, 32)
        self.volume60 = ResBlock3d(32, 64)
        self.volume30 = nn.ModuleList([ResBlock3d(64, 128), ResBlock3d(128, 128, 2), ResBlock3d(128, 128, 2)])
        self.up = nn.ConvTranspose3d(384, 256, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Sequential(
            nn.Conv3d(256, 128, 1), nn.ReLU(inplace=True),
            nn.Conv3d(128, 128, 1), nn.ReLU(inplace=True),
            nn.Conv3d(128, num_classes, 1),
        )
        self.reset_parameters()

    @property
    def index_rounding(self) -> str:
        return self.projection.index_rounding

    def reset_parameters(self) -> None:
        """TF layer defaults: Glorot-uniform weights, zero biases, BN gamma 1 / beta 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()

    def forward(self, batch: dict) -> dict:
        for key in ("depth", "pose", "origin", "intrinsics"):
            if key not in batch:
                raise ValueError(f"VVNetR120 needs batch[{key!r}] (load the dataset with depth=True)")
        depth = batch["depth"]
        if depth.dim() != 4 or depth.shape[1] != 1 or depth.shape[2] % 2 or depth.shape[3] % 2:
            raise ValueError(f"VVNetR120: depth must be (B, 1, H, W) with even H, W, got {tuple(depth.shape)}")
        x = torch.cat([depth, depth_normals(depth, batch["intrinsics"])], dim=1)  # (B, 4, H, W)
        x = self.res640(x)  # (B, 8, H, W)
        x = self.res320(F.max_pool2d(x, 2))  # (B, 16, H/2, W/2)
        x = F.interpolate(x, scale_factor=2, mode="nearest")  # (B, 16, H, W)
        x = self.projection(x, self.projection.index(batch))  # (B, 16, S0, S1, S2)
        x = F.max_pool3d(self.volume120(x), 2)  # (B, 32, S/2)
        x = F.max_pool3d(self.volume60(x), 2)  # (B, 64, S/4)
        stages = []
        for block in self.volume30:
            x = block(x)
            stages.append(x)
        x = torch.cat(stages, dim=1)  # (B, 384, S/4), each post-ReLU
        x = F.relu(self.up(x))  # (B, 256, S/2)
        return {"semantic": self.head(x)}


@register_model("vvnet_r120", inputs=("depth", "pose", "origin", "intrinsics"),
                from_spec=lambda s: {"grid_shape": tuple(g // 2 for g in s.fine_grid), "voxel_size": 2 * s.fine_voxel})
def vvnet_r120(
    *,
    num_classes: int = 12,
    grid_shape: tuple[int, int, int] = VVNET_GRID,
    voxel_size: float = VVNET_VOXEL,
    index_rounding: str = "floor",
) -> VVNetR120:
    """VVNetR-120 (5,362,380 parameters at 12 classes); inputs depth, pose, origin, intrinsics."""
    return VVNetR120(num_classes=num_classes, grid_shape=grid_shape, voxel_size=voxel_size, index_rounding=index_rounding)
