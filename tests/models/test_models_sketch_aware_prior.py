"""SketchAwareSSC on the 2D semantic prior, and the TSDF-only ablation: registration, parameter
counts, batch keys, fast == naive paths, a training step where every parameter learns."""

import pytest
import torch
import torch.nn as nn

import _sketch_aware_reference as ref
from torchssc.losses import get_loss
from torchssc.models import get_model, list_models
from torchssc.models.sketch_aware import SketchAwareSSC, count_parameters

GRID = (8, 4, 8)
IMAGE = (12, 16)
SMALL = dict(width=8, stem_channels=4, latent_channels=4, cvae_hidden=4, num_samples=3)
PRIOR_NAMES = ("sketch_aware_ssc_prior", "sketch_aware_ssc_prior_lite")
TSDF_NAMES = ("sketch_aware_ssc_tsdf", "sketch_aware_ssc_tsdf_lite")


def _batch(b=2, grid=GRID, image=IMAGE, seed=0):
    """Synthetic tensors in the release's batch contract: no RGB, a (B, H, W) NYU-13 prior."""
    g = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1] * grid[2]
    hw = image[0] * image[1]
    mapping = torch.randint(0, hw, (b, n), generator=g)
    mapping[torch.rand(b, n, generator=g) > 0.3] = hw
    return {
        "prior": torch.randint(0, 14, (b, *image), generator=g),
        "tsdf": torch.randn(b, 1, *grid, generator=g).clamp(-1, 1),
        "mapping": mapping,
        "sketch_gt": torch.randint(0, 2, (b, *grid), generator=g),
        "label": torch.where(torch.rand(b, *grid, generator=g) < 0.1, 255,
                             torch.randint(0, 12, (b, *grid), generator=g)),
        "label_weight": (torch.rand(b, *grid, generator=g) > 0.5).float(),
    }


def _model(semantic_input="prior", **kw):
    torch.manual_seed(0)
    return get_model("sketch_aware_ssc_prior", **{**SMALL, "semantic_input": semantic_input, **kw})


def test_registered():
    assert set(PRIOR_NAMES + TSDF_NAMES) <= set(list_models())


@pytest.mark.parametrize("name, trainable", [
    ("sketch_aware_ssc_prior", 4_130_998), ("sketch_aware_ssc_prior_lite", 239_602),
    ("sketch_aware_ssc_tsdf", 4_128_950), ("sketch_aware_ssc_tsdf_lite", 239_090),
])
def test_parameter_counts(name, trainable):
    """Pinned in docs/model.md. The prior model is the paper's 4,391,350 without the RGB
    reduction (2048 x 128 conv + BN: 262,400) plus the prior's 14 x 128 conv + BN (2,048)."""
    with torch.device("meta"):
        model = get_model(name)
    assert model.backbone is None
    assert count_parameters(model) == count_parameters(model, trainable=False) == trainable
    with torch.device("meta"):
        paper = get_model("sketch_aware_ssc")
    if name == "sketch_aware_ssc_prior":
        assert trainable == count_parameters(paper) - count_parameters(paper.stage2.reduce) + 14 * 128 + 2 * 128
    if name == "sketch_aware_ssc_tsdf":
        assert trainable == count_parameters(paper) - count_parameters(paper.stage2.reduce)


def test_prior_embedding_is_a_pointwise_conv_bn_relu_to_the_width():
    model = get_model("sketch_aware_ssc_prior")
    conv, norm, relu = model.stage2.seg_embed
    assert isinstance(conv, nn.Conv3d) and conv.kernel_size == (1, 1, 1) and conv.bias is None
    assert (conv.in_channels, conv.out_channels) == (14, 128)
    assert isinstance(norm, nn.BatchNorm3d) and isinstance(relu, nn.ReLU)
    assert not hasattr(model.stage2, "reduce")
    tsdf_only = get_model("sketch_aware_ssc_prior", semantic_input="none", width=8)
    assert not hasattr(tsdf_only.stage2, "seg_embed") and not hasattr(tsdf_only.stage2, "reduce")


@pytest.mark.parametrize("semantic_input", ["prior", "none"])
def test_training_step_every_parameter_learns(semantic_input):
    model = _model(semantic_input)
    batch = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.stage2.net.classifier[1].weight.detach().clone()
    out = model(batch)
    assert out["semantic"].shape == (2, 12, *GRID)
    losses = get_loss("sketch_aware")(out, batch)
    assert set(losses) == {"semantic", "sketch_raw", "sketch_posterior", "sketch_prior", "kl", "total"}
    losses["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []                  # no dead layer (plain DDP would refuse one)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    if semantic_input == "prior":
        assert model.stage2.seg_embed[0].weight.grad.abs().sum() > 0
    assert not torch.equal(model.stage2.net.classifier[1].weight, before)


@pytest.mark.parametrize("name", PRIOR_NAMES[1:] + TSDF_NAMES[1:])
def test_lite_variants_train_a_step_with_every_gradient(name):
    torch.manual_seed(0)
    model = get_model(name)
    batch = _batch(b=2, grid=(8, 8, 8), image=(24, 32))
    get_loss("sketch_aware")(model(batch), batch)["total"].backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_prior_lite_full_nyu_size_inference():
    torch.manual_seed(0)
    model = get_model("sketch_aware_ssc_prior_lite").eval()
    batch = _batch(b=1, grid=(60, 36, 60), image=(480, 640))
    with torch.no_grad():
        out = model({k: batch[k] for k in ("prior", "tsdf", "mapping")})
    assert out["semantic"].shape == (1, 12, 60, 36, 60)
    assert set(out) == {"semantic", "sketch_raw", "sketch_prior"}


@pytest.mark.parametrize("semantic_input", ["prior", "none"])
def test_fast_path_equals_naive_path_in_eval(semantic_input):
    model = _model(semantic_input).eval()
    batch = _batch()
    with torch.no_grad():
        fast = model(batch)
        naive = ref.sketch_aware_naive(model, batch)
    assert set(fast) == set(naive)
    for key in fast:
        torch.testing.assert_close(fast[key], naive[key], atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("semantic_input, recompute", [("prior", True), ("prior", False), ("none", True)])
def test_fast_training_step_equals_naive_step(semantic_input, recompute):
    """Outputs, loss, every gradient and every BatchNorm running statistic, in float64 so that
    the comparison is tight (float32 rounding, amplified by training-mode BatchNorm on a tiny
    grid, reaches ~1e-4); the prior's 1x1x1 embedding is recomputed in the backward pass when
    ``recompute``."""
    results = []
    for naive in (False, True):
        model = _model(semantic_input, recompute_activations=recompute).double()
        batch = _batch()
        batch["tsdf"] = batch["tsdf"].double()
        torch.manual_seed(123)
        out = ref.sketch_aware_naive(model, batch) if naive else model(batch)
        loss = get_loss("sketch_aware")(out, batch)["total"]
        loss.backward()
        results.append((out, loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()},
                        model.state_dict()))
    (fast, loss_f, grad_f, state_f), (naive, loss_n, grad_n, state_n) = results
    assert fast["semantic"].dtype == torch.float64
    for key in naive:
        torch.testing.assert_close(fast[key], naive[key], atol=1e-10, rtol=1e-9, msg=key)
    torch.testing.assert_close(loss_f.double(), loss_n.double(), atol=1e-6, rtol=1e-6)  # loss in float32
    for name in grad_n:
        diff = float((grad_f[name] - grad_n[name]).norm())
        assert diff <= 1e-5 * float(grad_n[name].norm()) + 1e-9, (name, diff)
    for name in state_n:
        torch.testing.assert_close(state_f[name], state_n[name], msg=name)
    if semantic_input == "prior":
        assert int(state_f["stage2.seg_embed.1.num_batches_tracked"]) == 1


def test_prior_is_read_and_tsdf_only_ignores_it():
    batch = _batch()
    other = dict(batch, prior=(batch["prior"] + 1) % 14)
    with torch.no_grad():
        prior_model = _model("prior").eval()
        a, b = prior_model(batch)["semantic"], prior_model(other)["semantic"]
        assert not torch.allclose(a, b)
        tsdf_model = _model("none").eval()
        no_2d = {k: batch[k] for k in ("tsdf",)}
        torch.testing.assert_close(tsdf_model(batch)["semantic"], tsdf_model(no_2d)["semantic"])


def test_batch_keys_and_clear_errors():
    model = _model("prior")
    assert model.required_keys() == ("tsdf", "mapping", "prior", "sketch_gt")
    assert _model("none").eval().required_keys() == ("tsdf",)
    batch = _batch()
    del batch["prior"]
    with pytest.raises(ValueError, match="prior"):
        model(batch)
    batch = _batch()
    batch["prior"] = batch["prior"][:, None]                        # (B, 1, H, W)
    with pytest.raises(ValueError, match=r"prior must be \(B, H, W\)"):
        model(batch)
    batch = _batch()
    batch["prior"][0, 0, 0] = 14
    batch["mapping"][0, 0] = 0                                     # a mapped pixel with id 14
    with pytest.raises(ValueError, match=r"\[0, 14\)"):
        model(batch)
    with pytest.raises(ValueError, match="no 2D backbone"):
        SketchAwareSSC(semantic_input="prior", backbone_weights="resnet50-imagenet.pth")
    with pytest.raises(ValueError, match="no 2D backbone"):
        get_model("sketch_aware_ssc_tsdf", backbone="resnet18")
    with pytest.raises(ValueError, match="semantic_input"):
        SketchAwareSSC(semantic_input="depth")


def test_switches_after_construction_reach_every_stage():
    model = _model("prior")
    model.recompute_activations = False
    flags = [m.recompute for m in model.modules() if hasattr(m, "recompute") and not callable(m.recompute)]
    assert len(flags) == 5 and not any(flags)                      # 2 stages, their 2 nets, the CVAE
    assert model.recompute_activations is False
    model.cvae_batched = True
    assert model.cvae.batched is True


def test_bf16_autocast_prior_forward_backward():
    model = _model("prior")
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = get_loss("sketch_aware")(model(batch), batch)
    assert losses["total"].dtype == torch.float32 and torch.isfinite(losses["total"])
    losses["total"].backward()
