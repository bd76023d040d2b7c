"""The HTML viewer's first view (viz/camera.py ``viewer_view``): behind the frame's camera, looking
along its optical axis; NYU's usual camera when the volume has no pose."""

import json
import math
import re

import numpy as np
import pytest

from torchssc.geometry import voxel_origin_for_pose
from torchssc.viz.camera import VIEWER_BEHIND, nyu_default_camera, viewer_view
from torchssc.viz.html import viewer_html

NYU_BOX = np.array([4.8, 4.8, 2.88])


def _pose(yaw_deg: float, pitch_deg: float, position) -> np.ndarray:
    """Camera-to-world of a camera looking at heading ``yaw`` (0 = +x), ``pitch`` degrees down."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = position
    return pose


def _orbit_eye(orbit: dict) -> np.ndarray:
    """The eye the page computes from its orbit parameters (html.py's draw())."""
    cp = math.cos(orbit["pitch"])
    return np.asarray(orbit["target"]) + orbit["dist"] * np.array(
        [cp * math.cos(orbit["yaw"]), cp * math.sin(orbit["yaw"]), math.sin(orbit["pitch"])])


@pytest.mark.parametrize("yaw,pitch", [(75.5, 0.7), (90.0, 20.0), (-30.0, 10.0)])
def test_view_stands_behind_the_camera_looking_along_its_axis(yaw, pitch):
    pose = _pose(yaw, pitch, (1.0, -2.0, 1.3))
    origin = voxel_origin_for_pose(pose)  # SSCNet's box in front of the camera
    view = viewer_view(NYU_BOX, pose, origin)
    camera = pose[:3, 3] - origin  # in the page's coordinates (metres from the grid corner)
    forward = pose[:3, 2]
    # the eye is VIEWER_BEHIND metres behind the camera, on its optical axis
    np.testing.assert_allclose(view.eye, camera - VIEWER_BEHIND * forward, atol=1e-9)
    # it looks along the camera's viewing direction, at a point ahead of the camera
    direction = (view.target - view.eye) / np.linalg.norm(view.target - view.eye)
    np.testing.assert_allclose(direction, forward, atol=1e-9)
    ahead = float(np.dot(view.target - camera, forward))
    assert ahead >= 1.0
    # the target is the point of the axis nearest the box's centre: SSCNet's box centre is 3.4 m
    # along the optical axis horizontally, so the target is about that far (pitch moves it)
    assert abs(ahead - 3.4) < 0.6
    # the page's orbit parameters give the same eye and target
    orbit = view.orbit()
    np.testing.assert_allclose(_orbit_eye(orbit), view.eye, atol=1e-9)
    np.testing.assert_allclose(orbit["target"], view.target)


def test_view_of_scene_0001_pose_looks_into_the_box():
    # scene 0001's pose and origin (../shared/data/nyu_sample NYU0001_0000.bin, rounded)
    pose = np.array([[0.967, 0.043, 0.251, 0.0], [-0.251, 0.001, 0.968, 0.0],
                     [0.041, -0.999, 0.012, 1.179], [0.0, 0.0, 0.0, 1.0]])
    origin = np.array([-1.546, 0.891, -0.05])
    view = viewer_view(NYU_BOX, pose, origin)
    camera = pose[:3, 3] - origin  # (1.546, -0.891, 1.229): outside the box's y = 0 side
    assert view.eye[1] < camera[1] < 0.0 < view.target[1] < NYU_BOX[1]  # behind it, looking in (+y)
    assert 0.0 < view.target[0] < NYU_BOX[0] and 0.0 < view.target[2] < NYU_BOX[2]


def test_view_without_pose_is_nyus_usual_camera():
    position, forward = nyu_default_camera(NYU_BOX)
    # 1 m outside the y = 0 side, centred in x, looking along +y and down, at the box's centre
    assert position[1] == pytest.approx(-1.0)
    assert position[0] == pytest.approx(2.4)
    assert forward[1] > 0.9 and forward[2] < 0 and forward[0] == 0
    view = viewer_view(NYU_BOX)
    np.testing.assert_allclose(view.target, NYU_BOX / 2, atol=1e-9)
    np.testing.assert_allclose(view.eye, position - VIEWER_BEHIND * forward, atol=1e-9)
    # a pose without an origin cannot be placed in the grid: the same default
    np.testing.assert_allclose(viewer_view(NYU_BOX, _pose(0, 0, (0, 0, 1)), None).eye, view.eye)


def test_page_embeds_the_view():
    labels = np.zeros((60, 36, 60), np.uint8)
    labels[:, 0] = 2
    pose = _pose(80.0, 12.0, (0.3, 0.2, 1.4))
    origin = voxel_origin_for_pose(pose)
    page = viewer_html(labels, pose=pose, origin=origin)
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))
    want = viewer_view(NYU_BOX, pose, origin).orbit()
    for key in ("yaw", "pitch", "dist"):
        assert data["view"][key] == pytest.approx(want[key])
    np.testing.assert_allclose(data["view"]["target"], want["target"])
    assert "function reset() { const v = DATA.view;" in page
