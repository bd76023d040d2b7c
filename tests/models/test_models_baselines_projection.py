"""2D -> 3D projection of the RGB-D baselines, against naive loop references and the real sample."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from torchssc.geometry import NYU_INTRINSICS, depth_to_grid_index
from torchssc.io.depthbin import read_depthbin_frame
from torchssc.models.projection import (
    DepthProjection,
    depth_normals,
    pixel_to_voxel_index,
    scatter_max_to_grid,
    scatter_mean_to_grid,
)

@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is much faster on a shared, oversubscribed CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nyu_sample"


def _scene(seed: int, b: int = 2, h: int = 7, w: int = 9):
    """A tiny random frame batch: camera looking along world +Y, depth 1-4 m with holes."""
    g = torch.Generator().manual_seed(seed)
    depth = 1.0 + 3.0 * torch.rand(b, 1, h, w, generator=g, dtype=torch.float64)
    depth[torch.rand(b, 1, h, w, generator=g) < 0.2] = 0.0
    pose = torch.zeros(b, 4, 4, dtype=torch.float64)
    pose[:, :3, :3] = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=torch.float64)  # cam x,y,z -> world
    pose[:, :3, 3] = torch.tensor([0.0, 0.0, 1.3]) + 0.1 * torch.rand(b, 3, generator=g, dtype=torch.float64)
    pose[:, 3, 3] = 1.0
    origin = torch.tensor([-1.1, 0.4, -0.05], dtype=torch.float64).repeat(b, 1)
    intrinsics = torch.tensor([[6.0, 6.5, (w - 1) / 2, (h - 1) / 2, w, h]], dtype=torch.float64).repeat(b, 1)
    return depth, pose, origin, intrinsics


def _index_loop(depth, pose, origin, k, shape, voxel, rounding):
    """Naive per-pixel reference for pixel_to_voxel_index."""
    b, _, h, w = depth.shape
    out = np.zeros((b, h * w), dtype=np.int64)
    numel = shape[0] * shape[1] * shape[2]
    for i in range(b):
        fx, fy, cx, cy = (float(k[i, j]) for j in range(4))
        for v in range(h):
            for u in range(w):
                d = float(depth[i, 0, v, u])
                cam = [(u - cx) * d / fx, (v - cy) * d / fy, d]
                world = [sum(float(pose[i, r, c]) * cam[c] for c in range(3)) + float(pose[i, r, 3]) for r in range(3)]
                rel = [(world[r] - float(origin[i, r])) / voxel for r in range(3)]
                g = (rel[0], rel[2], rel[1])  # array order X, Z (up), Y
                idx = [math.floor(x) if rounding == "floor" else round(x) for x in g]  # round(): half to even
                inside = all(0 <= idx[a] < shape[a] for a in range(3))
                out[i, v * w + u] = (idx[0] * shape[1] + idx[1]) * shape[2] + idx[2] if d > 0 and inside else numel
    return out


@pytest.mark.parametrize("rounding", ["floor", "rint"])
@pytest.mark.parametrize("shape,voxel", [((7, 5, 9), 0.37), ((9, 3, 5), 0.5)])
def test_pixel_to_voxel_index_matches_loop(rounding, shape, voxel):
    depth, pose, origin, k = _scene(seed=3)
    got = pixel_to_voxel_index(depth, pose, origin, k, grid_shape=shape, voxel_size=voxel, rounding=rounding)
    want = _index_loop(depth, pose, origin, k, shape, voxel, rounding)
    numel = math.prod(shape)
    assert got.dtype == torch.int64 and got.shape == (2, 63)
    np.testing.assert_array_equal(got.numpy(), want)
    # the case is not degenerate: some pixels land inside, some go to the dummy slot, none wraps to 0 wrongly
    assert (want < numel).sum() > 10 and (want == numel).sum() > 5


def test_pixel_to_voxel_index_accepts_float32_and_3d_depth():
    depth, pose, origin, k = _scene(seed=5)
    a = pixel_to_voxel_index(depth, pose, origin, k, grid_shape=(7, 5, 9), voxel_size=0.37)
    b = pixel_to_voxel_index(depth[:, 0], pose.float(), origin.float(), k.float(), grid_shape=(7, 5, 9), voxel_size=0.37)
    assert (a == b).float().mean() > 0.98  # float32 inputs only move points by float32 rounding


def test_pixel_to_voxel_index_errors():
    depth, pose, origin, k = _scene(seed=1)
    with pytest.raises(ValueError, match="rounding"):
        pixel_to_voxel_index(depth, pose, origin, k, rounding="nearest")
    with pytest.raises(ValueError, match="pose"):
        pixel_to_voxel_index(depth, pose[:1], origin, k)
    with pytest.raises(ValueError, match="depth"):
        pixel_to_voxel_index(depth.expand(-1, 2, -1, -1), pose, origin, k)


@pytest.mark.parametrize("rounding", ["floor", "rint"])
def test_pixel_to_voxel_index_equals_geometry_on_real_sample(rounding):
    frame, depth = read_depthbin_frame(SAMPLE / "NYU0001_0000.bin")
    idx_np, valid_np = depth_to_grid_index(depth, frame.pose, frame.origin, NYU_INTRINSICS, rounding=rounding)
    got = pixel_to_voxel_index(
        torch.from_numpy(depth)[None, None],
        torch.from_numpy(np.asarray(frame.pose, np.float32))[None],
        torch.from_numpy(np.asarray(frame.origin, np.float32))[None],
        torch.from_numpy(NYU_INTRINSICS.as_array())[None],
        rounding=rounding,
    )[0].numpy()
    flat_np = np.where(valid_np, (idx_np[..., 0] * 144 + idx_np[..., 1]) * 240 + idx_np[..., 2], 240 * 144 * 240)
    np.testing.assert_array_equal(got, flat_np.ravel())
    if rounding == "floor":
        assert int((got < 240 * 144 * 240).sum()) == 259_404  # README fact of the sample


def _scatter_loop(feat, index, shape, reduce):
    b, c, h, w = feat.shape
    numel = math.prod(shape)
    out = np.zeros((b, c, numel))
    count = np.zeros((b, numel))
    f = feat.reshape(b, c, h * w).numpy()
    for i in range(b):
        for p in range(h * w):
            t = int(index[i, p])
            if t == numel:
                continue
            for ch in range(c):
                out[i, ch, t] = max(out[i, ch, t], f[i, ch, p]) if reduce == "max" else out[i, ch, t] + f[i, ch, p]
            count[i, t] += 1
    if reduce == "mean":
        out = out / np.maximum(count, 1)[:, None, :]
    return out.reshape(b, c, *shape)


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_scatter_matches_loop(reduce):
    g = torch.Generator().manual_seed(0)
    shape = (3, 5, 7)
    numel = math.prod(shape)
    feat = torch.randn(2, 3, 5, 9, generator=g, dtype=torch.float64)  # negatives: max must keep 0
    index = torch.randint(0, numel + 1, (2, 45), generator=g)
    index[:, :6] = numel  # dummy slot
    index[:, 6:10] = 0  # voxel 0 gets real pixels only
    index[:, 10:14] = 17  # several pixels share a voxel
    fn = scatter_max_to_grid if reduce == "max" else scatter_mean_to_grid
    got = fn(feat, index, shape)
    want = _scatter_loop(feat, index, shape, reduce)
    assert got.shape == (2, 3, *shape)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_dummy_slot_never_reaches_voxel_zero():
    feat = torch.full((1, 2, 3, 4), 5.0)
    shape = (2, 3, 2)
    index = torch.full((1, 12), math.prod(shape), dtype=torch.int64)
    assert scatter_max_to_grid(feat, index, shape).abs().sum() == 0
    assert scatter_mean_to_grid(feat, index, shape).abs().sum() == 0
    index[0, 3] = 0
    out = scatter_max_to_grid(feat, index, shape)
    assert out[0, :, 0, 0, 0].tolist() == [5.0, 5.0] and out.sum() == 10.0


@pytest.mark.parametrize("fn", [scatter_max_to_grid, scatter_mean_to_grid])
def test_scatter_gradcheck(fn):
    g = torch.Generator().manual_seed(1)
    shape = (2, 3, 2)
    feat = (torch.randperm(24, generator=g).double().reshape(1, 2, 3, 4) + 1.0).requires_grad_()  # distinct, > 0
    index = torch.randint(0, math.prod(shape) + 1, (1, 12), generator=g)
    assert torch.autograd.gradcheck(lambda x: fn(x, index, shape), (feat,))


def test_scatter_shape_errors():
    with pytest.raises(ValueError, match="index"):
        scatter_max_to_grid(torch.zeros(1, 2, 3, 4), torch.zeros(1, 11, dtype=torch.int64), (2, 2, 2))
    with pytest.raises(ValueError, match="int64"):
        scatter_mean_to_grid(torch.zeros(1, 2, 3, 4), torch.zeros(1, 12, dtype=torch.int32), (2, 2, 2))


def test_depth_projection_module_records_rounding_and_needs_keys():
    proj = DepthProjection(grid_shape=(4, 4, 4), voxel_size=0.5, index_rounding="rint", reduce="mean")
    assert proj.index_rounding == "rint" and "rint" in repr(proj)
    with pytest.raises(ValueError, match="origin"):
        proj.index({"depth": torch.zeros(1, 1, 2, 2), "pose": torch.eye(4)[None], "intrinsics": torch.ones(1, 6)})
    with pytest.raises(ValueError, match="reduce"):
        DepthProjection(reduce="sum")


def _normals_loop(depth, k):
    b, _, h, w = depth.shape
    out = np.zeros((b, 3, h, w))
    for i in range(b):
        fx, fy, cx, cy = (float(k[i, j]) for j in range(4))

        def point(v, u):
            d = float(depth[i, 0, min(max(v, 0), h - 1), min(max(u, 0), w - 1)])
            uu, vv = min(max(u, 0), w - 1), min(max(v, 0), h - 1)
            return np.array([(uu - cx) * d / fx, (vv - cy) * d / fy, d]), d

        for v in range(h):
            for u in range(w):
                (pr, dr), (pl, dl) = point(v, u + 1), point(v, u - 1)
                (pd, dd), (pu, du) = point(v + 1, u), point(v - 1, u)
                if min(float(depth[i, 0, v, u]), dr, dl, dd, du) <= 0:
                    continue
                n = np.cross(pr - pl, pd - pu)
                if np.linalg.norm(n) > 0:
                    out[i, :, v, u] = n / np.linalg.norm(n)
    return out


def test_depth_normals_match_loop_and_plane():
    depth, _, _, k = _scene(seed=7, h=6, w=8)
    np.testing.assert_allclose(depth_normals(depth, k).numpy(), _normals_loop(depth, k), atol=1e-12)
    plane = torch.full((1, 1, 5, 6), 2.0, dtype=torch.float64)
    n = depth_normals(plane, k[:1])
    np.testing.assert_allclose(n[0, :, 1:-1, 1:-1].numpy(), np.broadcast_to(np.array([0, 0, 1.0])[:, None, None], (3, 3, 4)), atol=1e-12)
