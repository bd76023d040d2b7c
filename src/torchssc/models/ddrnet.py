"""DDRNet (Li et al., "RGBD based dimensional decomposition residual network for 3D semantic scene
completion", CVPR 2019), as the authors' public code builds it (layer table: ``docs/baselines.md``).

The two-stream skeleton, its inputs and outputs are :class:`torchssc.models.two_stream.TwoStreamRGBD`;
DDRNet's choices: stem width 4, stages ``BottleneckDDR3d(64, 16, 64)`` with dilations 2, 3, 5, and
the DDR ASPP (:class:`DDRASPP3d`, 320 channels) as fusion. 195,748 parameters at 12 classes.
Initialisation as the authors: Conv3d ``xavier_uniform_``, Conv2d Normal(0, 0.1), biases PyTorch
default.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from torchssc.geometry import FINE_SHAPE, FINE_VOXEL
from torchssc.models.registry import register_model
from torchssc.models.two_stream import STEM_OUT, BottleneckDDR3d, TwoStreamRGBD

STAGE_DILATIONS = (2, 3, 5)


class DDRASPP3d(nn.Module):
    """DDR ASPP: five parallel branches concatenated (5 * c_out channels), no ReLU after.

    (0) 1^3 conv no bias; (1)-(3) non-residual ``BottleneckDDR3d(c_in, c, c_out)`` with dilations
    ``dilations``; (4) global average pool -> 1^3 conv no bias -> broadcast to the input size.
    ``(B, c_in, S0, S1, S2) -> (B, 5 * c_out, S0, S1, S2)``.
    """

    def __init__(self, c_in: int = 256, c: int = 16, c_out: int = 64, dilations: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        self.branch0 = nn.Conv3d(c_in, c_out, 1, bias=False)
        self.dilated = nn.ModuleList(BottleneckDDR3d(c_in, c, c_out, dilation=d, residual=False) for d in dilations)
        self.pool_conv = nn.Conv3d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool_conv(x.mean(dim=(2, 3, 4), keepdim=True))  # (B, c_out, 1, 1, 1)
        # the authors upsample the 1^3 map trilinearly with align_corners: a broadcast.
        return torch.cat([self.branch0(x), *(m(x) for m in self.dilated), pooled.expand(-1, -1, *x.shape[2:])], dim=1)


class DDRNet(TwoStreamRGBD):
    """DDRNet; inputs and outputs as :class:`torchssc.models.two_stream.TwoStreamRGBD`.

    Args:
        num_classes: output classes.
        grid_shape: projection grid (X, Z-up, Y), each dim divisible by 4; output is ``grid_shape/4``.
        voxel_size: projection voxel edge (m).
        index_rounding: ``"rint"`` (the authors) or ``"floor"`` (SSCNet/TorchSSC lineage); kept as
            ``self.projection.index_rounding``.
        index_precision: ``"float32"`` (the authors' arithmetic, default) or ``"float64"``.
        trunk_layout: ``"yzx"`` (the authors' grid layout, default: the authors' function) or
            ``"xzy"`` (our geometry order: a different network). See
            :class:`torchssc.models.two_stream.TwoStreamRGBD`.
    """

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
            name="DDRNet",
            num_classes=num_classes,
            grid_shape=grid_shape,
            voxel_size=voxel_size,
            index_rounding=index_rounding,
            index_precision=index_precision,
            trunk_layout=trunk_layout,
            stem_width=4,
            make_stage=lambda i: BottleneckDDR3d(STEM_OUT, 16, STEM_OUT, dilation=STAGE_DILATIONS[i]),
            fusion_name="aspp",
            make_fusion=lambda: DDRASPP3d(4 * STEM_OUT, 16, STEM_OUT),
            fusion_channels=5 * STEM_OUT,
        )


ddrnet = register_model("ddrnet", inputs=("rgb", "depth", "pose", "origin", "intrinsics"),
                        from_spec=lambda s: {"grid_shape": s.fine_grid, "voxel_size": s.fine_voxel})(DDRNet)
"""DDRNet (195,748 parameters at 12 classes), registered as it is: ``get_model("ddrnet", **kwargs)``
takes the keywords of :class:`DDRNet`."""
