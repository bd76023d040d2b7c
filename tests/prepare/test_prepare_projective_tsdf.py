"""ForkNet's projective TSDF, labels and surface vs naive per-voxel loops; a plane at known
depth; the real NYU frame."""

from __future__ import annotations

import math

import numpy as np
import pytest

from _prepare_tiny import TINY_VOXEL, tiny_scene
from torchssc.geometry import NYU36_TO_11, NYU_INTRINSICS, Intrinsics
from torchssc.io.depthbin import read_bin, read_depth_png
from torchssc.prepare.forknet import forknet_labels, forknet_surface, forknet_volumes
from torchssc.prepare.projective_tsdf import (
    FORKNET_SHAPE,
    INVALID,
    forknet_input,
    projective_tsdf,
)


def _round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _reference_tsdf(depth, pose, origin, intr, shape, voxel, trunc=0.8, zero_beyond=6.0, invalid_depth=8.0):
    """Deliberately naive: one voxel at a time, plain Python floats."""
    rot, t = pose[:3, :3], pose[:3, 3]
    out = np.zeros(shape, dtype=np.float32)
    for a, b, c in np.ndindex(*shape):
        world = [origin[0] + voxel * a, origin[1] + voxel * c, origin[2] + voxel * b]
        rel = [world[k] - t[k] for k in range(3)]
        x, y, z = (sum(rot[k][j] * rel[k] for k in range(3)) for j in range(3))  # R^T (p - t)
        if z <= 0:
            out[a, b, c] = INVALID
            continue
        u = _round_half_away(intr.fx * x / z + intr.cx)
        v = _round_half_away(intr.fy * y / z + intr.cy)
        if not (0 <= u < intr.width and 0 <= v < intr.height):
            out[a, b, c] = INVALID
            continue
        d = float(depth[v, u])
        if d > zero_beyond:
            d = 0.0
        if d > invalid_depth:
            out[a, b, c] = INVALID
            continue
        diff = d - z
        if abs(diff) < trunc:
            out[a, b, c] = (1.0 if diff > 0 else -1.0) * (trunc - abs(diff)) / trunc
    return out


@pytest.mark.parametrize(
    "seed,shape,ahead,trunc",
    [(0, (13, 9, 11), 0.9, 0.8), (1, (11, 7, 13), 0.9, 0.3), (2, (9, 13, 7), 0.0, 0.5), (3, (6, 5, 8), 0.4, 0.8)],
)
def test_projective_tsdf_matches_naive_loop(seed, shape, ahead, trunc):
    depth, pose, origin, intr = tiny_scene(seed, shape, ahead=ahead)
    depth[0, :3] = 7.0  # above 6 m: read as missing
    got = projective_tsdf(depth, pose, origin, intrinsics=intr, voxel=TINY_VOXEL, shape=shape, truncation=trunc)
    want = _reference_tsdf(depth, pose, origin, intr, shape, TINY_VOXEL, trunc=trunc)
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # the scene exercises every case: invalid, 0, positive and negative band values
    assert (got == INVALID).any() and (got == 0).any() and (got > 0).any() and (-1 <= got[got < 0]).any()
    inp = forknet_input(got)
    assert inp.min() >= -1 and inp.max() <= 1 and np.array_equal(inp == 0, (got == 0) | (got == INVALID))


def test_plane_at_known_depth_gives_the_linear_band():
    """Camera at the origin looking along world +Y at a wall 2 m away: along the optical axis the
    value is +-(0.8 - |2 - y|) / 0.8 (+ in front), 0 beyond 0.8 m, invalid behind the camera."""
    intr = Intrinsics(fx=50.0, fy=50.0, cx=20.0, cy=15.0, width=41, height=31)
    pose = np.eye(4)
    pose[:3, :3] = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # camera x = world x, z = world y
    depth = np.full((31, 41), 2.0, dtype=np.float32)
    voxel = 0.1
    shape = (1, 1, 40)  # one column of voxels along world Y, corners at y = -1.0 .. 2.9
    origin = np.array([0.0, -1.0, 0.0])
    tsdf = projective_tsdf(depth, pose, origin, intrinsics=intr, voxel=voxel, shape=shape)[0, 0]
    y = origin[1] + voxel * np.arange(40)
    diff = 2.0 - y
    want = np.where(np.abs(diff) < 0.8, np.sign(diff + 1e-12) * (0.8 - np.abs(diff)) / 0.8, 0.0)
    want = np.where(diff > 0, want, -np.abs(want))  # at diff == 0 the sign is -1
    want[y <= 0] = INVALID
    np.testing.assert_allclose(tsdf, want, atol=1e-6)
    assert tsdf[y.round(6) == 1.6] == pytest.approx(0.5) and tsdf[y.round(6) == 2.4] == pytest.approx(-0.5)
    assert tsdf[y.round(6) == 2.0] == pytest.approx(-1.0)


def _reference_labels(raw, lut, f=3):
    out = np.zeros(tuple(s // f for s in raw.shape), dtype=np.uint8)
    for a, b, c in np.ndindex(*out.shape):
        block = [int(lut[v]) for v in raw[f * a:f * a + f, f * b:f * b + f, f * c:f * c + f].ravel()]
        values = [-1 if v == 255 else v for v in block]
        best = max(values)
        out[a, b, c] = 255 if best == -1 else best
    return out


def test_forknet_labels_block_max_and_class_maps():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 37, size=(9, 6, 12)).astype(np.uint8)
    raw[rng.random(raw.shape) < 0.6] = 0
    raw[rng.random(raw.shape) < 0.3] = 255
    raw[:3, :3, :3] = 255  # a block entirely outside the room
    raw[3:6, :3, :3] = 255
    raw[3, 0, 0] = 0  # outside + one empty voxel: empty
    raw[6:9, :3, :3] = 0
    raw[7, 1, 1] = 5  # a lone door
    lut = np.full(256, 255, dtype=np.uint8)
    lut[:37] = NYU36_TO_11
    got = forknet_labels(raw)
    assert got.shape == (3, 2, 4)
    np.testing.assert_array_equal(got, _reference_labels(raw, lut))
    assert got[0, 0, 0] == 255 and got[1, 0, 0] == 0 and got[2, 0, 0] == 11  # door -> objects
    quirk = forknet_labels(raw, class_map="forknet_door_as_furniture")
    assert quirk[2, 0, 0] == 10
    lut_quirk = lut.copy()
    lut_quirk[5] = 10
    np.testing.assert_array_equal(quirk, _reference_labels(raw, lut_quirk))
    with pytest.raises(ValueError, match="class_map"):
        forknet_labels(raw, class_map="nyu")
    with pytest.raises(ValueError, match="divisible by 3"):
        forknet_labels(raw[:8])
    bad = raw.copy()
    bad[0, 0, 0] = 40
    with pytest.raises(ValueError, match="40"):
        forknet_labels(bad)


def test_forknet_surface_marks_the_voxels_hit_by_depth_points():
    depth, pose, origin, intr = tiny_scene(4, (12, 9, 12))
    shape = (12, 9, 12)
    got = forknet_surface(depth, pose, origin, shape=shape, intrinsics=intr, voxel=TINY_VOXEL)
    want = np.zeros(shape, dtype=np.uint8)
    rot, t = pose[:3, :3], pose[:3, 3]
    for v, u in np.ndindex(intr.height, intr.width):
        d = float(depth[v, u])
        if not 0 < d <= 6.0:
            continue
        world = rot @ np.array([(u - intr.cx) * d / intr.fx, (v - intr.cy) * d / intr.fy, d]) + t
        x, y, z = np.floor((world - origin) / TINY_VOXEL).astype(int)
        if 0 <= x < shape[0] and 0 <= z < shape[1] and 0 <= y < shape[2]:
            want[x, z, y] = 1
    assert want.sum() > 5
    np.testing.assert_array_equal(got, want)


def test_forknet_volumes_on_the_real_frame(nyu_sample):
    raw = read_bin(nyu_sample / "NYU0001_0000.bin")
    depth = read_depth_png(nyu_sample / "NYU0001_0000.png")
    vol = forknet_volumes(depth, raw.pose, raw.origin, raw.labels, intrinsics=NYU_INTRINSICS, fine_voxel=0.02)
    assert vol.tsdf.shape == vol.label.shape == vol.surface.shape == FORKNET_SHAPE
    surface = vol.surface.astype(bool)
    assert surface.sum() > 3000  # 4,660 measured
    # the corner of a voxel holding a depth point is within 0.06*sqrt(3) m of it: |value| near 1
    assert np.median(np.abs(vol.tsdf[surface])) > 0.8
    # most of the box is in view; the labels agree with the benchmark's occupancy
    assert (vol.tsdf == INVALID).mean() < 0.7
    occupied = (vol.label > 0) & (vol.label < 255)
    assert 0.02 < occupied.mean() < 0.5 and occupied[surface].mean() > 0.7  # 0.80 measured
