"""AMMNet's training step against a naive transcription of the spec's step (AMMNET_CVSFORMER.md
§4.5, §4.6), written plainly here: two iterations on a tiny grid (the second one exercises the
zero-gradient AdamW updates that zero_grad(set_to_none=False) leaves), every weight, BatchNorm
statistic and loss compared; the loss terms; the shuffle / erase fakes; the cosine schedule."""

import copy
import math
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.engine.builders import lr_factor, parameter_groups
from torchssc.losses import get_loss
from torchssc.losses.ammnet import AMMNetLoss, erase_labels, real_volume, shuffle_labels
from torchssc.models.ammnet import AMMNet

GRID = (12, 12, 12)
IMAGE = (16, 24)
TINY = dict(feature=8, stem_channels=4, disc_plane=8, grid=GRID)


def _batch(seed: int, b: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, hw = math.prod(GRID), IMAGE[0] * IMAGE[1]
    pix = torch.stack([torch.randint(0, hw, (n,), generator=g) for _ in range(b)])
    mapping = torch.where(torch.rand(b, n, generator=g) < 0.2, pix, torch.full_like(pix, hw))
    label = torch.randint(0, 12, (b, *GRID), generator=g)
    label[torch.rand(b, *GRID, generator=g) < 0.1] = 255
    return {
        "tsdf": torch.rand(b, 1, *GRID, generator=g) * 2 - 1,
        "mapping": mapping,
        "prior": torch.randint(0, 14, (b, *IMAGE), generator=g),
        "label": label,
        "label_weight": (torch.rand(b, *GRID, generator=g) > 0.3).float(),
    }


def _seed(s: int) -> None:
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


# ---------------------------------------------------------------- the naive transcription
def _naive_generator(model, batch):
    """The authors' generator forward, plainly: one-hot image -> gather by voxel -> feature2d_proc ->
    ThreeDinit -> aug3d (np.random) -> the modulated U-Net. Returns (pred in augmented orientation, aug)."""
    b = batch["tsdf"].shape[0]
    onehot = F.one_hot(batch["prior"], 14).permute(0, 3, 1, 2).float().flatten(2)      # (B, 14, H*W)
    onehot = torch.cat([onehot, torch.zeros(b, 14, 1)], 2)                             # the "no pixel" column
    vol = torch.stack([onehot[i][:, batch["mapping"][i]] for i in range(b)]).view(b, 14, *GRID)
    c = model.complete
    seg = c.feature2d_proc(vol)
    seg = seg + F.avg_pool3d(seg, 3, stride=1, padding=1) * (seg == 0).float()
    tsdf_feat = model.TSDFNet(batch["tsdf"])
    flip_x = np.random.rand() > 0.5
    if flip_x:
        seg, tsdf_feat = torch.flip(seg, [2]), torch.flip(tsdf_feat, [2])
    flip_z = np.random.rand() > 0.5
    if flip_z:
        seg, tsdf_feat = torch.flip(seg, [4]), torch.flip(tsdf_feat, [4])
    perm_xz = np.random.rand() > 0.5
    if perm_xz:
        seg, tsdf_feat = seg.permute(0, 1, 4, 3, 2), tsdf_feat.permute(0, 1, 4, 3, 2)
    seg = seg * (1 + c.pre_layer_R11(tsdf_feat).sigmoid()) + c.pre_layer_R12(tsdf_feat)
    s1 = c.semantic_layer1(seg)
    s2 = c.semantic_layer2(s1)
    t2 = c.DownScale(tsdf_feat)
    u1 = c.classify_semantic[0](s2) + s1
    u1 = u1 * (1 + c.pre_layer_R21(t2).sigmoid()) + c.pre_layer_R22(t2)
    u2 = c.classify_semantic[1](u1)
    t3 = c.UpScale(t2)
    u2 = u2 * (1 + c.pre_layer_R31(t3).sigmoid()) + c.pre_layer_R32(t3)
    return c.classify_semantic[2](u2), (flip_x, flip_z, perm_xz)


def _naive_shuffle(labels_onehot):
    labels = labels_onehot.argmax(1)
    noise_labels = labels.clone()
    for i in range(labels.shape[0]):
        exist = labels[i].unique()[1:]
        n = random.randint(1, len(exist))
        picked = exist[torch.randperm(len(exist))][:n]
        for c in picked:
            indices = torch.nonzero(labels[i] == c)
            prob = random.random() * 0.8 + 0.1
            num = min(int(len(indices) * prob), max(10, len(indices)))
            sample = indices[torch.randint(0, len(indices), (num,))]
            noise_c = random.randint(1, 11)
            if c == noise_c:
                noise_c = c - 1 if c > 1 else random.randint(2, 11)
            for v in sample:  # voxel by voxel
                noise_labels[i, v[0], v[1], v[2]] = noise_c
    return F.one_hot(noise_labels, 12).permute(0, 4, 1, 2, 3).float()


def _naive_erase(voxel, label):
    valid = (label != 0) & (label != 255)
    for i in range(voxel.shape[0]):
        pos = torch.where(valid[i])
        num = len(pos[0])
        prob = random.random() * 0.8 + 0.1
        idx = random.sample(range(num), int(num * prob))
        for k in idx:
            voxel[i, :, pos[0][k], pos[1][k], pos[2][k]] = 0
    return voxel


def _naive_iteration(model, opt_g, opt_d, batch):
    b = batch["tsdf"].shape[0]
    label3d = batch["label"].view(b, -1)
    label_weight = batch["label_weight"].view(b, -1).bool()
    bce = nn.BCEWithLogitsLoss()
    # A. discriminator step
    for p in model.disc.parameters():
        p.requires_grad = True
    with torch.no_grad():
        pred, _ = _naive_generator(model, batch)
    pred = pred * label_weight.float().view(b, 1, *GRID)
    lab = label3d.clone()
    lab[(lab == 255) | (label_weight == 0)] = 0
    lab = F.one_hot(lab.view(b, *GRID), 12).permute(0, 4, 1, 2, 3).float()
    gt = model.disc(lab)
    shuffled = model.disc(_naive_shuffle(lab.clone()))
    erased = model.disc(_naive_erase(lab.clone(), label3d.view(b, *GRID)))
    fake = model.disc(pred.detach())
    loss_d = bce(fake, torch.zeros(b, 1)) + bce(gt, torch.ones(b, 1)) + bce(shuffled, torch.zeros(b, 1)) \
        + bce(erased, torch.zeros(b, 1))
    loss_d.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10)
    opt_d.step()
    opt_d.zero_grad(set_to_none=False)
    # B. generator step
    for p in model.disc.parameters():
        p.requires_grad = False
    pred, (flip_x, flip_z, perm_xz) = _naive_generator(model, batch)
    loss_adv = bce(model.disc(pred * label_weight.float().view(b, 1, *GRID)), torch.ones(b, 1))
    if perm_xz:
        pred = pred.permute(0, 1, 4, 3, 2)
    if flip_z:
        pred = pred.flip([4])
    if flip_x:
        pred = pred.flip([2])
    pred = pred.flatten(2).permute(0, 2, 1)
    keep = label_weight & (label3d != 255)
    loss3d = nn.CrossEntropyLoss(ignore_index=255, label_smoothing=0.2)(pred[keep], label3d[keep])
    loss = loss3d + loss_adv * 0.005
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10)
    opt_g.step()
    opt_g.zero_grad(set_to_none=False)
    for p in model.disc.parameters():
        p.requires_grad = True
    return loss_d.item(), loss3d.item(), loss_adv.item(), loss.item()


def _authors_adamw(model):
    """The authors' optimiser factory: ndim > 1 and not a bias -> weight decay 0.05, else 0."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1 and not n.endswith(".bias")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not (p.ndim > 1 and not n.endswith(".bias"))]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], lr=1e-3)


def test_step_equals_naive_transcription():
    torch.manual_seed(0)
    ours = AMMNet(**TINY).train()
    naive = copy.deepcopy(ours)
    batches = [_batch(1), _batch(2)]

    loss_fn = get_loss("ammnet")
    optimizer = torch.optim.AdamW(parameter_groups(ours, 0.05), lr=1e-3)
    step = loss_fn.training_step(ours, optimizer)
    got = []
    _seed(7)
    for batch in batches:  # as engine.train.train_one_epoch drives it
        extra = step.discriminator_step(batch)
        terms = {**extra, **loss_fn(ours(batch), batch)}
        step.generator_step(terms["total"])
        got.append((terms["discriminator"].item(), terms["semantic"].item(), terms["adversarial"].item(),
                    terms["total"].item()))

    opt_g, opt_d = _authors_adamw(naive), _authors_adamw(naive)
    _seed(7)
    want = [_naive_iteration(naive, opt_g, opt_d, batch) for batch in batches]

    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-5, abs=1e-6)
    ours_sd, naive_sd = ours.state_dict(), naive.state_dict()
    for key, value in naive_sd.items():
        torch.testing.assert_close(ours_sd[key], value, rtol=1e-6, atol=1e-7, msg=key)  # the quirks are ~5e-5
    torch.manual_seed(0)
    start = dict(AMMNet(**TINY).named_parameters())  # the initial weights (same construction seed)
    unused = [n for n, p in ours.named_parameters() if p.grad is None]
    # the never-used stride-1 resizing branches (the authors' layout) have no gradient and stay put;
    # every other parameter moved
    assert unused and all(".downsample2." in n or ".downsample3." in n or ".downsample4." in n for n in unused)
    for name, p in ours.named_parameters():
        assert torch.equal(p, start[name]) == (name in unused), name
    # after the generator step, the discriminator holds zero (not None) gradients: the next
    # discriminator step's optimiser and this one's both decay them (zero_grad(set_to_none=False))
    assert ours.disc.linear.weight.grad is not None and not ours.disc.linear.weight.grad.any()
    # the discriminator optimiser stays at lr 1e-3
    assert all(g["lr"] == 1e-3 for g in step.disc_optimizer.param_groups)


def test_loss_terms():
    torch.manual_seed(0)
    logits = torch.randn(2, 12, *GRID, requires_grad=True)
    batch = _batch(3)
    out = AMMNetLoss()({"semantic": logits, "adv_logit": torch.tensor([[0.3], [-0.2]])}, batch)
    keep = (batch["label_weight"] != 0) & (batch["label"] != 255)
    flat = logits.permute(0, 2, 3, 4, 1)[keep]
    # label smoothing 0.2 by hand: 0.8 * CE + 0.2 * mean over classes of -log p
    logp = flat.log_softmax(1)
    target = batch["label"][keep]
    want = (-(0.8 * logp.gather(1, target[:, None]).squeeze(1)) - 0.2 * logp.mean(1)).mean()
    torch.testing.assert_close(out["semantic"], want)
    adv = -F.logsigmoid(torch.tensor([0.3, -0.2])).mean()
    torch.testing.assert_close(out["adversarial"], adv)
    torch.testing.assert_close(out["total"], want + 0.005 * adv)
    # the 2D term: logits at the mapped pixels against their voxels' labels
    s2d = torch.randn(2, 12, *IMAGE)
    out2 = AMMNetLoss()({"semantic": logits, "semantic2d": s2d}, batch)
    rows, targets = [], []
    for b in range(2):
        for v in range(math.prod(GRID)):
            p = int(batch["mapping"][b, v])
            if p < IMAGE[0] * IMAGE[1] and int(batch["label"][b].flatten()[v]) != 255:
                rows.append(s2d[b, :, p // IMAGE[1], p % IMAGE[1]])
                targets.append(int(batch["label"][b].flatten()[v]))
    want2 = F.cross_entropy(torch.stack(rows), torch.tensor(targets), label_smoothing=0.2)
    torch.testing.assert_close(out2["semantic2d"], want2)
    torch.testing.assert_close(out2["total"], want + 0.25 * want2)


def test_fakes():
    batch = _batch(4)
    real = real_volume(batch["label"], batch["label_weight"])
    assert torch.equal(real.sum(1), torch.ones(2, *GRID))
    assert (real.argmax(1)[(batch["label"] == 255) | (batch["label_weight"] == 0)] == 0).all()
    _seed(0)
    shuffled = shuffle_labels(real.clone())
    assert torch.equal(shuffled.sum(1), torch.ones(2, *GRID))
    changed = shuffled.argmax(1) != real.argmax(1)
    assert changed.any() and (real.argmax(1)[changed] != 0).all()  # class 0 (the smallest) is never picked
    _seed(0)
    erased = erase_labels(real.clone(), batch["label"])
    zero = erased.sum(1) == 0
    valid = (batch["label"] != 0) & (batch["label"] != 255)
    assert zero.any() and not (zero & ~valid).any()
    for b in range(2):
        frac = zero[b].sum().item() / valid[b].sum().item()
        assert 0.1 - 1e-3 <= frac < 0.9 + 1e-3


def test_cosine_schedule_per_epoch():
    cfg = {"optim": {"schedule": "cosine", "lr": 1e-3, "lr_min": 1e-7}, "train": {"epochs": 150}}
    f = lr_factor(cfg, 150 * 199, 199)
    for it, epoch in ((0, 1), (198, 1), (199, 2), (149 * 199 + 5, 150)):
        want = 1e-7 + 0.5 * (1e-3 - 1e-7) * (1 + math.cos(math.pi * (epoch - 1) / 150))
        assert f(it) * 1e-3 == pytest.approx(want, rel=1e-12)


def test_step_refuses_other_optimisers():
    model = AMMNet(**TINY)
    with pytest.raises(ValueError, match="adamw"):
        AMMNetLoss().training_step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="fp16"):
        AMMNetLoss().training_step(model, torch.optim.AdamW(model.parameters()), amp="fp16")
