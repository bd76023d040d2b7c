"""ForkNet's and the CCPNet-style losses against per-voxel loops and hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch

from torchssc.losses import get_loss, list_losses
from torchssc.losses.forknet import class_weights, gamma_bce
from torchssc.models.forknet import geometry_target


def test_class_weights_and_gamma_bce_match_a_loop():
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 3, (2, 3, 2, 4), generator=g)
    target = torch.nn.functional.one_hot(label, 3).permute(0, 4, 1, 2, 3).float()  # (2, 3, 3, 2, 4)
    w = class_weights(target)
    m = [float((label == c).float().mean()) for c in range(3)]
    inv = [1 / (1 + x) for x in m]
    assert w.tolist() == pytest.approx([v / sum(inv) for v in inv])
    prob = torch.softmax(torch.randn(2, 3, 3, 2, 4, generator=g), dim=1)
    positive = target + (torch.rand(target.shape, generator=g) < 0.2).float()
    negative = target
    got = gamma_bce(prob, positive, negative, w, gamma=0.97, eps=1e-6)
    total = 0.0
    for b in range(2):
        for c in range(3):
            for v in range(24):
                p = float(prob[b, c].flatten()[v])
                a, n = float(positive[b, c].flatten()[v]), float(negative[b, c].flatten()[v])
                total -= float(w[c]) * (0.97 * a * math.log(p + 1e-6) + 0.03 * (1 - n) * math.log(1 - p + 1e-6))
    assert float(got) == pytest.approx(total / 2, rel=1e-5)


def test_geometry_target_band_and_label():
    tsdf = torch.tensor([0.0, 0.69, 0.7, 0.71, -0.9, 1.0, 0.3, 0.0]).reshape(1, 1, 2, 2, 2)
    label = torch.tensor([0, 0, 0, 0, 0, 0, 3, 255]).reshape(1, 2, 2, 2)
    band = geometry_target(tsdf, label, "band").flatten().tolist()
    # round(|t| - 0.2) half to even: 0.5 -> 0, so |t| = 0.7 is not in the band; 255 reads as 0
    assert band == [0, 0, 0, 1, 1, 1, 1, 0]
    assert geometry_target(tsdf, label, "label").flatten().tolist() == [0, 0, 0, 0, 0, 0, 1, 0]


def _outputs(shape=(4, 2, 4), b=2, seed=0, adversarial=False) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {k: torch.randn(b, c, *shape, generator=g) for k, c in (
        ("forknet_front", 12), ("forknet_s1", 12), ("semantic", 12), ("forknet_g1", 2), ("forknet_g2", 2),
        ("forknet_recon", 1))}
    out["latent_mean"] = torch.randn(b, 4, 1, 1, 1, generator=g)
    out["latent_log_sigma"] = 0.1 * torch.randn(b, 4, 1, 1, 1, generator=g)
    if adversarial:
        for kind in ("real", "fake", "gen"):
            out[f"adv_{kind}_x"] = torch.randn(b, 1, generator=g)
            for k in ("g", "s"):
                out[f"adv_{kind}_{k}"] = torch.randn(b, 1, 1, 1, 1, generator=g)
    return out


def _batch(shape=(4, 2, 4), b=2, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed + 100)
    label = torch.randint(0, 12, (b, *shape), generator=g)
    label[0, 0, 0, 0] = 255
    return {"forknet_tsdf": torch.rand(b, 1, *shape, generator=g) * 2 - 1, "forknet_label": label,
            "forknet_surface": (torch.rand(b, *shape, generator=g) < 0.5).to(torch.uint8)}


def test_forknet_loss_terms_and_total():
    assert {"forknet", "ccpnet_style"} <= set(list_losses())
    out, batch = _outputs(), _batch()
    terms = get_loss("forknet")(out, batch)
    assert set(terms) == {"ssc", "geometry", "semantic", "refine", "recon", "kl", "total"}
    expected = terms["ssc"] + terms["geometry"] + terms["semantic"] + terms["refine"] + 2 * (terms["kl"] + terms["recon"])
    torch.testing.assert_close(terms["total"], expected)
    # recon and kl by hand
    x, xh = batch["forknet_tsdf"], out["forknet_recon"]
    torch.testing.assert_close(terms["recon"], ((x - xh) ** 2).sum(dim=(1, 2, 3, 4)).mean())
    mu, ls = out["latent_mean"], out["latent_log_sigma"]
    torch.testing.assert_close(terms["kl"], (-0.5 * (1 + 2 * ls - mu ** 2 - torch.exp(2 * ls))).sum(dim=(1, 2, 3, 4)).mean())
    # the semantic term: positives Y + S (surface voxels twice), negatives 1 - S, weights of S
    y = torch.nn.functional.one_hot(torch.where(batch["forknet_label"] == 255, 0, batch["forknet_label"]), 12)
    y = y.permute(0, 4, 1, 2, 3).float()
    s = torch.cat([y[:, :1], y[:, 1:] * batch["forknet_surface"][:, None]], dim=1)
    want = gamma_bce(torch.softmax(out["forknet_s1"], 1), y + s, s, class_weights(s), gamma=0.97, eps=1e-6)
    torch.testing.assert_close(terms["semantic"], want)
    # weights from the recipe
    heavy = get_loss("forknet", ssc_weight=3.0, recon_weight=0.5)(out, batch)
    torch.testing.assert_close(heavy["total"] - terms["total"], 2 * terms["ssc"] - terms["recon"])
    # the model's geometry target is used when given
    c = torch.zeros_like(batch["forknet_label"])
    other = get_loss("forknet")({**out, "forknet_geometry_target": c}, batch)
    assert not torch.allclose(other["geometry"], terms["geometry"])


def test_forknet_adversarial_terms_and_gate():
    out, batch = _outputs(adversarial=True), _batch()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    closed = get_loss("forknet", adversarial_gate=5.0)(out, batch)  # no generator step
    opened = get_loss("forknet", adversarial_gate=-5.0)(out, batch)
    disc = sum(bce(out[f"adv_real_{k}"], torch.ones_like(out[f"adv_real_{k}"]))
               + bce(out[f"adv_fake_{k}"], torch.zeros_like(out[f"adv_fake_{k}"])) for k in "xgs")
    gen = sum(bce(out[f"adv_gen_{k}"], torch.ones_like(out[f"adv_gen_{k}"])) for k in "xgs")
    torch.testing.assert_close(closed["adv_discriminator"], disc)
    assert float(closed["adv_generator"]) == 0.0
    torch.testing.assert_close(opened["adv_generator"], gen)
    torch.testing.assert_close(opened["total"] - closed["total"], gen)


def test_ccpnet_style_loss_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 12, 8, 4, 8, generator=g)
    fine = torch.randint(0, 12, (2, 8, 4, 8), generator=g)
    fine[0, :2] = 255
    weight = (torch.rand(2, 2, 1, 2, generator=g) < 0.6).float()
    batch = {"label_fine": fine.to(torch.uint8), "label_weight": weight}
    got = get_loss("ccpnet_style")({"semantic": logits}, batch)
    logp = torch.log_softmax(logits, dim=1)
    total, count = 0.0, 0
    for b in range(2):
        for i in range(8):
            for j in range(4):
                for k in range(8):
                    lab = int(fine[b, i, j, k])
                    if lab == 255 or weight[b, i // 4, j // 4, k // 4] == 0:
                        continue
                    total -= float(logp[b, lab, i, j, k])
                    count += 1
    assert count > 0 and float(got["semantic"]) == pytest.approx(total / count, rel=1e-5)
    assert set(got) == {"semantic", "total"}
    every = get_loss("ccpnet_style", mask="all")({"semantic": logits}, batch)
    valid = fine != 255
    want = torch.nn.functional.cross_entropy(logits, torch.where(valid, fine, 0), reduction="none")[valid].mean()
    torch.testing.assert_close(every["semantic"], want)
    empty = get_loss("ccpnet_style")({"semantic": logits}, {**batch, "label_weight": torch.zeros_like(weight)})
    assert float(empty["total"]) == 0.0
    with pytest.raises(ValueError, match="mask"):
        get_loss("ccpnet_style", mask="occluded")
