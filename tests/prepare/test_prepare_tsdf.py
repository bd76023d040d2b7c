"""Fine TSDF vs a brute-force per-voxel reference on tiny odd-sized grids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from _prepare_tiny import TINY_VOXEL, fma_reference, tiny_scene
from torchssc import geometry as g
from torchssc.prepare.tsdf import compute_tsdf, flip_tsdf, surface_voxels, truncated_squared_distance


def _reference(depth, pose, origin, intr, shape, voxel, trunc):
    """Deliberately naive: per pixel, then per voxel with a search over all surface voxels.

    In the arithmetic of the kernel that made the released NYU files: float32 everywhere, with
    ``a * b + c`` fused (one rounding, computed here in exact rationals).
    """
    f32 = np.float32
    rot, t = pose[:3, :3].astype(f32), pose[:3, 3].astype(f32)
    org, unit = origin.astype(f32), f32(voxel)
    fx, fy, cx, cy = f32(intr.fx), f32(intr.fy), f32(intr.cx), f32(intr.cy)
    depth = depth.astype(f32)

    def dot(r, p):  # fma(r2, p2, fma(r1, p1, r0 * p0))
        return fma_reference(r[2], p[2], fma_reference(r[1], p[1], f32(r[0] * p[0])))

    surface = np.zeros(shape, dtype=bool)
    for v in range(intr.height):
        for u in range(intr.width):
            d = depth[v, u]
            if d == 0:
                continue
            cam = (f32(f32(f32(u) - cx) * d) / fx, f32(f32(f32(v) - cy) * d) / fy, d)
            world = [f32(dot(rot[k], cam) + t[k]) for k in range(3)]
            x, y, z = (int(np.floor(f32(world[k] - org[k]) / unit)) for k in range(3))
            a, b, c = x, z, y
            if 0 <= a < shape[0] and 0 <= b < shape[1] and 0 <= c < shape[2]:
                surface[a, b, c] = True
    surf_idx = np.argwhere(surface)
    value = np.zeros(shape, dtype=np.float32)
    observed = surface.copy()
    in_view = np.zeros(shape, dtype=bool)
    for a, b, c in np.ndindex(*shape):
        if surface[a, b, c]:
            continue
        corner = [fma_reference(i, unit, org[k]) for k, i in enumerate((a, c, b))]
        rel = [f32(corner[k] - t[k]) for k in range(3)]
        cam = [dot(rot[:, k], rel) for k in range(3)]
        if cam[2] <= 0:
            continue
        u = int(g.round_half_away(float(fma_reference(fx, f32(cam[0] / cam[2]), cx))))
        v = int(g.round_half_away(float(fma_reference(fy, f32(cam[1] / cam[2]), cy))))
        if not (0 <= u < intr.width and 0 <= v < intr.height):
            continue
        in_view[a, b, c] = True
        d = depth[v, u]
        if not 0.5 <= d <= 8.0:
            continue
        observed[a, b, c] = True
        diff = float(f32(d - cam[2]))
        sign = 1.0 if abs(diff) < 1e-4 else float(np.sign(diff))
        d2 = ((surf_idx - [a, b, c]) ** 2).sum(axis=1).min() if len(surf_idx) else 10**6
        magnitude = min(f32(1.0), np.sqrt(f32(d2)) / f32(trunc))  # sqrtf(d²) / T in float32
        value[a, b, c] = f32(sign) * magnitude
    return surface, observed, in_view, value


@pytest.mark.parametrize(
    "seed,shape,trunc,ahead",
    [(0, (13, 9, 11), 3, 0.9), (1, (11, 7, 13), 12, 0.9), (2, (9, 13, 7), 5, 0.9), (3, (17, 11, 19), 4, 0.3)],
)
def test_tsdf_matches_brute_force(seed, shape, trunc, ahead):
    depth, pose, origin, intr = tiny_scene(seed, shape, ahead=ahead, near=0.5 if ahead < 0.5 else 0.6)
    res = compute_tsdf(depth, pose, origin, intrinsics=intr, voxel=TINY_VOXEL, shape=shape, truncation=trunc)
    surface, observed, in_view, value = _reference(depth, pose, origin, intr, shape, TINY_VOXEL, trunc)
    # the scene must exercise every case
    assert 0 < surface.sum() and 0 < (value < 0).sum() and 0 < ((value > 0) & (value < 1)).sum()
    assert (in_view & ~observed).sum() > 0 and (~in_view & ~surface).sum() > 0
    if ahead < 0.5:  # the camera is inside the grid: some corners are behind it
        a, b, c = np.indices(shape)
        corners = origin + TINY_VOXEL * np.stack([a, c, b], axis=-1)
        assert (g.world_to_camera(corners, pose)[..., 2] <= 0).sum() > 100
    np.testing.assert_array_equal(res.surface, surface)
    np.testing.assert_array_equal(res.observed, observed)
    np.testing.assert_array_equal(res.in_view, in_view)
    np.testing.assert_array_equal(res.distance, value)
    assert res.distance.dtype == np.float32
    # variants
    filled = np.where(observed, value, 1.0)
    flipped = np.empty(shape, np.float32)
    for i in np.ndindex(*shape):
        x = float(filled[i])
        s = 1.0 if abs(x) < 0.001 else np.sign(x)
        flipped[i] = s * max(0.001, 1.0 - abs(x))
    np.testing.assert_array_equal(res.sscnet_input(), flipped)
    assert set(np.unique(res.sscnet_input()[~observed]).tolist()) == {np.float32(0.001)}
    assert np.all(res.sscnet_input()[surface] == 1.0)


def test_flip_values():
    v = np.array([0.0, 0.0005, -0.0005, 1.0, -1.0, 0.25, -0.25], np.float32)
    np.testing.assert_allclose(flip_tsdf(v), [1.0, 0.9995, 0.9995, 0.001, -0.001, 0.75, -0.75], rtol=1e-6)


@pytest.mark.parametrize(
    "shape,density", [((17, 9, 23), 0.01), ((5, 31, 7), 0.05), ((30, 3, 4), 0.0), ((8, 8, 8), 1.0)]
)
def test_truncated_squared_distance_matches_edt(shape, density):
    rng = np.random.default_rng(3)
    mask = rng.random(shape) < density
    for trunc in (2, 12):
        got = truncated_squared_distance(mask, trunc)
        cap = trunc * trunc + 1
        if mask.any():
            ref = ndimage.distance_transform_edt(~mask)
            ref = np.minimum(np.rint(ref ** 2), cap).astype(np.uint8)
        else:
            ref = np.full(shape, cap, np.uint8)
        np.testing.assert_array_equal(got, ref)


def test_truncated_squared_distance_single_voxel_far_corner():
    mask = np.zeros((40, 3, 5), bool)
    mask[39, 2, 4] = True
    got = truncated_squared_distance(mask, 12)
    a, b, c = np.indices(mask.shape)
    ref = np.minimum((39 - a) ** 2 + (2 - b) ** 2 + (4 - c) ** 2, 145)
    np.testing.assert_array_equal(got, ref)


def test_bad_inputs():
    depth, pose, origin, intr = tiny_scene(0)
    with pytest.raises(ValueError, match="depth must be"):
        compute_tsdf(depth[:-1], pose, origin, intrinsics=intr, voxel=TINY_VOXEL, shape=(5, 5, 5))
    with pytest.raises(ValueError, match="pose"):
        compute_tsdf(depth, pose[:3], origin, intrinsics=intr, voxel=TINY_VOXEL, shape=(5, 5, 5))
    with pytest.raises(ValueError, match="origin"):
        surface_voxels(depth, pose, origin[:2], intrinsics=intr, voxel=TINY_VOXEL, shape=(5, 5, 5))
    with pytest.raises(ValueError, match="truncation"):
        truncated_squared_distance(np.zeros((3, 3, 3), bool), 16)


@pytest.mark.parametrize("seed,ahead", [(4, 0.9), (5, 0.3), (6, 1.6)])
def test_slab_view_boxes_are_conservative_and_tight(seed, ahead):
    """Every in-view voxel lies in its slab's box; boxes do skip part of the grid."""
    from torchssc.prepare.tsdf import _observe_grid, _projection_affine, _slab_view_box, _view_constraints

    shape = (15, 9, 13)
    depth, pose, origin, intr = tiny_scene(seed, shape, ahead=ahead, near=0.5)
    _, _, in_view, _ = _reference(depth, pose, origin, intr, shape, TINY_VOXEL, 3)
    for slab in (1, 4):
        state, sign = _observe_grid(depth, pose, origin, intr, TINY_VOXEL, shape, slab=slab)
        # in_view of the reference excludes surface voxels; _observe_grid does not special-case them
        np.testing.assert_array_equal((state >= 1)[in_view], True)
        assert ((state >= 1) & ~in_view).sum() <= (depth > 0).sum()  # at most the surface voxels
        np.testing.assert_array_equal(sign, np.select([state == 2, state == 3], [1.0, -1.0], 0.0))
    assert in_view.sum() > 0 and (~in_view).sum() > 0
    # the boxes hold every in-view voxel of their slab, and skip a good part of the grid
    lin = _view_constraints(_projection_affine(pose, origin, intr, TINY_VOXEL), intr).tolist()
    covered = np.zeros(shape, dtype=bool)
    for a in range(shape[0]):
        box = _slab_view_box(lin, a, a + 1, shape[1], shape[2])
        if box is not None:
            covered[(a,) + box] = True
    assert covered[in_view].all()
    assert covered.sum() < 0.9 * covered.size
