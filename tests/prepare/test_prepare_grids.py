"""label_weight, mapping, sketch and visibility vs naive loops on tiny odd-sized grids."""

from __future__ import annotations

import numpy as np
import pytest

from _prepare_tiny import TINY_VOXEL, tiny_scene
from torchssc import geometry as g
from torchssc.prepare.label_weight import label_weight
from torchssc.prepare.mapping import voxel_pixel_mapping
from torchssc.prepare.sketch import sketch_from_labels
from torchssc.prepare.tsdf import compute_tsdf
from torchssc.prepare.visibility import visibility_volume


def test_label_weight_matches_loop():
    rng = np.random.default_rng(0)
    label = rng.choice([0, 1, 5, 11, 255], (5, 7, 3)).astype(np.uint8)
    tsdf = rng.choice([-1.0, -0.5, -0.51, 0.0, 0.3, 1.0], label.shape).astype(np.float32)
    got = label_weight(label, tsdf)
    ref = np.zeros(label.shape, np.uint8)
    for i in np.ndindex(*label.shape):
        ref[i] = 1 if (1 <= label[i] <= 11) or tsdf[i] < -0.5 else 0
    np.testing.assert_array_equal(got, ref)
    assert got.dtype == np.uint8 and got[(label == 255) & (tsdf < -0.5)].all()
    with pytest.raises(ValueError, match="same shape"):
        label_weight(label, tsdf[:-1])


@pytest.mark.parametrize("seed", [0, 4])
def test_mapping_largest_pixel_matches_loop(seed):
    fine = (12, 8, 16)
    depth, pose, origin, intr = tiny_scene(seed, fine)
    got = voxel_pixel_mapping(depth, pose, origin, intrinsics=intr, voxel=TINY_VOXEL, fine_shape=fine)
    small = (3, 2, 4)
    ref = np.full(small, intr.num_pixels, np.int64)
    rot, t = pose[:3, :3], pose[:3, 3]
    for v in range(intr.height):
        for u in range(intr.width):
            d = float(depth[v, u])
            if d == 0:
                continue
            world = rot @ np.array([(u - intr.cx) * d / intr.fx, (v - intr.cy) * d / intr.fy, d]) + t
            x, y, z = np.floor((world - origin) / TINY_VOXEL).astype(int)
            a, b, c = x, z, y
            if 0 <= a < fine[0] and 0 <= b < fine[1] and 0 <= c < fine[2]:
                cell = (a // 4, b // 4, c // 4)
                ref[cell] = v * intr.width + u if ref[cell] == intr.num_pixels else max(ref[cell], v * intr.width + u)
    np.testing.assert_array_equal(got, ref.ravel())
    assert (got < intr.num_pixels).sum() >= 2  # several voxels mapped, several not
    assert (got == intr.num_pixels).sum() >= 2


def _naive_sketch(label):
    vals = np.where(label == 255, 0, label).astype(np.int64)
    d, h, w = vals.shape
    pad = np.zeros((d + 2, h + 2, w + 2), np.int64)
    pad[1:-1, 1:-1, 1:-1] = vals
    deriv, smooth, box = (1, 0, -1), (1, 2, 1), (1, 1, 1)
    out = np.zeros(vals.shape, np.uint8)
    for a, b, c in np.ndindex(d, h, w):
        r = [0, 0, 0]
        for i in range(3):
            for j in range(3):
                for k in range(3):
                    x = pad[a + i, b + j, c + k]
                    r[0] += smooth[i] * box[j] * deriv[k] * x
                    r[1] += deriv[i] * box[j] * smooth[k] * x
                    r[2] += box[i] * deriv[j] * smooth[k] * x
        out[a, b, c] = sum(x != 0 for x in r) >= 2
    return out


def test_sketch_matches_loop():
    rng = np.random.default_rng(1)
    label = np.zeros((9, 7, 11), np.uint8)
    label[2:6, 1:5, 3:9] = 3
    label[4:8, 3:7, 1:4] = 7
    label[rng.random(label.shape) < 0.05] = 255
    label[rng.random(label.shape) < 0.05] = 10
    got = sketch_from_labels(label)
    ref = _naive_sketch(label)
    np.testing.assert_array_equal(got, ref)
    assert 0 < got.sum() < got.size and got.dtype == np.uint8
    # a uniform interior is not sketch
    assert sketch_from_labels(np.full((5, 5, 5), 4, np.uint8))[2, 2, 2] == 0


def test_visibility_matches_loop():
    fine = (12, 8, 16)
    depth, pose, origin, intr = tiny_scene(2, fine)
    res = compute_tsdf(depth, pose, origin, intrinsics=intr, voxel=TINY_VOXEL, shape=fine, truncation=3)
    rng = np.random.default_rng(2)
    label = rng.choice([0, 3, 255], (3, 2, 4), p=[0.5, 0.3, 0.2]).astype(np.uint8)
    got = visibility_volume(res, label)
    ref = np.zeros(label.shape, np.uint8)
    for i, j, k in np.ndindex(*label.shape):
        sl = (slice(4 * i, 4 * i + 4), slice(4 * j, 4 * j + 4), slice(4 * k, 4 * k + 4))
        obs, val = res.observed[sl], res.distance[sl]
        if label[i, j, k] == 255:
            ref[i, j, k] = g.VIS_OUTSIDE_ROOM
        elif res.surface[sl].any():
            ref[i, j, k] = g.VIS_SURFACE
        elif (obs & (val < 0)).any():
            ref[i, j, k] = g.VIS_OCCLUDED
        elif obs.any():
            ref[i, j, k] = g.VIS_FREE
        elif res.in_view[sl].any():
            ref[i, j, k] = g.VIS_MISSING_DEPTH
        else:
            ref[i, j, k] = g.VIS_OUTSIDE_VIEW
    np.testing.assert_array_equal(got, ref)
    assert len(np.unique(got)) >= 3
    with pytest.raises(ValueError, match="label shape"):
        visibility_volume(res, label[:2])
