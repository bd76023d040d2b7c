"""Pose estimation against analytic rooms with a known camera, and the real NYU sample."""

import numpy as np
import pytest

from torchssc.geometry import NYU_INTRINSICS, Intrinsics
from torchssc.io.depthbin import read_bin, read_depth_png
from torchssc.predict.pose import estimate_pose


def camera_pose(height: float, pitch_deg: float, yaw_deg: float) -> np.ndarray:
    """Camera-to-world: level camera looking along world +y, pitched down, then yawed."""
    base = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # cam x->X, cam y->-Z, cam z->Y
    p = np.radians(pitch_deg)
    pitch = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])  # about cam x
    y = np.radians(yaw_deg)
    yaw = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, :3] = yaw @ base @ pitch
    pose[:3, 3] = (0.3, -0.2, height)
    return pose


def render_box_room(pose, size=(6.0, 5.0, 2.8), intr: Intrinsics = NYU_INTRINSICS, table=True):
    """Exact depth of an axis-aligned room [-3,3]x[-2.5,2.5]x[0,2.8] (+ a table top at 0.75 m)."""
    h, w = intr.height, intr.width
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], -1)
    dirs = rays @ pose[:3, :3].T
    origin = pose[:3, 3]
    t_best = np.full((h, w), np.inf)
    half = (size[0] / 2, size[1] / 2)
    for axis, value in ((0, -half[0]), (0, half[0]), (1, -half[1]), (1, half[1]), (2, 0.0), (2, size[2])):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - origin[axis]) / dirs[..., axis]
        t = np.where(t > 0, t, np.inf)
        t_best = np.minimum(t_best, t)
    if table:  # a horizontal rectangle at 0.75 m in front of the camera
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (0.75 - origin[2]) / dirs[..., 2]
        hit = origin + t[..., None] * dirs
        on = (t > 0) & (np.abs(hit[..., 0] - 0.5) < 0.5) & (np.abs(hit[..., 1] - 1.0) < 0.4)
        t_best = np.where(on, np.minimum(t_best, t), t_best)
    return (t_best * rays[..., 2]).astype(np.float32)  # depth = z in camera = t (rays have z=1)


@pytest.mark.parametrize("height,pitch,yaw", [(1.3, 15.0, 20.0), (1.0, 5.0, -30.0), (1.6, 25.0, 3.0)])
def test_recovers_gravity_height_and_room_axes(height, pitch, yaw):
    pose = camera_pose(height, pitch, yaw)
    depth = render_box_room(pose)
    est = estimate_pose(depth)
    true_up = pose[2, :3]  # world z in camera coordinates
    assert np.degrees(np.arccos(np.clip(est.up_cam @ true_up, -1, 1))) < 0.5
    assert abs(est.camera_height - height) < 0.01
    # Room axes agree modulo 90 degrees: the estimated world x is parallel to a true room axis.
    rel = pose[:3, :3] @ est.pose[:3, :3].T  # true_world_from_est_world
    x_in_true = rel[:, 0]
    assert np.max(np.abs(x_in_true[:2])) > np.cos(np.radians(1.0))
    # The estimate is a proper rotation with translation (0, 0, height).
    r = est.pose[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(est.pose[:3, 3], (0, 0, est.camera_height))


def test_floor_not_table_is_chosen():
    pose = camera_pose(1.4, 20.0, 0.0)
    est = estimate_pose(render_box_room(pose, table=True))
    assert abs(est.camera_height - 1.4) < 0.01  # the table top is at 0.65 m below the camera


def test_deterministic_and_missing_depth_tolerated():
    pose = camera_pose(1.2, 12.0, 10.0)
    depth = render_box_room(pose)
    rng = np.random.default_rng(0)
    depth[rng.random(depth.shape) < 0.3] = 0  # holes
    a, b = estimate_pose(depth, seed=3), estimate_pose(depth, seed=3)
    np.testing.assert_array_equal(a.pose, b.pose)
    assert abs(a.camera_height - 1.2) < 0.02


def test_no_floor_is_a_clear_error():
    depth = np.full((480, 640), 2.0, dtype=np.float32)  # a wall facing the camera, no floor
    with pytest.raises(ValueError, match="horizontal|floor"):
        estimate_pose(depth)


def test_real_sample_gravity_within_one_degree(nyu_sample):
    frame = read_bin(nyu_sample / "NYU0001_0000.bin")
    depth = read_depth_png(nyu_sample / "NYU0001_0000.png")
    est = estimate_pose(depth)
    true_up = frame.pose[2, :3].astype(np.float64)
    assert np.degrees(np.arccos(np.clip(est.up_cam @ true_up, -1, 1))) < 1.0
    # Ground-truth floor voxels top out at z = 0.03 m: camera 1.15 m above them; Kinect depth
    # puts the fitted plane a few centimetres lower.
    assert abs(est.camera_height - 1.18) < 0.08
