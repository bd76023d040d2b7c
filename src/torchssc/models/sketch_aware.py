"""SketchAwareSSC: "3D Sketch-aware Semantic Scene Completion via Semi-supervised Structure
Prior" (Chen et al., CVPR 2020); docs/model.md.

Pipeline (B frames; grid ``(D, H, W)`` = ``(60, 36, 60)`` for NYU, any size divisible by 4 works):

1. **Stage 1** (:class:`SketchStage`): TSDF ``(B, 1, D, H, W)`` -> stem 1->3->64->width ->
   DDR encoder-decoder -> raw sketch logits ``(B, 2, D, H, W)``.
2. **CVAE** (:class:`SketchCVAE`): on the (gradient-free) argmax of the raw sketch, hallucinates
   the sketch again from a 16-channel latent at ``D/4 x H/4 x W/4``: training averages 4 posterior
   and 4 prior samples (``sketch_posterior``, ``sketch_prior``); inference 4 prior samples.
3. **Stage 2** (:class:`SemanticStage`): the 2D input lifted into the grid through ``mapping``
   (:mod:`torchssc.models.lifting`) with the zero fill, plus two sketch embeddings (of the raw and
   the prior sketch logits) -> encoder-decoder -> 12-class logits. The 2D input
   (``semantic_input``) is one of:

   * ``"rgb"`` (the paper): 2D backbone on RGB -> 1x1 conv to width + BN + ReLU -> lift + fill;
   * ``"prior"``: a 2D semantic segmentation (per-pixel class ids, e.g. the NYU-13 prior of the
     released NYU files) -> one-hot, lift + fill -> learned 1x1x1 conv to width + BN + ReLU (this
     replaces the frozen backbone and its reduction; everything else is the paper's);
   * ``"none"``: no 2D input (TSDF only, the ablation): stage 2 sees the two sketch embeddings.

Speed and memory without changing the maths (the straightforward reference paths, the
original's order of operations, are in the tests and tested equal):

* lifting samples the reduced feature map at the mapped pixels only (no 128 x 480 x 640 tensor)
  and computes the zero-fill around the mapped voxels only (:func:`lift_and_fill`,
  :func:`lift_labels`);
* the classifiers' channel dropout is fused into their 1x1x1 convs (:func:`dropout_pointwise`);
* in training, cheap-to-recompute activations (DDR layers, stem fronts, full-size BN + ReLU +
  classifier, CVAE decoder tail, the prior's 1x1x1 embedding) are recomputed in the backward pass
  instead of kept (``recompute_activations``; :mod:`torchssc.models.recompute`; BatchNorm running
  statistics unaffected);
* the CVAE computes the condition half of its first decoder layer once instead of once per
  sample, and on CUDA decodes all samples in one batched call (``cvae_batched``; on CPU the
  per-sample loop measured faster); in training its BatchNorms normalise each sample's chunk
  with that chunk's own statistics and update the running statistics chunk by chunk in the
  original's call order (:class:`ChunkedBatchNorm3d`), so outputs and running statistics equal
  the original's per-sample loop;
* stage 1 reuses its layer1 output for the decoder skip (the original did too).

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
from torchssc.models.lifting import lift_and_fill, lift_labels
from torchssc.models.recompute import recompute
from torchssc.models.registry import register_model, spec_classes

SEMANTIC_INPUTS = ("rgb", "prior", "none")
"""The 2D inputs of stage 2: RGB through a backbone (the paper), a 2D segmentation prior, none."""

NYU13_CLASSES = 14
"""One-hot channels of the NYU-13 2D prior: ids 0..13 = void, bed, books, ceiling, chair, floor,
furniture, objects, picture, sofa, table, tv, wall, window."""


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
    """Conditional VAE that hallucinates the 3D sketch (docs/model.md).

    Args:
        latent: latent channels (16 in the paper), at ``D/4 x H/4 x W/4``.
        num_samples: samples per kind (4 in the paper).
        hidden: channels of the full-resolution convs of the encoder and condition (16).
        recompute: recompute the decoder tails in the backward pass (training; same maths).

    Forward ``(sketch (B, 1, D, H, W) float 0/1, sketch_gt (B, D, H, W) or None)``; returns a dict:
    ``"sketch_prior"`` ``(B, 2, D, H, W)`` mean decoded logits of prior samples ``z ~ N(0, I)``;
    in training also ``"sketch_posterior"`` (same, ``z = mean + eps * exp(logvar / 2)``),
    ``"latent_mean"``, ``"latent_logvar"`` ``(B, latent, D/4, H/4, W/4)``.

    Attributes: ``recompute``; ``batched`` (``None`` = decode all samples in one call on CUDA and
    sample by sample elsewhere, measured faster on CPU, see docs/benchmarks.md; ``True``/``False``
    force it; same maths either way).
    """

    def __init__(self, *, latent: int = 16, num_samples: int = 4, hidden: int = 16,
                 recompute: bool = True) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.latent = latent
        self.num_samples = num_samples
        self.recompute = recompute
        self.batched: bool | None = None
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

    def _set_chunks(self, chunks: int) -> None:
        for m in self.decoder:
            if isinstance(m, ChunkedBatchNorm3d):
                m.chunks = chunks

    def _decode(self, cond: torch.Tensor, z: torch.Tensor, chunks: int) -> torch.Tensor:
        """Decode ``chunks`` stacked latents ``z (chunks*B, L, d, h, w)`` with one condition
        ``cond (B, L, d, h, w)`` -> logits ``(chunks*B, 2, D, H, W)``.

        Equals ``decoder(cat([cond, z_k]))`` for each chunk ``z_k`` in order (the original's
        loop). The first layer is linear in its concatenated input, so its condition half is
        computed once and broadcast over the chunks instead of once per sample: same maths, half
        the first layer's work. Then all chunks in one call (:attr:`batched`, each chunk
        normalised with its own statistics) or chunk by chunk.
        """
        up = self.decoder[0]
        latent = cond.shape[1]

        def conv_t(x, weight, bias):
            return F.conv_transpose3d(x, weight, bias, up.stride, up.padding, up.output_padding,
                                      up.groups, up.dilation)

        from_cond = conv_t(cond, up.weight[:latent], up.bias)          # (B, L, 2d, 2h, 2w)
        batched = self.batched if self.batched is not None else cond.device.type == "cuda"
        if not batched:  # chunk by chunk (faster on CPU, where big batches thrash the cache)
            self._set_chunks(1)
            return torch.cat([self._tail(conv_t(part, up.weight[latent:], None) + from_cond)
                              for part in z.chunk(chunks, 0)])
        self._set_chunks(chunks)
        from_z = conv_t(z, up.weight[latent:], None)                    # (G*B, L, 2d, 2h, 2w)
        y = (from_z.view(chunks, *from_cond.shape) + from_cond).view(from_z.shape)
        return self._tail(y)

    def _tail(self, y: torch.Tensor) -> torch.Tensor:
        """The decoder after its first convolution, with the final dropout and 1x1x1 conv fused
        (:func:`~torchssc.models.ddr.dropout_pointwise`): ``(N, L, d', h', w') -> (N, 2, D, H, W)``;
        with :attr:`recompute` (training) recomputed in the backward pass instead of kept."""
        return recompute(lambda t: dropout_pointwise(self.decoder[1:-2](t), *self.decoder[-2:]), self, y,
                         enabled=self.recompute)

    def forward(
        self,
        sketch: torch.Tensor,
        sketch_gt: torch.Tensor | None = None,
        *,
        noise: dict[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """See the class docstring.

        ``noise`` (tests): ``{"eps": (S, B, L, d, h, w), "prior": (S, B, L, d, h, w)}`` replaces
        the random draws. ``generator``: used for the draws (inference passes a seeded one).
        Training decodes in the original's order (posterior 1, prior 1, posterior 2, ...), so
        BatchNorm running statistics and dropout draws follow it.
        """
        b = sketch.shape[0]
        s = self.num_samples
        latent_shape = (self.latent, *(n // 4 for n in sketch.shape[2:]))
        cond = self.condition(sketch)                                 # (B, L, d, h, w)
        if not self.training:
            if noise is not None:
                z = noise["prior"]
            else:  # one draw per sample, shared by the frames of the batch
                z = torch.randn((s, 1, *latent_shape), generator=generator, device=sketch.device,
                                dtype=cond.dtype).expand(s, b, *latent_shape)
            prior = self._decode(cond, z.reshape(s * b, *latent_shape), s)  # (S*B, 2, D, H, W)
            return {"sketch_prior": prior.view(s, b, *prior.shape[1:]).mean(0)}

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
        z = torch.stack([z_post, z_prior], 1).reshape(2 * s * b, *latent_shape)  # original order
        out = self._decode(cond, z, 2 * s)                           # (2*S*B, 2, D, H, W)
        out = out.view(s, 2, b, *out.shape[1:]).mean(0)              # (2, B, 2, D, H, W)
        return {"sketch_prior": out[1], "sketch_posterior": out[0],
                "latent_mean": mean, "latent_logvar": logvar}


class SketchStage(nn.Module):
    """Stage 1: ``tsdf (B, 1, D, H, W) -> raw sketch logits (B, 2, D, H, W)``.

    ``recompute`` (attribute): keep fewer activations in training (same maths)."""

    def __init__(self, *, width: int = 128, stem_channels: int = 64, recompute: bool = True) -> None:
        super().__init__()
        self.recompute = recompute
        self.stem = conv_bn_relu_3d([1, 3, stem_channels, width])
        self.net = EncoderDecoder(width, 2, recompute=recompute)

    def forward(self, tsdf: torch.Tensor) -> torch.Tensor:
        return self.net(conv_bn_relu_3d_lean(self.stem, tsdf, enabled=self.recompute))


class SemanticStage(nn.Module):
    """Stage 2: the lifted 2D input + the two sketches -> semantic logits ``(B, C, D, H, W)``.

    Args:
        semantic_input: ``"rgb"``, ``"prior"`` or ``"none"`` (:data:`SEMANTIC_INPUTS`).
        in_channels: channels of the 2D input: the backbone's (``"rgb"``, 2048 for the
            ResNet-50) or the prior's one-hot classes K (``"prior"``, 14 for NYU-13); unused
            for ``"none"``.
        width, num_classes, stem_channels: as :class:`SketchAwareSSC`.
        recompute: keep fewer activations in training (same maths).

    Modules: ``reduce`` (``"rgb"``: 1x1 conv Cb -> width + BatchNorm2d + ReLU, applied before
    the lifting) or ``seg_embed`` (``"prior"``: 1x1x1 conv K -> width + BatchNorm3d + ReLU,
    applied to the lifted one-hot volume); ``embed_raw``, ``embed_prior`` (the sketch
    embeddings 2 -> 3 -> stem -> width); ``net`` (:class:`~torchssc.models.ddr.EncoderDecoder`).

    Forward ``(source, mapping (B, D*H*W) int64, image_size (Hi, Wi), sketch_raw (B, 2, D, H, W),
    sketch_prior (B, 2, D, H, W))`` with ``source`` the backbone features ``(B, Cb, h, w)``
    (``"rgb"``), the prior's class ids ``(B, Hi, Wi)`` int (``"prior"``) or None (``"none"``,
    which ignores ``mapping`` and ``image_size`` too).
    """

    def __init__(self, *, semantic_input: str = "rgb", in_channels: int = 2048, width: int = 128,
                 num_classes: int = 12, stem_channels: int = 64, recompute: bool = True) -> None:
        super().__init__()
        if semantic_input not in SEMANTIC_INPUTS:
            raise ValueError(f"semantic_input must be one of {SEMANTIC_INPUTS}, got {semantic_input!r}")
        self.semantic_input = semantic_input
        self.recompute = recompute
        if semantic_input == "rgb":
            self.reduce = nn.Sequential(nn.Conv2d(in_channels, width, 1, bias=False),
                                        nn.BatchNorm2d(width), nn.ReLU())
        elif semantic_input == "prior":
            self.seg_embed = nn.Sequential(nn.Conv3d(in_channels, width, 1, bias=False),
                                           nn.BatchNorm3d(width), nn.ReLU())
        self.embed_raw = conv_bn_relu_3d([2, 3, stem_channels, width])
        self.embed_prior = conv_bn_relu_3d([2, 3, stem_channels, width])
        self.net = EncoderDecoder(width, num_classes, recompute=recompute)

    def lift(self, source: torch.Tensor | None, mapping: torch.Tensor | None,
             grid: tuple[int, int, int], image_size: tuple[int, int] | None) -> torch.Tensor | None:
        """The 2D input lifted into the grid at the stage's width: ``(B, width, *grid)``, or
        None for ``"none"``."""
        if self.semantic_input == "rgb":
            return lift_and_fill(self.reduce(source), mapping, grid, image_size)
        if self.semantic_input == "prior":
            conv = self.seg_embed[0]
            onehot = lift_labels(source, mapping, grid, conv.in_channels, dtype=conv.weight.dtype)
            return recompute(self.seg_embed, self, onehot, enabled=self.recompute)  # keeps K channels
        return None

    def forward(self, source: torch.Tensor | None, mapping: torch.Tensor | None,
                image_size: tuple[int, int] | None, sketch_raw: torch.Tensor,
                sketch_prior: torch.Tensor) -> torch.Tensor:
        volume = self.lift(source, mapping, tuple(sketch_raw.shape[2:]), image_size)
        lean = self.recompute
        raw = conv_bn_relu_3d_lean(self.embed_raw, sketch_raw, keep_output=False, enabled=lean)
        prior = conv_bn_relu_3d_lean(self.embed_prior, sketch_prior, keep_output=False, enabled=lean)
        return self.net(raw + prior if volume is None else volume + raw + prior)


class SketchAwareSSC(nn.Module):
    """The paper's network and its 2D-prior and TSDF-only variants; build it with the registered
    builders (:func:`sketch_aware_ssc`, :func:`sketch_aware_ssc_prior`, ...).

    Inputs (a batch dict, shared data contract):
        ``"tsdf"`` ``(B, 1, D, H, W)`` float (60 x 36 x 60; any size divisible by 4);
        ``"mapping"`` ``(B, D*H*W)`` int64 flat pixel ``v*Wi + u`` per voxel, ``Hi*Wi`` = none
        (``"rgb"`` and ``"prior"`` inputs);
        ``"rgb"`` ``(B, 3, Hi, Wi)`` float ImageNet-normalised (480 x 640 for NYU; ``"rgb"``);
        ``"prior"`` ``(B, Hi, Wi)`` int64 class ids in ``[0, prior_classes)`` (NYU-13: 0 void,
        1..13; ``"prior"``);
        ``"sketch_gt"`` ``(B, D, H, W)`` int64 0/1 (training only).
    Outputs (dict of float tensors):
        ``"semantic"`` ``(B, num_classes, D, H, W)`` logits; ``"sketch_raw"`` and
        ``"sketch_prior"`` ``(B, 2, D, H, W)`` logits; in training also ``"sketch_posterior"``
        ``(B, 2, D, H, W)``, ``"latent_mean"`` and ``"latent_logvar"`` ``(B, L, D/4, H/4, W/4)``.

    Args:
        semantic_input: ``"rgb"`` (the paper), ``"prior"`` or ``"none"`` (module docstring).
        width, num_classes: feature width (128) and output classes (12).
        backbone, backbone_weights, strict_weights, freeze_backbone, backbone_bn_train,
            image_scale: the 2D backbone (``"rgb"`` only; ``backbone=None`` is the deep-stem
            ResNet-50); see :mod:`torchssc.models.backbones` and docs/model.md.
        prior_classes: one-hot channels of the prior (``"prior"`` only; 14 for NYU-13).
        latent_channels, num_samples, cvae_hidden: the CVAE (:class:`SketchCVAE`).
        stem_channels: middle channels of the 3D stems (64).
        seed: the inference prior-sample seed.
        recompute_activations: training keeps fewer activations and recomputes them in the
            backward pass (same maths, less memory, some more time).

    Attributes: ``seed``, ``recompute_activations`` and ``cvae_batched`` (``None`` = decode the
    CVAE samples in one call on CUDA, one by one elsewhere; ``True``/``False`` force it) may be
    changed after construction; ``backbone`` (None without RGB input), ``backbone_report``
    (:class:`~torchssc.models.backbones.LoadReport` or None).
    """

    def __init__(
        self,
        *,
        semantic_input: str = "rgb",
        width: int = 128,
        num_classes: int = 12,
        backbone: str | None = None,
        backbone_weights: str | None = None,
        strict_weights: bool = False,
        freeze_backbone: bool = True,
        backbone_bn_train: bool = True,
        image_scale: float = 1.0,
        prior_classes: int = NYU13_CLASSES,
        latent_channels: int = 16,
        num_samples: int = 4,
        cvae_hidden: int = 16,
        stem_channels: int = 64,
        seed: int = 0,
        recompute_activations: bool = True,
    ) -> None:
        super().__init__()
        if semantic_input not in SEMANTIC_INPUTS:
            raise ValueError(f"semantic_input must be one of {SEMANTIC_INPUTS}, got {semantic_input!r}")
        if width < 4 or width % 4:
            raise ValueError(f"width must be a positive multiple of 4, got {width}")
        if not 0 < image_scale <= 1:
            raise ValueError(f"image_scale must be in (0, 1], got {image_scale}")
        self.semantic_input = semantic_input
        self.backbone, self.backbone_report = None, None
        if semantic_input == "rgb":
            self.backbone, self.backbone_report = build_backbone(
                backbone or "resnet50_deepstem", weights=backbone_weights, strict=strict_weights)
            if freeze_backbone:
                self.backbone.requires_grad_(False)
            in_channels = self.backbone.out_channels
        else:
            given = [name for name, unused in (("backbone", backbone is None),
                                               ("backbone_weights", backbone_weights is None),
                                               ("image_scale", image_scale == 1)) if not unused]
            if given:
                raise ValueError(f"semantic_input={semantic_input!r} has no 2D backbone; "
                                 f"do not pass {', '.join(given)}")
            if prior_classes < 1:
                raise ValueError(f"prior_classes must be positive, got {prior_classes}")
            in_channels = prior_classes
        self.freeze_backbone = freeze_backbone
        self.backbone_bn_train = backbone_bn_train
        self.image_scale = image_scale
        lean = recompute_activations
        self.stage1 = SketchStage(width=width, stem_channels=stem_channels, recompute=lean)
        self.cvae = SketchCVAE(latent=latent_channels, num_samples=num_samples, hidden=cvae_hidden,
                               recompute=lean)
        self.stage2 = SemanticStage(semantic_input=semantic_input, in_channels=in_channels,
                                    width=width, num_classes=num_classes,
                                    stem_channels=stem_channels, recompute=lean)
        self.seed = seed

    @property
    def recompute_activations(self) -> bool:
        """Recompute cheap activations in the backward pass (training; same results)."""
        return self.stage1.recompute

    @recompute_activations.setter
    def recompute_activations(self, value: bool) -> None:
        for m in self.modules():
            if isinstance(m, (SketchStage, SemanticStage, SketchCVAE, EncoderDecoder)):
                m.recompute = bool(value)

    @property
    def cvae_batched(self) -> bool | None:
        """``SketchCVAE.batched``: ``None`` = one batched decoder call on CUDA, per sample elsewhere."""
        return self.cvae.batched

    @cvae_batched.setter
    def cvae_batched(self, value: bool | None) -> None:
        self.cvae.batched = value

    def train(self, mode: bool = True) -> "SketchAwareSSC":
        """As ``nn.Module.train``; with ``backbone_bn_train=False`` the backbone's BatchNorms
        stay in eval mode (running statistics, no updates)."""
        super().train(mode)
        if mode and self.backbone is not None and not self.backbone_bn_train:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def required_keys(self) -> tuple[str, ...]:
        """The batch keys :meth:`forward` reads in the current mode."""
        keys = {"rgb": ("tsdf", "mapping", "rgb"), "prior": ("tsdf", "mapping", "prior"),
                "none": ("tsdf",)}[self.semantic_input]
        return keys + (("sketch_gt",) if self.training else ())

    def _check_batch(self, batch: dict[str, Any]) -> None:
        for key in self.required_keys():
            if key not in batch:
                raise ValueError(f"SketchAwareSSC(semantic_input={self.semantic_input!r}) needs "
                                 f"batch[{key!r}] (training={self.training})")
        tsdf = batch["tsdf"]
        if tsdf.dim() != 5 or tsdf.shape[1] != 1:
            raise ValueError(f"tsdf must be (B, 1, D, H, W), got {tuple(tsdf.shape)}")
        if self.semantic_input == "rgb":
            rgb = batch["rgb"]
            if rgb.dim() != 4 or rgb.shape[1] != 3 or rgb.shape[0] != tsdf.shape[0]:
                raise ValueError(f"rgb must be (B, 3, H, W) with B = {tsdf.shape[0]}, "
                                 f"got {tuple(rgb.shape)}")
        if self.semantic_input == "prior":
            prior = batch["prior"]
            if prior.dim() != 3 or prior.shape[0] != tsdf.shape[0]:
                raise ValueError(f"prior must be (B, H, W) class ids with B = {tsdf.shape[0]}, "
                                 f"got {tuple(prior.shape)}")

    def _semantic_source(self, batch: dict[str, Any]):
        """Stage 2's 2D input and the image size the mapping refers to."""
        if self.semantic_input == "rgb":
            rgb = batch["rgb"]
            image = rgb
            if self.image_scale != 1:
                image = F.interpolate(rgb, scale_factor=self.image_scale, mode="bilinear",
                                      align_corners=False, antialias=True)
            return self.backbone(image), (rgb.shape[2], rgb.shape[3])     # (B, Cb, h, w)
        if self.semantic_input == "prior":
            prior = batch["prior"]
            return prior, (prior.shape[1], prior.shape[2])
        return None, None

    def forward(self, batch: dict[str, Any], *, seed: int | None = None) -> dict[str, torch.Tensor]:
        """See the class docstring. ``seed`` overrides ``self.seed`` for this call (inference)."""
        self._check_batch(batch)
        tsdf = batch["tsdf"]
        sketch_raw = self.stage1(tsdf)                                    # (B, 2, D, H, W)
        sketch_bin = sketch_raw.detach().argmax(1, keepdim=True).to(sketch_raw.dtype)
        generator = None
        if not self.training:
            generator = torch.Generator(device=tsdf.device)
            generator.manual_seed(self.seed if seed is None else seed)
        cvae = self.cvae(sketch_bin, batch.get("sketch_gt"), generator=generator)
        source, image_size = self._semantic_source(batch)
        semantic = self.stage2(source, batch.get("mapping"), image_size, sketch_raw, cvae["sketch_prior"])
        return {"semantic": semantic, "sketch_raw": sketch_raw, **cvae}


def count_parameters(module: nn.Module, *, trainable: bool = True) -> int:
    """Number of parameters of ``module`` (only those with ``requires_grad`` if ``trainable``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


@register_model("sketch_aware_ssc", inputs=("tsdf", "mapping", "rgb"), from_spec=spec_classes)
def sketch_aware_ssc(**kwargs: Any) -> SketchAwareSSC:
    """The paper's SketchAwareSSC (the :class:`SketchAwareSSC` defaults): RGB + TSDF, width 128,
    12 classes, frozen deep-stem dilated ResNet-50 (BN in training mode as the original), 16
    latent channels, 4 samples, activations recomputed in training.

    4,391,350 trainable parameters at the defaults (backbone 23,631,808, frozen).
    ``backbone_weights``: path to ``resnet50-imagenet.pth`` (or, with ``backbone="resnet50"``,
    a torchvision state-dict file or weights name); see :mod:`torchssc.models.backbones`.
    Keyword arguments: those of :class:`SketchAwareSSC`.
    """
    return SketchAwareSSC(**kwargs)


LITE_3D_DEFAULTS: dict[str, Any] = dict(
    width=32, latent_channels=8, num_samples=2, cvae_hidden=4, stem_channels=4,
    recompute_activations=False,
)
"""The CPU width of the 3D network, shared by every ``*_lite`` builder."""

LITE_DEFAULTS: dict[str, Any] = dict(
    **LITE_3D_DEFAULTS, backbone="resnet18", freeze_backbone=False, image_scale=0.5,
)
"""``sketch_aware_ssc_lite``: the CPU width plus its trainable ResNet-18 trunk on half-size RGB."""


@register_model("sketch_aware_ssc_lite", inputs=("tsdf", "mapping", "rgb"), from_spec=spec_classes)
def sketch_aware_ssc_lite(**kwargs: Any) -> SketchAwareSSC:
    """CPU-friendly SketchAwareSSC for the toolkit's small recipe: same architecture, width 32,
    stems 1->3->4->32 / 2->3->4->32, CVAE hidden 4 and latent 8, 2 samples per kind, trainable
    ResNet-18 truncated after layer3 (random init) on RGB downscaled x2 (the lifting still
    samples in full-image pixels); activations are kept (small enough; recomputing them cost
    ~15-20% of a step). ``LITE_DEFAULTS``, overridable by any :class:`SketchAwareSSC` keyword.
    See docs/model.md for its measured step time."""
    return SketchAwareSSC(**{**LITE_DEFAULTS, **kwargs})


@register_model("sketch_aware_ssc_prior", inputs=("tsdf", "mapping", "prior"), from_spec=spec_classes)
def sketch_aware_ssc_prior(**kwargs: Any) -> SketchAwareSSC:
    """SketchAwareSSC on the 2D semantic prior instead of RGB (``semantic_input="prior"``): the
    one-hot NYU-13 prior (14 channels) is lifted and filled like the paper's RGB features, then a
    learned 1x1x1 conv 14 -> 128 + BN + ReLU replaces the frozen ResNet-50 and its reduction;
    everything else is the paper's. Reads ``batch["prior"]`` ``(B, 480, 640)``; no RGB.

    4,130,998 trainable parameters (docs/model.md). ``semantic_input="none"`` gives the TSDF-only
    ablation (as :func:`sketch_aware_ssc_tsdf`). Keyword arguments: those of
    :class:`SketchAwareSSC` except the backbone's.
    """
    return SketchAwareSSC(**{"semantic_input": "prior", **kwargs})


@register_model("sketch_aware_ssc_prior_lite", inputs=("tsdf", "mapping", "prior"), from_spec=spec_classes)
def sketch_aware_ssc_prior_lite(**kwargs: Any) -> SketchAwareSSC:
    """:func:`sketch_aware_ssc_prior` at the CPU width of ``sketch_aware_ssc_lite``
    (``LITE_3D_DEFAULTS``: width 32, stems 4, CVAE hidden 4, latent 8, 2 samples per kind,
    activations kept). 239,602 trainable parameters (docs/model.md)."""
    return SketchAwareSSC(**{**LITE_3D_DEFAULTS, "semantic_input": "prior", **kwargs})


@register_model("sketch_aware_ssc_tsdf", inputs=("tsdf",), from_spec=spec_classes)
def sketch_aware_ssc_tsdf(**kwargs: Any) -> SketchAwareSSC:
    """The TSDF-only ablation at the paper's widths (``semantic_input="none"``): no 2D input,
    stage 2 sees the two sketch embeddings. 4,128,950 trainable parameters (docs/model.md)."""
    return SketchAwareSSC(**{"semantic_input": "none", **kwargs})


@register_model("sketch_aware_ssc_tsdf_lite", inputs=("tsdf",), from_spec=spec_classes)
def sketch_aware_ssc_tsdf_lite(**kwargs: Any) -> SketchAwareSSC:
    """The TSDF-only ablation at the CPU width (``LITE_3D_DEFAULTS``, ``semantic_input="none"``).
    239,090 trainable parameters (docs/model.md)."""
    return SketchAwareSSC(**{**LITE_3D_DEFAULTS, "semantic_input": "none", **kwargs})


__all__ = [
    "ChunkedBatchNorm3d", "LITE_3D_DEFAULTS", "LITE_DEFAULTS", "LoadReport", "NYU13_CLASSES",
    "SEMANTIC_INPUTS", "SemanticStage", "SketchAwareSSC", "SketchCVAE", "SketchStage",
    "count_parameters", "sketch_aware_ssc", "sketch_aware_ssc_lite", "sketch_aware_ssc_prior",
    "sketch_aware_ssc_prior_lite", "sketch_aware_ssc_tsdf", "sketch_aware_ssc_tsdf_lite",
]
