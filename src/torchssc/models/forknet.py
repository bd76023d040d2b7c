"""ForkNet (Wang, Tan, Navab, Tombari, "ForkNet: Multi-branch volumetric semantic completion from a
single depth image", ICCV 2019), layer for layer as its ICCV-era code builds it
(docs/baselines.md, "ForkNet": the source, the tables and what differs from the paper figure).

Input: ``batch["forknet_tsdf"]`` ``(B, 1, D, H, W)`` float32, ForkNet's projective TSDF in
[-1, 1] (:mod:`torchssc.prepare.projective_tsdf`, invalid voxels already 0), full size
``(80, 48, 80)`` = 0.06 m voxels of SSCNet's box, axes [world X, up, world Y] as
:mod:`torchssc.geometry`. Every size must be divisible by 16 (the latent is ``/16``).

Graph (all tensors ``(B, C, D, H, W)``):

* encoder front-end F (``enc_ssc``): an SSCNet-like stack at ``/2`` back up to full size with a
  raw-TSDF skip, 12-class logits -> softmax ``p_F``;
* latent encoder (``enc_x``): four 4³ stride-2 convs on ``p_F`` -> mean ``mu`` and ``log_sigma``
  ``(B, 256, D/16, H/16, W/16)``; ``z = mu + eps * exp(log_sigma)`` in training, ``mu`` otherwise;
* geometry generator G_g (``gen_x``): ``z`` -> 2-class logits ``g1`` at full size (through h3_g
  at ``/4`` and h4_g at ``/2``), then a residual refinement -> ``g2``;
* semantic generator G_s (``gen_y``): ``z`` and G_g's h3_g, h4_g and logits (the geometry ->
  semantics concatenations) -> 12-class ``s1``, then a refinement on softmax(s1) -> ``s2``, the
  final semantic output;
* reconstruction generator G_x̂ (``gen_z``): ``z`` -> the input TSDF ``x̂`` ``(B, 1, D, H, W)``;
* optional discriminators (``discriminators=True``): D_s on 12-class volumes and D_g on 2-class
  volumes give ``(B, 1, D/16, H/16, W/16)`` patch logits, D_x one logit from the TSDF.

Outputs (logits unless noted): ``semantic`` = s2 ``(B, 12, D, H, W)``; ``forknet_front`` (F),
``forknet_s1``, ``forknet_g1``, ``forknet_g2`` ``(B, 2, D, H, W)``, ``forknet_recon`` (x̂,
a regressed TSDF), ``latent_mean``, ``latent_log_sigma``. In training mode also
``forknet_geometry_target`` ``(B, D, H, W)`` int64 (the target C the losses compare g1, g2
with: :func:`geometry_target`), and with the discriminators ``adv_real_*``, ``adv_fake_*``,
``adv_gen_*`` for ``* in (x, g, s)`` (see :class:`ForkNet`).

Gradient routing (``route_gradients=True``, the default). The ICCV code steps one optimiser
per (loss, parameter subset). With one optimiser over the summed losses, the same gradients
reach the same parameters when: F's output is detached before the latent encoder (F learns from
L_ssc only); softmax(s1) is detached before the refinement (the refinement learns from L_ref
only); G_s reads G_g's features through a copy of G_g with detached weights (L_sem still reaches
the latent encoder through them, but not G_g's weights); the discriminators see detached fakes
for their own loss and the generators see detached discriminator weights for theirs. What this
does not reproduce is the per-(loss, subset) Adam state and the sequential steps.

TF "SAME" padding is reproduced: the 7³ stride-2 convs pad 2 before and 3 after; 4³ stride-2
(transposed) convs pad 1. No BatchNorm; the discriminators' LayerNorm normalises each sample
over (C, D, H, W) with a scalar gain and bias. Initialisation as TF: the hand-made weights
(``gen_*_W*``, ``dis_*_vox_W*``) N(0, 0.02) without bias; ``tf.layers`` convs Glorot-uniform with
zero bias. Parameter counts (full size): F 1,801,196; latent encoder 11,036,320; G_g 10,898,674;
G_s 11,257,396; G_x̂ 10,881,024 (generator part 45,874,610); D_s 11,268,439; D_g 11,213,559;
D_x 10,788,358 (discriminators 33,270,356).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from torchssc.models.registry import register_model

FULL_GRID = (80, 48, 80)
"""ForkNet's grid at 0.06 m, axes [world X, up, world Y]."""
LATENT = 256
"""Channels of the latent volume z."""
GEOMETRY_TARGETS = ("band", "label")


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def _glorot(module: nn.Module) -> nn.Module:
    """``tf.layers`` default: Glorot-uniform kernel, zero bias."""
    nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def _tf_normal(module: nn.Module) -> nn.Module:
    """A hand-made ``tf.Variable`` weight: N(0, 0.02), no bias."""
    nn.init.normal_(module.weight, 0.0, 0.02)
    return module


def _conv(c_in: int, c_out: int, k: int, *, stride: int = 1, dilation: int = 1) -> nn.Conv3d:
    """``tf.layers`` conv with bias, "SAME" padding for odd k at stride 1 or k=4 at stride 2."""
    pad = dilation * (k // 2) if k % 2 else 1
    return _glorot(nn.Conv3d(c_in, c_out, k, stride=stride, padding=pad, dilation=dilation))


class _Stem7(nn.Module):
    """7³ stride-2 conv with TF "SAME" padding on even sizes: 2 before, 3 after each axis."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = _glorot(nn.Conv3d(c_in, c_out, 7, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (2, 3, 2, 3, 2, 3)))


def _down4(c_in: int, c_out: int, *, bias: bool) -> nn.Conv3d:
    """4³ stride-2 conv, pad 1 (halves even sizes)."""
    conv = nn.Conv3d(c_in, c_out, 4, stride=2, padding=1, bias=bias)
    return _glorot(conv) if bias else _tf_normal(conv)


def _up4(c_in: int, c_out: int) -> nn.ConvTranspose3d:
    """Hand-made 4³ stride-2 transposed conv, pad 1, no bias (doubles sizes)."""
    return _tf_normal(nn.ConvTranspose3d(c_in, c_out, 4, stride=2, padding=1, bias=False))


# ------------------------------------------------------------------------------------------
# Encoder
class FrontEnd(nn.Module):
    """F (``enc_ssc``): ``(B, 1, D, H, W)`` TSDF -> ``(B, 12, D, H, W)`` logits.

    After the first residual sum there is no nonlinearity up to the logits (as in the code).
    """

    def __init__(self, num_classes: int = 12) -> None:
        super().__init__()
        self.enc_ssc_1_base = _Stem7(1, 16)  # F1, /2
        self.enc_ssc_1_0 = _conv(16, 32, 1)  # F2 shortcut
        self.enc_ssc_1_1 = _conv(16, 32, 3)  # F3
        self.enc_ssc_1_2 = _conv(32, 32, 3)  # F4
        self.enc_ssc_2_1 = _conv(32, 64, 3)  # F5
        self.enc_ssc_2_2 = _conv(64, 64, 3)  # F6
        self.enc_ssc_3_0 = _conv(64, 64, 3)  # F7
        self.enc_ssc_3_1 = _conv(64, 64, 3)  # F8
        self.enc_ssc_4_0 = _conv(64, 64, 3)  # F9
        self.enc_ssc_4_1 = _conv(64, 64, 3, dilation=2)  # F10
        self.enc_ssc_5_0 = _conv(64, 64, 3, dilation=2)  # F11
        self.enc_ssc_5_1 = _conv(64, 64, 3, dilation=2)  # F12
        self.enc_ssc_6_0 = _conv(64, 64, 3, dilation=2)  # F13
        self.enc_ssc_7_1 = _glorot(nn.ConvTranspose3d(192, 64, 4, stride=2, padding=1))  # F14, x2
        self.enc_ssc_7_2 = _conv(65, 128, 1)  # F15
        self.enc_ssc_7_3 = _conv(128, 128, 1)  # F16
        self.enc_ssc_7_4 = _conv(128, num_classes, 1)  # F17

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = _lrelu(self.enc_ssc_1_base(x))  # (B, 16, D/2, H/2, W/2)
        a0 = _lrelu(self.enc_ssc_1_0(f1)) + _lrelu(self.enc_ssc_1_2(_lrelu(self.enc_ssc_1_1(f1))))  # (B, 32, /2)
        b1 = self.enc_ssc_2_1(a0)  # (B, 64, /2)
        r1 = self.enc_ssc_2_2(b1) + self.enc_ssc_3_0(b1)
        b2 = self.enc_ssc_3_1(r1)
        r2 = b2 + self.enc_ssc_4_0(b2)
        b3 = self.enc_ssc_4_1(r2)
        r3 = b3 + self.enc_ssc_5_0(b3)
        b4 = self.enc_ssc_5_1(r3)
        r4 = b4 + self.enc_ssc_6_0(b4)
        up = self.enc_ssc_7_1(torch.cat([r2, r3, r4], dim=1))  # (B, 64, D, H, W)
        h = self.enc_ssc_7_2(torch.cat([up, x], dim=1))  # (B, 128, D, H, W)
        return self.enc_ssc_7_4(self.enc_ssc_7_3(h))  # (B, 12, D, H, W)


class LatentEncoder(nn.Module):
    """``enc_x``: ``(B, 12, D, H, W)`` probabilities -> ``mu``, ``log_sigma`` ``(B, 256, D/16, H/16, W/16)``.

    ``log_sigma`` is half the output of its 1³ conv (as the code).
    """

    def __init__(self, num_classes: int = 12, latent: int = LATENT) -> None:
        super().__init__()
        self.enc_x_1 = _down4(num_classes, 32, bias=True)
        self.enc_x_2 = _down4(32, 128, bias=True)
        self.enc_x_3 = _down4(128, 256, bias=True)
        self.enc_x_4 = _down4(256, 512, bias=True)
        self.enc_x_5 = _conv(512, latent, 1)
        self.enc_x_mu = _conv(latent, latent, 1)
        self.enc_x_log_sigma = _conv(latent, latent, 1)

    def forward(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc_x_1(p)  # no activation (as the code)
        h = _lrelu(self.enc_x_2(h))
        h = _lrelu(self.enc_x_3(h))
        h = _lrelu(self.enc_x_4(h))  # (B, 512, /16)
        h = self.enc_x_5(h)
        return self.enc_x_mu(h), 0.5 * self.enc_x_log_sigma(h)


# ------------------------------------------------------------------------------------------
# Generators
class Trunk(nn.Module):
    """``gen_*_W1..W5``: ``z (B, 256, D/16, ...)`` -> ``(h3, h4, h5)``.

    h3 ``(B, 128, D/4, ...)`` and h4 ``(B, 32, D/2, ...)`` are post-ReLU; h5 ``(B, c_out, D, H, W)``
    has no activation. ``skip3``/``skip4`` extra channels are concatenated before W4/W5 (G_s).
    """

    def __init__(self, c_out: int, *, skip3: int = 0, skip4: int = 0, latent: int = LATENT) -> None:
        super().__init__()
        self.w1 = _tf_normal(nn.ConvTranspose3d(latent, 512, 1, bias=False))  # a linear map per voxel
        self.w2 = _up4(512, 256)
        self.w3 = _up4(256, 128)
        self.w4 = _up4(128 + skip3, 32)
        self.w5 = _up4(32 + skip4, c_out)

    def forward(self, z: torch.Tensor, skip3: torch.Tensor | None = None, skip4: torch.Tensor | None = None):
        h = F.relu(self.w2(self.w1(z)))  # (B, 256, /8)
        h3 = F.relu(self.w3(h))  # (B, 128, /4)
        h4 = F.relu(self.w4(h3 if skip3 is None else torch.cat([h3, skip3], dim=1)))  # (B, 32, /2)
        h5 = self.w5(h4 if skip4 is None else torch.cat([h4, skip4], dim=1))  # (B, c_out, /1)
        return h3, h4, h5


class GeometryGenerator(nn.Module):
    """G_g (``gen_x``): ``z`` -> ``(h3_g, h4_g, g1 logits, g2 logits)``; g2 refines softmax(g1)."""

    def __init__(self, latent: int = LATENT) -> None:
        super().__init__()
        self.trunk = Trunk(2, latent=latent)
        self.res_base = _conv(2, 16, 3)  # G6
        self.res_1_1 = _conv(16, 16, 3)  # G7
        self.res_1_2 = _conv(16, 16, 3)  # G8
        self.res_1_post = _conv(16, 2, 3)  # G9

    def refine(self, g1: torch.Tensor) -> torch.Tensor:
        """``(B, 2, D, H, W)`` g1 logits -> g2 logits."""
        r = F.relu(self.res_base(torch.softmax(g1, dim=1)))
        r = F.relu(r + F.relu(self.res_1_2(F.relu(self.res_1_1(r)))))
        return self.res_1_post(r)


class SemanticGenerator(nn.Module):
    """G_s (``gen_y``): ``z`` and G_g's ``h3_g``, ``h4_g``, ``h5_g`` -> s1 logits; a refinement of
    softmax(s1) -> s2 logits."""

    def __init__(self, num_classes: int = 12, latent: int = LATENT) -> None:
        super().__init__()
        self.trunk = Trunk(num_classes, skip3=128, skip4=32, latent=latent)  # S1..S5
        self.res_1_1 = _conv(num_classes + 2, 16, 3)  # S6
        self.res_1_2 = _conv(16, num_classes, 3)  # S7
        self.res_1_post = _conv(num_classes, num_classes, 3)  # S8
        self.ref_base = _conv(num_classes, 16, 3)  # S9
        self.ref = nn.ModuleList(_conv(16, 16, 3) for _ in range(6))  # S10..S15
        self.ref_post = _conv(16, num_classes, 3)  # S16

    def stage1(self, z: torch.Tensor, h3_g: torch.Tensor, h4_g: torch.Tensor, h5_g: torch.Tensor) -> torch.Tensor:
        """-> s1 logits ``(B, 12, D, H, W)``."""
        _, _, h5_s = self.trunk(z, h3_g, h4_g)
        t = F.relu(self.res_1_2(F.relu(self.res_1_1(torch.cat([h5_s, h5_g], dim=1)))))
        return self.res_1_post(F.relu(h5_s + t))

    def refine(self, p1: torch.Tensor) -> torch.Tensor:
        """``(B, 12, D, H, W)`` softmax(s1) -> s2 logits."""
        r = F.relu(self.ref_base(p1))
        for conv_a, conv_b in zip(self.ref[0::2], self.ref[1::2]):
            r = F.relu(r + F.relu(conv_b(F.relu(conv_a(r)))))
        return self.ref_post(r)


# ------------------------------------------------------------------------------------------
# Discriminators
class ScalarLayerNorm(nn.Module):
    """Per-sample normalisation over (C, D, H, W), then a scalar gain and bias (TF code)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.empty(()))
        self.bias = nn.Parameter(torch.zeros(()))
        nn.init.normal_(self.gain, 1.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[1:], eps=self.eps) * self.gain + self.bias


class _DownNorm(nn.Module):
    """``dis_*_vox_W*``: 4³ stride-2 conv without bias -> LayerNorm -> leaky ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = _down4(c_in, c_out, bias=False)
        self.norm = ScalarLayerNorm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _lrelu(self.norm(self.conv(x)))


class PatchDiscriminator(nn.Module):
    """D_s / D_g: ``(B, c_in, D, H, W)`` -> ``(B, 1, D/16, H/16, W/16)`` patch logits."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.ssc_1 = _Stem7(c_in, 16)
        self.ssc_2 = _conv(16, 32, 1)
        self.ssc_3 = _conv(16, 32, 3)
        self.ssc_4 = _conv(32, 32, 3)
        self.ssc_5 = _conv(32, 64, 3, dilation=2)
        self.ssc_6 = _conv(64, 64, 3, dilation=2)
        self.ssc_7 = _conv(64, 64, 3, dilation=2)
        self.ssc_8 = _conv(64, 64, 3, dilation=2)
        self.ssc_9 = _conv(160, 128, 1)
        self.ssc_10 = _conv(128, 32, 1)
        self.down = nn.Sequential(_DownNorm(32, 128), _DownNorm(128, 256), _DownNorm(256, 512))
        self.final = _conv(512, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = _lrelu(self.ssc_1(x))  # (B, 16, /2)
        q0 = _lrelu(self.ssc_2(h1)) + _lrelu(self.ssc_4(_lrelu(self.ssc_3(h1))))  # (B, 32, /2)
        q1 = self.ssc_5(q0)
        q2 = q1 + self.ssc_6(q1)
        q3 = self.ssc_7(q2)
        q4 = q3 + self.ssc_8(q3)
        h = self.ssc_10(self.ssc_9(torch.cat([q0, q2, q4], dim=1)))  # (B, 32, /2)
        return self.final(self.down(h))  # (B, 1, /16)


class VolumeDiscriminator(nn.Module):
    """D_x: ``(B, 1, D, H, W)`` TSDF -> ``(B, 1)`` logit; the linear layer is sized for ``grid``."""

    def __init__(self, grid: tuple[int, int, int]) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.conv1 = _down4(1, 32, bias=False)
        self.down = nn.Sequential(_DownNorm(32, 128), _DownNorm(128, 256), _DownNorm(256, 512))
        self.linear = _tf_normal(nn.Linear(512 * math.prod(s // 16 for s in self.grid), 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.grid:
            raise ValueError(f"D_x was built for grid {self.grid}, got {tuple(x.shape[2:])}")
        h = self.down(_lrelu(self.conv1(x)))  # (B, 512, /16)
        return self.linear(h.flatten(1))


# ------------------------------------------------------------------------------------------
def geometry_target(tsdf: torch.Tensor, label: torch.Tensor, kind: str = "band") -> torch.Tensor:
    """ForkNet's geometry target C: ``(B, D, H, W)`` int64 0/1.

    Args:
        tsdf: ``(B, 1, D, H, W)`` the network input (invalid already 0).
        label: ``(B, D, H, W)`` ForkNet labels, 0..11 (255 is read as 0, as the ForkNet loader).
        kind: ``"band"`` (the code): ``clip(label + round(|tsdf| - 0.2), 0, 1)`` with round half
            to even, i.e. occupied where the label is > 0 **or** ``|tsdf| > 0.7`` (within 0.24 m
            of the observed depth along the ray); ``"label"``: occupied where the label is > 0.
    """
    if kind not in GEOMETRY_TARGETS:
        raise ValueError(f"geometry target must be one of {GEOMETRY_TARGETS}, got {kind!r}")
    label = torch.where(label == 255, 0, label).long()
    occupied = (label > 0).long()
    if kind == "label":
        return occupied
    band = torch.round(tsdf[:, 0].abs() - 0.2).long()  # torch.round is half to even, as TF
    return (occupied + band).clamp(0, 1)


def _detached(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in module.named_parameters()}


class ForkNet(nn.Module):
    """ForkNet; inputs, outputs and gradient routing in the module docstring.

    Args:
        num_classes: semantic classes (12).
        discriminators: build D_s, D_g, D_x and, in training, run the adversarial branch: z ~
            N(0, I) drives G_x̂, G_g and G_s (stage 1) to fakes; outputs ``adv_real_k`` (D on
            the real x, C one-hot, Y one-hot), ``adv_fake_k`` (D on detached fakes: its own
            loss) and ``adv_gen_k`` (D with detached weights on the fakes: the generators' loss)
            for ``k`` in ``x, g, s``. Needs ``batch["forknet_label"]`` in training.
        grid_shape: the input grid (sizes D_x's linear layer); ``(80, 48, 80)`` at full size.
        geometry_target: ``"band"`` (the code) or ``"label"`` (:func:`geometry_target`).
        route_gradients: the routing of the module docstring (off: plain joint training).
    """

    input_key = "forknet_tsdf"

    def __init__(
        self,
        *,
        num_classes: int = 12,
        discriminators: bool = False,
        grid_shape: tuple[int, int, int] = FULL_GRID,
        geometry_target: str = "band",
        route_gradients: bool = True,
    ) -> None:
        super().__init__()
        grid_shape = tuple(int(s) for s in grid_shape)
        if len(grid_shape) != 3 or any(s % 16 or s < 16 for s in grid_shape):
            raise ValueError(f"grid_shape must be 3 sizes divisible by 16, got {grid_shape}")
        if geometry_target not in GEOMETRY_TARGETS:
            raise ValueError(f"geometry_target must be one of {GEOMETRY_TARGETS}, got {geometry_target!r}")
        self.num_classes = num_classes
        self.grid_shape = grid_shape
        self.geometry_target = geometry_target
        self.route_gradients = route_gradients
        self.front = FrontEnd(num_classes)
        self.encoder = LatentEncoder(num_classes)
        self.gen_g = GeometryGenerator()
        self.gen_s = SemanticGenerator(num_classes)
        self.gen_x = Trunk(1)  # G_x̂: the reconstruction generator
        self.discriminators = discriminators
        if discriminators:
            self.dis_s = PatchDiscriminator(num_classes)
            self.dis_g = PatchDiscriminator(2)
            self.dis_x = VolumeDiscriminator(grid_shape)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != 1 or any(s % 16 for s in x.shape[2:]):
            raise ValueError(f"forknet_tsdf must be (B, 1, D, H, W) with D, H, W divisible by 16, got {tuple(x.shape)}")

    def _semantic(self, z: torch.Tensor, h3_g, h4_g, h5_g, route: bool):
        """s1 logits from z; with ``route``, G_g's features come from a weight-detached copy."""
        if route:
            h3_g, h4_g, h5_g = functional_call(self.gen_g.trunk, _detached(self.gen_g.trunk), (z,))
        return self.gen_s.stage1(z, h3_g, h4_g, h5_g)

    def forward(self, batch: dict) -> dict:
        if self.input_key not in batch:
            raise ValueError(
                "ForkNet needs batch['forknet_tsdf'] (B,1,80,48,80) projective TSDF: prepare with --forknet "
                "and load the dataset with forknet=True"
            )
        x = batch[self.input_key]
        self._check(x)
        route = self.route_gradients and self.training and torch.is_grad_enabled()
        front = self.front(x)  # (B, 12, D, H, W)
        p_front = torch.softmax(front, dim=1)
        mu, log_sigma = self.encoder(p_front.detach() if route else p_front)  # (B, 256, /16)
        z = mu + torch.randn_like(mu) * torch.exp(log_sigma) if self.training else mu
        h3_g, h4_g, g1 = self.gen_g.trunk(z)
        g2 = self.gen_g.refine(g1)
        s1 = self._semantic(z, h3_g, h4_g, g1, route)
        p1 = torch.softmax(s1, dim=1)
        s2 = self.gen_s.refine(p1.detach() if route else p1)
        recon = self.gen_x(z)[2]  # (B, 1, D, H, W)
        out = {
            "semantic": s2, "forknet_front": front, "forknet_s1": s1, "forknet_g1": g1, "forknet_g2": g2,
            "forknet_recon": recon, "latent_mean": mu, "latent_log_sigma": log_sigma,
        }
        if self.training:
            if "forknet_label" not in batch:
                raise ValueError("ForkNet training needs batch['forknet_label'] (B,80,48,80): load the dataset with forknet=True")
            out["forknet_geometry_target"] = geometry_target(x, batch["forknet_label"], self.geometry_target)
            if self.discriminators:
                out.update(self._adversarial(x, batch["forknet_label"], out["forknet_geometry_target"], mu))
        return out

    def _adversarial(self, x: torch.Tensor, label: torch.Tensor, geometry: torch.Tensor, mu: torch.Tensor) -> dict:
        """The GAN branch: fakes from z ~ N(0, I), the three discriminators on reals and fakes."""
        noise = torch.randn_like(mu)
        fake_x = self.gen_x(noise)[2]
        h3_g, h4_g, g1 = self.gen_g.trunk(noise)
        fake_g = torch.softmax(g1, dim=1)
        fake_s = torch.softmax(self.gen_s.stage1(noise, h3_g, h4_g, g1), dim=1)  # G_s with G_g
        label = torch.where(label == 255, 0, label).long()
        real = {
            "x": x,
            "g": F.one_hot(geometry, 2).permute(0, 4, 1, 2, 3).to(x.dtype),
            "s": F.one_hot(label, self.num_classes).permute(0, 4, 1, 2, 3).to(x.dtype),
        }
        fake = {"x": fake_x, "g": fake_g, "s": fake_s}
        out = {}
        for key, dis in (("x", self.dis_x), ("g", self.dis_g), ("s", self.dis_s)):
            out[f"adv_real_{key}"] = dis(real[key])
            out[f"adv_fake_{key}"] = dis(fake[key].detach())
            out[f"adv_gen_{key}"] = functional_call(dis, _detached(dis), (fake[key],))
        return out


@register_model("forknet", inputs=("forknet_tsdf", "forknet_label"))
def forknet(
    *,
    num_classes: int = 12,
    discriminators: bool = False,
    grid_shape: tuple[int, int, int] | list[int] = FULL_GRID,
    geometry_target: str = "band",
    route_gradients: bool = True,
) -> ForkNet:
    """ForkNet (45,874,610 generator-side parameters; +33,270,356 with ``discriminators``);
    input ``batch["forknet_tsdf"]`` (B,1,80,48,80), output ``semantic`` (B,12,80,48,80)."""
    return ForkNet(
        num_classes=num_classes,
        discriminators=discriminators,
        grid_shape=tuple(grid_shape),
        geometry_target=geometry_target,
        route_gradients=route_gradients,
    )
