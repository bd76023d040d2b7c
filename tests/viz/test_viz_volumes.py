"""Volume loading (shapes, class spaces, files) and the label_weight / frustum masks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from torchssc.geometry import FINE_SHAPE, LABEL_SHAPE, NYU_INTRINSICS, Intrinsics, map_36_to_11
from torchssc.io.prepared import PreparedFrame, write_frame
from torchssc.viz.camera import look_at
from torchssc.viz.volumes import (
    Volume,
    apply_mask,
    as_labels,
    frustum_mask,
    load_prepared,
    load_volume,
    mask_volume,
    weight_mask,
)



def test_as_labels_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 12, size=LABEL_SHAPE).astype(np.uint8)
    np.testing.assert_array_equal(as_labels(vol.ravel().astype(np.int64)), vol)
    np.testing.assert_array_equal(as_labels(vol.astype(np.float32)), vol)
    small = rng.integers(0, 12, size=(3, 5, 7))
    assert as_labels(small).shape == (3, 5, 7) and as_labels(small).dtype == np.uint8
    scores = rng.normal(size=(12, 3, 5, 7)).astype(np.float32)
    np.testing.assert_array_equal(as_labels(scores[None]), scores.argmax(axis=0))
    assert as_labels(np.zeros(np.prod(FINE_SHAPE), np.uint8)).shape == FINE_SHAPE


def test_as_labels_class_spaces():
    raw = np.array([[[0, 5, 36, 255, 12, 1]]])
    np.testing.assert_array_equal(as_labels(raw), map_36_to_11(raw))  # auto: 12..36 present
    only_low = np.array([[[0, 5, 11, 255]]])
    np.testing.assert_array_equal(as_labels(only_low), only_low)  # auto: already 12-label
    np.testing.assert_array_equal(as_labels(only_low, classes="36"), map_36_to_11(only_low))
    with pytest.raises(ValueError, match="0..11 or 255"):
        as_labels(raw, classes="11")
    with pytest.raises(ValueError, match="found"):
        as_labels(np.array([[[40]]]))
    with pytest.raises(ValueError, match="whole numbers"):
        as_labels(np.array([[[0.5]]]))
    with pytest.raises(ValueError, match="flat volume of 10 values"):
        as_labels(np.zeros(10))
    with pytest.raises(ValueError, match="class scores"):
        as_labels(np.zeros((3, 2, 2, 2)))


def test_load_npy_npz_and_errors(tmp_path):
    vol = np.zeros(LABEL_SHAPE, np.uint8)
    vol[3, 4, 5] = 7
    np.save(tmp_path / "0001.npy", vol)
    v = load_volume(tmp_path / "0001.npy")
    assert v.name == "0001" and v.voxel == pytest.approx(0.08) and v.labels[3, 4, 5] == 7
    np.savez(tmp_path / "a.npz", arr_0=vol.ravel().astype(np.int64))
    np.testing.assert_array_equal(load_volume(tmp_path / "a.npz").labels, vol)
    np.savez(tmp_path / "b.npz", pred=vol, other=vol)
    with pytest.raises(ValueError, match="several arrays"):
        load_volume(tmp_path / "b.npz")
    np.testing.assert_array_equal(load_volume(tmp_path / "b.npz", key="pred").labels, vol)
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_volume(tmp_path / "nope.npy")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="unknown volume format"):
        load_volume(tmp_path / "x.txt")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="bad.npy"):
        load_volume(tmp_path / "bad.npy")


def test_load_real_depthbin_sample(nyu_sample):
    v = load_volume(nyu_sample / "NYU0001_0000.bin")
    assert v.labels.shape == FINE_SHAPE and v.voxel == pytest.approx(0.02)
    np.testing.assert_allclose(v.origin, [-1.545918, 0.8907361, -0.05], atol=1e-5)
    assert v.pose.shape == (4, 4)
    values = set(np.unique(v.labels).tolist())
    assert values <= set(range(12)) | {255} and 255 in values and 3 in values  # mapped to 11 classes


def naive_frustum(shape, pose, origin, voxel, intr):
    out = np.zeros(shape, bool)
    rot, t = pose[:3, :3], pose[:3, 3]
    for a, b, c in itertools.product(*[range(n) for n in shape]):
        world = origin + voxel * np.array([a + 0.5, c + 0.5, b + 0.5])
        cam = rot.T @ (world - t)
        if cam[2] <= 0:
            continue
        u = np.sign(x := cam[0] * intr.fx / cam[2] + intr.cx) * np.floor(abs(x) + 0.5)
        v = np.sign(y := cam[1] * intr.fy / cam[2] + intr.cy) * np.floor(abs(y) + 0.5)
        out[a, b, c] = 0 <= u < intr.width and 0 <= v < intr.height
    return out


def test_frustum_mask_matches_naive_and_hides_behind_camera():
    shape, voxel, origin = (9, 5, 11), 0.3, np.array([-1.3, -1.6, 0.0])
    eye = np.array([0.05, 0.02, 0.7])  # inside the box
    pose = np.eye(4)
    pose[:3, :3] = look_at(eye, eye + np.array([0.2, 1.0, -0.3]))
    pose[:3, 3] = eye
    intr = Intrinsics(30.0, 30.0, 15.5, 11.5, 32, 24)
    got = frustum_mask(shape, pose, origin, voxel=voxel, intrinsics=intr)
    np.testing.assert_array_equal(got, naive_frustum(shape, pose, origin, voxel, intr))
    assert 0 < got.sum() < got.size
    # every voxel behind the camera (centre at y < eye's y, given this forward) is hidden
    centres_y = origin[1] + voxel * (np.arange(shape[2]) + 0.5)
    assert not got[:, :, centres_y < eye[1] - 0.3].any()


def test_label_weight_mask_hides_zero_weight():
    labels = np.full((4, 4, 4), 3, np.uint8)
    weight = np.zeros((4, 4, 4), np.uint8)
    weight[1:3, :, :] = 1
    out = mask_volume(Volume(labels, 0.08, label_weight=weight), ["label_weight"]).labels
    np.testing.assert_array_equal(out, np.where(weight > 0, 3, 0))
    fine = weight_mask(weight, (8, 8, 8))
    np.testing.assert_array_equal(fine, np.repeat(np.repeat(np.repeat(weight > 0, 2, 0), 2, 1), 2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        weight_mask(weight, (5, 4, 4))
    with pytest.raises(ValueError, match="needs a prepared frame"):
        mask_volume(Volume(labels, 0.08), ["label_weight"])
    with pytest.raises(ValueError, match="pose and origin"):
        mask_volume(Volume(labels, 0.08), ["frustum"])
    with pytest.raises(ValueError, match="does not match"):
        apply_mask(labels, np.ones((2, 2, 2), bool))


def test_mask_context_from_another_volume():
    labels = np.full((4, 4, 4), 3, np.uint8)
    weight = np.zeros((4, 4, 4), np.uint8)
    weight[0] = 1
    ctx = Volume(labels, 0.08, label_weight=weight)
    out = mask_volume(Volume(labels, 0.08), ["label_weight"], context=ctx).labels
    assert out[0].all() and not out[1:].any()


def test_load_prepared_frame(tmp_path):
    rng = np.random.default_rng(1)
    label = rng.integers(0, 12, size=LABEL_SHAPE).astype(np.uint8)
    weight = (rng.random(LABEL_SHAPE) < 0.5).astype(np.uint8)
    frame = PreparedFrame(
        tsdf=np.zeros(LABEL_SHAPE, np.float32), label_weight=weight,
        mapping=np.full(np.prod(LABEL_SHAPE), 307200, np.int64), label=label,
        sketch=np.zeros(LABEL_SHAPE, np.uint8), pose=np.eye(4), origin=np.array([1.0, 2.0, -0.05]),
        intrinsics=NYU_INTRINSICS.as_array(),
    )
    write_frame(tmp_path, "0007", frame)
    v = load_prepared(tmp_path, "0007")
    np.testing.assert_array_equal(v.labels, label)
    np.testing.assert_array_equal(v.label_weight, weight)
    np.testing.assert_allclose(v.origin, [1.0, 2.0, -0.05])
    assert v.intrinsics == NYU_INTRINSICS and v.name == "0007"
    with pytest.raises(FileNotFoundError):
        load_prepared(tmp_path, "0008")
