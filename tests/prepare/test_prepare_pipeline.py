"""prepare_frame / prepare_depthbin on the real NYU sample (one full-size run, shared)."""

from __future__ import annotations

import numpy as np
import pytest

from torchssc import geometry as g
from torchssc.io.depthbin import read_bin, read_depth_png
from torchssc.io.prepared import read_frame, write_frame
from torchssc.prepare import prepare_depthbin, prepare_frame
from torchssc.prepare.downsample import downsample_mean
from torchssc.prepare.pipeline import STAGES



@pytest.fixture(scope="module")
def bin_path(nyu_sample):
    return nyu_sample / "NYU0001_0000.bin"


@pytest.fixture(scope="module")
def frame(bin_path):
    timings: dict = {}
    out = prepare_depthbin(bin_path, fine=True, timings=timings)
    out.timings = timings
    return out


def test_fields_shapes_dtypes(frame):
    assert frame.tsdf.shape == g.LABEL_SHAPE and frame.tsdf.dtype == np.float32
    for name in ("label_weight", "label", "sketch", "visibility"):
        arr = getattr(frame, name)
        assert arr.shape == g.LABEL_SHAPE and arr.dtype == np.uint8, name
    assert frame.mapping.shape == (g.LABEL_NUMEL,) and frame.mapping.dtype == np.int64
    assert frame.tsdf_fine.shape == g.FINE_SHAPE and frame.tsdf_fine.dtype == np.float32
    assert frame.depth.shape == (480, 640)
    np.testing.assert_array_equal(frame.intrinsics, g.RELEASE_INTRINSICS.as_array())  # NYU default
    np.testing.assert_allclose(frame.origin, [-1.545918, 0.8907361, -0.05], atol=1e-6)
    assert set(frame.timings) >= set(STAGES) | {"read"}


def test_real_frame_facts(frame):
    label = frame.label
    assert set(np.unique(label).tolist()) <= set(range(12)) | {255}
    # about half of the grid is weighted (docs/data.md), every labelled voxel included
    assert 0.4 < frame.label_weight.mean() < 0.65
    assert frame.label_weight[(label >= 1) & (label <= 11)].all()
    # arr_0 is a mean of values in [-1, 1]; a large occluded region behind the surface
    assert frame.tsdf.min() >= -1 and frame.tsdf.max() <= 1 and (frame.tsdf < -0.5).sum() > 10000
    # mapping: a few thousand voxels, each holding a measured surface
    mapped = frame.mapping < g.RELEASE_INTRINSICS.num_pixels
    assert 1000 < mapped.sum() < 10000
    assert frame.mapping[mapped].max() < 307200 and frame.mapping[mapped].min() >= 0
    vis = frame.visibility.ravel()
    assert set(np.unique(vis[mapped]).tolist()) <= {g.VIS_SURFACE, g.VIS_OUTSIDE_ROOM}
    assert ((label.ravel()[mapped] >= 1) & (label.ravel()[mapped] <= 11)).mean() > 0.6
    # every visibility code but "missing depth" is common on this frame (depth is dense)
    counts = np.bincount(vis, minlength=6)
    for code in (g.VIS_OUTSIDE_VIEW, g.VIS_FREE, g.VIS_SURFACE, g.VIS_OCCLUDED, g.VIS_OUTSIDE_ROOM):
        assert counts[code] > 500, code
    np.testing.assert_array_equal(vis == g.VIS_OUTSIDE_ROOM, label.ravel() == 255)
    # sketch: class boundaries only, a few thousand voxels
    assert 1000 < frame.sketch.sum() < 20000
    # fine flipped TSDF: surface 1, free/unknown 0.001, occluded -0.001 dominate
    fine = frame.tsdf_fine
    assert (fine == 1.0).sum() > 10000 and (fine == np.float32(0.001)).sum() > 10 ** 6
    assert (fine == np.float32(-0.001)).sum() > 10 ** 6


def test_prepare_frame_matches_depthbin_and_round_trips(frame, bin_path, tmp_path):
    raw = read_bin(bin_path)
    depth = read_depth_png(bin_path.with_suffix(".png"))
    rgb = np.zeros((480, 640, 3), np.uint8)
    again = prepare_frame(
        depth, raw.pose, raw.origin, raw.labels, intrinsics=g.RELEASE_INTRINSICS, rgb=rgb, tie_rule="sscnet"
    )
    assert again.tsdf_fine is None and again.rgb is rgb
    np.testing.assert_array_equal(again.tsdf, frame.tsdf)
    np.testing.assert_array_equal(again.mapping, frame.mapping)
    # the two tie rules differ only where blocks tie (0 vs 255 and between classes)
    differ = again.label != frame.label
    assert 0 < differ.sum() < 0.02 * differ.size
    write_frame(tmp_path, "0001", frame)
    back = read_frame(tmp_path, "0001", fine=True, visibility=True, depth=True)
    for name in ("tsdf", "label_weight", "mapping", "label", "sketch", "visibility", "pose", "origin"):
        got = getattr(back, name)
        np.testing.assert_array_equal(got, np.asarray(getattr(frame, name)).reshape(got.shape), err_msg=name)
    np.testing.assert_allclose(back.tsdf_fine, frame.tsdf_fine, atol=1e-3)


def test_bad_arguments(tmp_path):
    depth = np.zeros((480, 640), np.float32)
    labels = np.zeros((8, 8, 8), np.uint8)
    intr = g.SSCNET_INTRINSICS
    with pytest.raises(ValueError, match="rgb"):
        prepare_frame(depth, np.eye(4), np.zeros(3), labels, intrinsics=intr, rgb=np.zeros((480, 640), np.uint8))
    with pytest.raises(ValueError, match="tie_rule"):
        prepare_frame(depth, np.eye(4), np.zeros(3), labels, intrinsics=intr, tie_rule="smallest")
    with pytest.raises(ValueError, match="divisible"):
        prepare_frame(depth, np.eye(4), np.zeros(3), np.zeros((8, 8, 6), np.uint8), intrinsics=intr)
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        prepare_depthbin(tmp_path / "nope.bin")


def test_empty_depth_gives_empty_observations():
    """No valid depth: nothing observed, no mapping, TSDF all 0; labels still downsampled."""
    depth = np.zeros((480, 640), np.float32)
    labels = np.full((8, 12, 8), 3, np.uint8)
    pose = np.eye(4)
    out = prepare_frame(depth, pose, np.array([-0.1, -0.1, 0.5]), labels, intrinsics=g.SSCNET_INTRINSICS, fine=True)
    assert (out.tsdf == 0).all() and (out.mapping == 307200).all()
    assert (out.tsdf_fine == np.float32(0.001)).all()
    assert (out.label == g.NYU36_TO_11[3]).all() and out.label_weight.all()
    np.testing.assert_array_equal(downsample_mean(np.zeros((8, 12, 8))), out.tsdf)


def test_depth_hits_agree_with_geometry(bin_path):
    """Surface voxels and mapping (float32, the release's arithmetic) use the voxels of
    geometry.depth_to_grid_index (float64) but for 3 of the sample's pixels, each one voxel
    away along one axis (a point within float32 rounding of a voxel boundary)."""
    from torchssc.prepare.tsdf import depth_hits

    raw = read_bin(bin_path)
    depth = read_depth_png(bin_path.with_suffix(".png"))
    pixels, voxels = depth_hits(depth, raw.pose, raw.origin, intrinsics=g.SSCNET_INTRINSICS)
    idx, valid = g.depth_to_grid_index(depth, raw.pose, raw.origin, intrinsics=g.SSCNET_INTRINSICS)
    np.testing.assert_array_equal(pixels, np.flatnonzero(valid.ravel()))
    diff = voxels - idx.reshape(-1, 3)[pixels]
    assert (diff != 0).sum() == 3 and np.abs(diff).max() == 1
    assert pixels.size == 259_404


def test_depthbin_with_wrong_png_size(bin_path, tmp_path):
    from torchssc.io.depthbin import write_bin, write_depth_png

    raw = read_bin(bin_path)
    write_bin(tmp_path / "NYU0002_0000.bin", raw.origin, raw.pose, raw.labels)
    write_depth_png(tmp_path / "NYU0002_0000.png", np.ones((240, 320)))
    with pytest.raises(ValueError, match="NYU0002_0000.png.*320x240, expected 640x480"):
        prepare_depthbin(tmp_path / "NYU0002_0000.bin")
    with pytest.raises(FileNotFoundError, match="NYU0003_0000.png"):
        write_bin(tmp_path / "NYU0003_0000.bin", raw.origin, raw.pose, raw.labels)
        prepare_depthbin(tmp_path / "NYU0003_0000.bin")
