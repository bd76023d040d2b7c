"""CCPNet-style: a **proposed** network after the principles of CCPNet (Zhang, Liu, Lei, Lu, Yang,
"Cascaded Context Pyramid for Full-Resolution 3D Semantic Scene Completion", ICCV 2019).

CCPNet's authors released no model definition, so this is **not** CCPNet: it is a concrete design
that follows what the paper's abstract and figure caption state (docs/baselines.md,
"CCPNet-style", lists what is pinned, what is proposed and the open questions). Never quote its
numbers as CCPNet's.

Input: ``batch["tsdf_fine"]`` ``(B, 1, S0, S1, S2)`` float32, SSCNet's flipped TSDF, full size
``(240, 144, 240)`` (0.02 m), axes [world X, up, world Y] as :mod:`torchssc.geometry`; every size
divisible by 16. Output: ``{"semantic": (B, 12, S0, S1, S2)}`` logits at the **input
resolution** (scored on the label grid by :mod:`torchssc.label_grid_rule`), plus with
``side_heads`` in training ``ccpnet_side60`` ``(B, 12, S/4)`` and ``ccpnet_side120``
``(B, 12, S/2)`` logits for deep supervision.

Layers (``c`` = pyramid width, 64 by default; every 3³ conv pads its dilation; conv-BN-ReLU
convs have no bias):

==========  ===========================================================  ================
block       op                                                           output
==========  ===========================================================  ================
E0          conv-BN-ReLU 1 -> 8                                          f0 (8, S)
E1          conv-BN-ReLU 8 -> 16, stride 2; residual unit 16             f1 (16, S/2)
E2          conv-BN-ReLU 16 -> 32, stride 2; residual unit 32 -> c       f2 (c, S/4)
            with a 1³ conv-BN projection shortcut (at any c)
CCP L1      residual unit, dilation 6, 1 sub-volume (global)             x1 (c, S/4)
CCP L2      residual unit on x1, dilation 3, 2³ sub-volumes              x2
CCP L3      residual unit on x2, dilation 1, 4³ sub-volumes (local)      x3
fuse        1³ conv-BN-ReLU on concat(f2, x1, x2, x3), 4c -> c           (c, S/4)
GRR1        guided residual refinement with f1                           o1 (16, S/2)
GRR2        guided residual refinement with f0                           o2 (8, S)
head        1³ conv (bias) 8 -> 12                                       logits (12, S)
==========  ===========================================================  ================

A *residual unit* is ``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``. A conv on ``n³``
sub-volumes (:class:`PartitionedConv3d`) convolves each of the ``n³`` equal blocks of the volume
on its own, zero-padded at the block borders, with shared weights: the pyramid sees the whole
room at level 1 and 15x9x15-voxel blocks (1.2 x 0.72 x 1.2 m) at level 3. A *guided residual
refinement* (:class:`GuidedResidualRefinement`) upsamples the coarse feature (transposed 4³
stride-2 conv-BN-ReLU -> U), gates the encoder feature of that resolution with
``A = sigmoid(conv1³(U))`` as ``L * (1 + A)``, and adds a residual branch
``BN(conv(ReLU(BN(conv(concat(U, L * (1 + A)))))))`` back to U, then ReLU.

980,892 trainable parameters at ``c = 64`` (603,996 at 48, 325,916 at 32); the optional side
heads add 780 + 204. Initialisation (a choice): Kaiming-normal (fan out, ReLU) conv weights, zero
biases, BatchNorm weight 1 and bias 0.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.models.registry import register_model


def fold_blocks(x: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, C, D, H, W)`` -> ``(B * n³, C, D/n, H/n, W/n)``: the ``n³`` equal sub-volumes as a
    batch, block ``(i, j, k)`` (along D, H, W) of sample ``b`` at index ``((b * n + i) * n + j) * n + k``."""
    b, c, d, h, w = x.shape
    x = x.reshape(b, c, n, d // n, n, h // n, n, w // n)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, n, n, n, C, d, h, w)
    return x.reshape(b * n ** 3, c, d // n, h // n, w // n)


def unfold_blocks(x: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`fold_blocks`: ``(B * n³, C, d, h, w)`` -> ``(B, C, n d, n h, n w)``."""
    bn3, c, d, h, w = x.shape
    b = bn3 // n ** 3
    x = x.reshape(b, n, n, n, c, d, h, w).permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, n, d, n, h, n, w)
    return x.reshape(b, c, n * d, n * h, n * w)


class PartitionedConv3d(nn.Conv3d):
    """A stride-1 3D conv applied to each of the ``n³`` equal sub-volumes independently.

    ``(B, C_in, D, H, W)`` -> ``(B, C_out, D, H, W)``, sizes divisible by ``parts``; the padding
    is ``dilation * (kernel // 2)`` with zeros at every sub-volume border, the weights are shared.
    ``parts = 1`` is a plain conv. Computed as one conv over the sub-volumes folded into the
    batch (:func:`fold_blocks`), which equals a loop over the blocks (tested).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, *, dilation: int = 1, parts: int = 1,
                 bias: bool = False) -> None:
        super().__init__(c_in, c_out, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation,
                         bias=bias)
        if parts < 1:
            raise ValueError(f"parts must be >= 1, got {parts}")
        self.parts = parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.parts
        if n == 1:
            return super().forward(x)
        if any(s % n for s in x.shape[2:]):
            raise ValueError(f"a conv on {n}^3 sub-volumes needs sizes divisible by {n}, got {tuple(x.shape[2:])}")
        return unfold_blocks(super().forward(fold_blocks(x, n)), n)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", parts={self.parts}"


class ConvBNReLU(nn.Sequential):
    """conv (no bias) -> BatchNorm -> ReLU; ``k`` odd pads ``k // 2``."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, *, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm3d(c_out),
            nn.ReLU(inplace=True),
        )


class ResidualUnit(nn.Module):
    """``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))`` with 3³ convs on ``parts³``
    sub-volumes at ``dilation``; the shortcut is the identity, or a 1³ conv-BN when the width
    changes or ``projection`` is set. ``(B, c_in, D, H, W)`` -> ``(B, c_out, D, H, W)``."""

    def __init__(self, c_in: int, c_out: int, *, dilation: int = 1, parts: int = 1, projection: bool = False) -> None:
        super().__init__()
        self.conv1 = PartitionedConv3d(c_in, c_out, 3, dilation=dilation, parts=parts)
        self.bn1 = nn.BatchNorm3d(c_out)
        self.conv2 = PartitionedConv3d(c_out, c_out, 3, dilation=dilation, parts=parts)
        self.bn2 = nn.BatchNorm3d(c_out)
        self.shortcut = (
            nn.Identity()
            if c_in == c_out and not projection
            else nn.Sequential(nn.Conv3d(c_in, c_out, 1, bias=False), nn.BatchNorm3d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class GuidedResidualRefinement(nn.Module):
    """``coarse (B, c_coarse, D, H, W)`` and the encoder feature ``low (B, c, 2D, 2H, 2W)`` ->
    ``(B, c, 2D, 2H, 2W)`` (module docstring)."""

    def __init__(self, c_coarse: int, c: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose3d(c_coarse, c, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm3d(c),
            nn.ReLU(inplace=True),
        )
        self.gate = nn.Conv3d(c, c, 1)
        self.conv1 = nn.Conv3d(2 * c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(c)
        self.conv2 = nn.Conv3d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(c)

    def forward(self, coarse: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        u = self.up(coarse)
        amplified = low * (1.0 + torch.sigmoid(self.gate(u)))
        r = F.relu(self.bn1(self.conv1(torch.cat([u, amplified], dim=1))))
        return F.relu(u + self.bn2(self.conv2(r)))


PYRAMID = ((6, 1), (3, 2), (1, 4))
"""(dilation, sub-volumes per axis) of the three context-pyramid levels, global to local."""


class CCPNetStyle(nn.Module):
    """CCPNet-style network (module docstring).

    Args:
        num_classes: output classes (12).
        width: pyramid width ``c``: 64 (980,892 parameters), 48 (603,996) or 32 (325,916).
        side_heads: add 1³ conv heads on the fused 1/4-resolution feature and on GRR1's output,
            returned in training for deep supervision.
    """

    input_key = "tsdf_fine"

    def __init__(self, *, num_classes: int = 12, width: int = 64, side_heads: bool = False) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        c = width
        self.num_classes = num_classes
        self.e0 = ConvBNReLU(1, 8)
        self.e1 = nn.Sequential(ConvBNReLU(8, 16, stride=2), ResidualUnit(16, 16))
        self.e2 = nn.Sequential(ConvBNReLU(16, 32, stride=2), ResidualUnit(32, c, projection=True))
        self.pyramid = nn.ModuleList(ResidualUnit(c, c, dilation=d, parts=n) for d, n in PYRAMID)
        self.fuse = ConvBNReLU((1 + len(PYRAMID)) * c, c, 1)
        self.grr1 = GuidedResidualRefinement(c, 16)
        self.grr2 = GuidedResidualRefinement(16, 8)
        self.head = nn.Conv3d(8, num_classes, 1)
        self.side_heads = side_heads
        if side_heads:
            self.side60 = nn.Conv3d(c, num_classes, 1)
            self.side120 = nn.Conv3d(16, num_classes, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_tensor(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 1, S0, S1, S2)`` flipped TSDF -> ``{"semantic": (B, 12, S0, S1, S2)}`` (+ side heads)."""
        if x.dim() != 5 or x.shape[1] != 1 or any(s % 16 for s in x.shape[2:]):
            raise ValueError(f"tsdf_fine must be (B, 1, S0, S1, S2) with each S divisible by 16, got {tuple(x.shape)}")
        f0 = self.e0(x)  # (B, 8, S)
        f1 = self.e1(f0)  # (B, 16, S/2)
        f2 = self.e2(f1)  # (B, c, S/4)
        levels = [f2]
        for level in self.pyramid:  # self-cascaded: each level reads the previous one
            levels.append(level(levels[-1]))
        fused = self.fuse(torch.cat(levels, dim=1))  # (B, c, S/4)
        o1 = self.grr1(fused, f1)  # (B, 16, S/2)
        o2 = self.grr2(o1, f0)  # (B, 8, S)
        out = {"semantic": self.head(o2)}  # (B, 12, S)
        if self.side_heads and self.training:
            out["ccpnet_side60"] = self.side60(fused)
            out["ccpnet_side120"] = self.side120(o1)
        return out

    def forward(self, batch: dict) -> dict:
        if self.input_key not in batch:
            raise ValueError(
                "CCPNet-style needs batch['tsdf_fine'] (B,1,240,144,240) flipped TSDF: load the dataset with fine=True"
            )
        return self.forward_tensor(batch[self.input_key])


@register_model("ccpnet_style", inputs=("tsdf_fine",))
def ccpnet_style(*, num_classes: int = 12, width: int = 64, side_heads: bool = False) -> CCPNetStyle:
    """CCPNet-style, a proposal after CCPNet's principles (980,892 parameters at width 64);
    input ``batch["tsdf_fine"]`` (B,1,240,144,240), output ``semantic`` (B,12,240,144,240)."""
    return CCPNetStyle(num_classes=num_classes, width=width, side_heads=side_heads)
