"""The NYU entries the package ships (docs/zoo.md, "The entries"): listed by ``torchssc weights``,
and used on real data as the README's "Use a trained model" says. The files themselves (size,
sha256, recipe) are checked by ``test_zoo_weights.py::test_package_registry_entries_are_complete``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from torchssc.cli import main

ENTRIES = {  # name: (model, inputs as `torchssc weights` prints them)
    "nyu_unet3d_prior": ("unet3d_prior", "tsdf, mapping, prior"),
    "nyu_sketch_aware_ssc_prior_lite": ("sketch_aware_ssc_prior_lite", "tsdf, mapping, prior"),
    "nyu_unet3d": ("unet3d", "tsdf"),
}

SCENE_0001 = {  # SC IoU / SSC mIoU in % of `torchssc eval --weights NAME --split 0001`, measured from the files
    "nyu_unet3d_prior": (82.3, 51.6),
    "nyu_sketch_aware_ssc_prior_lite": (84.6, 43.3),
    "nyu_unet3d": (84.6, 26.8),
}


def test_the_three_nyu_entries_are_listed(capsys):
    assert main(["weights"]) == 0
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| nyu_")}
    assert set(ENTRIES) <= set(rows)
    for name, (model, inputs) in ENTRIES.items():
        cells = [c.strip() for c in rows[name].split("|")]
        assert cells[2:5] == [model, "nyu", inputs], rows[name]
        assert "the 654 NYU test scenes" in rows[name] and "shipped" in rows[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCENE_0001))
def test_entry_scores_released_scene_0001(name, nyu_release, tmp_path):
    """`eval --weights` on one released scene gives the figures measured from the shipped file
    (the 654-scene figures of the table take 6 minutes each: docs/zoo.md has the command)."""
    assert main(["eval", "--weights", name, f"data.root={nyu_release}", "--split", "0001",
                 "--protocol", "torchssc", "--no-progress", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / f"{name}_torchssc.json").read_text())["metrics"]
    assert (100 * metrics["sc_iou"], 100 * metrics["ssc_miou"]) == pytest.approx(SCENE_0001[name], abs=0.15)


@pytest.mark.slow
def test_own_depth_frame_is_completed_as_the_released_scene(nyu_sample, nyu_release, tmp_path):
    """The README's second command on scene 0001's raw depth: with the frame's pose and the
    release's camera, `predict --raw` with the TSDF-only entry writes, voxel for voxel, what
    `eval --save` writes from the released folder (the TSDF `predict` computes is the
    release's); by default the observation rule empties the free space the depth shows."""
    depth, pose = nyu_sample / "NYU0001_0000.png", nyu_sample / "NYU0001_0000.bin"
    common = ["predict", "--weights", "nyu_unet3d", "--depth", str(depth), "--pose", str(pose),
              "--intrinsics", "release", "--formats", "npy"]
    assert main([*common, "--raw", "--out", str(tmp_path / "raw")]) == 0
    assert main([*common, "--out", str(tmp_path / "observed")]) == 0
    assert main(["eval", "--weights", "nyu_unet3d", f"data.root={nyu_release}", "--split", "0001",
                 "--save", str(tmp_path / "saved"), "--no-progress", "--out", str(tmp_path / "report")]) == 0
    raw = np.load(tmp_path / "raw" / "scene.npy")
    saved = np.load(tmp_path / "saved" / "results" / "0001.npy")
    assert raw.shape == saved.shape == (60, 36, 60)
    np.testing.assert_array_equal(raw, saved)
    observed = np.load(tmp_path / "observed" / "scene.npy")
    changed = observed != raw
    assert changed.any() and set(np.unique(observed[changed])) <= {0, 255}
