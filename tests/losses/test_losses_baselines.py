"""Baseline losses (sscnet_balanced, vvnet, wlj) on hand-made cases and against loop references."""

from __future__ import annotations

import math

import pytest
import torch

from torchssc.losses import get_loss, list_losses
from torchssc.losses.baselines import sscnet_sample_weights


def _ce(logits_vec: torch.Tensor, target: int) -> float:
    """Cross-entropy of one voxel, by hand."""
    return float(-logits_vec[target] + torch.logsumexp(logits_vec, 0))


def _case(seed: int = 0, b: int = 2, shape=(3, 4, 5), c: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, *shape, generator=g, dtype=torch.float64)
    label = torch.randint(0, c, (b, *shape), generator=g)
    label[torch.rand(b, *shape, generator=g) < 0.4] = 0
    label[torch.rand(b, *shape, generator=g) < 0.15] = 255
    tsdf = torch.rand(b, 1, *shape, generator=g, dtype=torch.float64) * 2 - 1
    return {"semantic": logits}, {"label": label, "tsdf": tsdf}


def test_registered():
    assert {"sscnet_balanced", "vvnet", "wlj"} <= set(list_losses())


def test_wlj_matches_loop_and_ignores_255():
    outputs, batch = _case(seed=1)
    loss = get_loss("wlj", num_classes=4)(outputs, batch)
    logits, label = outputs["semantic"], batch["label"]
    num = den = 0.0
    for idx in torch.nonzero(label != 255).tolist():
        y = label[tuple(idx)].item()
        w = 0.05 if y == 0 else 1.0
        num += w * _ce(logits[idx[0], :, idx[1], idx[2], idx[3]], y)
        den += w
    assert set(loss) >= {"total", "semantic"}
    assert math.isclose(float(loss["total"]), num / den, rel_tol=1e-10)
    # an ignored voxel's logits do not matter
    mask = (label == 255)[:, None].expand_as(logits)
    changed = {"semantic": torch.where(mask, logits * 7 + 3, logits)}
    assert math.isclose(float(get_loss("wlj", num_classes=4)(changed, batch)["total"]), num / den, rel_tol=1e-10)


def test_wlj_all_ignored_is_zero_not_nan():
    outputs, batch = _case(seed=2)
    batch["label"].fill_(255)
    assert float(get_loss("wlj", num_classes=4)(outputs, batch)["total"]) == 0.0


def test_vvnet_mask_by_hand():
    logits = torch.zeros(1, 3, 1, 1, 4, dtype=torch.float64)
    logits[0, :, 0, 0, :] = torch.tensor([[2.0, 0.0, 1.0, 3.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 4.0, -1.0]])
    label = torch.tensor([[[[1, 0, 0, 255]]]])  # fg (visible), empty occluded, empty visible, 255 occluded
    tsdf = torch.tensor([[[[[0.5, -0.3, 0.4, -0.9]]]]], dtype=torch.float64)
    loss = get_loss("vvnet", num_classes=3)({"semantic": logits}, {"label": label, "tsdf": tsdf})
    want = (_ce(logits[0, :, 0, 0, 0], 1) + _ce(logits[0, :, 0, 0, 1], 0)) / 2
    assert math.isclose(float(loss["total"]), want, rel_tol=1e-12)


def test_vvnet_matches_loop_on_random_case():
    outputs, batch = _case(seed=3)
    loss = float(get_loss("vvnet", num_classes=4)(outputs, batch)["total"])
    logits, label, tsdf = outputs["semantic"], batch["label"], batch["tsdf"][:, 0]
    terms = [
        _ce(logits[i, :, a, b, c], label[i, a, b, c].item())
        for i, a, b, c in torch.nonzero(torch.ones_like(label)).tolist()
        if label[i, a, b, c] != 255 and (0 < label[i, a, b, c] < 4 or tsdf[i, a, b, c] < 0)
    ]
    assert len(terms) > 10
    assert math.isclose(loss, sum(terms) / len(terms), rel_tol=1e-10)


def test_sscnet_weights_hand_made():
    # 1 x 8 voxels: two occluded foreground voxels -> two draws; a single valid candidate.
    label = torch.tensor([[1, 2, 3, 0, 0, 255, 0, 255]])
    tsdf = torch.tensor([[-0.9, -0.8, 0.5, -0.7, 0.2, -0.9, 0.9, 0.1]])
    g = torch.Generator().manual_seed(0)
    w = sscnet_sample_weights(label, tsdf, g, num_classes=4)
    # candidates: voxel 3 (empty, occluded) and voxel 5 (255, occluded, skipped if drawn)
    assert w[0, :3].tolist() == [1.0, 1.0, 1.0]
    assert w[0, [4, 5, 6, 7]].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert w[0, 3] in (0.0, 1.0)
    # over many draws voxel 3 is picked with probability 1 - (1/2)^2 = 0.75
    hits = sum(float(sscnet_sample_weights(label, tsdf, g, num_classes=4)[0, 3]) for _ in range(400))
    assert 0.65 * 400 < hits < 0.85 * 400
    # no occluded foreground -> no empty voxel at all
    w0 = sscnet_sample_weights(label, tsdf.abs(), g, num_classes=4)
    assert w0[0].tolist() == [1.0, 1.0, 1.0, 0, 0, 0, 0, 0]


def test_sscnet_weights_properties_on_random_case():
    outputs, batch = _case(seed=4, shape=(9, 7, 11))
    label, tsdf = batch["label"], batch["tsdf"][:, 0]
    w = sscnet_sample_weights(label, tsdf, torch.Generator().manual_seed(5), num_classes=4)
    fg = (label > 0) & (label < 4)
    assert bool((w[fg] == 1).all())
    extra = (w == 1) & ~fg
    assert bool((label[extra] == 0).all()) and bool((tsdf[extra] < -0.5).all())  # only occluded empty
    for i in range(label.shape[0]):
        n_occ = int((fg[i] & (tsdf[i] < -0.5)).sum())
        assert 0 < int(extra[i].sum()) <= n_occ


def test_sscnet_loss_value_seeding_and_per_sample_mean():
    outputs, batch = _case(seed=6, shape=(9, 7, 11))
    loss_fn = get_loss("sscnet_balanced", num_classes=4, seed=3)
    first = float(loss_fn(outputs, batch)["total"])
    second = float(loss_fn(outputs, batch)["total"])
    assert first != second  # re-drawn every call
    again = get_loss("sscnet_balanced", num_classes=4, seed=3)
    assert float(again(outputs, batch)["total"]) == first  # same seed, same call number -> same draw
    # value: recompute the weights of call 0 with the documented generator seed
    g = torch.Generator().manual_seed(3 * 1_000_003 + 0)
    label, tsdf, logits = batch["label"], batch["tsdf"][:, 0], outputs["semantic"]
    w = sscnet_sample_weights(label, tsdf, g, num_classes=4)
    per_sample = []
    for i in range(label.shape[0]):
        num = den = 0.0
        for a, b, c in torch.nonzero(w[i] > 0).tolist():
            num += _ce(logits[i, :, a, b, c], label[i, a, b, c].item())
            den += 1.0
        per_sample.append(num / max(den, 1.0))
    assert math.isclose(first, sum(per_sample) / len(per_sample), rel_tol=1e-10)


def test_losses_check_inputs():
    outputs, batch = _case(seed=7)
    del batch["tsdf"]
    with pytest.raises(ValueError, match="tsdf"):
        get_loss("vvnet")(outputs, batch)
    with pytest.raises(ValueError, match="label"):
        get_loss("wlj")(outputs, {"label": batch["label"][:, :2]})


def test_losses_backpropagate():
    outputs, batch = _case(seed=8)
    logits = outputs["semantic"].clone().requires_grad_()
    for name in ("sscnet_balanced", "vvnet", "wlj"):
        logits.grad = None
        get_loss(name, num_classes=4)({"semantic": logits}, batch)["total"].backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0
