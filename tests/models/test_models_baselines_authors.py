"""DDRNet and AICNet load a state dict in the authors' key naming and compute the authors' function.

The checkpoint is made here by transcribing the authors' layer names and shapes (the layer tables
of ``docs/baselines.md``; parameter counts 195,748 and 848,108), filled with seeded random numbers.
The reference is a plain functional forward written from the same tables, which reads that
checkpoint by the authors' names and runs in the authors' grid layout: the lifted volume is
scattered in (X, Z, Y) order and then permuted to (Y, Z, X), as they do, and the logits stay in
(Y, Z, X).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from torchssc.models import get_model
from torchssc.models.authors_weights import authors_key, load_authors_state_dict
from torchssc.models.projection import pixel_to_voxel_index

from test_models_baselines_pinned import tiny_rgbd_batch

GRID = (16, 8, 12)  # (X, Z, Y); non-cubic so that a swapped axis cannot hide
VOXEL = 0.25
AIC_KERNELS = (3, 5, 7)

# ----------------------------------------------------------------------------------------------
# The authors' checkpoint: names and shapes transcribed layer by layer.


def _conv(name: str, c_out: int, c_in: int, kernel: tuple[int, ...], bias: bool) -> dict:
    shapes = {f"{name}.weight": (c_out, c_in, *kernel)}
    if bias:
        shapes[f"{name}.bias"] = (c_out,)
    return shapes


def _ddr2d(p: str, c_in: int = 8, c: int = 4, c_out: int = 8) -> dict:
    return {
        **_conv(p + "conv_in", c, c_in, (1, 1), False),
        **_conv(p + "conv_1xk", c, c, (1, 3), True),
        **_conv(p + "conv_kx1", c, c, (3, 1), True),
        **_conv(p + "conv_out", c_out, c, (1, 1), False),
    }


def _ddr3d(p: str, c_in: int, c: int, c_out: int) -> dict:
    return {
        **_conv(p + "conv_in", c, c_in, (1, 1, 1), False),
        **_conv(p + "conv1x1x3", c, c, (1, 1, 3), True),
        **_conv(p + "conv1x3x1", c, c, (1, 3, 1), True),
        **_conv(p + "conv3x1x1", c, c, (3, 1, 1), True),
        **_conv(p + "conv_out", c_out, c, (1, 1, 1), False),
    }


def _aic(p: str, c_in: int, c: int, c_out: int) -> dict:
    shapes = {**_conv(p + "conv_in", c, c_in, (1, 1, 1), False)}
    shapes.update(_conv(p + "basic_aic.conv_mx", 3 * len(AIC_KERNELS), c, (1, 1, 1), False))
    kernels = {"conv_1x1xk": lambda k: (1, 1, k), "conv_1xkx1": lambda k: (1, k, 1), "conv_kx1x1": lambda k: (k, 1, 1)}
    for name, kernel in kernels.items():
        for i, k in enumerate(AIC_KERNELS):
            shapes.update(_conv(f"{p}basic_aic.{name}.{i}", c, c, kernel(k), True))
    shapes.update(_conv(p + "conv_out", c_out, c, (1, 1, 1), False))
    return shapes


def _streams(stem_c: int) -> dict:
    shapes = {}
    for stream, c_in in (("dep", 1), ("rgb", 3)):
        shapes.update(_conv(f"{stream}_feature2d.0", 8, c_in, (1, 1), True))
        shapes.update(_ddr2d(f"{stream}_feature2d.1."))
        shapes.update(_ddr2d(f"{stream}_feature2d.2."))
        shapes.update(_conv(f"{stream}_feature3d.0.conv", 8, 8, (3, 3, 3), False))
        shapes.update(_ddr3d(f"{stream}_feature3d.1.", 16, stem_c, 16))
        shapes.update(_conv(f"{stream}_feature3d.2.conv", 48, 16, (3, 3, 3), False))
        shapes.update(_ddr3d(f"{stream}_feature3d.3.", 64, 16, 64))
    return shapes


def _head(c_in: int, num_classes: int) -> dict:
    return {
        **_conv("conv_out.0", 128, c_in, (1, 1, 1), True),
        **_conv("conv_out.2", 128, 128, (1, 1, 1), True),
        **_conv("conv_out.4", num_classes, 128, (1, 1, 1), True),
    }


def ddrnet_shapes(num_classes: int = 12) -> dict:
    shapes = _streams(4)
    for i in (1, 2, 3):
        for s in "dr":
            shapes.update(_ddr3d(f"res3d_{i}{s}.", 64, 16, 64))
    shapes.update(_conv("aspp.aspp0", 64, 256, (1, 1, 1), False))
    for i in (1, 2, 3):
        shapes.update(_ddr3d(f"aspp.aspp{i}.", 256, 16, 64))
    shapes.update(_conv("aspp.global_avg_pool.1", 64, 256, (1, 1, 1), False))
    shapes.update(_head(320, num_classes))
    return shapes


def aicnet_shapes(num_classes: int = 12) -> dict:
    shapes = _streams(8)
    for i in (1, 2, 3):
        for s in "dr":
            shapes.update(_aic(f"res3d_{i}{s}.", 64, 32, 64))
    shapes.update(_aic("aspp_1.", 256, 64, 256))
    shapes.update(_aic("aspp_2.", 256, 64, 256))
    shapes.update(_head(256, num_classes))
    return shapes


SHAPES = {"ddrnet": ddrnet_shapes, "aicnet": aicnet_shapes}


def authors_checkpoint(name: str, seed: int = 0, prefix: str = "module.") -> dict:
    """Seeded random tensors under the authors' keys, as their DataParallel training saved them."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in SHAPES[name]().items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 4
        out[prefix + key] = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(fan_in)
    return out


# ----------------------------------------------------------------------------------------------
# The reference forward: the layer tables, in the authors' layout, reading the authors' keys.


def _c2(sd, p, x, padding=0, dilation=1):
    return F.conv2d(x, sd[p + ".weight"], sd.get(p + ".bias"), padding=padding, dilation=dilation)


def _c3(sd, p, x, padding=0, dilation=1, stride=1):
    return F.conv3d(x, sd[p + ".weight"], sd.get(p + ".bias"), stride=stride, padding=padding, dilation=dilation)


def ref_ddr2d(sd, p, x):
    y = F.relu(_c2(sd, p + "conv_in", x))
    y = F.relu(_c2(sd, p + "conv_1xk", y, padding=(0, 1)))
    y = F.relu(_c2(sd, p + "conv_kx1", y, padding=(1, 0)))
    return F.relu(_c2(sd, p + "conv_out", y) + x)


def ref_ddr3d(sd, p, x, d=1, residual=True):
    y0 = F.relu(_c3(sd, p + "conv_in", x))
    y1 = F.relu(_c3(sd, p + "conv1x1x3", y0, padding=(0, 0, d), dilation=(1, 1, d)))
    y2 = F.relu(_c3(sd, p + "conv1x3x1", y1, padding=(0, d, 0), dilation=(1, d, 1)) + y1)
    y3 = F.relu(_c3(sd, p + "conv3x1x1", y2, padding=(d, 0, 0), dilation=(d, 1, 1)) + y2 + y1)
    y = _c3(sd, p + "conv_out", y3)
    return F.relu(y + x) if residual else F.relu(y)


def ref_down(sd, p, x):
    return F.relu(torch.cat([_c3(sd, p + "conv", x, padding=1, stride=2), F.max_pool3d(x, 2)], dim=1))


def ref_aic(sd, p, x):
    y = F.relu(_c3(sd, p + "conv_in", x))
    b, c, d0, d1, d2 = y.shape
    n = len(AIC_KERNELS)
    m = _c3(sd, p + "basic_aic.conv_mx", y).view(b, 3, n, d0, d1, d2).softmax(dim=2)  # (axis, kernel)
    z = y
    stages = (  # last axis, then middle, then first; modulation channel 3 * axis + kernel
        (2, "conv_1x1xk", lambda k: (0, 0, k // 2)),
        (1, "conv_1xkx1", lambda k: (0, k // 2, 0)),
        (0, "conv_kx1x1", lambda k: (k // 2, 0, 0)),
    )
    for axis, name, pad in stages:
        z = sum(
            m[:, axis, i, None] * F.relu(_c3(sd, f"{p}basic_aic.{name}.{i}", z, padding=pad(k)))
            for i, k in enumerate(AIC_KERNELS)
        )
    z = F.relu(z + y)
    return F.relu(_c3(sd, p + "conv_out", z) + x)


def ref_lift(features, index, grid):
    """Scatter-max into (X, Z, Y), dummy pixels dropped, then permuted to (Y, Z, X) as the authors."""
    b, c = features.shape[:2]
    numel = math.prod(grid)
    out = features.new_zeros(b, c, numel + 1)
    out.scatter_reduce_(2, index[:, None, :].expand(b, c, -1), features.reshape(b, c, -1), "amax", include_self=True)
    return out[:, :, :numel].view(b, c, *grid).permute(0, 1, 4, 3, 2)


def ref_forward(name, sd, batch):
    """``(B, num_classes, S2/4, S1/4, S0/4)``: the authors' output, in their (Y, Z, X) order."""
    index = pixel_to_voxel_index(  # (B, H*W) into (X, Z, Y), dummy slot for invalid pixels
        batch["depth"], batch["pose"], batch["origin"], batch["intrinsics"],
        grid_shape=GRID, voxel_size=VOXEL, rounding="rint", precision="float32",
    )
    x = {}
    for s, key in (("dep", "depth"), ("rgb", "rgb")):
        f = _c2(sd, f"{s}_feature2d.0", batch[key])
        f = ref_ddr2d(sd, f"{s}_feature2d.2.", ref_ddr2d(sd, f"{s}_feature2d.1.", f))
        v = ref_lift(f, index, GRID)
        v = ref_ddr3d(sd, f"{s}_feature3d.1.", ref_down(sd, f"{s}_feature3d.0.", v))
        x[s] = ref_ddr3d(sd, f"{s}_feature3d.3.", ref_down(sd, f"{s}_feature3d.2.", v))
    fused = [x["dep"] + x["rgb"]]
    for i, d in zip((1, 2, 3), (2, 3, 5)):
        for s in ("dep", "rgb"):
            p = f"res3d_{i}{s[0]}."
            x[s] = ref_ddr3d(sd, p, x[s], d) if name == "ddrnet" else ref_aic(sd, p, x[s])
        fused.append(x["dep"] + x["rgb"])
    y = torch.cat(fused, dim=1)
    if name == "ddrnet":
        pooled = _c3(sd, "aspp.global_avg_pool.1", y.mean(dim=(2, 3, 4), keepdim=True)).expand(-1, -1, *y.shape[2:])
        dilated = [ref_ddr3d(sd, f"aspp.aspp{i}.", y, d, residual=False) for i, d in zip((1, 2, 3), (6, 12, 18))]
        y = torch.cat([_c3(sd, "aspp.aspp0", y), *dilated, pooled], dim=1)
    else:
        y = ref_aic(sd, "aspp_2.", ref_aic(sd, "aspp_1.", y))
    y = F.relu(_c3(sd, "conv_out.0", y))
    y = F.relu(_c3(sd, "conv_out.2", y))
    return _c3(sd, "conv_out.4", y)


# ----------------------------------------------------------------------------------------------


def _batch64() -> dict:
    return {k: v.double() for k, v in tiny_rgbd_batch(seed=3).items()}


@pytest.mark.parametrize("name,count", [("ddrnet", 195_748), ("aicnet", 848_108)])
def test_transcribed_checkpoint_has_the_published_parameter_count(name, count):
    assert sum(math.prod(s) for s in SHAPES[name]().values()) == count


@pytest.mark.parametrize("name", ["ddrnet", "aicnet"])
def test_authors_checkpoint_loads_and_gives_the_authors_output(name):
    sd = authors_checkpoint(name)
    model = get_model(name, grid_shape=GRID, voxel_size=VOXEL).double().eval()
    load_authors_state_dict(model, sd)
    plain = {k[len("module."):]: v for k, v in sd.items()}
    for ours, tensor in model.state_dict().items():
        assert torch.equal(tensor, plain[authors_key(ours)])
    batch = _batch64()
    with torch.no_grad():
        ours = model(batch)["semantic"]  # (B, 12, X/4, Z/4, Y/4)
        theirs = ref_forward(name, plain, batch)  # (B, 12, Y/4, Z/4, X/4)
    assert ours.shape == (2, 12, 4, 2, 3) and theirs.shape == (2, 12, 3, 2, 4)
    # measured: max difference 0.0 (float64)
    torch.testing.assert_close(ours.permute(0, 1, 4, 3, 2), theirs, rtol=1e-10, atol=1e-10)
    # The same weights in our geometry layout compute another function (measured: relative L2
    # 0.38 DDRNet, 0.41 AICNet).
    other = get_model(name, grid_shape=GRID, voxel_size=VOXEL, trunk_layout="xzy").double().eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        diff = other(batch)["semantic"] - ours
    assert float(diff.norm() / ours.norm()) > 0.1


def test_loading_is_strict_and_names_what_is_wrong():
    model = get_model("ddrnet", grid_shape=GRID, voxel_size=VOXEL)
    sd = authors_checkpoint("ddrnet", prefix="")
    load_authors_state_dict(model, {k: v.float() for k, v in sd.items()})  # without the DataParallel prefix

    missing = dict(sd)
    del missing["aspp.aspp2.conv1x3x1.bias"]
    with pytest.raises(ValueError, match=r"missing \['aspp.aspp2.conv1x3x1.bias'\]; unexpected none"):
        load_authors_state_dict(model, missing)
    extra = dict(sd, **{"res3d_4d.conv_in.weight": torch.zeros(16, 64, 1, 1, 1)})
    with pytest.raises(ValueError, match=r"missing none; unexpected \['res3d_4d.conv_in.weight'\]"):
        load_authors_state_dict(model, extra)
    mixed = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(sd.items())}
    with pytest.raises(ValueError, match="unexpected"):
        load_authors_state_dict(model, mixed)
    bad = dict(sd, **{"conv_out.4.weight": torch.zeros(5, 128, 1, 1, 1)})
    with pytest.raises(ValueError, match=r"'conv_out.4.weight' has shape \(5, 128, 1, 1, 1\).*'head.4.weight'"):
        load_authors_state_dict(model, bad)
    with pytest.raises(ValueError, match="trunk_layout='yzx'"):
        load_authors_state_dict(get_model("ddrnet", grid_shape=GRID, voxel_size=VOXEL, trunk_layout="xzy"), sd)
    with pytest.raises(ValueError, match="DDRNet or AICNet"):
        load_authors_state_dict(get_model("sscnet"), sd)


def test_checkpoint_round_trip_through_torch_save(tmp_path):
    """The authors' file format: ``{"state_dict": ...}`` read back with ``weights_only=True``."""
    path = tmp_path / "cpBest_SSC_AICNet.pth.tar"
    torch.save({"state_dict": {k: v.float() for k, v in authors_checkpoint("aicnet").items()}}, path)
    model = get_model("aicnet", grid_shape=GRID, voxel_size=VOXEL)
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    load_authors_state_dict(model, state)
    assert torch.equal(model.fusion[1].aic.modulation.weight, state["module.aspp_2.basic_aic.conv_mx.weight"])
    assert torch.equal(model.dep_stages[2].aic.convs[0][1].bias, state["module.res3d_3d.basic_aic.conv_kx1x1.1.bias"])
