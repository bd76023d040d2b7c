"""Docs helpers of the synthetic rooms: label-only path, depth colour map, histogram."""

import numpy as np

from torchssc.geometry import Intrinsics
from torchssc.synth.generator import generate_frame
from synth_preview import class_histogram, depth_colormap, frame_labels, histogram_table

TINY = Intrinsics(fx=518.8579 / 16, fy=518.8579 / 16, cx=20.0, cy=15.0, width=40, height=30)


def test_frame_labels_equal_the_generated_ones():
    for fid in (1, 2):
        np.testing.assert_array_equal(frame_labels(13, fid), generate_frame(13, fid, intrinsics=TINY).labels)


def test_depth_colormap():
    depth = np.array([[0.0, 0.5, 3.0, 6.0, 9.0]])
    rgb = depth_colormap(depth, max_depth=6.0)
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all()  # missing is black
    assert (rgb[0, 3] == rgb[0, 4]).all()  # clipped beyond max_depth
    assert rgb[0, 1, 2] > rgb[0, 1, 0] and rgb[0, 3, 0] > rgb[0, 3, 2]  # near blue, far red


def test_class_histogram_counts_every_voxel():
    hist = class_histogram(13, 2)
    assert hist["label60"].sum() == 2 * 60 * 36 * 60
    assert hist["fine"].sum() == 2 * 240 * 144 * 240
    assert hist["present60"].max() <= 2 and hist["present60"][2] == 2  # floor is always there
    table = histogram_table(hist, 2)
    assert table.count("\n") == 2 + 13 - 1 and "objects" in table
