"""Grid layout of the baselines' 3D networks: which ones it changes, and by how much.

A DDR block and an AIC block run their 1-D convolutions along the last axis, then the middle, then
the first, summing intermediate results; so applying one to a volume stored (X, Z, Y) or (Y, Z, X)
gives two different functions, and no relabelling of the weights maps one onto the other. SSCNet
and VVNet use isotropic kernels only: relabelling the weights (transposing each kernel) makes the
two layouts compute the same function. Every block is checked against a naive reference here:
the 1-D convolutions as explicit loops over the kernel taps, in the authors' order.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from torchssc.models.aicnet import BasicAIC3d
from torchssc.models.sscnet import SSCNet
from torchssc.models.two_stream import BottleneckDDR3d, wlj_init_
from torchssc.models.vvnet import ResBlock3d

F64 = torch.float64


def swap(x: torch.Tensor) -> torch.Tensor:
    """Swap the first and last spatial axes of a ``(B, C, S0, S1, S2)`` volume or a 3D kernel."""
    return x.transpose(-3, -1)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def conv_axis_naive(x: torch.Tensor, weight: torch.Tensor, bias, axis: int, dilation: int = 1) -> torch.Tensor:
    """1-D convolution along spatial ``axis`` (0 = first) with zero padding ``dilation * (k // 2)``.

    ``x (B, C, S0, S1, S2)``, ``weight (O, C, k0, k1, k2)`` with the kernel length ``k`` on
    ``axis`` and 1 elsewhere. A loop over the ``k`` taps: tap ``t`` reads ``x`` shifted by
    ``t * dilation - pad`` along the axis, zeros outside.
    """
    k = weight.shape[2 + axis]
    taps = weight.reshape(weight.shape[0], weight.shape[1], k)  # (O, C, k)
    pad = dilation * (k // 2)
    dim = 2 + axis
    n = x.shape[dim]
    out = torch.zeros(x.shape[0], weight.shape[0], *x.shape[2:], dtype=x.dtype)
    for t in range(k):
        shift = t * dilation - pad
        shifted = torch.zeros_like(x)
        lo, hi = max(0, -shift), min(n, n - shift)  # output positions whose input lies inside
        if lo < hi:
            shifted.narrow(dim, lo, hi - lo).copy_(x.narrow(dim, lo + shift, hi - lo))
        out += torch.einsum("oc,bc...->bo...", taps[:, :, t], shifted)
    if bias is not None:
        out += bias.view(1, -1, 1, 1, 1)
    return out


def pointwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1^3 convolution without bias: ``(B, C, ...)`` -> ``(B, O, ...)``."""
    return torch.einsum("oc,bc...->bo...", weight[:, :, 0, 0, 0], x)


def ddr_naive(block: BottleneckDDR3d, x: torch.Tensor, dilation: int) -> torch.Tensor:
    """The authors' DDR bottleneck: last axis, then middle (+ y1), then first (+ y2 + y1)."""
    y0 = F.relu(pointwise(x, block.conv_in.weight))
    y1 = F.relu(conv_axis_naive(y0, block.conv_last.weight, block.conv_last.bias, 2, dilation))
    y2 = F.relu(conv_axis_naive(y1, block.conv_mid.weight, block.conv_mid.bias, 1, dilation) + y1)
    y3 = F.relu(conv_axis_naive(y2, block.conv_first.weight, block.conv_first.bias, 0, dilation) + y2 + y1)
    return F.relu(pointwise(y3, block.conv_out.weight) + x)


def aic_naive(aic: BasicAIC3d, x: torch.Tensor) -> torch.Tensor:
    """The authors' AIC module: modulation (axis, kernel) softmax over kernels; stages along the
    last, middle, then first axis, each ``sum_k w[axis][k] * ReLU(conv_{axis,k}(y))``; ReLU(y + x)."""
    b, _, s0, s1, s2 = x.shape
    n = len(aic.kernels)
    w = pointwise(x, aic.modulation.weight).view(b, 3, n, s0, s1, s2).softmax(dim=2)
    y = x
    for axis in (2, 1, 0):
        stage = torch.zeros_like(y)
        for i, conv in enumerate(aic.convs[axis]):
            stage = stage + w[:, axis, i, None] * F.relu(conv_axis_naive(y, conv.weight, conv.bias, axis))
        y = stage
    return F.relu(y + x)


def relabelled_ddr(block: BottleneckDDR3d) -> BottleneckDDR3d:
    """Every weight re-expressed for a volume with its first and last axes swapped: the kernel
    along the last axis becomes the kernel along the first, and vice versa."""
    other = copy.deepcopy(block)
    for mine, theirs in (("conv_first", "conv_last"), ("conv_last", "conv_first"), ("conv_mid", "conv_mid")):
        getattr(other, mine).weight.data = swap(getattr(block, theirs).weight.data).contiguous()
        getattr(other, mine).bias.data = getattr(block, theirs).bias.data.clone()
    return other


def relabelled_aic(aic: BasicAIC3d) -> BasicAIC3d:
    """As :func:`relabelled_ddr` for an AIC module, modulation channels of axes 0 and 2 swapped too."""
    other = copy.deepcopy(aic)
    n = len(aic.kernels)
    for axis in range(3):
        for i in range(n):
            src = aic.convs[2 - axis][i]
            other.convs[axis][i].weight.data = swap(src.weight.data).contiguous()
            other.convs[axis][i].bias.data = src.bias.data.clone()
    m = aic.modulation.weight.data.view(3, n, -1, 1, 1, 1)
    other.modulation.weight.data = m.flip(0).reshape(3 * n, -1, 1, 1, 1).clone()
    return other


def _volume(seed: int, c: int, shape=(5, 3, 7)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, c, *shape, generator=g, dtype=F64)


@pytest.mark.parametrize("dilation", [1, 2])
def test_ddr_block_matches_the_naive_loop_in_both_layouts_and_they_differ(dilation):
    torch.manual_seed(0)
    block = BottleneckDDR3d(6, 4, 6, dilation=dilation).double()
    wlj_init_(block)  # the authors' initialisation
    x = _volume(1, 6)  # (B, C, X, Z, Y): our layout
    ours = block(x)
    authors = swap(block(swap(x)))  # the same block run on the (Y, Z, X) volume, result back in (X, Z, Y)
    torch.testing.assert_close(ours, ddr_naive(block, x, dilation), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(authors, swap(ddr_naive(block, swap(x), dilation)), rtol=1e-12, atol=1e-12)
    # Relabelling the weights is right for each 1-D convolution on its own ...
    other = relabelled_ddr(block)
    z = _volume(5, 4)  # a bottleneck-width volume
    torch.testing.assert_close(other.conv_first(z), swap(block.conv_last(swap(z))), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(other.conv_last(z), swap(block.conv_first(swap(z))), rtol=1e-12, atol=1e-12)
    # ... but the block is a different function in the two layouts, relabelled or not
    # (measured, as is / relabelled: relative L2 0.60 / 0.65 at dilation 1, 0.59 / 0.63 at dilation 2).
    assert rel_l2(ours, authors) > 0.3
    assert rel_l2(other(x), authors) > 0.3


def test_aic_block_matches_the_naive_loop_in_both_layouts_and_they_differ():
    torch.manual_seed(0)
    aic = BasicAIC3d(4).double()
    wlj_init_(aic)
    x = _volume(2, 4)
    ours = aic(x)
    authors = swap(aic(swap(x)))
    torch.testing.assert_close(ours, aic_naive(aic, x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(authors, swap(aic_naive(aic, swap(x))), rtol=1e-12, atol=1e-12)
    other = relabelled_aic(aic)
    torch.testing.assert_close(  # one relabelled stage alone is the same function
        other.convs[0][2](x), swap(aic.convs[2][2](swap(x))), rtol=1e-12, atol=1e-12
    )
    # (measured: relative L2 0.07 as is, 0.10 relabelled)
    assert rel_l2(ours, authors) > 0.03
    assert rel_l2(other(x), authors) > 0.03


def _isotropic_check(fn, modules, x: torch.Tensor) -> None:
    """``fn`` with every kernel of ``modules`` transposed, on the swapped volume, equals ``fn``."""
    want = fn(x)
    originals = [m.weight.data.clone() for m in modules]
    for m in modules:
        m.weight.data = swap(m.weight.data).contiguous()
    try:
        got = swap(fn(swap(x)))
    finally:
        for m, w in zip(modules, originals):
            m.weight.data = w
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_sscnet_block_is_the_same_function_in_both_layouts_up_to_relabelling():
    torch.manual_seed(0)
    net = SSCNet(num_classes=5).double()

    def res3(x):  # reduction3_1 shortcut + conv3_1 -> conv3_2, then a dilated block on top
        y = F.relu(net.reduction3_1(x) + net.conv3_2(F.relu(net.conv3_1(x))))
        return F.relu(y + net.conv3_6(F.relu(net.conv3_5(y))))

    x = _volume(3, 32, shape=(6, 4, 5))
    mods = [net.reduction3_1, net.conv3_1, net.conv3_2, net.conv3_5, net.conv3_6]
    _isotropic_check(res3, mods, x)


def test_vvnet_blocks_are_the_same_function_in_both_layouts_up_to_relabelling():
    torch.manual_seed(0)
    block = ResBlock3d(4, 6).double()
    dilated = ResBlock3d(6, 6, dilation=2).double()
    up = torch.nn.ConvTranspose3d(6, 3, 3, stride=2, padding=1, output_padding=1).double()

    def fn(x):
        return up(dilated(F.max_pool3d(block(x), 2)))

    x = _volume(4, 4, shape=(6, 4, 8))
    _isotropic_check(fn, [block.conv1, block.conv2, block.shortcut, dilated.conv1, dilated.conv2, up], x)
