"""Naive reference paths of SketchAwareSSC, kept in the tests (the library keeps one fast path).

Each function follows the original's order of operations with every activation kept: the
full-resolution x16 upsample + per-sample gather and the dense 3x3x3 fill for the lifting, the
dense one-hot image for the 2D prior, dropout then classifier, the CVAE decoded sample by sample
on the concatenated ``[condition, z]``. They reuse the model's own modules (same weights), so a
test compares the fast path with these on the same model. ``benchmarks/bench_model.py`` imports
this module too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from torchssc.models.lifting import _check
from torchssc.models.sketch_aware import ChunkedBatchNorm3d


def lift_features_naive(features, mapping, grid_shape, image_size):
    """The original's lifting: full-resolution upsample, then a per-sample gather.

    ``features (B, C, h, w)``, ``mapping (B, N)`` -> ``(B, C, *grid_shape)`` contiguous;
    materialises ``(B, C, H, W)``.
    """
    _check(features, mapping, grid_shape, image_size)
    b, c = features.shape[:2]
    big_h, big_w = image_size
    up = F.interpolate(features, size=(big_h, big_w), mode="bilinear", align_corners=True)
    table = torch.cat([up.reshape(b, c, big_h * big_w), up.new_zeros(b, c, 1)], dim=2)
    index = mapping.to(torch.int64).clone()
    index[(index < 0) | (index > big_h * big_w)] = big_h * big_w
    out = [table[i].index_select(1, index[i]) for i in range(b)]    # B x (C, N)
    return torch.stack(out).view(b, c, *grid_shape)


def fill_unmapped(volume):
    """Dense zero fill: ``volume + avg_pool3d(volume, 3, 1, 1, zero padding counted) * (volume == 0)``
    on ``(B, C, D, H, W)``."""
    pooled = F.avg_pool3d(volume, 3, stride=1, padding=1, count_include_pad=True)
    return volume + pooled * (volume == 0).to(volume.dtype)


def one_hot_image(labels, num_classes, dtype=torch.float32):
    """``(B, H, W)`` ids -> the dense ``(B, K, H, W)`` one-hot image."""
    return F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).to(dtype)


def lift_labels_naive(labels, mapping, grid_shape, num_classes, fill=True, dtype=torch.float32):
    """The 2D prior lifted as the RGB features are: dense one-hot image, naive lift, dense fill."""
    image = one_hot_image(labels, num_classes, dtype)
    lifted = lift_features_naive(image, mapping, grid_shape, tuple(labels.shape[1:]))
    return fill_unmapped(lifted) if fill else lifted


def encoder_decoder_naive(net, x):
    """``classifier(up2(up1(layer2(f1)) + f1))`` with ``f1 = layer1(x)``, everything kept."""
    f1 = net.layer1(x)                                             # (B, w, D/2, H/2, W/2)
    f2 = net.layer2(f1)                                            # (B, 2w, D/4, H/4, W/4)
    return net.classifier(net.up2(net.up1(f2) + f1))               # (B, classes, D, H, W)


def _decode_naive(cvae, cond, z):
    for m in cvae.decoder:
        if isinstance(m, ChunkedBatchNorm3d):
            m.chunks = 1
    return cvae.decoder(torch.cat([cond, z], dim=1))


def cvae_naive(cvae, sketch, sketch_gt=None, *, noise=None, generator=None):
    """The original's CVAE: same draws as :class:`SketchCVAE`, decoded sample by sample
    (posterior 1, prior 1, posterior 2, ... in training)."""
    b, s = sketch.shape[0], cvae.num_samples
    latent_shape = (cvae.latent, *(n // 4 for n in sketch.shape[2:]))
    cond = cvae.condition(sketch)
    if not cvae.training:
        if noise is not None:
            z = noise["prior"]
        else:
            z = torch.randn((s, 1, *latent_shape), generator=generator, device=sketch.device,
                            dtype=cond.dtype).expand(s, b, *latent_shape)
        return {"sketch_prior": torch.stack([_decode_naive(cvae, cond, z[i]) for i in range(s)]).mean(0)}
    enc = cvae.encoder(torch.cat([sketch, sketch_gt.reshape(sketch.shape).to(sketch.dtype)], 1))
    mean, logvar = cvae.mean(enc), cvae.logvar(enc)
    if noise is not None:
        eps, z_prior = noise["eps"], noise["prior"]
    else:
        eps = torch.randn((s, b, *latent_shape), generator=generator, device=sketch.device, dtype=mean.dtype)
        z_prior = torch.randn((s, b, *latent_shape), generator=generator, device=sketch.device, dtype=mean.dtype)
    z_post = mean + eps * torch.exp(0.5 * logvar)
    post, prior = [], []
    for i in range(s):
        post.append(_decode_naive(cvae, cond, z_post[i]))
        prior.append(_decode_naive(cvae, cond, z_prior[i]))
    return {"sketch_prior": torch.stack(prior).mean(0), "sketch_posterior": torch.stack(post).mean(0),
            "latent_mean": mean, "latent_logvar": logvar}


def semantic_stage_naive(stage, source, mapping, image_size, sketch_raw, sketch_prior):
    """Stage 2 with the dense lifting and fill (one-hot image for the prior), everything kept."""
    grid = tuple(sketch_raw.shape[2:])
    volume = None
    if stage.semantic_input == "rgb":
        volume = fill_unmapped(lift_features_naive(stage.reduce(source), mapping, grid, image_size))
    elif stage.semantic_input == "prior":
        conv = stage.seg_embed[0]
        volume = stage.seg_embed(lift_labels_naive(source, mapping, grid, conv.in_channels,
                                                   dtype=conv.weight.dtype))
    raw, prior = stage.embed_raw(sketch_raw), stage.embed_prior(sketch_prior)
    x = raw + prior if volume is None else volume + raw + prior
    return encoder_decoder_naive(stage.net, x)


def sketch_aware_naive(model, batch, *, seed=None):
    """``model(batch, seed=seed)`` through the reference paths (same checks, draws and order)."""
    model._check_batch(batch)
    tsdf = batch["tsdf"]
    sketch_raw = encoder_decoder_naive(model.stage1.net, model.stage1.stem(tsdf))
    sketch_bin = sketch_raw.detach().argmax(1, keepdim=True).to(sketch_raw.dtype)
    generator = None
    if not model.training:
        generator = torch.Generator(device=tsdf.device)
        generator.manual_seed(model.seed if seed is None else seed)
    cvae = cvae_naive(model.cvae, sketch_bin, batch.get("sketch_gt"), generator=generator)
    source, image_size = model._semantic_source(batch)
    semantic = semantic_stage_naive(model.stage2, source, batch.get("mapping"), image_size,
                                    sketch_raw, cvae["sketch_prior"])
    return {"semantic": semantic, "sketch_raw": sketch_raw, **cvae}
