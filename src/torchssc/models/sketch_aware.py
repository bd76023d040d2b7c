"""SketchAwareSSC: "3D Sketch-aware Semantic Scene Completion via Semi-supervised Structure
Prior" (Chen et al., CVPR 2020), SPEC §5.1.

Pipeline (B frames; grid ``(D, H, W)`` = ``(60, 36, 60)`` for NYU, any size divisible by 4 works):

1. **Stage 1** (:class:`SketchStage`): TSDF ``(B, 1, D, H, W)`` -> stem 1->3->64->width ->
   DDR encoder-decoder -> raw sketch logits ``(B, 2, D, H, W)``.
2. **CVAE** (:class:`SketchCVAE`): on the (gradient-free) argmax of the raw sketch, hallucinates
   the sketch again from a 16-channel latent at ``D/4 x H/4 x W/4``: training averages 4 posterior
   and 4 prior samples (``sketch_posterior``, ``sketch_prior``); inference 4 prior samples.
3. **Stage 2** (:class:`SemanticStage`): 2D backbone on RGB -> 1x1 conv to width -> lifted into the
   grid through ``mapping`` (:mod:`torchssc.models.lifting`) -> zero-fill -> plus two sketch
   embeddings (of the raw and the prior sketch logits) -> encoder-decoder -> 12-class logits.

Speed and memory without changing the maths:

* lifting samples the reduced feature map at the mapped pixels only (no 128 x 480 x 640 tensor)
  and computes the zero-fill around the mapped voxels only (:func:`lift_and_fill`);
* the classifiers' channel dropout is fused into their 1x1x1 convs (:func:`dropout_pointwise`);
* in training, cheap-to-recompute activations (DDR layers, stem fronts, full-size BN + ReLU +
  classifier, CVAE decoder tail) are recomputed in the backward pass instead of kept
  (:mod:`torchssc.models.recompute`; BatchNorm running statistics unaffected);
* the CVAE computes the condition half of its first decoder layer once instead of once per
  sample, and on CUDA decodes all samples in one batched call (``cvae_batched``; on CPU the
  per-sample loop measured faster); in training its BatchNorms normalise each sample's chunk
  with that chunk's own statistics and update the running statistics chunk by chunk in the
  original's call order (:class:`ChunkedBatchNorm3d`), so outputs and running statistics equal
  the original's per-sample loop;
* stage 1 reuses its layer1 output for the decoder skip (the original did too).

``naive=True`` selects the reference paths (full-resolution upsample + per-sample gather, dense
fill, dropout then classifier, every activation kept, looped CVAE samples) used by the tests and
``benchmarks/bench_model.py``.

Determinism: inference draws the prior samples from a ``torch.Generator`` seeded with
``model.seed`` (or the ``seed`` argument of ``forward``) on every call; the same draws are shared
by every frame of the batch, so a frame's prediction depends only on the frame, the weights and
the seed (not on its batch neighbours). Training draws from the global RNG (seed it in the
trainer).

Mixed precision: the model contains no autocast of its own; wrap forward + loss in
``torch.autocast(device_type, dtype=torch.bfloat16)`` in the trainer (the loss computes in float32).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.models.backbones import LoadReport, build_backbone
from torchssc.models.ddr import EncoderDecoder, conv_bn_relu_3d, conv_bn_relu_3d_lean, dropout_pointwise
from torchssc.models.lifting import fill_unmapped, lift_and_fill, lift_features_naive
from torchssc.models.recompute import recompute
from torchssc.models.registry import register_model


class ChunkedBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d that, in training, normalises ``chunks`` equal batch chunks separately.

    With ``chunks = G`` an input ``(G*B, C, D, H, W)`` gives exactly what G separate calls on the
    ``(B, C, D, H, W)`` chunks give, running statistics included (updated chunk after chunk). In
    eval mode (running statistics) it is a plain BatchNorm3d. ``chunks`` is set by the owner right
    before the call. Note: ``nn.SyncBatchNorm.convert_sync_batchnorm`` turns it into a plain
    SyncBatchNorm (statistics over all chunks).
    """

    chunks: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.chunks == 1:
            return super().forward(x)
        g = self.chunks
        if x.shape[0] % g:
            raise ValueError(f"batch {x.shape[0]} is not divisible into {g} chunks")
        c = x.shape[1]
        xg = x.reshape(g, x.shape[0] // g, c, -1)                     # (G, B, C, DHW)
        exact = xg if xg.dtype in (torch.float32, torch.float64) else xg.float()  # bf16: fp32 stats
        var, mean = torch.var_mean(exact, dim=(1, 3), correction=0, keepdim=True)  # (G, 1, C, 1)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.view(1, 1, c, 1)
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias.view(1, 1, c, 1)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():  # the sequential EMA of G separate calls, chunk after chunk
                n = xg.shape[1] * xg.shape[3]
                m = 0.1 if self.momentum is None else self.momentum
                unbiased = var.view(g, c) * (n / max(n - 1, 1))
                for k in range(g):
                    self.running_mean.mul_(1 - m).add_(mean.view(g, c)[k].to(self.running_mean.dtype), alpha=m)
                    self.running_var.mul_(1 - m).add_(unbiased[k].to(self.running_var.dtype), alpha=m)
                self.num_batches_tracked.add_(g)
        return torch.addcmul(shift.to(x.dtype), xg, scale.to(x.dtype)).view_as(x)


def _cvae_body(cin: int, hidden: int, latent: int) -> nn.Sequential:
    """The CVAE encoder/condition body: ``(B, cin, D, H, W) -> (B, latent, D/4, H/4, W/4)``.

    convs cin->3->hidden->hidden (3x3x3, BN, ReLU; hidden 16 in the paper), AvgPool 2, conv
    hidden->latent, AvgPool 2, conv latent->latent (each + BN + ReLU).
    """
    return nn.Sequential(
        *conv_bn_relu_3d([cin, 3, hidden, hidden]),
        nn.AvgPool3d(2, 2),
        *conv_bn_relu_3d([hidden, latent]),
        nn.AvgPool3d(2, 2),
        *conv_bn_relu_3d([latent, latent]),
    )


class SketchCVAE(nn.Module):
    """Conditional VAE that hallucinates the 3D sketch (SPEC §5.1).

    Args:
        latent: latent channels (16 in the paper), at ``D/4 x H/4 x W/4``.
        num_samples: samples per kind (4 in the paper).
        hidden: channels of the full-resolution convs of the encoder and condition (16).

    Forward ``(sketch (B, 1, D, H, W) float 0/1, sketch_gt (B, D, H, W) or None)``; returns a dict:
    ``"sketch_prior"`` ``(B, 2, D, H, W)`` mean decoded logits of prior samples ``z ~ N(0, I)``;
    in training also ``"sketch_posterior"`` (same, ``z = mean + eps * exp(logvar / 2)``),
    ``"latent_mean"``, ``"latent_logvar"`` ``(B, latent, D/4, H/4, W/4)``.
    """

    def __init__(self, *, latent: int = 16, num_samples: int = 4, hidden: int = 16) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.latent = latent
        self.num_samples = num_samples
        self.encoder = _cvae_body(2, hidden, latent)
        self.mean = nn.Conv3d(latent, latent, 1)
        self.logvar = nn.Conv3d(latent, latent, 1)
        self.condition = _cvae_body(1, hidden, latent)
        self.decoder = nn.Sequential(
            nn.ConvTranspose3d(2 * latent, latent, 3, stride=2, padding=1, output_padding=1),
            ChunkedBatchNorm3d(latent),
            nn.ReLU(),
            nn.ConvTranspose3d(latent, latent, 3, stride=2, padding=1, output_padding=1),
            ChunkedBatchNorm3d(latent),
            nn.ReLU(),
            nn.Dropout3d(0.1),
            nn.Conv3d(latent, 2, 1),
        )

    def _decode(self, cond: torch.Tensor, z: torch.Tensor, chunks: int, naive: bool = False,
                batched: bool = True, lean: bool = True) -> torch.Tensor:
        """Decode ``chunks`` stacked latents ``z (chunks*B, L, d, h, w)`` with one condition
        ``cond (B, L, d, h, w)`` -> logits ``(chunks*B, 2, D, H, W)``.

        The first layer is linear in its concatenated input, so (fast path) its condition half is
        computed once and broadcast over the chunks instead of once per sample: same maths, half
        the first layer's work. ``batched``: all chunks in one decoder call (else one call per
        chunk, same maths). ``naive``: the original's ``decoder(cat([cond, z]))``. ``lean``: the
        decoder tail is recomputed in the backward pass (:meth:`_tail`).
        """
        for m in self.decoder:
            if isinstance(m, ChunkedBatchNorm3d):
                m.chunks = chunks
        if naive:
            cond = cond.expand(chunks, *cond.shape).reshape(-1, *cond.shape[1:])
            return self.decoder(torch.cat([cond, z], dim=1))
        up = self.decoder[0]
        latent = cond.shape[1]

        def conv_t(x, weight, bias):
            return F.conv_transpose3d(x, weight, bias, up.stride, up.padding, up.output_padding,
                                      up.groups, up.dilation)

        from_cond = conv_t(cond, up.weight[:latent], up.bias)          # (B, L, 2d, 2h, 2w)
        if not batched:  # chunk by chunk (faster on CPU, where big batches thrash the cache)
            for m in self.decoder:
                if isinstance(m, ChunkedBatchNorm3d):
                    m.chunks = 1
            return torch.cat([self._tail(conv_t(part, up.weight[latent:], None) + from_cond, lean)
                              for part in z.chunk(chunks, 0)])
        from_z = conv_t(z, up.weight[latent:], None)                    # (G*B, L, 2d, 2h, 2w)
        y = (from_z.view(chunks, *from_cond.shape) + from_cond).view(from_z.shape)
        return self._tail(y, lean)

    def _tail(self, y: torch.Tensor, lean: bool = True) -> torch.Tensor:
        """The decoder after its first convolution, with the final dropout and 1x1x1 conv fused
        (:func:`~torchssc.models.ddr.dropout_pointwise`): ``(N, L, d', h', w') -> (N, 2, D, H, W)``;
        with ``lean`` (training) recomputed in the backward pass instead of kept."""
        return recompute(lambda t: dropout_pointwise(self.decoder[1:-2](t), *self.decoder[-2:]), self, y,
                         enabled=lean)

    def forward(
        self,
        sketch: torch.Tensor,
        sketch_gt: torch.Tensor | None = None,
        *,
        noise: dict[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        naive: bool = False,
        batched: bool | None = None,
        lean: bool = True,
    ) -> dict[str, torch.Tensor]:
        """See the class docstring.

        ``batched``: decode all samples in one call (``True``) or sample by sample with the
        shared condition term (``False``); ``None`` = batched on CUDA, sample by sample elsewhere
        (measured faster on CPU, see docs/benchmarks.md). Same maths either way.

        ``noise`` (tests): ``{"eps": (S, B, L, d, h, w), "prior": (S, B, L, d, h, w)}`` replaces
        the random draws. ``generator``: used for the draws (inference passes a seeded one).
        ``naive``: decode sample by sample (the original's loop) instead of batched.
        ``lean``: recompute the decoder tails in the backward pass (training; same maths).
        """
        b = sketch.shape[0]
        s = self.num_samples
        if batched is None:
            batched = sketch.device.type == "cuda"
        latent_shape = (self.latent, *(n // 4 for n in sketch.shape[2:]))
        cond = self.condition(sketch)                                 # (B, L, d, h, w)
        if not self.training:
            if noise is not None:
                z = noise["prior"]
            else:  # one draw per sample, shared by the frames of the batch
                z = torch.randn((s, 1, *latent_shape), generator=generator, device=sketch.device,
                                dtype=cond.dtype).expand(s, b, *latent_shape)
            if naive:
                prior = torch.stack([self._decode(cond, z[i], 1, True) for i in range(s)]).mean(0)
            else:
                prior = self._decode(cond, z.reshape(s * b, *latent_shape), s, batched=batched)
                prior = prior.view(s, b, *prior.shape[1:]).mean(0)
            return {"sketch_prior": prior}

        if sketch_gt is None:
            raise ValueError("SketchCVAE needs sketch_gt in training mode")
        enc = self.encoder(torch.cat([sketch, sketch_gt.reshape(sketch.shape).to(sketch.dtype)], 1))
        mean, logvar = self.mean(enc), self.logvar(enc)              # (B, L, d, h, w)
        if noise is not None:
            eps, z_prior = noise["eps"], noise["prior"]
        else:
            eps = torch.randn((s, b, *latent_shape), generator=generator, device=sketch.device,
                              dtype=mean.dtype)
            z_prior = torch.randn((s, b, *latent_shape), generator=generator,
                                  device=sketch.device, dtype=mean.dtype)
        z_post = mean + eps * torch.exp(0.5 * logvar)                # (S, B, L, d, h, w)
        if naive:  # original order: posterior 1, prior 1, posterior 2, ...
            post, prior = [], []
            for i in range(s):
                post.append(self._decode(cond, z_post[i], 1, True))
                prior.append(self._decode(cond, z_prior[i], 1, True))
            post_mean, prior_mean = torch.stack(post).mean(0), torch.stack(prior).mean(0)
        else:  # chunks in the same order, so BN running statistics match the loop
            z = torch.stack([z_post, z_prior], 1).reshape(2 * s * b, *latent_shape)
            out = self._decode(cond, z, 2 * s, batched=batched, lean=lean)  # (2*S*B, 2, D, H, W)
            out = out.view(s, 2, b, *out.shape[1:]).mean(0)          # (2, B, 2, D, H, W)
            post_mean, prior_mean = out[0], out[1]
        return {"sketch_prior": prior_mean, "sketch_posterior": post_mean,
                "latent_mean": mean, "latent_logvar": logvar}


class SketchStage(nn.Module):
    """Stage 1: ``tsdf (B, 1, D, H, W) -> raw sketch logits (B, 2, D, H, W)``."""

    def __init__(self, *, width: int = 128, stem_channels: int = 64) -> None:
        super().__init__()
        self.stem = conv_bn_relu_3d([1, 3, stem_channels, width])
        self.net = EncoderDecoder(width, 2)

    def forward(self, tsdf: torch.Tensor, naive: bool = False, lean: bool = True) -> torch.Tensor:
        stem = self.stem(tsdf) if naive else conv_bn_relu_3d_lean(self.stem, tsdf, enabled=lean)
        return self.net(stem, naive=naive, lean=lean)


class SemanticStage(nn.Module):
    """Stage 2: 2D features + sketches -> semantic logits ``(B, num_classes, D, H, W)``.

    Forward ``(features (B, Cb, h, w), mapping (B, D*H*W) int64, image_size (Hi, Wi),
    sketch_raw (B, 2, D, H, W), sketch_prior (B, 2, D, H, W), naive)``.
    """

    def __init__(self, *, in_channels: int = 2048, width: int = 128, num_classes: int = 12,
                 stem_channels: int = 64) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, width, 1, bias=False),
                                    nn.BatchNorm2d(width), nn.ReLU())
        self.embed_raw = conv_bn_relu_3d([2, 3, stem_channels, width])
        self.embed_prior = conv_bn_relu_3d([2, 3, stem_channels, width])
        self.net = EncoderDecoder(width, num_classes)

    def forward(self, features: torch.Tensor, mapping: torch.Tensor, image_size: tuple[int, int],
                sketch_raw: torch.Tensor, sketch_prior: torch.Tensor, naive: bool = False,
                lean: bool = True) -> torch.Tensor:
        grid = tuple(sketch_raw.shape[2:])
        reduced = self.reduce(features)                                   # (B, width, h, w)
        if naive:
            volume = fill_unmapped(lift_features_naive(reduced, mapping, grid, image_size))
            return self.net(volume + self.embed_raw(sketch_raw) + self.embed_prior(sketch_prior), naive=True)
        volume = lift_and_fill(reduced, mapping, grid, image_size)       # (B, width, D, H, W)
        volume = (volume + conv_bn_relu_3d_lean(self.embed_raw, sketch_raw, keep_output=False, enabled=lean)
                  + conv_bn_relu_3d_lean(self.embed_prior, sketch_prior, keep_output=False, enabled=lean))
        return self.net(volume, lean=lean)


class SketchAwareSSC(nn.Module):
    """The paper's network (SPEC §5.1); build it with :func:`sketch_aware_ssc`.

    Inputs (a batch dict, shared data contract):
        ``"rgb"`` ``(B, 3, Hi, Wi)`` float ImageNet-normalised (480 x 640 for NYU);
        ``"tsdf"`` ``(B, 1, D, H, W)`` float (60 x 36 x 60; any size divisible by 4);
        ``"mapping"`` ``(B, D*H*W)`` int64 flat pixel ``v*Wi + u`` per voxel, ``Hi*Wi`` = none;
        ``"sketch_gt"`` ``(B, D, H, W)`` int64 0/1 (training only).
    Outputs (dict of float tensors):
        ``"semantic"`` ``(B, num_classes, D, H, W)`` logits; ``"sketch_raw"`` and
        ``"sketch_prior"`` ``(B, 2, D, H, W)`` logits; in training also ``"sketch_posterior"``
        ``(B, 2, D, H, W)``, ``"latent_mean"`` and ``"latent_logvar"`` ``(B, L, D/4, H/4, W/4)``.

    Attributes: ``seed`` (int, the inference prior-sample seed), ``naive`` (reference paths),
    ``recompute_activations`` (training keeps fewer activations and recomputes them in the
    backward pass: same maths, less memory, some more time),
    ``cvae_batched`` (``None`` = decode the CVAE samples in one call on CUDA, one by one
    elsewhere; ``True``/``False`` force it), ``backbone_report``  (:class:`~torchssc.models.backbones.LoadReport` or None).
    """

    def __init__(
        self,
        *,
        width: int = 128,
        num_classes: int = 12,
        backbone: str = "resnet50_deepstem",
        backbone_weights: str | None = None,
        strict_weights: bool = False,
        freeze_backbone: bool = True,
        backbone_bn_train: bool = True,
        latent_channels: int = 16,
        num_samples: int = 4,
        cvae_hidden: int = 16,
        stem_channels: int = 64,
        image_scale: float = 1.0,
        seed: int = 0,
        naive: bool = False,
        recompute_activations: bool = True,
    ) -> None:
        super().__init__()
        if width < 4 or width % 4:
            raise ValueError(f"width must be a positive multiple of 4, got {width}")
        if not 0 < image_scale <= 1:
            raise ValueError(f"image_scale must be in (0, 1], got {image_scale}")
        self.backbone, self.backbone_report = build_backbone(
            backbone, weights=backbone_weights, strict=strict_weights)
        self.freeze_backbone = freeze_backbone
        self.backbone_bn_train = backbone_bn_train
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        self.image_scale = image_scale
        self.stage1 = SketchStage(width=width, stem_channels=stem_channels)
        self.cvae = SketchCVAE(latent=latent_channels, num_samples=num_samples, hidden=cvae_hidden)
        self.stage2 = SemanticStage(in_channels=self.backbone.out_channels, width=width,
                                    num_classes=num_classes, stem_channels=stem_channels)
        self.seed = seed
        self.naive = naive
        self.recompute_activations = recompute_activations
        self.cvae_batched: bool | None = None  # None: batched on CUDA, per sample elsewhere

    def train(self, mode: bool = True) -> "SketchAwareSSC":
        """As ``nn.Module.train``; with ``backbone_bn_train=False`` the backbone's BatchNorms
        stay in eval mode (running statistics, no updates)."""
        super().train(mode)
        if mode and not self.backbone_bn_train:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, batch: dict[str, Any], *, seed: int | None = None) -> dict[str, torch.Tensor]:
        """See the class docstring. ``seed`` overrides ``self.seed`` for this call (inference)."""
        for key in ("rgb", "tsdf", "mapping") + (("sketch_gt",) if self.training else ()):
            if key not in batch:
                raise ValueError(f"SketchAwareSSC needs batch[{key!r}] (training={self.training})")
        rgb, tsdf, mapping = batch["rgb"], batch["tsdf"], batch["mapping"]
        if tsdf.dim() != 5 or tsdf.shape[1] != 1:
            raise ValueError(f"tsdf must be (B, 1, D, H, W), got {tuple(tsdf.shape)}")
        if rgb.dim() != 4 or rgb.shape[1] != 3 or rgb.shape[0] != tsdf.shape[0]:
            raise ValueError(f"rgb must be (B, 3, H, W) with B = {tsdf.shape[0]}, "
                             f"got {tuple(rgb.shape)}")
        image_size = (rgb.shape[2], rgb.shape[3])

        lean = self.recompute_activations
        sketch_raw = self.stage1(tsdf, naive=self.naive, lean=lean)       # (B, 2, D, H, W)
        sketch_bin = sketch_raw.detach().argmax(1, keepdim=True).to(sketch_raw.dtype)
        generator = None
        if not self.training:
            generator = torch.Generator(device=tsdf.device)
            generator.manual_seed(self.seed if seed is None else seed)
        cvae = self.cvae(sketch_bin, batch.get("sketch_gt"), generator=generator,
                         naive=self.naive, batched=self.cvae_batched, lean=lean)

        image = rgb
        if self.image_scale != 1:
            image = F.interpolate(rgb, scale_factor=self.image_scale, mode="bilinear",
                                  align_corners=False, antialias=True)
        features = self.backbone(image)                                   # (B, Cb, h, w)
        semantic = self.stage2(features, mapping, image_size, sketch_raw, cvae["sketch_prior"],
                               naive=self.naive, lean=lean)
        return {"semantic": semantic, "sketch_raw": sketch_raw, **cvae}


def count_parameters(module: nn.Module, *, trainable: bool = True) -> int:
    """Number of parameters of ``module`` (only those with ``requires_grad`` if ``trainable``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


@register_model("sketch_aware_ssc")
def sketch_aware_ssc(**kwargs: Any) -> SketchAwareSSC:
    """The paper's SketchAwareSSC (the :class:`SketchAwareSSC` defaults): width 128, 12 classes,
    frozen deep-stem dilated ResNet-50 (BN in training mode as the original), 16 latent
    channels, 4 samples, activations recomputed in training.

    4,391,350 trainable parameters at the defaults (backbone 23,631,808, frozen).
    ``backbone_weights``: path to ``resnet50-imagenet.pth`` (or, with ``backbone="resnet50"``,
    a torchvision state-dict file or weights name); see :mod:`torchssc.models.backbones`.
    Keyword arguments: those of :class:`SketchAwareSSC`.
    """
    return SketchAwareSSC(**kwargs)


LITE_DEFAULTS: dict[str, Any] = dict(
    width=32, backbone="resnet18", freeze_backbone=False, latent_channels=8, num_samples=2,
    cvae_hidden=4, stem_channels=4, image_scale=0.5, recompute_activations=False,
)


@register_model("sketch_aware_ssc_lite")
def sketch_aware_ssc_lite(**kwargs: Any) -> SketchAwareSSC:
    """CPU-friendly SketchAwareSSC for the toolkit's small recipe: same architecture, width 32,
    stems 1->3->4->32 / 2->3->4->32, CVAE hidden 4 and latent 8, 2 samples per kind, trainable
    ResNet-18 truncated after layer3 (random init) on RGB downscaled x2 (the lifting still
    samples in full-image pixels); activations are kept (small enough; recomputing them cost
    ~15-20% of a step). ``LITE_DEFAULTS``, overridable by any :class:`SketchAwareSSC` keyword.
    See docs/model.md for its measured step time."""
    return SketchAwareSSC(**{**LITE_DEFAULTS, **kwargs})


__all__ = [
    "ChunkedBatchNorm3d", "LoadReport", "SemanticStage", "SketchAwareSSC", "SketchCVAE",
    "SketchStage", "count_parameters", "sketch_aware_ssc", "sketch_aware_ssc_lite",
]
