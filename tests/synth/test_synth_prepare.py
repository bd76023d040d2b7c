"""Synthetic frames go through ``torchssc prepare`` like NYU, and the prepared volumes agree."""

import numpy as np

from torchssc.cli import main as cli_main
from torchssc.io.prepared import read_frame, read_rgb, read_split
from torchssc.prepare.runner import prepare_split
from torchssc.synth.generator import generate_dataset


def _check(frame, min_mapped_occupied):
    no_pixel = 480 * 640
    mapped = frame.mapping != no_pixel
    label = frame.label.ravel()
    occupied = (label > 0) & (label < 255)
    assert mapped.sum() > 1000
    # voxels a depth pixel falls in hold a surface
    assert occupied[mapped].mean() > min_mapped_occupied
    # the TSDF is near zero there, further from zero elsewhere in the observed part
    tsdf = np.abs(frame.tsdf.ravel())
    observed_elsewhere = ~mapped & (tsdf > 0)
    assert tsdf[mapped].mean() < 0.5 * tsdf[observed_elsewhere].mean()
    # every occupied voxel is looked at by the loss and the metrics
    assert np.all(frame.label_weight.ravel()[occupied] == 1)
    assert frame.label_weight.mean() < 0.9
    assert len(np.unique(label[occupied])) >= 3


def test_prepare_runs_on_synthetic_frames(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    split = generate_dataset(raw, 2, seed=21, test_fraction=0.0, noise="none")
    summary = prepare_split(raw / "NYUtrain", out, progress=False)
    assert summary.failed == {} and sorted(summary.prepared) == ["0001", "0002"]
    assert read_split(out, "train") == [f"{i:04d}" for i in split["train"]]
    for fid in ("0001", "0002"):
        frame = read_frame(out, fid, depth=True)
        _check(frame, 0.95)
        # RGB beside the .bin was picked up unchanged
        np.testing.assert_array_equal(frame.rgb, read_rgb(raw / "NYUtrain" / f"NYU{fid}_colors.png"))
        assert frame.pose is not None and abs(frame.origin[2] + 0.05) < 1e-6


def test_prepare_cli_on_noisy_synthetic_frame(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    assert cli_main(["synth", "--out", str(raw), "--frames", "1", "--seed", "5", "--test-fraction", "0"]) == 0
    assert cli_main(["prepare", "--raw", str(raw / "NYUtrain"), "--out", str(out)]) == 0
    frame = read_frame(out, "0001")
    # Kinect noise moves points out of their voxel now and then, but most still land on surfaces
    _check(frame, 0.5)
