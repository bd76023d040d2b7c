"""The plain 3D U-Net baseline on TSDF + the lifted 2D prior: parameter count, structure, inputs,
a training step where every parameter learns."""

import pytest
import torch
import torch.nn as nn

import _sketch_aware_reference as ref
from torchssc.losses import get_loss
from torchssc.models import get_model, list_models
from torchssc.models.sketch_aware import count_parameters
from torchssc.models.unet3d import UNet3D

GRID = (8, 4, 8)
IMAGE = (12, 16)
TINY = dict(channels=(4, 8, 8))


def _batch(b=2, grid=GRID, image=IMAGE, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1] * grid[2]
    hw = image[0] * image[1]
    mapping = torch.randint(0, hw, (b, n), generator=g)
    mapping[torch.rand(b, n, generator=g) > 0.3] = hw
    return {
        "prior": torch.randint(0, 14, (b, *image), generator=g),
        "tsdf": torch.randn(b, 1, *grid, generator=g).clamp(-1, 1),
        "mapping": mapping,
        "label": torch.where(torch.rand(b, *grid, generator=g) < 0.1, 255,
                             torch.randint(0, 12, (b, *grid), generator=g)),
        "label_weight": (torch.rand(b, *grid, generator=g) > 0.3).float(),
    }


def test_registered_and_parameter_count():
    assert "unet3d_prior" in list_models()
    with torch.device("meta"):
        model = get_model("unet3d_prior")
    assert count_parameters(model) == count_parameters(model, trainable=False) == 1_950_316  # docs/model.md


def test_tsdf_only_variant():
    """``unet3d``: the same network on the TSDF alone, declared so (the zoo's TSDF-only entry)."""
    from torchssc.models import model_inputs

    with torch.device("meta"):
        model = get_model("unet3d")
    assert model_inputs("unet3d") == ("tsdf",) and model.required_keys() == ("tsdf",)
    assert count_parameters(model) == 1_950_316 - 14 * 32 * 27 == 1_938_220  # docs/model.md
    torch.manual_seed(0)
    tiny = get_model("unet3d", **TINY).eval()
    batch = _batch()
    out = tiny({"tsdf": batch["tsdf"]})["semantic"]
    assert out.shape == (2, 12, *GRID)
    assert torch.equal(out, tiny(batch)["semantic"])  # the prior and mapping are not read
    with pytest.raises(ValueError, match="unet3d reads the TSDF alone"):
        get_model("unet3d", prior_classes=14)


def test_three_levels_dilated_convs_and_skips():
    model = get_model("unet3d_prior")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d) and m.kernel_size == (3, 3, 3)]
    assert sorted({m.out_channels for m in convs}) == [32, 64, 128]
    assert {m.dilation for m in convs} == {(1, 1, 1), (2, 2, 2), (3, 3, 3)}
    assert all(m.bias is None and m.padding == m.dilation for m in convs)
    assert model.enc1[0].in_channels == 15                                   # TSDF + 14 one-hot
    assert model.dec2[0][0].in_channels == 128 and model.dec1[0].in_channels == 64  # concatenated skips
    assert sum(isinstance(m, nn.BatchNorm3d) for m in model.modules()) == len(convs) + 2  # + the two ups


def test_inputs_are_tsdf_and_the_filled_lifted_prior():
    model = UNet3D(**TINY)
    batch = _batch()
    x = model.inputs(batch)
    assert x.shape == (2, 15, *GRID) and x.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(x[:, :1], batch["tsdf"])
    torch.testing.assert_close(x[:, 1:], ref.lift_labels_naive(batch["prior"], batch["mapping"], GRID, 14))
    plain = UNet3D(**TINY, prior_fill=False).inputs(batch)[:, 1:]
    torch.testing.assert_close(plain, ref.lift_labels_naive(batch["prior"], batch["mapping"], GRID, 14, fill=False))
    assert UNet3D(**TINY, prior_classes=0).inputs({"tsdf": batch["tsdf"]}).shape == (2, 1, *GRID)


def test_full_nyu_size_output():
    torch.manual_seed(0)
    model = get_model("unet3d_prior").eval()
    batch = _batch(b=1, grid=(60, 36, 60), image=(480, 640))
    with torch.no_grad():
        out = model(batch)
    assert set(out) == {"semantic"} and out["semantic"].shape == (1, 12, 60, 36, 60)


def test_training_steps_every_parameter_learns_and_loss_falls():
    torch.manual_seed(0)
    model = UNet3D(**TINY)
    loss_fn = get_loss("class_weighted_ce")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = _batch()
    losses = []
    for step in range(6):
        loss = loss_fn(model(batch), batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            assert [n for n, p in model.named_parameters() if p.grad is None] == []   # no dead layer
            assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in model.parameters())
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_prior_matters_and_clear_errors():
    torch.manual_seed(0)
    model = UNet3D(**TINY).eval()
    batch = _batch()
    with torch.no_grad():
        a = model(batch)["semantic"]
        b = model(dict(batch, prior=(batch["prior"] + 3) % 14))["semantic"]
    assert not torch.allclose(a, b)
    assert model.required_keys() == ("tsdf", "mapping", "prior")
    with pytest.raises(ValueError, match="prior"):
        model({k: v for k, v in batch.items() if k != "prior"})
    with pytest.raises(ValueError, match="divisible by 4"):
        model(_batch(grid=(6, 4, 8)))
    with pytest.raises(ValueError, match="channels"):
        UNet3D(channels=(4, 8))


def test_bf16_autocast_step():
    torch.manual_seed(0)
    model = UNet3D(**TINY)
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = get_loss("class_weighted_ce")(model(batch), batch)["total"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
