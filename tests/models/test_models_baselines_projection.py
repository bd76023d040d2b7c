"""2D -> 3D projection of the RGB-D baselines, against naive loop references and the real sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchssc.geometry import NYU_INTRINSICS, depth_to_grid_index
from torchssc.io.depthbin import read_depthbin_frame, read_png16
from torchssc.models.projection import (
    DepthProjection,
    depth_normals,
    pixel_to_grid_coords,
    pixel_to_voxel_index,
    scatter_max_to_grid,
    scatter_mean_to_grid,
)

PRECISIONS = ("float64", "float32")

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


def _grid_point(d, u, v, pose, origin, k, voxel, precision):
    """One pixel's continuous grid coordinates (a, b, c) = (X, Z, Y), in float64 or in the DDRNet
    authors' float32 steps: camera x, y in float64 stored as float32, then float32 throughout."""
    fx, fy, cx, cy = k
    cam = [(u - cx) * d / fx, (v - cy) * d / fy, d]
    if precision == "float64":
        world = [sum(pose[r][c] * cam[c] for c in range(3)) + pose[r][3] for r in range(3)]
        rel = [(world[r] - origin[r]) / voxel for r in range(3)]
    else:
        f = np.float32
        cam = [f(c) for c in cam]
        world = [f(pose[r][0]) * cam[0] + f(pose[r][1]) * cam[1] + f(pose[r][2]) * cam[2] + f(pose[r][3]) for r in range(3)]
        rel = [(world[r] - f(origin[r])) / f(voxel) for r in range(3)]
    return rel[0], rel[2], rel[1]


def _index_loop(depth, pose, origin, k, shape, voxel, rounding, precision="float64", layout="xzy"):
    """Naive per-pixel reference for pixel_to_voxel_index."""
    b, _, h, w = depth.shape
    out = np.zeros((b, h * w), dtype=np.int64)
    numel = shape[0] * shape[1] * shape[2]
    for i in range(b):
        ki = [float(k[i, j]) for j in range(4)]
        pi = [[float(pose[i, r, c]) for c in range(4)] for r in range(3)]
        oi = [float(origin[i, r]) for r in range(3)]
        for v in range(h):
            for u in range(w):
                d = float(depth[i, 0, v, u])
                g = _grid_point(d, u, v, pi, oi, ki, voxel, precision)
                idx = [math.floor(x) if rounding == "floor" else round(float(x)) for x in g]  # round(): half to even
                inside = all(0 <= idx[a] < shape[a] for a in range(3))
                if layout == "xzy":
                    flat = (idx[0] * shape[1] + idx[1]) * shape[2] + idx[2]
                else:
                    flat = (idx[2] * shape[1] + idx[1]) * shape[0] + idx[0]
                out[i, v * w + u] = flat if d > 0 and inside else numel
    return out


@pytest.mark.parametrize("layout", ["xzy", "yzx"])
@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("rounding", ["floor", "rint"])
@pytest.mark.parametrize("shape,voxel", [((7, 5, 9), 0.37), ((9, 3, 5), 0.5)])
def test_pixel_to_voxel_index_matches_loop(rounding, precision, layout, shape, voxel):
    depth, pose, origin, k = _scene(seed=3)
    if precision == "float32":  # the inputs our datasets give
        depth, pose, origin, k = depth.float(), pose.float(), origin.float(), k.float()
    got = pixel_to_voxel_index(
        depth, pose, origin, k, grid_shape=shape, voxel_size=voxel, rounding=rounding, precision=precision, layout=layout
    )
    want = _index_loop(depth, pose, origin, k, shape, voxel, rounding, precision, layout)
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
    with pytest.raises(ValueError, match="precision"):
        pixel_to_voxel_index(depth, pose, origin, k, precision="half")
    with pytest.raises(ValueError, match="layout"):
        pixel_to_voxel_index(depth, pose, origin, k, layout="xyz")


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_depth_projection_in_the_swapped_layout_is_the_permuted_volume(reduce):
    depth, pose, origin, k = _scene(seed=4)
    batch = {"depth": depth, "pose": pose, "origin": origin, "intrinsics": k}
    feat = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    kw = dict(grid_shape=(7, 5, 9), voxel_size=0.37, index_rounding="rint", reduce=reduce)
    xzy, yzx = DepthProjection(**kw), DepthProjection(**kw, layout="yzx")
    assert yzx.volume_shape == (9, 5, 7)
    a, b = xzy(feat, xzy.index(batch)), yzx(feat, yzx.index(batch))
    assert b.shape == (2, 3, 9, 5, 7) and a.abs().sum() > 0
    torch.testing.assert_close(b, a.permute(0, 1, 4, 3, 2), rtol=0, atol=0)


def test_float32_arithmetic_keeps_an_exact_half_that_float64_misses():
    """A point 0.05 m / 0.03 m from the corner, 0.02 m voxels: in float32, 0.05/0.02 is exactly 2.5
    and 0.03/0.02 exactly 1.5 (rounded half to even: 2 and 2); in float64 the same float32 inputs
    give 2.50000004 and 1.49999997 (3 and 1)."""
    pose = torch.eye(4)
    pose[:3, :3] = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # camera z -> world y
    pose[:3, 3] = torch.tensor([0.05, 0.0, 0.03])
    frame = (torch.ones(1, 1, 1, 1), pose[None], torch.zeros(1, 3), torch.tensor([[500.0, 500.0, 0.0, 0.0]]))
    shape = (8, 4, 64)
    g32 = pixel_to_grid_coords(*frame, voxel_size=0.02, precision="float32")
    assert g32.dtype == torch.float32 and g32.flatten().tolist() == [2.5, 1.5, 50.0]
    got = {p: pixel_to_voxel_index(*frame, grid_shape=shape, voxel_size=0.02, rounding="rint", precision=p) for p in PRECISIONS}
    assert np.unravel_index(int(got["float32"]), shape) == (2, 2, 50)
    assert np.unravel_index(int(got["float64"]), shape) == (3, 1, 50)
    yzx = pixel_to_voxel_index(*frame, grid_shape=shape, voxel_size=0.02, rounding="rint", precision="float32", layout="yzx")
    assert np.unravel_index(int(yzx), (64, 4, 8)) == (50, 2, 2)


@pytest.mark.parametrize("rounding", ["floor", "rint"])
def test_pixel_to_voxel_index_equals_geometry_on_real_sample(rounding, nyu_sample):
    frame, depth = read_depthbin_frame(nyu_sample / "NYU0001_0000.bin")
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


def authors_index_rule(raw_png: np.ndarray, pose: np.ndarray, origin: np.ndarray):
    """The DDRNet/AICNet authors' pixel -> voxel rule, as ``docs/baselines.md`` describes it.

    Depth = PNG value / 8000 (float64); K = fx = fy = 518.8579, cx = 320, cy = 240; camera x, y
    computed in float64 and stored as float32, z = depth as float32; world = pose @ cam in float32
    (row by row, left to right, + translation); minus the origin; reordered (X, Z, Y); divided by
    0.02 in float32; ``np.rint``; a pixel whose voxel lies outside 240x144x240 keeps index 0.

    Returns ``(flat (H*W,) int64, inside (H*W,) bool, coords (H, W, 3) float32)``.
    """
    h, w = raw_png.shape
    depth = raw_png.astype(np.float64) / 8000.0
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    cam = [((u - 320) * depth / 518.8579).astype(np.float32), ((v - 240) * depth / 518.8579).astype(np.float32),
           depth.astype(np.float32)]
    p = pose.astype(np.float32)
    o = origin.astype(np.float32)
    rel = [p[r, 0] * cam[0] + p[r, 1] * cam[1] + p[r, 2] * cam[2] + p[r, 3] - o[r] for r in range(3)]
    coords = np.stack([rel[0], rel[2], rel[1]], axis=-1) / np.float32(0.02)
    assert coords.dtype == np.float32
    idx = np.rint(coords).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.array([240, 144, 240])), axis=-1)
    flat = np.where(inside, (idx[..., 0] * 144 + idx[..., 1]) * 240 + idx[..., 2], 0)
    return flat.ravel(), inside.ravel(), coords


def test_index_matches_the_authors_rule_on_real_sample(nyu_sample):
    """Measured on NYU0001: the authors' rule leaves 45,863 pixels (no depth, or outside the grid)
    at voxel 0 and places 261,337. Ours drops exactly those 45,863 and, in float32, places all
    261,337 in the authors' voxel; in float64, 261,334 (3 pixels whose float32 coordinate is
    exactly x.5 land in a neighbouring voxel)."""
    frame, depth = read_depthbin_frame(nyu_sample / "NYU0001_0000.bin")  # depth: float32 metres
    raw = read_png16(nyu_sample / "NYU0001_0000.png")
    pose, origin = np.asarray(frame.pose, np.float32), np.asarray(frame.origin, np.float32)
    theirs, inside, coords = authors_index_rule(raw, pose, origin)
    numel = 240 * 144 * 240
    assert int(inside.sum()) == 261_337 and int((~inside).sum()) == 45_863
    assert np.all(theirs[~inside] == 0)  # the authors' known defect: all of them in voxel 0

    batch32 = (  # what our dataset gives the model: float32 depth, pose, origin and intrinsics
        torch.from_numpy(depth)[None, None],
        torch.from_numpy(pose)[None],
        torch.from_numpy(origin)[None],
        torch.tensor(NYU_INTRINSICS.as_array(), dtype=torch.float32)[None],
    )
    same, differ = {}, {}
    for precision in PRECISIONS:
        ours = pixel_to_voxel_index(*batch32, rounding="rint", precision=precision)[0].numpy()
        np.testing.assert_array_equal(ours == numel, ~inside)  # dropped exactly where theirs went to 0
        same[precision] = int((ours == theirs)[inside].sum())
        differ[precision] = int((ours != theirs)[inside].sum())
        if precision == "float64":
            moved = np.flatnonzero(inside & (ours != theirs))
    assert (same["float32"], differ["float32"]) == (261_337, 0)
    assert (same["float64"], differ["float64"]) == (261_334, 3)
    frac = coords.reshape(-1, 3)[moved] % 1
    assert np.all(np.any(frac == 0.5, axis=1))  # each moved pixel sits exactly on a half in float32

    # Float64 inputs (the authors' depth) reproduce their float32 coordinates bit for bit; the
    # float32 depth and intrinsics of our datasets move the last bit of some (no voxel changes).
    batch64 = (torch.from_numpy(raw.astype(np.float64) / 8000.0)[None, None], *batch32[1:3],
               torch.from_numpy(NYU_INTRINSICS.as_array())[None])
    g64 = pixel_to_grid_coords(*batch64, precision="float32")[0].numpy()
    assert g64.dtype == np.float32 and np.array_equal(g64, coords)
    g32 = pixel_to_grid_coords(*batch32, precision="float32")[0].numpy()
    assert int(np.any(g32 != coords, axis=-1).sum()) == 62_381


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
    assert "index_precision='float64'" in repr(proj) and "layout='xzy'" in repr(proj)
    with pytest.raises(ValueError, match="index_precision"):
        DepthProjection(index_precision="float16")
    with pytest.raises(ValueError, match="layout"):
        DepthProjection(layout="zyx")
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
