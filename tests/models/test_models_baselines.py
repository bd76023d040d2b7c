"""The classic baselines: parameter counts and full-size shapes (meta device), small real forwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchssc.geometry import voxel_origin_for_pose
from torchssc.models import get_model, list_models

META = torch.device("meta")
FULL_COUNTS = {"sscnet": 930_508, "ddrnet": 195_748, "aicnet": 848_108, "vvnet_r120": 5_362_380}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _meta_batch(b: int = 1) -> dict:
    return {
        "tsdf_fine": torch.empty(b, 1, 240, 144, 240, device=META),
        "rgb": torch.empty(b, 3, 480, 640, device=META),
        "depth": torch.empty(b, 1, 480, 640, device=META),
        "pose": torch.empty(b, 4, 4, device=META),
        "origin": torch.empty(b, 3, device=META),
        "intrinsics": torch.empty(b, 6, device=META),
    }


@pytest.mark.parametrize("name", sorted(FULL_COUNTS))
def test_full_size_parameter_count_and_output_shape_on_meta(name):
    assert name in list_models()
    with META:
        model = get_model(name)
    assert _count(model) == FULL_COUNTS[name]
    out = model(_meta_batch(2))
    assert out["semantic"].shape == (2, 12, 60, 36, 60)


def test_per_module_counts_match_baselines_md():
    with META:
        ssc, ddr, aic, vv = (get_model(n) for n in ("sscnet", "ddrnet", "aicnet", "vvnet_r120"))
    assert _count(ssc.conv1_1) == 5_504 and _count(ssc.reduction2_1) == 512 and _count(ssc.conv3_2) == 110_656
    assert ssc.reduction2_1.bias is None and ssc.reduction3_1.bias is None
    assert _count(ddr.dep_feature2d) == 352 and _count(ddr.rgb_feature2d) == 368
    assert _count(ddr.dep_feature3d) == 27_148 and _count(ddr.aspp) == 55_184 and _count(ddr.head) == 59_148
    assert _count(aic.dep_feature3d) == 27_720 and _count(aic.dep_stages[0]) == 50_752
    assert _count(aic.fusion[0]) == 218_240 and _count(aic.head) == 50_956
    assert _count(vv.res640) + _count(vv.res320) == 4_640 and _count(vv.volume120) == 42_080
    assert _count(vv.volume60) == 168_128 and _count(vv.volume30) == 2_442_112
    assert _count(vv.up) == 2_654_464 and _count(vv.head) == 50_956
    assert not any(isinstance(m, (torch.nn.BatchNorm3d, torch.nn.BatchNorm2d)) for m in ssc.modules())


def _small_rgbd_batch(seed: int, b: int = 2, h: int = 24, w: int = 32) -> dict:
    """A 24x32 frame looking at a wall 3 m away with a box, NYU-like intrinsics scaled by 1/20."""
    g = torch.Generator().manual_seed(seed)
    pose = np.eye(4)
    pose[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]  # camera x, y, z -> world x, -z, y (level, looking along +Y)
    pose[:3, 3] = [0.0, 0.0, 1.4]
    origin = voxel_origin_for_pose(pose)
    depth = torch.full((b, 1, h, w), 3.0)
    depth[:, :, 8:16, 10:20] = 2.2 + 0.3 * torch.rand(b, 1, 8, 10, generator=g)
    depth[:, :, 0, :5] = 0.0  # holes
    return {
        "rgb": torch.randn(b, 3, h, w, generator=g),
        "depth": depth,
        "pose": torch.tensor(pose, dtype=torch.float32).repeat(b, 1, 1),
        "origin": torch.tensor(origin, dtype=torch.float32).repeat(b, 1),
        "intrinsics": torch.tensor([[518.8579 / 20, 518.8579 / 20, w / 2, h / 2, w, h]]).repeat(b, 1),
        "tsdf_fine": torch.where(torch.rand(b, 1, 48, 32, 48, generator=g) < 0.1, 1.0, 0.001),
    }


SMALL = {
    # name: (builder kwargs, output spatial shape)
    "sscnet": ({}, (12, 8, 12)),
    "ddrnet": ({"grid_shape": (16, 8, 16), "voxel_size": 0.3}, (4, 2, 4)),
    "aicnet": ({"grid_shape": (16, 8, 16), "voxel_size": 0.3}, (4, 2, 4)),
    "vvnet_r120": ({"grid_shape": (16, 8, 16), "voxel_size": 0.3}, (8, 4, 8)),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_forward_backward_reaches_every_parameter(name):
    kwargs, spatial = SMALL[name]
    torch.manual_seed(0)
    model = get_model(name, num_classes=5, **kwargs)
    batch = _small_rgbd_batch(seed=1)
    out = model(batch)["semantic"]
    assert out.shape == (2, 5, *spatial) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("name", ["ddrnet", "aicnet", "vvnet_r120"])
def test_rgbd_models_see_the_depth(name):
    kwargs, _ = SMALL[name]
    torch.manual_seed(0)
    model = get_model(name, **kwargs).eval()
    batch = _small_rgbd_batch(seed=2)
    index = model.projection.index(batch)
    numel = int(np.prod(kwargs["grid_shape"]))
    assert 0 < int((index < numel).sum()) < index.numel()  # some pixels land, the holes do not
    with torch.no_grad():
        a = model(batch)["semantic"]
        batch["depth"] = batch["depth"] * 0.8  # moving the surface changes the prediction
        b = model(batch)["semantic"]
    assert not torch.allclose(a, b)


def test_index_rounding_is_selectable_and_recorded():
    assert get_model("ddrnet").index_rounding == "rint"  # WLJ default
    assert get_model("aicnet", index_rounding="floor").index_rounding == "floor"
    assert get_model("vvnet_r120").index_rounding == "floor"  # VVNet default
    with pytest.raises(ValueError, match="index_rounding"):
        get_model("ddrnet", index_rounding="ceil")


def test_layout_and_index_precision_are_selectable_and_recorded():
    with META:
        ddr, aic_xzy, vv = get_model("ddrnet"), get_model("aicnet", trunk_layout="xzy"), get_model("vvnet_r120")
        ddr64 = get_model("ddrnet", trunk_layout="xzy", index_precision="float64")
    assert (ddr.trunk_layout, ddr.index_precision) == ("yzx", "float32")  # the authors'
    assert "layout='yzx'" in repr(ddr) and "index_precision='float32'" in repr(ddr)
    assert aic_xzy.trunk_layout == "xzy" and ddr64.index_precision == "float64"
    assert (vv.projection.layout, vv.projection.index_precision) == ("xzy", "float64")  # VVNet unchanged
    assert _count(ddr64) == FULL_COUNTS["ddrnet"] and _count(aic_xzy) == FULL_COUNTS["aicnet"]
    with pytest.raises(ValueError, match="layout"):
        get_model("ddrnet", trunk_layout="zyx")
    with pytest.raises(ValueError, match="index_precision"):
        get_model("aicnet", index_precision="float16")


def test_builders_validate_inputs():
    with pytest.raises(ValueError, match="divisible by 4"):
        get_model("ddrnet", grid_shape=(10, 8, 16))
    with pytest.raises(ValueError, match="divisible by 8"):
        get_model("vvnet_r120", grid_shape=(12, 8, 16))
    with pytest.raises(ValueError, match="tsdf_fine"):
        get_model("sscnet")({"tsdf": torch.zeros(1, 1, 4, 4, 4)})
    with pytest.raises(ValueError, match="divisible by 4"):
        get_model("sscnet").forward_tensor(torch.zeros(1, 1, 10, 8, 8))
    batch = _small_rgbd_batch(seed=0)
    del batch["rgb"]
    with pytest.raises(ValueError, match="rgb"):
        get_model("aicnet", grid_shape=(16, 8, 16), voxel_size=0.3)(batch)


def test_sscnet_init_is_caffe_like():
    torch.manual_seed(0)
    m = get_model("sscnet")
    bound = (3.0 / (16 * 27)) ** 0.5  # Caffe xavier FAN_IN for conv2_1 (16 in, 3^3)
    w = m.conv2_1.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert all(not c.bias.detach().any() for c in (m.conv1_1, m.conv3_5, m.fc12))
    assert abs(float(m.conv4_1.weight.detach().std()) - 0.1) < 0.01 and abs(float(m.fc12.weight.detach().std()) - 0.01) < 0.002


def test_aic_modulation_weights_sum_to_one_per_axis():
    from torchssc.models.aicnet import BasicAIC3d

    torch.manual_seed(0)
    aic = BasicAIC3d(4)
    x = torch.randn(1, 4, 5, 3, 7)
    w = aic.modulation(x).view(1, 3, 3, 5, 3, 7).softmax(dim=2)
    torch.testing.assert_close(w.sum(dim=2), torch.ones(1, 3, 5, 3, 7))
    # with zero modulation the kernels are averaged: check one stage against a direct computation
    torch.nn.init.zeros_(aic.modulation.weight)
    y = x
    for axis in (2, 1, 0):
        y = sum(torch.relu(conv(y)) for conv in aic.convs[axis]) / 3
    torch.testing.assert_close(aic(x), torch.relu(y + x))
