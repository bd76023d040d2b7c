"""Voxelisation of yaw-rotated boxes against a naive per-voxel separating-axis loop."""

import itertools
import math

import numpy as np
import pytest

from torchssc.synth.scene import BoxList
from torchssc.synth.voxelize import EPS, voxelize


def _corners(center, half, yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    out = []
    for sx, sy, sz in itertools.product((-1, 1), repeat=3):
        lx, ly, lz = sx * half[0], sy * half[1], sz * half[2]
        out.append((center[0] + c * lx - s * ly, center[1] + s * lx + c * ly, center[2] + lz))
    return np.array(out)


def _naive(boxes, room, origin, shape, voxel):
    """Per voxel: interior test on its centre, then a 3-D separating-axis test for every box.

    For a cube and a box rotated about z, the candidate axes are x, y, z and the box's two
    horizontal axes (the cross products of their edges add nothing new); both solids are
    projected through their 8 corners, and gaps up to EPS count as contact.
    """
    out = np.full(shape, 255, np.uint8)
    order = sorted(range(len(boxes)), key=lambda i: boxes.paint_order[i])
    for a, b, c in itertools.product(*(range(n) for n in shape)):
        lo = origin + voxel * np.array([a, c, b])  # world corner: X from a, Y from c, Z from b
        centre = lo + voxel / 2
        if 0 <= centre[0] <= room[0] and 0 <= centre[1] <= room[1] and 0 <= centre[2] <= room[2]:
            out[a, b, c] = 0
        cube = np.array([lo + voxel * np.array(k) for k in itertools.product((0, 1), repeat=3)])
        for i in order:
            yaw = boxes.yaw[i]
            corners = _corners(boxes.center[i], boxes.half[i], yaw)
            axes = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (math.cos(yaw), math.sin(yaw), 0), (-math.sin(yaw), math.cos(yaw), 0)]
            separated = False
            for ax in axes:
                p, q = cube @ np.array(ax), corners @ np.array(ax)
                if p.max() < q.min() - EPS or q.max() < p.min() - EPS:
                    separated = True
                    break
            if not separated:
                out[a, b, c] = boxes.raw[i]
    return out


@pytest.mark.parametrize("seed,shape", [(0, (9, 7, 11)), (1, (13, 5, 8)), (2, (7, 10, 9))])
def test_voxelize_matches_naive_sat(seed, shape):
    rng = np.random.default_rng(seed)
    voxel = 0.1
    origin = rng.uniform(-0.3, 0.0, 3)
    room = np.array([0.6, 0.7, 0.5])
    boxes = BoxList()
    for k in range(6):
        boxes.add(rng.uniform(0.0, 0.8, 3), rng.uniform(0.02, 0.25, 3), rng.uniform(-math.pi, math.pi),
                  1 + k, (1, 1, 1), 0, 0, int(rng.integers(0, 3)))
    boxes.add((0.3, 0.35, -0.02), (0.35, 0.4, 0.02), 0.0, 2, (1, 1, 1), 0, 0, 0)  # a floor slab
    b = boxes.finish()
    got = voxelize(b, room, origin, shape, voxel)
    ref = _naive(b, room, origin, shape, voxel)
    assert got.dtype == np.uint8 and got.shape == shape
    assert len(np.unique(ref)) >= 4  # the test sees several labels, 0 and 255
    np.testing.assert_array_equal(got, ref)


def test_axis_order_of_the_grid():
    """A thin box at world x in [0.31, 0.33] fills only array index a = 3 (axis 0 is world X)."""
    boxes = BoxList()
    boxes.add((0.32, 0.5, 0.5), (0.01, 2.0, 2.0), 0.0, 7, (1, 1, 1), 0, 0, 0)
    got = voxelize(boxes.finish(), np.array([1.0, 1.0, 1.0]), np.zeros(3), (6, 4, 5), 0.1)
    filled = np.argwhere(got == 7)
    assert set(filled[:, 0]) == {3}
    assert len(filled) == 4 * 5
    # the rest of the room interior is empty (0), nothing is outside it
    assert set(np.unique(got)) == {0, 7}
