"""SSCDataset over the prepared layout: keys, shapes, dtypes, values, errors, collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from torchssc.data import IMAGENET_MEAN, IMAGENET_STD, SSCDataset, normalize_rgb
from torchssc.geometry import FINE_SHAPE, LABEL_NUMEL, LABEL_SHAPE
from torchssc.io.prepared import PreparedFrame, frame_paths, write_frame, write_split

H, W = 6, 8  # small image; the frames' intrinsics say so


def _frame(seed: int, rgb: bool = True, meta: bool = True, extras: bool = False, fine: bool = False) -> PreparedFrame:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 12, LABEL_SHAPE).astype(np.uint8)
    label[rng.random(LABEL_SHAPE) < 0.1] = 255
    frame = PreparedFrame(
        tsdf=rng.uniform(-1, 1, LABEL_SHAPE).astype(np.float32),
        label_weight=(rng.random(LABEL_SHAPE) < 0.5).astype(np.uint8),
        mapping=rng.integers(0, H * W + 1, LABEL_NUMEL),
        label=label,
        sketch=(rng.random(LABEL_SHAPE) < 0.2).astype(np.uint8),
    )
    if rgb:
        frame.rgb = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    if meta:
        frame.pose = np.eye(4) + rng.normal(0, 0.1, (4, 4)) * np.r_[np.ones(3), 0][:, None]
        frame.origin = rng.normal(0, 1, 3)
        frame.intrinsics = np.array([5.0, 5.5, 3.5, 2.5, W, H])
    if extras:
        frame.depth = np.round(rng.uniform(0, 4, (H, W)), 3).astype(np.float32)
        frame.visibility = rng.integers(0, 6, LABEL_SHAPE).astype(np.uint8)
    if fine:  # mostly constant, so that writing it stays fast
        frame.tsdf_fine = np.full(FINE_SHAPE, 0.001, np.float32)
        frame.tsdf_fine.reshape(-1)[rng.integers(0, frame.tsdf_fine.size, 5000)] = rng.uniform(-1, 1, 5000)
    return frame


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Three complete frames with depth and visibility (0003 also the fine TSDF), listed as 'train'."""
    root = tmp_path_factory.mktemp("prepared")
    frames = {f"{i:04d}": _frame(i, extras=True, fine=i == 3) for i in (1, 3, 7)}
    for frame_id, frame in frames.items():
        write_frame(root, frame_id, frame)
    write_split(root, "train", list(frames))
    return root, frames


def test_keys_shapes_dtypes_values(root):
    root, frames = root
    assert SSCDataset(root, "train").ids == ["0001", "0003", "0007"]
    ds = SSCDataset(root, ["0003"], keys=("rgb", "tsdf_fine", "depth", "visibility"))
    item = ds[0]
    expected = {
        "rgb": ((3, H, W), torch.float32),
        "tsdf": ((1, *LABEL_SHAPE), torch.float32),
        "mapping": ((LABEL_NUMEL,), torch.int64),
        "label": (LABEL_SHAPE, torch.int64),
        "label_weight": (LABEL_SHAPE, torch.float32),
        "sketch_gt": (LABEL_SHAPE, torch.int64),
        "tsdf_fine": ((1, *FINE_SHAPE), torch.float32),
        "depth": ((1, H, W), torch.float32),
        "visibility": (LABEL_SHAPE, torch.int64),
        "pose": ((4, 4), torch.float32),
        "origin": ((3,), torch.float32),
        "intrinsics": ((6,), torch.float32),
    }
    assert set(item) == set(expected) | {"id"}
    assert item["id"] == "0003"
    for key, (shape, dtype) in expected.items():
        assert tuple(item[key].shape) == tuple(shape), key
        assert item[key].dtype == dtype, key
    f = frames["0003"]
    np.testing.assert_array_equal(item["tsdf"][0].numpy(), f.tsdf)
    np.testing.assert_array_equal(item["mapping"].numpy(), f.mapping)
    np.testing.assert_array_equal(item["label"].numpy(), f.label)
    assert set(np.unique(item["label"].numpy())) <= set(range(12)) | {255}
    np.testing.assert_array_equal(item["label_weight"].numpy(), f.label_weight)
    np.testing.assert_array_equal(item["sketch_gt"].numpy(), f.sketch)
    np.testing.assert_array_equal(item["visibility"].numpy(), f.visibility)
    np.testing.assert_array_equal(item["tsdf_fine"][0].numpy(), f.tsdf_fine.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(item["depth"][0].numpy(), f.depth, atol=5e-4)
    np.testing.assert_allclose(item["pose"].numpy(), f.pose, rtol=1e-6)
    np.testing.assert_allclose(item["origin"].numpy(), f.origin, rtol=1e-6)
    np.testing.assert_array_equal(item["intrinsics"].numpy(), f.intrinsics.astype(np.float32))


def test_imagenet_normalisation_against_a_loop(root):
    root, frames = root
    item = SSCDataset(root, ["0007"], keys=["rgb"])[0]
    rgb = frames["0007"].rgb
    ref = np.zeros((3, H, W), np.float64)
    for c in range(3):
        for v in range(H):
            for u in range(W):
                ref[c, v, u] = (rgb[v, u, c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    np.testing.assert_allclose(item["rgb"].numpy(), ref, atol=1e-5)
    # Known endpoints: black and white pixels of the red channel.
    x = normalize_rgb(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8))
    assert x.shape == (3, 1, 2)
    assert x[0, 0, 0].item() == pytest.approx(-0.485 / 0.229, abs=1e-6)
    assert x[0, 0, 1].item() == pytest.approx((1 - 0.485) / 0.229, abs=1e-6)


def test_default_item_has_only_contract_keys(root):
    root, _ = root
    item = SSCDataset(root, "train")[0]  # nothing declared: the base keys (+ the camera, stored)
    assert set(item) == {"id", "tsdf", "mapping", "label", "label_weight", "sketch_gt",
                         "pose", "origin", "intrinsics"}


def test_collate_and_dataloader(root):
    root, frames = root
    ds = SSCDataset(root, "train", keys=("rgb", "depth", "visibility"))
    batch = default_collate([ds[0], ds[2]])
    assert batch["id"] == ["0001", "0007"]
    assert batch["rgb"].shape == (2, 3, H, W)
    assert batch["tsdf"].shape == (2, 1, *LABEL_SHAPE)
    assert batch["mapping"].shape == (2, LABEL_NUMEL) and batch["mapping"].dtype == torch.int64
    assert batch["label"].shape == (2, *LABEL_SHAPE)
    assert batch["depth"].shape == (2, 1, H, W)
    assert batch["pose"].shape == (2, 4, 4) and batch["intrinsics"].shape == (2, 6)
    loader = DataLoader(ds, batch_size=2, shuffle=False, num_workers=0)
    sizes = [len(b["id"]) for b in loader]
    assert sizes == [2, 1]


def test_ids_from_list_and_ints(root):
    root, _ = root
    ds = SSCDataset(root, [7, "0001"])
    assert ds.ids == ["0007", "0001"]
    assert ds[0]["id"] == "0007"


def test_missing_files_error_lists_them(root, tmp_path):
    src, frames = root
    # A fresh root: frame 0001 complete, 0003 without its mapping and sketch (the sketch is
    # optional: computed from the labels), 0005 absent.
    write_frame(tmp_path, "0001", frames["0001"])
    write_frame(tmp_path, "0003", frames["0003"])
    frame_paths(tmp_path, "0003")["mapping"].unlink()
    frame_paths(tmp_path, "0003")["sketch"].unlink()
    write_split(tmp_path, "test", ["0001", "0003", "0005"])
    with pytest.raises(FileNotFoundError) as info:
        SSCDataset(tmp_path, "test")
    msg = str(info.value)
    expected = [frame_paths(tmp_path, "0003")[k] for k in ("mapping",)]
    expected += [frame_paths(tmp_path, "0005")[k] for k in ("tsdf", "mapping", "label")]
    assert "4 file(s) missing for split 'test'" in msg
    assert str(frame_paths(tmp_path, "0003")["sketch"]) not in msg
    for path in expected:
        assert str(path) in msg
    assert str(frame_paths(tmp_path, "0001")["tsdf"]) not in msg
    # Asked-for extras are required too; not asking for them leaves the frame usable.
    frame_paths(tmp_path, "0001")["visibility"].unlink()
    assert len(SSCDataset(tmp_path, ["0001"])) == 1
    with pytest.raises(FileNotFoundError, match=r"protocol 'sscnet' needs input 'visibility', which .* lacks "
                                                r"for 1 of the 1 frame\(s\).*Visibility/0001\.npz.*torchssc prepare"):
        SSCDataset(tmp_path, ["0001"], keys={"visibility": "protocol 'sscnet'"})


def test_missing_list_is_truncated_with_a_count(tmp_path):
    ids = [f"{i:04d}" for i in range(1, 26)]  # 25 absent frames x 3 required files
    with pytest.raises(FileNotFoundError) as info:
        SSCDataset(tmp_path, ids)
    msg = str(info.value)
    assert "75 file(s) missing" in msg
    assert "... and 55 more" in msg
    assert msg.count(str(tmp_path)) == 1 + 20  # the root, then 20 listed paths


def test_missing_split_list(tmp_path):
    with pytest.raises(FileNotFoundError, match="val.txt"):
        SSCDataset(tmp_path, "val")


def test_empty_split_and_unknown_key(tmp_path, root):
    write_split(tmp_path, "train", [])
    with pytest.raises(ValueError, match="no frames listed"):
        SSCDataset(tmp_path, "train")
    with pytest.raises(ValueError, match=r"unknown batch key\(s\) \['colour'\]"):
        SSCDataset(root[0], "train", keys=["colour"])


def test_rgb_loaded_exactly_when_declared(root, tmp_path):
    _, frames = root
    write_frame(tmp_path, "0001", frames["0001"])
    write_frame(tmp_path, "0002", _frame(2, rgb=False))
    both = ["0001", "0002"]
    # Not declared: never loaded, even where present; batches collate.
    ds = SSCDataset(tmp_path, both)
    assert "rgb" not in ds[0] and "rgb" not in ds[1]
    default_collate([ds[0], ds[1]])
    assert "rgb" in SSCDataset(tmp_path, ["0001"], keys=["rgb"])[0]
    # Declared: required; one line names who needs it, the count and a missing image.
    with pytest.raises(FileNotFoundError, match=r"model 'ddrnet' needs input 'rgb', .* for 1 of the 2 "
                                                r"frame\(s\).*RGB/NYU0002_colors\.png"):
        SSCDataset(tmp_path, both, keys={"rgb": "model 'ddrnet'"})


def test_meta_keys_only_when_every_frame_has_meta(root, tmp_path):
    _, frames = root
    write_frame(tmp_path, "0001", frames["0001"])
    write_frame(tmp_path, "0002", _frame(2, meta=False))
    ds = SSCDataset(tmp_path, ["0001", "0002"])
    assert not ds.has_meta
    assert not {"pose", "origin", "intrinsics"} & set(ds[0])
    assert {"pose", "origin", "intrinsics"} <= set(SSCDataset(tmp_path, ["0001"])[0])


def test_image_size_must_match_intrinsics(tmp_path):
    frame = _frame(4)
    frame.rgb = np.zeros((H + 1, W, 3), np.uint8)
    write_frame(tmp_path, "0004", frame)
    with pytest.raises(ValueError, match=r"NYU0004_colors\.png: image is 8x7.*say 8x6"):
        SSCDataset(tmp_path, ["0004"], keys=["rgb"])[0]
