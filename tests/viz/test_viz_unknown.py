"""Unknown voxels (255: outside the room, or not seen by the camera; predict's observation rule)
are hidden in every picture, never drawn as a class."""

import json
import re

import numpy as np

from torchssc.viz.compose import legend
from torchssc.viz.html import encode_voxels, viewer_html
from torchssc.viz.mesh import voxel_mesh
from torchssc.viz.render import render_view


def _room(unknown: int) -> np.ndarray:
    """A floor, a back wall and a table; the near half of the grid is ``unknown`` (0 or 255)."""
    labels = np.zeros((24, 12, 24), np.uint8)
    labels[:, :, :10] = unknown
    labels[:, 0, 10:] = 2
    labels[:, :, 23] = 3
    labels[8:14, 1:4, 14:18] = 8
    return labels


def test_renders_hide_unknown_voxels():
    pose = np.eye(4)
    pose[:3, :3] = [[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]  # looking along +y, level
    pose[:3, 3] = (0.96, -1.0, 0.6)
    for view in ("camera", "oblique", "top"):
        hidden = render_view(_room(255), view, pose=pose, size=(96, 72), voxel=0.08)
        empty = render_view(_room(0), view, pose=pose, size=(96, 72), voxel=0.08)
        np.testing.assert_array_equal(hidden, empty)
        assert (hidden.min(axis=-1) < 200).mean() > 0.2  # the room is drawn in each view


def test_meshes_and_viewer_leave_unknown_out():
    assert len(voxel_mesh(_room(255), 0.08).faces) == len(voxel_mesh(_room(0), 0.08).faces)
    records, _ = encode_voxels(_room(255))
    assert 255 not in records["label"].tolist() and set(records["label"].tolist()) == {2, 3, 8}
    page = viewer_html(_room(255))
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))
    assert data["volumes"][0]["unknown"] == 24 * 12 * 10
    assert "voxels unknown (not seen: not drawn)" in page
    # the legend lists the classes only (1..11): 255 adds no entry
    assert data["names"][0] == "empty" and len(data["names"]) == 12


def test_legend_has_no_unknown_entry():
    # the legend is drawn from the classes alone: the default equals classes 1..11 exactly
    np.testing.assert_array_equal(legend(900), legend(900, classes=range(1, 12)))
