"""Synthetic frames and datasets: consistency of depth and labels, files, determinism, classes."""

import math
from pathlib import Path

import numpy as np
import pytest

from torchssc.cli import main as cli_main
from torchssc.geometry import (
    FINE_SHAPE, NYU_INTRINSICS, Intrinsics, depth_to_grid_index, map_36_to_11, voxel_origin_for_pose,
)
from torchssc.io.depthbin import read_intrinsics_file, read_bin, read_depth_png
from torchssc.io.prepared import read_rgb, read_split
from torchssc.synth.generator import generate_dataset, generate_frame, split_ids
from torchssc.synth.rooms import sample_scene
from torchssc.synth.scene import rects_overlap

SMALL = Intrinsics(fx=518.8579 / 8, fy=518.8579 / 8, cx=40.0, cy=30.0, width=80, height=60)


def _hit_fraction(depth, labels, pose, origin, intrinsics=NYU_INTRINSICS):
    """Share of valid in-grid pixels whose back-projected point lands in a labelled voxel (1..36)."""
    idx, valid = depth_to_grid_index(depth, pose, origin, intrinsics)
    i = idx[valid]
    lab = labels[i[:, 0], i[:, 1], i[:, 2]]
    return ((lab > 0) & (lab < 255)).mean(), valid.sum()


@pytest.mark.parametrize("frame_id", [1, 2])
def test_full_size_exact_depth_lands_in_occupied_voxels(frame_id):
    frame = generate_frame(7, frame_id, noise="none")
    assert frame.depth.shape == (480, 640) and frame.rgb.shape == (480, 640, 3)
    assert frame.labels.shape == FINE_SHAPE and frame.labels.dtype == np.uint8
    np.testing.assert_array_equal(frame.depth, frame.depth_exact)
    frac, n = _hit_fraction(frame.depth, frame.labels, frame.pose, frame.origin)
    assert n > 10_000
    assert frac > 0.9
    # also once rounded to millimetres, as the depth file stores it
    frac_mm, _ = _hit_fraction(np.floor(frame.depth * 1000 + 0.5) / 1000, frame.labels, frame.pose, frame.origin)
    assert frac_mm > 0.9
    # and the rest of the grid is not all occupied (the test above could not fail otherwise)
    assert (frame.labels == 0).mean() > 0.2


def test_small_frames_consistent_and_camera_conventions():
    for fid in range(1, 7):
        frame = generate_frame(11, fid, intrinsics=SMALL, noise="none")
        frac, n = _hit_fraction(frame.depth, frame.labels, frame.pose, frame.origin, SMALL)
        assert n > 100 and frac > 0.9
        pose = frame.pose.astype(np.float64)
        np.testing.assert_allclose(frame.origin, voxel_origin_for_pose(pose), atol=1e-5)
        w, d, h = frame.scene.size
        assert 3.0 <= w <= 7.0 and 3.0 <= d <= 7.0 and 2.4 <= h <= 3.2
        cam = pose[:3, 3]
        assert 1.0 <= cam[2] <= 1.6 and 0 < cam[0] < w and 0 < cam[1] < d
        pitch = math.degrees(math.asin(-pose[2, 2]))  # optical axis below the horizon
        assert 5.0 - 1e-3 <= pitch <= 25.0 + 1e-3
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-6)
        assert np.linalg.det(pose[:3, :3]) > 0
        # image "down" points mostly down the world z axis (a hand-held camera, little roll)
        assert pose[2, 1] < -0.85
        # exact depth: every pixel sees a surface of the closed room
        assert (frame.depth > 0).all()


def _interiors_overlap(b, i, j, tol=1e-6):
    """Boxes rotated about z: their interiors meet iff they overlap along z and in the xy-plane."""
    if abs(b.center[i, 2] - b.center[j, 2]) >= b.half[i, 2] + b.half[j, 2] - tol:
        return False
    return rects_overlap(b.center[i, :2], b.half[i, :2] - tol, b.yaw[i], b.center[j, :2], b.half[j, :2] - tol, b.yaw[j])


def test_nothing_interpenetrates():
    """No two boxes of a room share interior volume (windows are set into their wall by design)."""
    for fid in range(1, 7):
        rng = np.random.default_rng(np.random.SeedSequence([3, fid]).spawn(3)[0])
        scene = sample_scene(rng)
        b = scene.boxes
        label = b.label11
        assert len(b) > 30
        assert _interiors_overlap(b, 0, 0)  # the test can see an overlap
        # the camera is in free space, 10 cm from any box
        cam = scene.pose[:3, 3]
        c, s = np.cos(b.yaw), np.sin(b.yaw)
        rel = cam - b.center
        local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], axis=1)
        assert np.all(np.any(np.abs(local) > b.half + 0.1, axis=1))
        for i in range(len(b)):
            for j in range(i + 1, len(b)):
                if {label[i], label[j]} == {3, 4} or {label[i], label[j]} <= {1, 2, 3}:
                    continue  # window in wall; walls, floor and ceiling meet at the corners
                assert not _interiors_overlap(b, i, j), (fid, i, j, label[i], label[j])


def test_every_class_appears_over_a_small_batch():
    seen = set()
    for fid in range(1, 9):
        frame = generate_frame(0, fid, intrinsics=SMALL, noise="none")
        seen |= set(np.unique(map_36_to_11(frame.labels)).tolist())
    assert set(range(1, 12)) <= seen, f"missing classes {set(range(1, 12)) - seen}"


def test_kinect_noise_keeps_the_room_and_corrupts_the_depth():
    exact = generate_frame(4, 3, noise="none")
    noisy = generate_frame(4, 3, noise="kinect")
    np.testing.assert_array_equal(exact.rgb, noisy.rgb)
    np.testing.assert_array_equal(exact.labels, noisy.labels)
    assert (noisy.depth[:, :6] == 0).all()  # invalid left border
    both = (noisy.depth > 0) & (exact.depth > 0)
    assert 0.7 < both.mean() < 0.995
    err = np.abs(noisy.depth[both] - exact.depth[both])
    z = exact.depth[both]
    assert np.median(err) > 1e-4  # noisy at all
    assert np.all(err < 0.02 + 0.03 * z**2)  # but by Kinect amounts
    assert noisy.depth[noisy.depth > 0].min() >= 0.4 and noisy.depth.max() <= 8.0


def test_split_ids():
    train, test = split_ids(10, 3, 0.3)
    assert len(test) == 3 and sorted(train + test) == list(range(1, 11))
    assert split_ids(10, 3, 0.3) == (train, test)
    assert split_ids(10, 4, 0.3) != (train, test)
    assert split_ids(3, 0, 0.01)[1] != []  # at least one test frame when asked for some
    assert split_ids(5, 0, 0.0) == ([1, 2, 3, 4, 5], [])
    with pytest.raises(ValueError, match="test fraction"):
        split_ids(5, 0, 1.5)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_files_read_back_and_are_deterministic_across_workers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    split = generate_dataset(a, 4, seed=9, test_fraction=0.25, noise="kinect", workers=1, intrinsics=SMALL)
    generate_dataset(b, 4, seed=9, test_fraction=0.25, noise="kinect", workers=2, intrinsics=SMALL)
    files_a, files_b = _tree_bytes(a), _tree_bytes(b)
    assert files_a.keys() == files_b.keys() and len(files_a) == 4 * 3 + 2 + 2  # + intrinsics.json x 2
    for name in files_a:
        assert files_a[name] == files_b[name], name
    assert read_split(a, "train") == [f"{i:04d}" for i in split["train"]]
    assert read_split(a, "test") == [f"{i:04d}" for i in split["test"]]
    assert len(split["test"]) == 1
    for sub in ("NYUtrain", "NYUtest"):  # the camera is recorded for `torchssc prepare`
        assert read_intrinsics_file(a / sub) == SMALL
    for sub, ids in (("NYUtrain", split["train"]), ("NYUtest", split["test"])):
        for i in ids:
            db = read_bin(a / sub / f"NYU{i:04d}_0000.bin")
            depth = read_depth_png(a / sub / f"NYU{i:04d}_0000.png", size=(60, 80))
            rgb = read_rgb(a / sub / f"NYU{i:04d}_colors.png")
            frame = generate_frame(9, i, intrinsics=SMALL, noise="kinect")
            np.testing.assert_array_equal(db.labels, frame.labels)
            np.testing.assert_array_equal(db.pose, frame.pose)
            np.testing.assert_array_equal(db.origin, frame.origin)
            np.testing.assert_allclose(depth, frame.depth, atol=5e-4 + 1e-6)  # millimetre codec
            np.testing.assert_array_equal(rgb, frame.rgb)
            assert set(np.unique(db.labels).tolist()) <= set(range(37)) | {255}
    # another seed, another dataset
    c = tmp_path / "c"
    generate_dataset(c, 4, seed=10, test_fraction=0.25, workers=1, intrinsics=SMALL)
    assert _tree_bytes(c) != files_a
    # the same command again rewrites the same bytes; a different split into the same folder is refused
    generate_dataset(a, 4, seed=9, test_fraction=0.25, noise="kinect", workers=1, intrinsics=SMALL)
    assert _tree_bytes(a) == files_a
    with pytest.raises(ValueError, match="would not write"):
        generate_dataset(a, 3, seed=9, test_fraction=0.25, intrinsics=SMALL)


def test_cli_writes_full_size_rgb(tmp_path):
    out = tmp_path / "ds"
    assert cli_main(["synth", "--out", str(out), "--frames", "1", "--seed", "2", "--noise", "none",
                     "--test-fraction", "0"]) == 0
    rgb = read_rgb(out / "NYUtrain" / "NYU0001_colors.png")
    assert rgb.shape == (NYU_INTRINSICS.height, NYU_INTRINSICS.width, 3)
    assert rgb.std() > 10  # textured, shaded, not flat
    assert read_split(out, "test") == []
    with pytest.raises(ValueError, match="noise"):
        generate_frame(0, 1, noise="bogus")
    assert cli_main(["synth", "--out", str(tmp_path / "x"), "--frames", "0"]) == 2
    assert cli_main(["synth", "--out", str(tmp_path / "x"), "--frames", "2", "--workers", "0"]) == 2
