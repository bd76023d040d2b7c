"""Renderer tests: ray casting against a naive per-pixel, per-voxel loop; colours; layout."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from PIL import Image

from torchssc.geometry import NYU_INTRINSICS, PALETTE, Intrinsics
from torchssc.viz import rays
from torchssc.viz.camera import (
    Camera,
    camera_from_pose,
    content_bounds,
    grid_bounds,
    look_at,
    oblique_camera,
    top_camera,
)
from torchssc.viz.compose import save_png
from torchssc.viz.labels import BACKGROUND
from torchssc.viz.rays import cast_rays, skip_distance
from torchssc.viz.render import render_comparison, render_panel, render_view, render_views


def random_volume(shape, seed, fill=0.25):
    rng = np.random.default_rng(seed)
    labels = rng.integers(1, 12, size=shape).astype(np.uint8)
    labels[rng.random(shape) > fill] = 0
    labels[rng.random(shape) < 0.05] = 255
    return labels


def naive_raycast(labels, camera, voxel, origin):
    """Every pixel against every occupied voxel (slab test), nearest entry wins."""
    origins, dirs = camera.rays()
    o_all = (origins - np.asarray(origin))[:, [0, 2, 1]] / voxel
    d_all = dirs[:, [0, 2, 1]] / voxel
    occ = [tuple(v) for v in np.argwhere((labels >= 1) & (labels <= 11))]
    n = len(origins)
    label = np.zeros(n, np.uint8)
    depth = np.full(n, np.inf)
    normal = np.full(n, -1, np.int8)
    gap = np.full(n, np.inf)  # distance to the runner-up voxel (ties are ambiguous)
    for p in range(n):
        o, d = o_all[p], d_all[p]
        found = []
        for g in occ:
            lo_t, hi_t, axis = -np.inf, np.inf, -1
            for k in range(3):
                if d[k] == 0:
                    if not (g[k] <= o[k] <= g[k] + 1):
                        lo_t = np.inf
                    continue
                a, b = (g[k] - o[k]) / d[k], (g[k] + 1 - o[k]) / d[k]
                if min(a, b) > lo_t:
                    lo_t, axis = min(a, b), k
                hi_t = min(hi_t, max(a, b))
            if lo_t <= hi_t and hi_t >= 0:
                found.append((max(lo_t, 0.0), g, axis))
        if found:
            found.sort(key=lambda x: x[0])
            t, g, axis = found[0]
            label[p] = labels[g]
            depth[p] = t
            normal[p] = 2 * axis + (d[axis] > 0) if axis >= 0 and t > 0 else -1
            if len(found) > 1:
                gap[p] = found[1][0] - t
    hw = (camera.height, camera.width)
    return label.reshape(hw), depth.reshape(hw), normal.reshape(hw), gap.reshape(hw)


def cameras_for(shape, voxel, origin):
    bounds = grid_bounds(shape, voxel, origin)
    centre = bounds.mean(axis=0)
    inside = centre + np.array([0.013, -0.021, 0.017])  # inside the box, not on a voxel boundary
    yield oblique_camera(bounds, size=(23, 17), azimuth=-127.0, elevation=38.0)
    yield oblique_camera(bounds, size=(19, 21), azimuth=61.0, elevation=-25.0)
    yield top_camera(bounds, size=(21, 15))
    yield Camera(look_at(inside, inside + np.array([0.3, 1.0, -0.2])), inside, 9.0, 9.0, 10.3, 7.6, 21, 17)
    # axis-aligned (directions with zero components) from outside
    eye = centre + np.array([0.0, -3.0 * bounds[1][1], 0.0]) + np.array([0.011, 0.0, 0.007])
    rot = np.stack([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]], axis=1)  # x right, y down = -z, forward = +y
    yield Camera(rot, eye, 1.0, 1.0, 8.0, 6.0, 17, 13, ortho=voxel * 0.61)


@pytest.mark.parametrize("shape,seed", [((7, 5, 9), 0), ((5, 8, 3), 1), ((1, 4, 6), 2)])
def test_raycast_matches_naive(shape, seed):
    labels = random_volume(shape, seed)
    voxel, origin = 0.08, np.array([0.31, -0.47, 0.05])
    cams = list(cameras_for(shape, voxel, origin))
    inside = np.floor((cams[3].position - origin)[[0, 2, 1]] / voxel).astype(int)
    labels[tuple(inside)] = 0  # the inside camera sits in an empty voxel
    seen = []
    for camera in cams:
        hits = cast_rays(labels, camera, voxel=voxel, origin=origin)
        label, depth, normal, gap = naive_raycast(labels, camera, voxel, origin)
        assert hits.label.shape == (camera.height, camera.width)
        clear = gap > 1e-7  # pixels whose nearest voxel is not tied with another
        assert clear.mean() > 0.9
        np.testing.assert_array_equal(hits.label[clear], label[clear])
        np.testing.assert_array_equal(hits.normal[clear], normal[clear])
        both = clear & np.isfinite(depth)
        np.testing.assert_allclose(hits.depth[both], depth[both], atol=1e-9)
        assert np.all(np.isinf(hits.depth[label == 0]))
        seen.append(label)
    seen = np.concatenate([s.ravel() for s in seen])
    assert (seen > 0).mean() > 0.05 and (seen == 0).mean() > 0.05  # the cases test something


def test_raycast_block_skipping_matches_exact(monkeypatch):
    labels = random_volume((11, 7, 13), 3, fill=0.05)
    voxel, origin = 0.08, np.zeros(3)
    cams = list(cameras_for(labels.shape, voxel, origin))
    exact = [cast_rays(labels, c, voxel=voxel, origin=origin) for c in cams]
    monkeypatch.setattr(rays, "skip_distance", functools.partial(skip_distance, exact_max=0, block=3))
    for cam, ref in zip(cams, exact):
        got = cast_rays(labels, cam, voxel=voxel, origin=origin)
        np.testing.assert_array_equal(got.label, ref.label)
        np.testing.assert_array_equal(got.normal, ref.normal)


@pytest.mark.parametrize("block", [2, 3, 4])
def test_skip_distance_is_a_safe_bound(block):
    occ = random_volume((9, 7, 11), 4, fill=0.04) > 0
    occ &= random_volume((9, 7, 11), 4, fill=0.04) < 255
    exact = skip_distance(occ)
    approx = skip_distance(occ, exact_max=0, block=block)
    for idx in itertools.product(*[range(n) for n in occ.shape]):  # naive chessboard distance
        if occ[idx]:
            assert exact[idx] == 0
            continue
        pts = np.argwhere(occ)
        assert exact[idx] == np.abs(pts - np.array(idx)).max(axis=1).min()
    assert np.all((approx == 0) == occ)
    assert np.all(approx <= exact) and np.all(approx[~occ] >= 1)


def blocks_scene():
    """A 9x7x11 scene with three boxes of known classes, one ignore block, empty elsewhere."""
    labels = np.zeros((9, 7, 11), np.uint8)
    labels[1:3, 0:2, 1:4] = 5  # chair
    labels[5:8, 0:3, 6:9] = 8  # table
    labels[4:6, 0:1, 2:4] = 2  # floor patch
    labels[0:2, 5:7, 8:11] = 255  # ignore: never drawn
    return labels


@pytest.mark.parametrize("view", ["oblique", "top"])
def test_flat_render_shows_exactly_the_classes_present(view):
    labels = blocks_scene()
    img = render_view(labels, view, size=(64, 48), shading="flat")
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    for cls in (2, 5, 8):
        assert tuple(PALETTE[cls]) in colours
    assert tuple(BACKGROUND) in colours
    assert colours <= {tuple(PALETTE[c]) for c in (2, 5, 8)} | {tuple(BACKGROUND)}


def test_shaded_render_keeps_hue_and_corners_are_background():
    labels = blocks_scene()
    img = render_view(labels, "oblique", size=(80, 60))
    assert tuple(img[0, 0]) == BACKGROUND and tuple(img[-1, -1]) == BACKGROUND
    flat = render_view(labels, "oblique", size=(80, 60), shading="flat")
    drawn = np.any(flat != BACKGROUND, axis=-1)
    np.testing.assert_array_equal(np.any(img != BACKGROUND, axis=-1), drawn)
    # shading only darkens: every shaded pixel is a scaled palette colour (within rounding)
    ratio = img[drawn].astype(float) / np.maximum(flat[drawn].astype(float), 1)
    assert np.all(ratio <= 1.0 + 1e-6)
    assert np.ptp(ratio, axis=1).max() < 0.05


def test_empty_and_ignore_only_volume_renders_background():
    labels = np.zeros((5, 4, 6), np.uint8)
    labels[1, 1, 1] = 255
    for view in ("oblique", "top"):
        img = render_view(labels, view, size=(20, 10))
        assert np.all(img == BACKGROUND)


def test_ceiling_hidden_from_above_unless_asked():
    labels = np.zeros((7, 5, 7), np.uint8)
    labels[:, 0, :] = 2
    labels[:, 4, :] = 1
    top = render_view(labels, "top", size=(30, 30), shading="flat")
    assert tuple(PALETTE[1]) not in {tuple(c) for c in top.reshape(-1, 3)}
    assert tuple(PALETTE[2]) in {tuple(c) for c in top.reshape(-1, 3)}
    kept = render_view(labels, "top", size=(30, 30), shading="flat", hide_ceiling_above=False)
    assert tuple(PALETTE[2]) not in {tuple(c) for c in kept.reshape(-1, 3)}


def test_camera_view_from_pose_sees_what_projects():
    # A wall of class 3 at world y = 2 m, seen by a camera at the origin looking along +y.
    labels = np.zeros((20, 10, 40), np.uint8)
    labels[:, :, 25] = 3  # c = 25 -> world y in [2.0, 2.08) with voxel 0.08
    origin = np.array([-0.8, 0.0, -0.4])
    pose = np.eye(4)
    pose[:3, :3] = look_at((0, 0, 0), (0, 1, 0))
    intr = Intrinsics(100.0, 100.0, 31.5, 23.5, 64, 48)
    cam = camera_from_pose(pose, intr, size=(64, 48))
    hits = cast_rays(labels, cam, voxel=0.08, origin=origin)
    centre = hits.depth[24, 32]
    assert centre == pytest.approx(2.0, abs=1e-3)  # the wall's near face
    assert hits.normal[24, 32] == 2 * 2 + 1  # entered along +Y (grid axis c): its face points -Y
    img = render_view(labels, "camera", size=(64, 48), pose=pose, origin=origin, intrinsics=intr, shading="flat")
    assert tuple(img[24, 32]) == tuple(PALETTE[3])
    with pytest.raises(ValueError, match="pose"):
        render_view(labels, "camera", size=(64, 48))


def test_content_bounds_are_world_corners_of_occupied_voxels():
    labels = np.zeros((6, 5, 7), np.uint8)
    labels[2, 1, 3] = 4
    labels[3, 2, 5] = 255  # ignored
    b = content_bounds(labels, 0.5, (1.0, 2.0, 3.0))
    np.testing.assert_allclose(b, [[2.0, 3.5, 3.5], [2.5, 4.0, 4.0]])


def test_views_and_comparison_layout(tmp_path):
    gt = blocks_scene()
    pred = gt.copy()
    pred[pred == 8] = 10
    pose = np.eye(4)
    pose[:3, :3] = look_at((0.36, -1.0, 0.5), (0.36, 0.44, 0.1))
    pose[:3, 3] = (0.36, -1.0, 0.5)
    images = render_views(gt, size=(40, 30), pose=pose)
    assert [im.shape for im in images] == [(30, 40, 3)] * 3
    assert len(render_views(gt, size=(40, 30))) == 2  # no pose: no camera view
    cmp = render_comparison(gt, pred, size=(40, 30), pose=pose)
    assert cmp.shape[1] == 2 * 40 + 3 * 4 and cmp.shape[0] > 3 * 30
    colours = {tuple(c) for c in cmp.reshape(-1, 3)}
    assert tuple(PALETTE[10]) in colours and tuple(PALETTE[8]) in colours
    panel = render_panel(gt, size=(40, 30), title="scene")
    assert panel.shape[1] == 2 * 40 + 3 * 4
    save_png(tmp_path / "a.png", cmp)
    with Image.open(tmp_path / "a.png") as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), cmp)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary left


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="labels must be 0..11 or 255"):
        render_view(np.full((3, 3, 3), 40, np.uint8), "top")
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        render_view(np.zeros((3, 3), np.uint8), "top")
    with pytest.raises(ValueError, match="unknown view"):
        render_view(np.zeros((3, 3, 3), np.uint8), "side")
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "x.png", np.zeros((4, 4), np.float32))
    assert NYU_INTRINSICS.width == 640


def test_camera_view_of_real_sample_reproduces_its_depth(nyu_sample):
    """Ray-cast the real frame's ground truth from its own pose: the depth seen must match the
    Kinect depth (it would not with a wrong axis order, pose direction or mirrored image)."""
    from torchssc.io.depthbin import read_depth_png
    from torchssc.viz.volumes import load_volume

    vol = load_volume(nyu_sample / "NYU0001_0000.bin")
    depth = read_depth_png(nyu_sample / "NYU0001_0000.png")
    cam = camera_from_pose(vol.pose, NYU_INTRINSICS, size=(80, 60))
    hits = cast_rays(vol.labels, cam, voxel=vol.voxel, origin=vol.origin)
    _, dirs = cam.rays()
    z = (hits.depth.ravel() * (dirs @ vol.pose[:3, 2])).reshape(60, 80)  # ray length -> camera z
    kinect = depth[3::8, 3::8]  # the full-size pixels under the 80x60 pixel centres
    ok = (kinect > 0) & np.isfinite(z)
    assert ok.mean() > 0.7
    err = np.abs(z - kinect)[ok]
    assert np.median(err) < 0.08
    mirrored = np.abs(z[:, ::-1] - kinect)[ok & np.isfinite(z[:, ::-1])]
    assert np.median(mirrored) > 2 * np.median(err)


def test_camera_from_pose_scales_uniformly_and_centres():
    intr = Intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    same = camera_from_pose(np.eye(4), intr, size=(320, 240))
    assert (same.fx, same.fy, same.cx, same.cy) == (250.0, 250.0, 159.5, 119.5)
    wide = camera_from_pose(np.eye(4), intr, size=(400, 240))  # wider than 4:3
    assert wide.fx == wide.fy == 250.0 and wide.cx == pytest.approx(199.5) and wide.cy == pytest.approx(119.5)
    # the first pixel of the centred 320x240 area (u = 40, v = 0) looks where the original
    # image's pixel (0.5, 0.5) does: half-resolution pixel centres are full-resolution corners
    _, dirs = wide.rays()
    corner = dirs.reshape(240, 400, 3)[0, 40]
    np.testing.assert_allclose(corner[:2] / corner[2], [(0.5 - 319.5) / 500, (0.5 - 239.5) / 500], atol=1e-12)
