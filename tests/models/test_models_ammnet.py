"""AMMNet (ammnet_prior, ammnet_segformer): parameter counts and names pinned to the authors'
(spec AMMNET_CVSFORMER.md §4.7, §5.4), the §5.3 check values of the authors' classes reproduced
with weights randomised by parameter name, the MiT-B2 encoder's pieces against plain references,
the mit_b2.pth loader, the align_corners=False lifting against the dense upsample + gather, and the
training-mode outputs (augmentation, adversarial logit)."""

import math
import zlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.models import get_model, list_models
from torchssc.models.ammnet import AMMNet, authors_key_map, augment_3d, load_authors_state_dict, unaugment_3d
from torchssc.models.lifting import lift_and_fill
from torchssc.models.mit import Attention, DropPath, MixVisionTransformer, load_mit_weights

GRID = (12, 12, 12)
IMAGE = (16, 24)
TINY = dict(feature=8, stem_channels=4, disc_plane=8, grid=GRID)


def _count(module: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def _batch(b=2, grid=GRID, image=IMAGE, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, hw = math.prod(grid), image[0] * image[1]
    pix = torch.stack([torch.randint(0, hw, (n,), generator=g) for _ in range(b)])
    mapping = torch.where(torch.rand(b, n, generator=g) < 0.3, pix, torch.full_like(pix, hw))
    return {
        "tsdf": torch.rand(b, 1, *grid, generator=g) * 2 - 1,
        "mapping": mapping,
        "prior": torch.randint(0, 14, (b, *image), generator=g),
        "rgb": torch.randn(b, 3, *image, generator=g),
        "label": torch.where(torch.rand(b, *grid, generator=g) < 0.1, 255, torch.randint(0, 12, (b, *grid), generator=g)),
        "label_weight": (torch.rand(b, *grid, generator=g) > 0.3).float(),
    }


# ---------------------------------------------------------------- counts and names
def test_registered_and_counts_prior():
    assert {"ammnet_prior", "ammnet_segformer"} <= set(list_models())
    with torch.device("meta"):
        model = get_model("ammnet_prior")
    assert _count(model) == _count(model, trainable=True) == 22_166_936
    assert _count(model) - _count(model.disc) == 20_853_335
    assert _count(model.disc) == 1_313_601
    assert _count(model.TSDFNet) == 7_381_399
    assert _count(model.complete) == 13_471_936
    assert _count(model.complete.feature2d_proc) == 449_332


def test_counts_segformer():
    with torch.device("meta"):
        model = get_model("ammnet_segformer")
    assert _count(model) == 46_442_800
    assert _count(model, trainable=True) == 22_246_512
    assert _count(model.encoder) == 24_196_288 and _count(model.encoder, trainable=True) == 0
    assert _count(model.head) == 528_908
    assert _count(model.complete) == 13_022_604


def test_authors_names():
    """§5.4: the top-level children and a sample of the authors' keys; the key map is the identity."""
    with torch.device("meta"):
        prior, seg = get_model("ammnet_prior"), get_model("ammnet_segformer")
    assert [n for n, _ in prior.named_children()] == ["TSDFNet", "complete", "disc"]
    assert [n for n, _ in seg.named_children()] == ["encoder", "head", "TSDFNet", "complete", "disc"]
    keys = set(prior.state_dict())
    for key in ("TSDFNet.oper1.6.weight", "TSDFNet.completion_layer2.3.downsample4.1.weight",
                "TSDFNet.enc_tsdf.0.0.bias", "TSDFNet.enc_tsdf.1.1.running_var",
                "complete.feature2d_proc.7.weight", "complete.pre_layer_R32.bias",
                "complete.classify_semantic.2.1.weight", "complete.DownScale.2.weight", "complete.DownScale.3.weight",
                "complete.UpScale.1.bias", "complete.semantic_layer1.0.downsample.1.weight",
                "disc.conv1.weight", "disc.layer4.downsample2.2.weight", "disc.linear.weight", "disc.logit.bias"):
        assert key in keys, key
    seg_keys = set(seg.state_dict())
    for key in ("encoder.patch_embed1.proj.weight", "encoder.block1.0.attn.kv.weight", "encoder.block1.2.attn.sr.weight",
                "encoder.block4.2.mlp.dwconv.dwconv.bias", "encoder.norm4.weight", "head.linear_c4.proj.weight",
                "head.linear_fuse.0.weight", "head.linear_fuse.1.running_mean", "head.linear_pred.bias"):
        assert key in seg_keys, key
    assert "encoder.block4.0.attn.sr.weight" not in seg_keys  # sr ratio 1 in the last stage
    assert all(k == v for k, v in authors_key_map(prior).items())


def test_load_authors_state_dict_roundtrip():
    a, b = AMMNet(**TINY), AMMNet(**TINY)
    report = load_authors_state_dict(b, {"module." + k: v for k, v in a.state_dict().items()})
    assert "missing 0; unexpected 0" in report
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    bad = dict(a.state_dict())
    bad["disc.logit.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="disc.logit.weight"):
        load_authors_state_dict(b, bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="front"):
        AMMNet(front="rgb")
    with pytest.raises(ValueError, match="proc_placement"):
        AMMNet(proc_placement="late")
    with pytest.raises(ValueError, match="divisible by 12"):
        AMMNet(**{**TINY, "grid": (8, 8, 8)})
    with pytest.raises(ValueError, match="prior"):
        AMMNet(**TINY)({"tsdf": torch.zeros(1, 1, *GRID),
                        "mapping": torch.zeros(1, math.prod(GRID), dtype=torch.long)})


# ---------------------------------------------------------------- §5.3 check values
def _randomise(model: nn.Module) -> None:
    """The spec's §5.1 ``randomise_``: every parameter drawn from a generator seeded by the CRC32
    of its NAME; BatchNorm running statistics reset."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            u = torch.rand(p.shape, generator=g, dtype=torch.float32) * 2 - 1
            if p.dim() >= 2:
                p.copy_(u * math.sqrt(3.0 / p[0].numel()))
            elif name.endswith(".weight"):
                p.copy_(1 + 0.1 * u)
            else:
                p.copy_(0.1 * u)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)


def _check_inputs():
    """The spec's §5.1 ``make_inputs(B=1, seed=0)`` in the batch layout (mapping2d is not needed:
    our lifting reads ``mapping`` directly)."""
    g = torch.Generator().manual_seed(0)
    seg = torch.randint(0, 14, (1, 480, 640), generator=g)
    tsdf = torch.rand(1, 1, 60, 36, 60, generator=g) * 2 - 1
    pix = torch.stack([torch.randperm(307200, generator=g)[:129600]])
    vis = torch.rand(1, 129600, generator=g) < 0.25
    mapping = torch.where(vis, pix, torch.full_like(pix, 307200))
    img = torch.randn(1, 3, 480, 640, generator=g)
    return {"tsdf": tsdf, "mapping": mapping, "prior": seg, "rgb": img}


def _assert_close(value, expected, rel=1e-4, abs_=2e-5):
    assert value == pytest.approx(expected, rel=rel, abs=abs_)


def _check_model(name: str):
    model = get_model(name)
    _randomise(model)
    model.eval()
    batch = _check_inputs()
    assert int((batch["mapping"] != 307200).sum()) == 32_438  # the spec's input facts
    assert batch["tsdf"].mean().item() == pytest.approx(0.0025395, abs=1e-6)
    with torch.no_grad():
        out = model(batch)
    return model, out


@pytest.mark.slow
def test_check_values_prior():
    """§5.3 "DLabv3 assembly" (feature2d_proc right after the projection, ThreeDinit kept)."""
    model, out = _check_model("ammnet_prior")
    p = out["semantic"]
    assert p.shape == (1, 12, 60, 36, 60)
    for got, want in zip((p.mean(), p.std(), p.min(), p.max()), (-0.104378, 0.519909, -1.9729, 2.20636)):
        _assert_close(got.item(), want)
    want = [0.0494146, -0.498332, 0.1669, 0.663696, 0.073106, 0.167036, 0.73036, 0.211854, -0.913361, 0.242268,
            -0.212937, -0.11385]
    for got, w in zip(p[0, :, 30, 18, 30].tolist(), want):
        _assert_close(got, w)
    with torch.no_grad():
        _assert_close(model.disc(p).item(), 0.736672)
        label = torch.randint(0, 12, (1, 60, 36, 60), generator=torch.Generator().manual_seed(1))
        _assert_close(model.disc(F.one_hot(label, 12).permute(0, 4, 1, 2, 3).float()).item(), 0.516051)


@pytest.mark.slow
def test_check_values_segformer():
    """§5.3 SegFormer variant (the authors' VoxelSSC with voxelSSC.yaml)."""
    model, out = _check_model("ammnet_segformer")
    p, s = out["semantic"], out["semantic2d"]
    for got, want in zip((p.mean(), p.std(), p.min(), p.max()), (-0.229407, 0.980728, -4.96995, 4.92604)):
        _assert_close(got.item(), want)
    want = [0.0373317, -1.05266, 0.285544, 1.00103, -0.257049, 0.763942, 1.13913, 0.533927, -1.4881, 0.187829,
            0.141132, -0.421125]
    for got, w in zip(p[0, :, 30, 18, 30].tolist(), want):
        _assert_close(got, w)
    assert s.shape == (1, 12, 480, 640)
    for got, want in zip((s.mean(), s.std(), s.min(), s.max()), (-0.0568602, 0.687212, -2.23324, 2.4573)):
        _assert_close(got.item(), want)
    with torch.no_grad():
        _assert_close(model.disc(p).item(), 1.19565)


# ---------------------------------------------------------------- lifting, placement, training outputs
def test_lift_align_corners_false_equals_dense_upsample_and_gather():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 5, 4, 6, generator=g)
    batch = _batch(b=2)
    mapping = batch["mapping"]
    big = F.interpolate(feats, size=IMAGE, mode="bilinear", align_corners=False)        # (B, C, H, W)
    table = torch.cat([big.flatten(2), big.new_zeros(2, 5, 1)], 2)                      # + the "no pixel" column
    dense = torch.stack([table[b][:, mapping[b]] for b in range(2)]).view(2, 5, *GRID)
    dense = dense + F.avg_pool3d(dense, 3, 1, 1) * (dense == 0)
    ours = lift_and_fill(feats, mapping, GRID, IMAGE, align_corners=False)
    torch.testing.assert_close(ours, dense, rtol=1e-5, atol=1e-6)


def test_placements_differ_and_fill_matches_reference():
    """``proc_placement="fill"`` = stem on the filled one-hot; ``"projection"`` = fill of the stem's
    output (both against the dense one-hot reference)."""
    torch.manual_seed(0)
    model = AMMNet(**TINY).eval()
    batch = _batch(b=1)
    mapping, prior = batch["mapping"][0], batch["prior"][0].flatten()
    onehot = torch.zeros(14, math.prod(GRID))
    has = mapping < IMAGE[0] * IMAGE[1]
    onehot[:, has] = F.one_hot(prior[mapping[has]], 14).t().float()
    onehot = onehot.view(1, 14, *GRID)
    proc = model.complete.feature2d_proc
    with torch.no_grad():
        x, _ = model.lift(batch)
        y = proc(onehot)
        torch.testing.assert_close(x, y + F.avg_pool3d(y, 3, 1, 1) * (y == 0))
        model.proc_placement = "fill"
        x2, _ = model.lift(batch)
        torch.testing.assert_close(x2, proc(onehot + F.avg_pool3d(onehot, 3, 1, 1) * (onehot == 0)))
    assert not torch.allclose(x, x2)


def test_augment_roundtrip():
    x = torch.randn(2, 3, 4, 5, 4)
    for bits in range(8):
        flips = tuple(bool(bits >> k & 1) for k in range(3))
        torch.testing.assert_close(unaugment_3d(augment_3d([x], flips)[0], flips), x)


@pytest.mark.parametrize("front", ["prior", "segformer"])
def test_training_outputs(front):
    """Training: semantic = the un-augmented semantic_augmented; adv_logit = disc(augmented * weight)
    without gradient to the discriminator's weights; eval: no augmentation, deterministic."""
    import numpy as np

    torch.manual_seed(0)
    model = AMMNet(front=front, **TINY)
    batch = _batch(b=2, image=(32, 32))
    np.random.seed(1)
    out = model.train()(batch)
    flips = tuple(out["augmentation"].tolist())
    torch.testing.assert_close(out["semantic"], unaugment_3d(out["semantic_augmented"], flips))
    assert out["adv_logit"].shape == (2, 1)
    out["adv_logit"].sum().backward()
    assert all(p.grad is None for p in model.disc.parameters())
    assert model.complete.pre_layer_R11.weight.grad is not None
    if front == "segformer":
        assert out["semantic2d"].shape == (2, 12, 32, 32)
        assert all(p.grad is None for p in model.encoder.parameters())
        # frozen, yet in train mode with the model: its DropPath draws (as released)
        assert model.encoder.training and not any(p.requires_grad for p in model.encoder.parameters())
        image = torch.randn(8, 3, 32, 32)
        with torch.no_grad():
            assert not torch.equal(model.encoder(image)[3], model.encoder(image)[3])
            model.encoder.eval()
            assert torch.equal(model.encoder(image)[3], model.encoder(image)[3])
    model.eval()
    with torch.no_grad():
        a, b = model(batch), model(batch)
    assert set(a) == ({"semantic"} | ({"semantic2d"} if front == "segformer" else set()))
    torch.testing.assert_close(a["semantic"], b["semantic"])


# ---------------------------------------------------------------- MiT-B2 pieces
def test_attention_against_plain_softmax():
    torch.manual_seed(0)
    attn = Attention(10, 2, sr=2).eval()
    x = torch.randn(2, 4 * 6, 10)
    b, n, c = x.shape
    q = attn.q(x).view(b, n, 2, 5).transpose(1, 2)
    src = attn.norm(attn.sr(x.transpose(1, 2).reshape(b, c, 4, 6)).flatten(2).transpose(1, 2))
    kv = attn.kv(src)
    k, v = kv[..., :10].reshape(b, -1, 2, 5).transpose(1, 2), kv[..., 10:].reshape(b, -1, 2, 5).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(5), dim=-1)
    want = attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))
    torch.testing.assert_close(attn(x, 4, 6), want)


def test_drop_path():
    x = torch.ones(400, 3, 2)
    dp = DropPath(0.25)
    assert torch.equal(dp.eval()(x), x)
    torch.manual_seed(0)
    y = dp.train()(x)
    per_sample = y.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1))  # whole samples dropped
    assert 0.15 < (per_sample[:, 0] == 0).float().mean().item() < 0.35


def test_mit_shapes_and_weights_file(tmp_path):
    torch.manual_seed(0)
    enc = MixVisionTransformer().eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        outs = enc(x)
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 320, 4, 6), (1, 512, 2, 3)]
    state = {**enc.state_dict(), "head.weight": torch.zeros(1000, 512), "head.bias": torch.zeros(1000)}
    del state["norm4.bias"]
    torch.save(state, tmp_path / "mit_b2.pth")
    fresh = MixVisionTransformer().eval()
    report = load_mit_weights(fresh, tmp_path / "mit_b2.pth")
    assert "\n" not in report
    assert "missing 1 (norm4.bias)" in report and "unexpected 2 (head.weight, head.bias)" in report
    torch.testing.assert_close(fresh.block2[1].attn.kv.weight, enc.block2[1].attn.kv.weight)
    model = get_model("ammnet_segformer", **{**TINY, "feature": 8}, encoder_weights=str(tmp_path / "mit_b2.pth"))
    assert model.encoder_report == report
    assert not any(p.requires_grad for p in model.encoder.parameters())
    (tmp_path / "bad.pth").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="bad.pth"):
        load_mit_weights(fresh, tmp_path / "bad.pth")
