"""ForkNet and CCPNet-style: parameter counts and full-size shapes (meta device), the partitioned
convolution against a loop over blocks, small real forwards/backwards, ForkNet's gradient
routing."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from torchssc.losses import get_loss
from torchssc.models import get_model, list_models
from torchssc.models.ccpnet import PartitionedConv3d, fold_blocks, unfold_blocks

META = torch.device("meta")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------------
# ForkNet
def test_forknet_parameter_counts_and_full_size_shapes_on_meta():
    assert {"forknet", "ccpnet_style"} <= set(list_models())
    with META:
        model = get_model("forknet")
        full = get_model("forknet", discriminators=True)
    assert _count(model) == 45_874_610  # the generator part
    assert (_count(model.front), _count(model.encoder)) == (1_801_196, 11_036_320)
    assert (_count(model.gen_g), _count(model.gen_s), _count(model.gen_x)) == (10_898_674, 11_257_396, 10_881_024)
    assert _count(model.front.enc_ssc_7_1) == 786_496 and _count(model.encoder.enc_x_4) == 8_389_120
    refine_g = sum(_count(getattr(model.gen_g, n)) for n in ("res_base", "res_1_1", "res_1_2", "res_1_post"))
    refine_s = _count(model.gen_s.ref_base) + _count(model.gen_s.ref) + _count(model.gen_s.ref_post)
    assert (refine_g, refine_s) == (15_602, 51_964)
    inference = (_count(model.front) + _count(model.encoder) - _count(model.encoder.enc_x_log_sigma)
                 + _count(model.gen_g.trunk) + _count(model.gen_s))
    assert inference == 34_912_192  # what predict needs for s2
    assert (_count(full.dis_s), _count(full.dis_g), _count(full.dis_x)) == (11_268_439, 11_213_559, 10_788_358)
    assert _count(full) - _count(model) == 33_270_356
    assert model.gen_g.trunk.w2.bias is None and model.front.enc_ssc_7_1.bias is not None

    model.eval()
    out = model({"forknet_tsdf": torch.empty(2, 1, 80, 48, 80, device=META)})
    assert out["semantic"].shape == out["forknet_s1"].shape == out["forknet_front"].shape == (2, 12, 80, 48, 80)
    assert out["forknet_g1"].shape == out["forknet_g2"].shape == (2, 2, 80, 48, 80)
    assert out["forknet_recon"].shape == (2, 1, 80, 48, 80) and out["latent_mean"].shape == (2, 256, 5, 3, 5)
    h3, h4, _ = model.gen_g.trunk(out["latent_mean"])
    assert h3.shape == (2, 128, 20, 12, 20) and h4.shape == (2, 32, 40, 24, 40)
    x = torch.empty(2, 1, 80, 48, 80, device=META)
    assert full.dis_s(torch.empty(2, 12, 80, 48, 80, device=META)).shape == (2, 1, 5, 3, 5)
    assert full.dis_g(torch.empty(2, 2, 80, 48, 80, device=META)).shape == (2, 1, 5, 3, 5)
    assert full.dis_x(x).shape == (2, 1)


def _forknet_batch(shape=(32, 16, 32), b=2, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 12, (b, *shape), generator=g)
    label[torch.rand(b, *shape, generator=g) < 0.6] = 0
    label[torch.rand(b, *shape, generator=g) < 0.05] = 255
    tsdf = torch.where(torch.rand(b, 1, *shape, generator=g) < 0.3, torch.rand(b, 1, *shape, generator=g) * 2 - 1, 0.0)
    surface = (torch.rand(b, *shape, generator=g) < 0.2).to(torch.uint8)
    return {"forknet_tsdf": tsdf, "forknet_label": label, "forknet_surface": surface}


def test_forknet_small_grid_every_parameter_learns_and_eval_is_deterministic():
    torch.manual_seed(0)
    model = get_model("forknet", discriminators=True, grid_shape=(32, 16, 32))
    loss_fn = get_loss("forknet")
    batch = _forknet_batch()
    out = model(batch)
    assert out["latent_mean"].shape == (2, 256, 2, 1, 2) and out["semantic"].shape == (2, 12, 32, 16, 32)
    assert out["adv_real_s"].shape == (2, 1, 2, 1, 2) and out["adv_real_x"].shape == (2, 1)
    terms = loss_fn(out, batch)
    assert set(terms) == {"ssc", "geometry", "semantic", "refine", "recon", "kl", "adv_generator",
                          "adv_discriminator", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # the generators' adversarial terms are gated (0 until the discriminators lead by 0.3), but
    # every generator parameter also gets a reconstruction / completion gradient
    assert dead == []
    model.eval()
    with torch.no_grad():
        a, b = model(batch), model(batch)
    assert torch.equal(a["semantic"], b["semantic"]) and "forknet_geometry_target" not in a
    with pytest.raises(ValueError, match="divisible by 16"):
        model({"forknet_tsdf": torch.zeros(1, 1, 24, 16, 32)})


def _grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[bool]:
    """Which parameters receive a non-zero gradient from ``loss``."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [g is not None and bool(g.abs().sum() > 0) for g in grads]


def test_forknet_gradient_routing_matches_the_per_subset_optimisers():
    """Each term reaches exactly the parameters its optimiser updates in the ICCV code."""
    torch.manual_seed(1)
    model = get_model("forknet", discriminators=True, grid_shape=(32, 16, 32))
    batch = _forknet_batch(seed=1)
    out = model(batch)
    terms = get_loss("forknet", adversarial_gate=-2.0)(out, batch)  # gate always open
    groups = {
        "front": list(model.front.parameters()),
        "encoder": list(model.encoder.parameters()),
        "gen_g": list(model.gen_g.parameters()),
        "gen_s_stage1": [p for n, p in model.gen_s.named_parameters() if not n.startswith("ref")],
        "gen_s_refine": [p for n, p in model.gen_s.named_parameters() if n.startswith("ref")],
        "gen_x": list(model.gen_x.parameters()),
        "dis": [p for n, p in model.named_parameters() if n.startswith("dis_")],
    }

    def reached(loss):
        return {k: any(_grads(loss, ps)) for k, ps in groups.items()}

    none = dict.fromkeys(groups, False)
    assert reached(terms["ssc"]) == {**none, "front": True}
    assert reached(terms["geometry"]) == {**none, "encoder": True, "gen_g": True}
    # L_sem's semantic term reaches the encoder through G_g's features, but not G_g's weights
    assert reached(terms["semantic"]) == {**none, "encoder": True, "gen_s_stage1": True}
    assert reached(terms["refine"]) == {**none, "gen_s_refine": True}
    assert reached(terms["recon"]) == {**none, "encoder": True, "gen_x": True}
    assert reached(terms["kl"]) == {**none, "encoder": True}
    assert reached(terms["adv_discriminator"]) == {**none, "dis": True}
    assert reached(terms["adv_generator"]) == {**none, "gen_g": True, "gen_s_stage1": True, "gen_x": True}
    # without the routing the same terms leak into other subsets: the test has teeth
    plain = get_model("forknet", grid_shape=(32, 16, 32), route_gradients=False)
    plain.load_state_dict(model.state_dict(), strict=False)
    leak = get_loss("forknet")(plain(batch), batch)
    assert any(_grads(leak["semantic"], list(plain.gen_g.parameters())))
    assert any(_grads(leak["refine"], list(plain.front.parameters())))


# ------------------------------------------------------------------------------------------
# CCPNet-style
@pytest.mark.parametrize("width,count", [(64, 980_892), (48, 603_996), (32, 325_916)])
def test_ccpnet_style_parameter_count(width, count):
    with META:
        model = get_model("ccpnet_style", width=width)
    assert _count(model) == count


def test_ccpnet_style_full_size_shape_on_meta_and_per_block_counts():
    with META:
        model = get_model("ccpnet_style")
        side = get_model("ccpnet_style", side_heads=True)
    assert _count(side) - _count(model) == 780 + 204
    assert _count(model.e0) == 232 and _count(model.e2[1]) == 168_320
    assert [_count(level) for level in model.pyramid] == [221_440] * 3
    assert [(lv.conv1.dilation[0], lv.conv1.parts) for lv in model.pyramid] == [(6, 1), (3, 2), (1, 4)]
    assert (_count(model.fuse), _count(model.grr1), _count(model.grr2), _count(model.head)) == (
        16_512, 65_568 + 272 + 20_800, 8_208 + 72 + 5_216, 108)
    out = model({"tsdf_fine": torch.empty(1, 1, 240, 144, 240, device=META)})
    assert out["semantic"].shape == (1, 12, 240, 144, 240)


def _block_loop(x: torch.Tensor, weight: torch.Tensor, bias, dilation: int, n: int) -> torch.Tensor:
    """Deliberately naive: every sub-volume convolved on its own with zero padding, written back."""
    out = torch.zeros(x.shape[0], weight.shape[0], *x.shape[2:], dtype=x.dtype)
    size = [s // n for s in x.shape[2:]]
    for i, j, k in itertools.product(range(n), repeat=3):
        sl = (slice(None), slice(None), slice(i * size[0], (i + 1) * size[0]),
              slice(j * size[1], (j + 1) * size[1]), slice(k * size[2], (k + 1) * size[2]))
        out[sl] = F.conv3d(x[sl], weight, bias, padding=dilation * (weight.shape[-1] // 2), dilation=dilation)
    return out


@pytest.mark.parametrize("n,dilation,shape", [(1, 2, (6, 4, 8)), (2, 1, (6, 4, 8)), (2, 3, (8, 12, 4)),
                                              (3, 1, (9, 6, 12)), (4, 1, (12, 8, 12))])
def test_partitioned_conv_equals_a_loop_over_blocks(n, dilation, shape):
    torch.manual_seed(n * 10 + dilation)
    conv = PartitionedConv3d(3, 5, 3, dilation=dilation, parts=n, bias=True).double()
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    want = _block_loop(x, conv.weight, conv.bias, dilation, n)
    torch.testing.assert_close(conv(x), want, rtol=0, atol=1e-12)
    if n == 1:
        torch.testing.assert_close(conv(x), F.conv3d(x, conv.weight, conv.bias, padding=dilation, dilation=dilation))
    else:  # partitioning changes the result wherever a block border cuts the receptive field
        plain = F.conv3d(x, conv.weight, conv.bias, padding=dilation, dilation=dilation)
        assert (conv(x) - plain).abs().max() > 1e-3
    assert torch.equal(unfold_blocks(fold_blocks(x, n), n), x)


def test_partitioned_conv_gradcheck():
    conv = PartitionedConv3d(2, 2, 3, dilation=1, parts=2).double()
    x = torch.randn(1, 2, 4, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: conv(t), (x,))
    with pytest.raises(ValueError, match="divisible by 2"):
        conv(torch.zeros(1, 2, 3, 2, 4, dtype=torch.float64))


def test_ccpnet_style_small_forward_every_parameter_learns():
    torch.manual_seed(0)
    model = get_model("ccpnet_style", width=16, side_heads=True)
    g = torch.Generator().manual_seed(0)
    tsdf = torch.where(torch.rand(2, 1, 48, 32, 48, generator=g) < 0.1, 1.0, -0.001)
    fine = torch.randint(0, 12, (2, 48, 32, 48), generator=g).to(torch.uint8)
    batch = {"tsdf_fine": tsdf, "label_fine": fine, "label": torch.randint(0, 12, (2, 12, 8, 12), generator=g),
             "label_weight": (torch.rand(2, 12, 8, 12, generator=g) < 0.7).float()}
    out = model(batch)
    assert out["semantic"].shape == (2, 12, 48, 32, 48)
    assert out["ccpnet_side60"].shape == (2, 12, 12, 8, 12) and out["ccpnet_side120"].shape == (2, 12, 24, 16, 24)
    terms = get_loss("ccpnet_style")(out, batch)
    assert set(terms) == {"semantic", "side60", "side120", "total"}
    terms["total"].backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
    model.eval()
    assert set(model(batch)) == {"semantic"}
