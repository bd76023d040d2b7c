"""Prepared TorchSSC layout: round trips, tolerant readers (dtypes, flat vs 3-D), missing files."""

from __future__ import annotations

import numpy as np
import pytest

from torchssc.data import SSCDataset

from torchssc.geometry import FINE_SHAPE, LABEL_NUMEL, LABEL_SHAPE
from torchssc.io.prepared import (
    PreparedFrame,
    frame_paths,
    missing_files,
    read_frame,
    read_rgb,
    read_split,
    write_frame,
    write_rgb,
    write_split,
)


def _frame(seed=0, extras=False):
    rng = np.random.default_rng(seed)
    label = rng.choice([0, 3, 11, 255], LABEL_SHAPE).astype(np.uint8)
    frame = PreparedFrame(
        tsdf=rng.uniform(-1, 1, LABEL_SHAPE).astype(np.float32),
        label_weight=(rng.random(LABEL_SHAPE) < 0.5).astype(np.uint8),
        mapping=rng.integers(0, 307201, LABEL_NUMEL).astype(np.int64),
        label=label,
        sketch=(rng.random(LABEL_SHAPE) < 0.1).astype(np.uint8),
    )
    if extras:
        frame.rgb = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)
        frame.pose = np.eye(4) + rng.normal(0, 0.1, (4, 4))
        frame.origin = rng.normal(0, 1, 3)
        frame.intrinsics = np.array([518.8579, 518.8579, 320, 240, 640, 480.0])
        frame.visibility = rng.integers(0, 6, LABEL_SHAPE).astype(np.uint8)
        frame.depth = np.round(rng.uniform(0, 5, (480, 640)), 3).astype(np.float32)
        frame.tsdf_fine = np.full(FINE_SHAPE, 0.001, np.float32)
        frame.tsdf_fine[::7] = 1.0
        frame.tsdf_fine[1::7] = -0.001
    return frame


def test_round_trip_all_fields(tmp_path):
    frame = _frame(extras=True)
    write_frame(tmp_path, "0042", frame)
    assert missing_files(tmp_path, "0042") == []
    back = read_frame(tmp_path, "0042", fine=True, visibility=True, depth=True)
    for name in ("tsdf", "label_weight", "label", "sketch", "visibility", "rgb"):
        np.testing.assert_array_equal(getattr(back, name), getattr(frame, name), err_msg=name)
    np.testing.assert_array_equal(back.mapping, frame.mapping)
    np.testing.assert_array_equal(back.pose, frame.pose)
    np.testing.assert_array_equal(back.origin, frame.origin)
    np.testing.assert_array_equal(back.intrinsics, frame.intrinsics)
    np.testing.assert_allclose(back.depth, frame.depth, atol=5e-4)
    np.testing.assert_allclose(back.tsdf_fine, frame.tsdf_fine, rtol=1e-3)
    # compact dtypes on disk, TorchSSC keys
    with np.load(frame_paths(tmp_path, "0042")["label"]) as z:
        assert z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (LABEL_NUMEL,)
    with np.load(frame_paths(tmp_path, "0042")["tsdf"]) as z:
        assert set(z.keys()) == {"arr_0", "arr_1"} and z["arr_0"].dtype == np.float32


def test_minimal_frame_without_extras(tmp_path):
    write_frame(tmp_path, "0001", _frame(1))
    back = read_frame(tmp_path, "0001")
    assert back.rgb is None and back.pose is None and back.visibility is None
    with pytest.raises(FileNotFoundError, match="Visibility"):
        read_frame(tmp_path, "0001", visibility=True)


def test_reader_tolerates_foreign_dtypes_and_shapes(tmp_path):
    """Files as other tools write them: int64 flat labels, float 3-D mapping, float64 TSDF."""
    ref = _frame(2)
    p = frame_paths(tmp_path, "0007")
    for path in p.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p["tsdf"], ref.tsdf.astype(np.float64), ref.label_weight.astype(np.float32).ravel())
    np.savez(p["mapping"], ref.mapping.astype(np.float64).reshape(LABEL_SHAPE))
    np.savez(p["label"], ref.label.astype(np.int64).ravel())
    np.save(p["sketch"], ref.sketch.astype(np.int64).ravel())
    back = read_frame(tmp_path, "0007")
    np.testing.assert_array_equal(back.tsdf, ref.tsdf)
    np.testing.assert_array_equal(back.label_weight, ref.label_weight)
    np.testing.assert_array_equal(back.mapping, ref.mapping)
    np.testing.assert_array_equal(back.label, ref.label)
    np.testing.assert_array_equal(back.sketch, ref.sketch)
    assert back.label.shape == LABEL_SHAPE and back.mapping.shape == (LABEL_NUMEL,)


def test_reader_errors_name_the_file(tmp_path):
    write_frame(tmp_path, "0003", _frame(3))
    p = frame_paths(tmp_path, "0003")
    np.savez(p["label"], np.zeros(1000, np.uint8))
    with pytest.raises(ValueError, match="0003.npz: 1000 values"):
        read_frame(tmp_path, "0003")
    np.savez(p["label"], np.full(LABEL_NUMEL, 40, np.int64))
    with pytest.raises(ValueError, match="0..11 or 255"):
        read_frame(tmp_path, "0003")
    np.savez(p["label"], other=np.zeros(LABEL_NUMEL))
    with pytest.raises(ValueError, match="no array 'arr_0'"):
        read_frame(tmp_path, "0003")
    p["label"].write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="unreadable"):
        read_frame(tmp_path, "0003")
    p["sketch"].unlink()
    assert missing_files(tmp_path, "0003") == []  # the sketch is optional: computed from labels
    assert missing_files(tmp_path, "0003", ("sketch",)) == [p["sketch"]]
    with pytest.raises(FileNotFoundError, match="TSDF.0003.npz: missing"):
        read_frame(tmp_path / "elsewhere", "0003")


def test_splits_and_rgb(tmp_path):
    write_split(tmp_path, "train", ["0001", "0003"])
    (tmp_path / "test.txt").write_text("0002\n\n0004\n")
    assert read_split(tmp_path, "train") == ["0001", "0003"]
    assert read_split(tmp_path, "test") == ["0002", "0004"]
    with pytest.raises(FileNotFoundError, match="val.txt"):
        read_split(tmp_path, "val")
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    write_rgb(tmp_path / "x.png", rgb)
    np.testing.assert_array_equal(read_rgb(tmp_path / "x.png"), rgb)
    with pytest.raises(ValueError, match="uint8"):
        write_rgb(tmp_path / "y.png", rgb.astype(np.float32))
    with pytest.raises(FileNotFoundError):
        read_rgb(tmp_path / "none.png")


def test_release_layout_is_read_as_it_is(tmp_path):
    """L/ T/ Mapping/ with the released dtypes (int32 labels, float64 weights, int64 mapping),
    no sketch3D/ (computed from the labels) and a prior PNG."""
    from PIL import Image

    from torchssc.io.prepared import read_prior
    from torchssc.prepare.sketch import sketch_from_labels

    ref = _frame(5)
    (tmp_path / "L").mkdir()
    (tmp_path / "T").mkdir()
    (tmp_path / "Mapping").mkdir()
    (tmp_path / "seg_result_label13").mkdir()
    np.savez_compressed(tmp_path / "L" / "0005.npz", ref.label.astype(np.int32).ravel())
    np.savez_compressed(tmp_path / "T" / "0005.npz", ref.tsdf.ravel(), ref.label_weight.astype(np.float64).ravel())
    np.savez_compressed(tmp_path / "Mapping" / "0005.npz", ref.mapping.astype(np.int64))
    prior = np.random.default_rng(0).integers(0, 14, (480, 640)).astype(np.uint8)
    Image.fromarray(prior).save(tmp_path / "seg_result_label13" / "0005.png")
    p = frame_paths(tmp_path, "0005")
    assert p["label"] == tmp_path / "L" / "0005.npz" and p["tsdf"] == tmp_path / "T" / "0005.npz"
    back = read_frame(tmp_path, "0005", prior=True)
    np.testing.assert_array_equal(back.label, ref.label)
    np.testing.assert_array_equal(back.label_weight, ref.label_weight)
    np.testing.assert_array_equal(back.tsdf, ref.tsdf)
    assert back.sketch is None  # no sketch3D/: the dataset computes it (io reads files only)
    item = SSCDataset(tmp_path, ["0005"], keys=["prior"])[0]
    np.testing.assert_array_equal(item["sketch_gt"].numpy(), sketch_from_labels(ref.label))
    np.testing.assert_array_equal(back.prior, prior)
    assert back.label.dtype == np.uint8 and back.prior.dtype == np.uint8
    # a bad prior is named
    Image.fromarray(np.full((480, 640), 14, np.uint8)).save(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="bad.png: prior ids must be 0..13"):
        read_prior(tmp_path / "bad.png")
    Image.fromarray(prior[:100]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="small.png: prior is 640x100, expected 640x480"):
        read_prior(tmp_path / "small.png")
    Image.fromarray(np.zeros((480, 640, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png: the prior must be a single-channel"):
        read_prior(tmp_path / "rgb.png")
