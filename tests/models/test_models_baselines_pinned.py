"""DDRNet and AICNet outputs pinned, so that a refactor that changes what they compute is caught.

A model is built from a fixed seed on a tiny, non-cubic grid (16x8x12 voxels of 0.25 m, a 24x32
frame) and run in eval mode. The figures below were measured with the code as it stood before the
two models were rewritten onto one shared two-stream skeleton; they pin:

* the names and order of the state-dict entries (a sha1 of the comma-joined keys): the order in
  which modules are built and initialised decides which random numbers each weight gets;
* the sum of every parameter (the seeded initialisation itself);
* the output logits (sum, sum of squares, and the logits of two voxels).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from torchssc.geometry import voxel_origin_for_pose
from torchssc.models import get_model

GRID = (16, 8, 12)
VOXEL = 0.25


def tiny_rgbd_batch(seed: int = 1, b: int = 2, h: int = 24, w: int = 32) -> dict:
    """A ``h x w`` frame looking along world +Y at a wall 3 m away with a box; NYU intrinsics / 20."""
    g = torch.Generator().manual_seed(seed)
    pose = np.eye(4)
    pose[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]  # camera x, y, z -> world x, -z, y
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
    }


def _seeded(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model(name, num_classes=5, grid_shape=GRID, voxel_size=VOXEL, **kwargs).eval()


def _check(model: torch.nn.Module, pin: dict) -> None:
    keys = hashlib.sha1(",".join(model.state_dict()).encode()).hexdigest()[:12]
    assert keys == pin["keys"]
    params = sum(float(p.detach().double().sum()) for p in model.parameters())
    assert params == pytest.approx(pin["params"], rel=1e-9)
    with torch.no_grad():
        out = model(tiny_rgbd_batch())["semantic"].double()
    assert out.shape == (2, 5, 4, 2, 3)
    assert float(out.sum()) == pytest.approx(pin["sum"], rel=1e-5, abs=1e-4)
    assert float(out.square().sum()) == pytest.approx(pin["sumsq"], rel=1e-5)
    np.testing.assert_allclose(out[1, :, 2, 1, 2].numpy(), pin["voxel_12_1_2"], atol=2e-6)
    np.testing.assert_allclose(out[0, :, 0, 0, 0].numpy(), pin["voxel_0_0_0_0"], atol=2e-6)


# Measured before the shared skeleton existed: trunk in our (X, Z-up, Y) layout, float64 index.
BEFORE = {
    "ddrnet": {
        "keys": "a2e7914af770",
        "params": -41.77661783668651,
        "sum": -58.308289064560086,
        "sumsq": 25.66442412388392,
        "voxel_12_1_2": [0.006673, -0.386086, 0.049985, -0.52782, -0.403789],
        "voxel_0_0_0_0": [0.061665, -0.430819, -0.016151, -0.404524, -0.316408],
    },
    "aicnet": {
        "keys": "b3132b4b230c",
        "params": -71.50897704542427,
        "sum": 33.099846080178395,
        "sumsq": 36.95542637630414,
        "voxel_12_1_2": [-0.086778, 0.860165, -0.45119, 0.997086, -0.026177],
        "voxel_0_0_0_0": [-0.055314, 0.144854, 0.163649, 0.438197, -0.040183],
    },
}


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(BEFORE))
def test_outputs_pinned_in_our_layout(name, precision):
    """The old behaviour, one switch away. (The float32 index moves no pixel of this frame.)"""
    _check(_seeded(name, trunk_layout="xzy", index_precision=precision), BEFORE[name])


# Measured when the authors' layout became the default (trunk in (Y, Z-up, X), float32 index):
# same weights as above, different function.
DEFAULT = {
    "ddrnet": {
        "keys": "a2e7914af770",
        "params": -41.77661783668651,
        "sum": -71.070316539146,
        "sumsq": 36.110262292730724,
        "voxel_12_1_2": [-0.041382, -0.467555, 0.069807, -0.59292, -0.387735],
        "voxel_0_0_0_0": [-0.011108, -0.42177, -0.029265, -0.440537, -0.318382],
    },
    "aicnet": {
        "keys": "b3132b4b230c",
        "params": -71.50897704542427,
        "sum": 29.414196054451168,
        "sumsq": 39.25574655184357,
        "voxel_12_1_2": [-0.395431, 0.341188, -0.657995, 1.08442, -0.038729],
        "voxel_0_0_0_0": [-0.011902, 0.160092, 0.160788, 0.42863, -0.004958],
    },
}


@pytest.mark.parametrize("name", sorted(DEFAULT))
def test_outputs_pinned_in_the_authors_layout(name):
    model = _seeded(name)
    assert (model.trunk_layout, model.index_precision, model.index_rounding) == ("yzx", "float32", "rint")
    _check(model, DEFAULT[name])
