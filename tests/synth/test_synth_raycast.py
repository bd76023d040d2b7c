"""Ray casting of yaw-rotated boxes against a naive per-pixel, per-face loop."""

import math

import numpy as np
import pytest

from torchssc.geometry import Intrinsics, backproject, camera_to_world
from torchssc.synth.raycast import raycast, surface_frames
from torchssc.synth.scene import BoxList


def _random_boxes(rng, n):
    boxes = BoxList()
    for _ in range(n):
        boxes.add(rng.uniform([-1.5, 1.0, -0.5], [1.5, 4.0, 1.5]), rng.uniform(0.05, 0.6, 3),
                  rng.uniform(-math.pi, math.pi), 3, (0.5, 0.5, 0.5), 0, 0, 0)
    return boxes.finish()


def _pose(rng):
    """Camera at (0, 0, 1) looking along +y, pitched down, slightly rolled."""
    pitch, roll = math.radians(rng.uniform(5, 25)), math.radians(rng.uniform(-3, 3))
    fwd = np.array([0.0, math.cos(pitch), -math.sin(pitch)])
    right = np.array([1.0, 0.0, 0.0])
    down = np.cross(fwd, right)
    right, down = math.cos(roll) * right + math.sin(roll) * down, -math.sin(roll) * right + math.cos(roll) * down
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, fwd, (0.0, 0.0, 1.0)
    return pose


def _naive(boxes, pose, intr):
    """Per pixel, per box, per face: intersect the face plane, keep the point if it is on the face."""
    depth = np.zeros((intr.height, intr.width))
    index = np.full((intr.height, intr.width), -1)
    for v in range(intr.height):
        for u in range(intr.width):
            d_cam = np.array([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, 1.0])
            d = pose[:3, :3] @ d_cam
            best = math.inf
            for i in range(len(boxes)):
                c, s = math.cos(boxes.yaw[i]), math.sin(boxes.yaw[i])
                to_local = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
                o = to_local @ (pose[:3, 3] - boxes.center[i])
                dl = to_local @ d
                for axis in range(3):
                    for side in (-1, 1):
                        if dl[axis] == 0:
                            continue
                        t = (side * boxes.half[i][axis] - o[axis]) / dl[axis]
                        p = o + t * dl
                        if t > 1e-3 and np.all(np.abs(p) <= boxes.half[i] + 1e-9) and t < best:
                            best, depth[v, u], index[v, u] = t, t, i
    return depth, index


@pytest.mark.parametrize("seed,size", [(0, (13, 9)), (1, (17, 11)), (2, (8, 15))])
def test_raycast_matches_naive_loop(seed, size):
    rng = np.random.default_rng(seed)
    w, h = size
    intr = Intrinsics(fx=w * 0.8, fy=w * 0.8, cx=(w - 1) / 2, cy=(h - 1) / 2, width=w, height=h)
    boxes = _random_boxes(rng, 7)
    pose = _pose(rng)
    hits = raycast(boxes, pose, intr)
    ref_depth, ref_index = _naive(boxes, pose, intr)
    assert (ref_depth > 0).mean() > 0.2  # the scene is actually seen
    np.testing.assert_allclose(hits.depth, ref_depth, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(hits.index, ref_index)


def test_backprojected_depth_lies_on_the_box_it_hit():
    rng = np.random.default_rng(5)
    intr = Intrinsics(fx=60.0, fy=60.0, cx=20.0, cy=15.0, width=41, height=31)
    boxes = _random_boxes(rng, 10)
    pose = _pose(rng)
    hits = raycast(boxes, pose, intr)
    points = camera_to_world(backproject(hits.depth, intr), pose)
    surf = surface_frames(boxes, hits, pose)
    hit = hits.index >= 0
    np.testing.assert_allclose(points[hit], surf["world"], atol=1e-5)
    # on the box surface: inside the closed box, one coordinate at +-half
    local_ratio = np.abs(surf["local"]) / boxes.half[surf["box"]]
    assert np.all(local_ratio <= 1 + 1e-4)
    np.testing.assert_allclose(local_ratio.max(axis=1), 1.0, atol=1e-4)
    # normals are unit, face the camera (a ray enters through a face turned towards it)
    np.testing.assert_allclose(np.linalg.norm(surf["normal"], axis=1), 1.0, atol=1e-6)
    assert np.all(np.einsum("ij,ij->i", surf["normal"], surf["ray"]) < 1e-6)


def test_box_behind_camera_is_culled_but_straddling_box_is_not():
    intr = Intrinsics(fx=30.0, fy=30.0, cx=10.0, cy=7.0, width=21, height=15)
    pose = np.eye(4)  # camera at origin looking along world z
    boxes = BoxList()
    boxes.add((0.0, 0.0, -2.0), (0.5, 0.5, 0.5), 0.0, 3, (1, 1, 1), 0, 0, 0)  # behind
    boxes.add((0.0, 0.0, 3.0), (10.0, 10.0, 0.1), 0.3, 2, (1, 1, 1), 0, 0, 0)  # a wall ahead
    boxes.add((0.3, 0.0, 0.0), (0.1, 0.1, 2.0), 0.0, 4, (1, 1, 1), 0, 0, 0)  # straddles z = 0
    b = boxes.finish()
    hits = raycast(b, pose, intr)
    ref_depth, ref_index = _naive(b, pose, intr)
    np.testing.assert_array_equal(hits.index, ref_index)
    np.testing.assert_allclose(hits.depth, ref_depth, atol=1e-9)
    assert (hits.index == 2).any() and not (hits.index == 0).any()
