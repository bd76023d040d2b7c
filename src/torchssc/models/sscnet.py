"""SSCNet (Song et al., CVPR 2017), as the Caffe ``deploy_net_nyu.txt`` defines it (docs/baselines.md).

Input: ``batch["tsdf_fine"]`` ``(B, 1, S0, S1, S2)`` float32, the flipped TSDF (surface 1,
free/unknown 0.001, occluded -0.001; docs/data.md) at 0.02 m, full size ``(240, 144, 240)`` in the
geometry axis order (X, Z-up, Y). Each dim must be divisible by 4.
Output: ``{"semantic": (B, num_classes, S0/4, S1/4, S2/4)}`` logits (softmax only in loss/eval).

No normalisation layers; the two reduction (shortcut) convs have no bias; ReLU sits after every
residual sum so the four concatenated tensors are post-ReLU; symmetric padding (``padding=3`` on
the stride-2 7^3 stem) reproduces Caffe. 930,508 parameters at 12 classes.

Initialisation as the prototxt: Caffe "xavier" with its default ``variance_norm: FAN_IN`` --
uniform +-sqrt(3 / (C_in k^3)) -- on the 7^3, 3^3 and reduction convs; Gaussian std 0.1 on
conv4_1, std 0.01 on conv4_2 and fc12; all biases 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.models.registry import register_model


def _caffe_xavier_(conv: nn.Conv3d) -> None:
    """Caffe ``xavier`` filler, ``variance_norm: FAN_IN``: U(-a, a), a = sqrt(3 / fan_in)."""
    fan_in = conv.in_channels * math.prod(conv.kernel_size)
    bound = math.sqrt(3.0 / fan_in)
    nn.init.uniform_(conv.weight, -bound, bound)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _gaussian_(conv: nn.Conv3d, std: float) -> None:
    nn.init.normal_(conv.weight, 0.0, std)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _conv(c_in: int, c_out: int, k: int, *, stride: int = 1, dilation: int = 1, bias: bool = True) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, k, stride=stride, padding=dilation * (k // 2), dilation=dilation, bias=bias)


class SSCNet(nn.Module):
    """SSCNet, layer for layer (docs/baselines.md); see the module docstring for inputs/outputs.

    Args:
        num_classes: output classes (12 for NYU: empty + 11).
    """

    input_key = "tsdf_fine"

    def __init__(self, *, num_classes: int = 12) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1_1 = _conv(1, 16, 7, stride=2)  # 240 -> 120
        self.reduction2_1 = _conv(16, 32, 1, bias=False)
        self.conv2_1 = _conv(16, 32, 3)
        self.conv2_2 = _conv(32, 32, 3)
        self.pool2 = nn.MaxPool3d(2, 2)  # 120 -> 60
        self.reduction3_1 = _conv(32, 64, 1, bias=False)
        self.conv3_1 = _conv(32, 64, 3)
        self.conv3_2 = _conv(64, 64, 3)
        self.conv3_3 = _conv(64, 64, 3)
        self.conv3_4 = _conv(64, 64, 3)
        self.conv3_5 = _conv(64, 64, 3, dilation=2)
        self.conv3_6 = _conv(64, 64, 3, dilation=2)
        self.conv3_7 = _conv(64, 64, 3, dilation=2)
        self.conv3_8 = _conv(64, 64, 3, dilation=2)
        self.conv4_1 = _conv(256, 128, 1)
        self.conv4_2 = _conv(128, 128, 1)
        self.fc12 = _conv(128, num_classes, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight as the Caffe prototxt does (uses the global torch RNG)."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                _caffe_xavier_(m)
        _gaussian_(self.conv4_1, 0.1)
        _gaussian_(self.conv4_2, 0.01)
        _gaussian_(self.fc12, 0.01)

    def forward_tensor(self, tsdf_fine: torch.Tensor) -> torch.Tensor:
        """``(B, 1, S0, S1, S2)`` flipped TSDF -> ``(B, num_classes, S0/4, S1/4, S2/4)`` logits."""
        if tsdf_fine.dim() != 5 or tsdf_fine.shape[1] != 1 or any(s % 4 for s in tsdf_fine.shape[2:]):
            raise ValueError(
                f"tsdf_fine must be (B, 1, S0, S1, S2) with each S divisible by 4, got {tuple(tsdf_fine.shape)}"
            )
        x = F.relu(self.conv1_1(tsdf_fine))  # (B, 16, S/2)
        x = F.relu(self.reduction2_1(x) + self.conv2_2(F.relu(self.conv2_1(x))))  # res2_2 (B, 32, S/2)
        x = self.pool2(x)  # (B, 32, S/4)
        res3_2 = F.relu(self.reduction3_1(x) + self.conv3_2(F.relu(self.conv3_1(x))))  # (B, 64, S/4)
        res3_4 = F.relu(res3_2 + self.conv3_4(F.relu(self.conv3_3(res3_2))))
        res3_6 = F.relu(res3_4 + self.conv3_6(F.relu(self.conv3_5(res3_4))))
        res3_8 = F.relu(res3_6 + self.conv3_8(F.relu(self.conv3_7(res3_6))))
        x = torch.cat([res3_2, res3_4, res3_6, res3_8], dim=1)  # (B, 256, S/4)
        x = F.relu(self.conv4_1(x))
        x = F.relu(self.conv4_2(x))
        return self.fc12(x)  # (B, num_classes, S/4)

    def forward(self, batch: dict) -> dict:
        if self.input_key not in batch:
            raise ValueError(
                f"SSCNet needs batch[{self.input_key!r}] (B,1,240,144,240) flipped TSDF: load the dataset with fine=True"
            )
        return {"semantic": self.forward_tensor(batch[self.input_key])}


@register_model("sscnet", inputs=("tsdf_fine",))
def sscnet(*, num_classes: int = 12) -> SSCNet:
    """SSCNet (930,508 parameters at 12 classes); input ``batch["tsdf_fine"]``."""
    return SSCNet(num_classes=num_classes)
