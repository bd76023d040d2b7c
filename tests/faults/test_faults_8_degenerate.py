"""Item 8: degenerate inputs (an all-zero or NaN pose, an all-zero depth, plain millimetres in a
depthbin PNG) are refused, naming the file, instead of passing silently or ending in an
``IndexError``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import _faults
from torchssc.geometry import check_pose
from torchssc.io.depthbin import read_bin, write_bin, write_depth_png
from torchssc.io.prepared import read_split
from torchssc.predict.predict import read_depth, read_pose


def _degenerate_raw(raw: Path) -> None:
    """Frame 0001 is good; 0002 all-zero pose, 0003 NaN pose, 0004 all-zero depth, 0005 millimetres."""
    _faults.make_raw_frames(raw, 5)
    frame = read_bin(raw / "NYU0001_0000.bin")
    write_bin(raw / "NYU0002_0000.bin", frame.origin, np.zeros((4, 4)), frame.labels)
    write_bin(raw / "NYU0003_0000.bin", frame.origin, np.full((4, 4), np.nan), frame.labels)
    write_depth_png(raw / "NYU0004_0000.png", np.zeros((480, 640), np.float32))
    Image.fromarray(np.full((480, 640), 2500, np.uint16)).save(raw / "NYU0005_0000.png")


def test_prepare_refuses_each_degenerate_frame_by_name(tmp_path, capsys):
    raw = tmp_path / "NYUtrain"
    _degenerate_raw(raw)
    rc, out, err = _faults.cli(capsys, "prepare", "--raw", raw, "--out", tmp_path / "out", "--no-progress")
    assert rc == 1 and "1 prepared, 0 skipped, 4 failed (0002, 0003, 0004, 0005)" in out
    failed = dict(line[len("FAILED "):].split(": ", 1) for line in err.splitlines() if line.startswith("FAILED "))
    assert failed["NYU0002_0000.bin"].startswith(f"ValueError: {raw / 'NYU0002_0000.bin'}: the pose's last row")
    assert failed["NYU0003_0000.bin"] == f"ValueError: {raw / 'NYU0003_0000.bin'}: the pose has non-finite values (NaN or inf)"
    assert failed["NYU0004_0000.bin"] == f"ValueError: {raw / 'NYU0004_0000.png'}: no valid depth (every pixel is 0)"
    assert failed["NYU0005_0000.bin"].startswith(
        f"ValueError: {raw / 'NYU0005_0000.png'}: 100% of the pixels decode beyond 8.192 m: this looks like plain millimetres")
    assert read_split(tmp_path / "out", "train") == ["0001"]


@pytest.mark.parametrize("pose, match", [
    (np.zeros((4, 4)), "last row must be 0 0 0 1"),
    (np.full((4, 4), np.nan), "non-finite values"),
    (np.diag([2.0, 2.0, 2.0, 1.0]), "not a rotation"),  # a scale, not rigid
    (np.diag([1.0, 1.0, -1.0, 1.0]), "not a rotation"),  # a mirror
])
def test_predict_pose_files_are_checked(tmp_path, pose, match):
    np.savetxt(tmp_path / "pose.txt", pose)
    with pytest.raises(ValueError, match=f"^{tmp_path / 'pose.txt'}: .*{match}"):
        read_pose(tmp_path / "pose.txt")
    with pytest.raises(ValueError, match=match):
        check_pose(pose, "here")
    frame = tmp_path / "frame.bin"
    write_bin(frame, (0, 0, 0), pose, np.zeros((240, 144, 240), np.uint8))
    with pytest.raises(ValueError, match=f"^{frame}: .*{match}"):  # a NaN pose once gave an IndexError
        read_pose(frame)


def test_predict_all_zero_depth_is_refused(tmp_path):
    write_depth_png(tmp_path / "d.png", np.zeros((480, 640), np.float32))
    with pytest.raises(ValueError, match=f"^{tmp_path / 'd.png'}: no valid depth"):
        read_depth(tmp_path / "d.png")
    np.save(tmp_path / "d.npy", np.zeros((480, 640), np.float32))
    with pytest.raises(ValueError, match=f"^{tmp_path / 'd.npy'}: no valid depth"):
        read_depth(tmp_path / "d.npy")
