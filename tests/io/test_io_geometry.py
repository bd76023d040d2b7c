"""geometry conventions: transforms, rounding, origin rule, class mapping, intrinsics."""

from __future__ import annotations

import numpy as np
import pytest

from torchssc import geometry as g


def test_round_half_away_and_project():
    x = np.array([-2.5, -1.5, -0.5, -0.4, 0.4, 0.5, 1.5, 2.5])
    np.testing.assert_array_equal(g.round_half_away(x), [-3, -2, -1, -0, 0, 1, 2, 3])
    u, v = g.project(np.array([[0.0, 0.0, 2.0], [1.0, -0.5, 2.0]]))
    np.testing.assert_array_equal(u, [320, int(np.floor(320 + 518.8579 / 2 + 0.5))])
    np.testing.assert_array_equal(v, [240, int(np.floor(240 - 518.8579 / 4 + 0.5))])


def test_world_camera_grid_round_trips():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = q, rng.normal(size=3)
    pts = rng.normal(size=(7, 3))
    np.testing.assert_allclose(g.world_to_camera(g.camera_to_world(pts, pose), pose), pts, atol=1e-12)
    origin = np.array([0.3, -1.0, -0.05])
    idx = np.array([[1, 2, 3], [239, 143, 239]])
    world = g.grid_to_world(idx, origin)
    np.testing.assert_allclose(world[0], origin + 0.02 * np.array([1, 3, 2]))  # X<-a, Y<-c, Z<-b
    np.testing.assert_allclose(g.world_to_grid(world, origin), idx, atol=1e-9)


def test_backproject_and_grid_index():
    depth = np.zeros((480, 640))
    depth[240, 320] = 2.0
    depth[0, 0] = 1.0
    cam = g.backproject(depth)
    np.testing.assert_allclose(cam[240, 320], [0, 0, 2.0])
    np.testing.assert_allclose(cam[0, 0], [-320 / 518.8579, -240 / 518.8579, 1.0])
    pose = np.eye(4)
    idx, valid = g.depth_to_grid_index(depth, pose, np.array([-1.0, -1.0, 0.0]))
    assert valid.sum() == 2
    np.testing.assert_array_equal(idx[240, 320], [50, 100, 50])  # (x, z, y) = (1, 2, 1) m / 0.02
    with pytest.raises(ValueError, match="rounding"):
        g.depth_to_grid_index(depth, pose, np.zeros(3), rounding="ceil")


def test_voxel_origin_rule():
    pose = np.eye(4)
    pose[:3, 3] = (1.0, 2.0, 1.5)
    # camera looking along world +Y (camera z -> world y, camera y (down) -> world -z)
    pose[:3, :3] = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=float)
    np.testing.assert_allclose(g.voxel_origin_for_pose(pose), [1.0 - 2.4, 2.0 + 3.4 - 2.4, -0.05])


def test_map_36_to_11():
    raw = np.array([0, 1, 5, 16, 36, 255])
    np.testing.assert_array_equal(g.map_36_to_11(raw), [0, 1, 11, 9, 11, 255])
    assert g.map_36_to_11(raw).dtype == np.uint8
    with pytest.raises(ValueError, match="37"):
        g.map_36_to_11(np.array([37]))
    with pytest.raises(ValueError):
        g.map_36_to_11(np.array([-1]))
    assert len(g.NYU36_TO_11) == 37 and len(g.CLASS_NAMES) == g.NUM_CLASSES == len(g.PALETTE)
    lut = g.palette_with_ignore()
    assert lut.shape == (256, 3) and (lut[255] == g.IGNORE_COLOR).all()


def test_intrinsics_parse_and_arrays():
    intr = g.Intrinsics.parse("518.8579,519.4696,325.58,253.74")
    assert (intr.width, intr.height) == (640, 480) and intr.fy == pytest.approx(519.4696)
    again = g.Intrinsics.from_array(intr.as_array())
    assert again == intr and again.num_pixels == 307200
    np.testing.assert_allclose(intr.matrix, [[518.8579, 0, 325.58], [0, 519.4696, 253.74], [0, 0, 1]])
    with pytest.raises(ValueError, match="4 .* or 6"):
        g.Intrinsics.from_array([1, 2, 3])
    with pytest.raises(ValueError, match="cannot parse"):
        g.Intrinsics.parse("a,b,c,d")
