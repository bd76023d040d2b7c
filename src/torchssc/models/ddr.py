"""DDR building blocks of SketchAwareSSC (docs/model.md): the factorised 3D bottleneck and the
encoder-decoder shared by both stages.

All tensors are ``(B, C, D, H, W)`` float volumes in the axis order of :mod:`torchssc.geometry`
(``[world X, world Z (up), world Y]`` for the label grid); the blocks themselves are agnostic to
the order and to the grid size (any size divisible by 4 for :class:`EncoderDecoder`).

The paper's DDR block replaces one 3x3x3 convolution by three 1-D convolutions, one per axis, with
dense shortcuts between them (Li et al., "RGBD based dimensional decomposition residual network
for 3D semantic scene completion", CVPR 2019; Chen et al., CVPR 2020).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.models.recompute import recompute


def conv_bn_relu_3d(channels: list[int]) -> nn.Sequential:
    """Chain of ``3x3x3 conv (no bias, padding 1) + BatchNorm3d + ReLU`` for consecutive pairs.

    ``conv_bn_relu_3d([1, 3, 64, 128])`` is the paper's stem ``1 -> 3 -> 64 -> 128``.
    Input ``(B, channels[0], D, H, W)``, output ``(B, channels[-1], D, H, W)``.
    """
    layers: list[nn.Module] = []
    for cin, cout in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout),
                   nn.ReLU(inplace=True)]  # in place on the BN output: one volume less to keep
    return nn.Sequential(*layers)


def conv_bn_relu_3d_lean(chain: nn.Sequential, x: torch.Tensor, *, keep_output: bool = True,
                         enabled: bool = True) -> torch.Tensor:
    """``chain(x)`` for a :func:`conv_bn_relu_3d` chain, keeping fewer activations for backward.

    Everything before the last convolution (cheap: few channels) is recomputed in the backward
    pass, so only ``x`` and the last convolution's input are kept; with ``keep_output=False``
    the last BatchNorm + ReLU are recomputed too (worth it when nothing downstream keeps the
    output, e.g. a sum). Same maths and BatchNorm statistics (:mod:`torchssc.models.recompute`).
    ``enabled=False``: a plain ``chain(x)``.
    """
    if len(chain) < 6 or not enabled:
        return chain(x)
    x = recompute(chain[:-3], chain, x)
    x = chain[-3](x)
    return chain[-2:](x) if keep_output else recompute(chain[-2:], chain, x)


def _resize_branch(planes: int, pool: tuple[int, int, int]) -> nn.Sequential:
    """AvgPool ``pool`` + 1x1x1 conv (no bias) + BN: brings a shortcut to the strided size."""
    return nn.Sequential(
        nn.AvgPool3d(kernel_size=pool, stride=pool),
        nn.Conv3d(planes, planes, 1, bias=False),
        nn.BatchNorm3d(planes),
    )


class Bottleneck3D(nn.Module):
    """DDR bottleneck ``Bottleneck3D(in, planes, expansion, stride, dilation)``.

    ``x (B, in, D, H, W) -> (B, planes * expansion, D/s, H/s, W/s)``::

        y1 = ReLU(BN(conv1x1x1(x)))                              in -> planes
        y2 = BN(conv(1,1,3)(y1))            stride s, dilation d along the last axis
        y3 = BN(conv(1,3,1)(ReLU(y2))) + y2'                      middle axis
        y4 = BN(conv(3,1,1)(ReLU(y3))) + y2'' + y3'               first axis
        out = ReLU(BN(conv1x1x1(ReLU(y4))) + downsample(x))      planes -> planes * expansion

    With ``stride == 1`` the primes are identities; with ``stride > 1`` ``y2' =
    downsample2(y2)`` (AvgPool (1,s,1) + 1x1x1 conv + BN), ``y2'' = downsample3(y2')`` and ``y3' =
    downsample4(y3)`` (AvgPool (s,1,1) + 1x1x1 conv + BN each). Those three resizing branches exist
    **only when stride > 1** by default: the original built them always and left 95,616 parameters
    without gradient, which plain DDP rejects (``keep_unused=True`` builds them always, as the
    original, for models whose parameter names and counts must match it: AMMNet). All convs are
    bias-free, padding = dilation.

    Args:
        inplanes: input channels.
        planes: bottleneck width.
        expansion: output channels = ``planes * expansion``.
        stride: 1 or 2 (applied once per axis by the three 1-D convs).
        dilation: dilation of the three 1-D convs.
        downsample: module applied to ``x`` for the residual (needed whenever the shape changes).
        keep_unused: build ``downsample2/3/4`` also when ``stride == 1`` (never used in forward).
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        expansion: int = 4,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        keep_unused: bool = False,
    ) -> None:
        super().__init__()
        d, s = dilation, stride
        self.stride = stride
        self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 1, 3), stride=(1, 1, s), padding=(0, 0, d),
                               dilation=(1, 1, d), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes, (1, 3, 1), stride=(1, s, 1), padding=(0, d, 0),
                               dilation=(1, d, 1), bias=False)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv4 = nn.Conv3d(planes, planes, (3, 1, 1), stride=(s, 1, 1), padding=(d, 0, 0),
                               dilation=(d, 1, 1), bias=False)
        self.bn4 = nn.BatchNorm3d(planes)
        self.conv5 = nn.Conv3d(planes, planes * expansion, 1, bias=False)
        self.bn5 = nn.BatchNorm3d(planes * expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        if stride > 1 or keep_unused:
            self.downsample2 = _resize_branch(planes, (1, s, 1))
            self.downsample3 = _resize_branch(planes, (s, 1, 1))
            self.downsample4 = _resize_branch(planes, (s, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = self.relu
        y1 = relu(self.bn1(self.conv1(x)))
        y2 = self.bn2(self.conv2(y1))
        y3 = self.bn3(self.conv3(relu(y2)))
        if self.stride > 1:
            y2 = self.downsample2(y2)
        y3 = y3 + y2
        y4 = self.bn4(self.conv4(relu(y3)))
        if self.stride > 1:
            y2 = self.downsample3(y2)
            y3 = self.downsample4(y3)
        y4 = y4 + y2 + y3
        out = self.bn5(self.conv5(relu(y4)))
        residual = x if self.downsample is None else self.downsample(x)
        return relu(out + residual)


def _pool_conv_bn(cin: int, cout: int) -> nn.Sequential:
    """The residual of a strided DDR stage: AvgPool3d(2) + 1x1x1 conv (no bias) + BN."""
    return nn.Sequential(nn.AvgPool3d(2, 2), nn.Conv3d(cin, cout, 1, bias=False), nn.BatchNorm3d(cout))


def _up_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """ConvTranspose3d (k3, s2, p1, output_padding 1, with bias) + BN + ReLU: doubles D, H, W."""
    return nn.Sequential(
        nn.ConvTranspose3d(cin, cout, 3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


def dropout_pointwise(x: torch.Tensor, dropout: nn.Dropout3d, conv: nn.Conv3d) -> torch.Tensor:
    """``conv(dropout(x))`` for a channel dropout followed by a 1x1x1 convolution, without the
    dropped-out copy of ``x``.

    Dropout3d multiplies each (frame, channel) plane by 0 or ``1 / (1 - p)``; a 1x1x1 conv is a
    per-voxel matrix product, so the factor moves onto the weights: ``out[b] = (W * keep[b]) @
    x[b] + bias``. Same maths (float products in another order) and the same random draws as
    ``dropout(x)`` (the mask is drawn by ``F.dropout3d`` on a ``(B, C, 1, 1, 1)`` tensor, which
    consumes the generator exactly as the full-size call does), but no ``(B, C, D, H, W)``
    dropped-out volume is written or kept for the backward pass.

    Args:
        x: ``(B, C, D, H, W)``. dropout: the ``nn.Dropout3d``. conv: ``nn.Conv3d(C, O, 1)``.
    Returns:
        ``(B, O, D, H, W)``.
    """
    if not (dropout.training and dropout.p > 0):
        return conv(x)
    b, c = x.shape[:2]
    keep = F.dropout3d(x.new_ones(b, c, 1, 1, 1), dropout.p, True)   # (B, C, 1, 1, 1): 0 or 1/(1-p)
    weight = conv.weight.flatten(1).unsqueeze(0) * keep.view(b, 1, c)  # (B, O, C)
    out = torch.bmm(weight, x.reshape(b, c, -1))                      # (B, O, D*H*W)
    if conv.bias is not None:
        out = out + conv.bias.view(1, -1, 1)
    return out.view(b, -1, *x.shape[2:])


class EncoderDecoder(nn.Module):
    """The DDR encoder-decoder of both stages of SketchAwareSSC.

    ``x (B, width, D, H, W) -> logits (B, num_classes, D, H, W)``; D, H, W divisible by 4.

    layer1: DDR(w, w/4, exp 4, stride 2) then DDR(w, w/4, exp 4) with dilations 1, 2, 3
    -> ``(B, w, D/2, H/2, W/2)``; layer2: DDR(w, w/4, exp 8, stride 2) then DDR(2w, w/2, exp 4)
    with dilations 1, 2, 3 -> ``(B, 2w, D/4, H/4, W/4)``; decoder: up(2w -> w) + layer1 output,
    up(w -> w), Dropout3d(0.1), 1x1x1 conv with bias to ``num_classes``.

    ``recompute`` (attribute, default True): recompute activations in the backward pass
    (:mod:`torchssc.models.recompute`; training only, same results).
    """

    def __init__(self, width: int, num_classes: int, *, recompute: bool = True) -> None:
        super().__init__()
        self.recompute = recompute
        if width % 4:
            raise ValueError(f"width must be divisible by 4, got {width}")
        w, q = width, width // 4
        self.layer1 = nn.Sequential(
            Bottleneck3D(w, q, expansion=4, stride=2, downsample=_pool_conv_bn(w, w)),
            *(Bottleneck3D(w, q, expansion=4, dilation=d) for d in (1, 2, 3)),
        )
        self.layer2 = nn.Sequential(
            Bottleneck3D(w, q, expansion=8, stride=2, downsample=_pool_conv_bn(w, 2 * w)),
            *(Bottleneck3D(2 * w, w // 2, expansion=4, dilation=d) for d in (1, 2, 3)),
        )
        self.up1 = _up_bn_relu(2 * w, w)
        self.up2 = _up_bn_relu(w, w)
        self.classifier = nn.Sequential(nn.Dropout3d(0.1), nn.Conv3d(w, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's dropout is fused into its 1x1x1 conv (:func:`dropout_pointwise`);
        with ``self.recompute`` (in training) the DDR layers (~5% of the FLOPs, most of the kept
        activations) and the last BN + ReLU + classifier are recomputed in the backward pass
        instead of kept. Same maths as ``classifier(up2(up1(layer2(f1)) + f1))``, ``f1 =
        layer1(x)`` (the reference in the tests)."""
        if any(n % 4 for n in x.shape[2:]):
            raise ValueError(f"grid dimensions must be divisible by 4, got {tuple(x.shape[2:])}")
        lean = self.recompute
        f1 = recompute(self.layer1, self, x, enabled=lean)              # (B, w, D/2, H/2, W/2)
        f2 = recompute(self.layer2, self, f1, enabled=lean)             # (B, 2w, D/4, H/4, W/4)
        conv_t, norm, relu = self.up2
        return recompute(lambda t: dropout_pointwise(relu(norm(t)), *self.classifier), self,
                         conv_t(self.up1(f2) + f1), enabled=lean)      # (B, classes, D, H, W)
