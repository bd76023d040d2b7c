"""`torchssc check-data`: clean scenes pass; each kind of corruption is named with its scene."""

from __future__ import annotations

import contextlib
import io
import shutil

import numpy as np
import pytest

from torchssc.cli import main
from torchssc.data.check import check_root, check_scene
from torchssc.geometry import LABEL_NUMEL

IDS = ("0001", "0002", "0003", "0004", "0005", "0006")


def _cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["check-data", *map(str, argv), "--no-progress"])
    return rc, out.getvalue(), err.getvalue()


def _tiny_release(tmp_path):
    """A release-shaped folder (L/ T/ Mapping/ seg_result_label13/) of 6 consistent scenes."""
    rng = np.random.default_rng(0)
    for folder in ("L", "T", "Mapping", "seg_result_label13"):
        (tmp_path / folder).mkdir()
    from PIL import Image

    for frame_id in IDS:
        label = rng.choice([0, 1, 5, 11, 255], LABEL_NUMEL).astype(np.int32)
        tsdf = rng.uniform(-1, 1, LABEL_NUMEL).astype(np.float32)
        weight = (((label >= 1) & (label <= 11)) | (tsdf < -0.5)).astype(np.float64)
        mapping = np.full(LABEL_NUMEL, 307200, np.int64)
        mapping[:100] = rng.integers(0, 307200, 100)
        np.savez_compressed(tmp_path / "L" / f"{frame_id}.npz", label)
        np.savez_compressed(tmp_path / "T" / f"{frame_id}.npz", tsdf, weight)
        np.savez_compressed(tmp_path / "Mapping" / f"{frame_id}.npz", mapping)
        Image.fromarray(rng.integers(0, 14, (480, 640)).astype(np.uint8)).save(
            tmp_path / "seg_result_label13" / f"{frame_id}.png")
    (tmp_path / "train.txt").write_text("".join(f"{i}\n" for i in IDS[:4]))
    (tmp_path / "test.txt").write_text("".join(f"{i}\n" for i in IDS[4:]))
    return tmp_path


def test_clean_then_every_corruption_named(tmp_path):
    root = _tiny_release(tmp_path)
    rc, out, _ = _cli(root)
    assert rc == 0 and "6 scenes checked (train 4, test 2): all clean" in out
    # 0002: truncated npz; 0003: labels of the wrong dtype; 0004: a label 37;
    # 0005: a broken weight rule; 0006: a prior of the wrong size
    t = root / "T" / "0002.npz"
    t.write_bytes(t.read_bytes()[: t.stat().st_size // 2])
    np.savez_compressed(root / "L" / "0003.npz", np.zeros(LABEL_NUMEL, np.float32))
    with np.load(root / "L" / "0004.npz") as z:
        label = z["arr_0"]
    label[7] = 37
    np.savez_compressed(root / "L" / "0004.npz", label)
    with np.load(root / "T" / "0005.npz") as z:
        tsdf, weight = z["arr_0"], z["arr_1"]
    weight[:10] = 1 - weight[:10]
    np.savez_compressed(root / "T" / "0005.npz", tsdf, weight)
    from PIL import Image

    Image.fromarray(np.zeros((240, 320), np.uint8)).save(root / "seg_result_label13" / "0006.png")
    rc, out, _ = _cli(root)
    assert rc == 1
    lines = out.splitlines()
    assert lines[-1].endswith("6 scenes checked (train 4, test 2): 5 bad")
    bad = {line.split(":")[0] for line in lines[:-1]}
    assert bad == {"BAD 0002", "BAD 0003", "BAD 0004", "BAD 0005", "BAD 0006"}
    assert f"BAD 0002: {root / 'T' / '0002.npz'}: unreadable npz" in out
    assert f"BAD 0003: {root / 'L' / '0003.npz'}: arr_0 (labels) must be integer, got dtype float32" in out
    assert f"BAD 0004: {root / 'L' / '0004.npz'}: labels must be 0..11 or 255, found [37] on 1 voxels" in out
    assert f"BAD 0005: {root / 'T' / '0005.npz'}: arr_1 (label_weight) breaks the rule" in out
    assert "on 10 voxels" in out
    assert f"BAD 0006: {root / 'seg_result_label13' / '0006.png'}: prior is 320x240, expected 640x480" in out
    # several problems of one scene are all listed: bad labels and a missing mapping
    (root / "Mapping" / "0001.npz").unlink()
    np.savez_compressed(root / "L" / "0001.npz", np.full(LABEL_NUMEL, 40, np.int32))
    assert check_scene(root, "0001") == [
        f"{root / 'L' / '0001.npz'}: labels must be 0..11 or 255, found [40] on 129600 voxels",
        f"{root / 'Mapping' / '0001.npz'}: missing",
    ]
    mapping = np.full(LABEL_NUMEL, 307200, np.int64)
    mapping[3] = 307201
    np.savez_compressed(root / "Mapping" / "0002.npz", mapping)
    assert f"{root / 'Mapping' / '0002.npz'}: mapping must be in 0..307200" in check_scene(root, "0002")[1]
    # a missing split list is a usage error (exit 2)
    (root / "test.txt").unlink()
    rc, _, err = _cli(root)
    assert rc == 2 and "test.txt" in err
    assert check_root(root, ("train",)).scenes == {"train": 4}


def test_release_scenes_are_clean(nyu_release):
    """A sample of the released scenes (the whole release is checked in docs/data.md)."""
    for frame_id in ("0001", "0002", "0003", "1449"):
        assert check_scene(nyu_release, frame_id) == []
