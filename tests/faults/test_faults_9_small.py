"""Item 9: a run that fails before it starts leaves no run folder behind, and ``viz`` says when it
shows volumes that do not cover the same box side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import _engine_tiny as tiny
import _faults
from torchssc.geometry import FINE_SHAPE, FINE_VOXEL, LABEL_SHAPE, LABEL_VOXEL
from torchssc.viz.export import box_mismatch
from torchssc.viz.volumes import Volume


@pytest.fixture()
def recipe(tmp_path: Path) -> Path:
    tiny.make_frames(tmp_path / "data", n=2, seed=10)
    return tiny.write_recipe(tmp_path / "tiny.yaml", tmp_path / "data", tmp_path / "runs", epochs=1, iters_per_epoch=1)


@pytest.mark.parametrize("overrides", [
    ["model.kwargs.bogus=1"],  # the model cannot be built
    ["loss.name=nope"],  # nor the loss
    ["data.train_split=nope"],  # no such split list
    ["data.check=true"],  # the tiny frames break the label_weight rule: bad data before the first step
])
def test_failed_start_leaves_no_run_folder(recipe, capsys, overrides):
    """Such a run once left ``runs/tiny/config.yaml`` alone in a new folder."""
    rc, _, err = _faults.cli(capsys, "train", recipe, *overrides)
    assert rc == 2, err
    assert not (recipe.parent / "runs").exists()


def test_failed_resume_keeps_the_run_folder_as_it_was(recipe, capsys):
    rc, _, _ = _faults.cli(capsys, "train", recipe)
    run = recipe.parent / "runs" / "tiny"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    rc, _, err = _faults.cli(capsys, "train", run / "config.yaml", "train.epochs=2", "model.kwargs.width=8", "--resume")
    assert rc == 2 and "weights do not fit" in _faults.error_line(err, "train")
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # config.yaml not rewritten with the failed recipe, checkpoints intact


def test_viz_warns_about_volumes_of_different_boxes(tmp_path, capsys):
    """A 10x10x10 volume was rendered beside a 60x36x60 ground truth without a word."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "small.npy", rng.integers(0, 12, (10, 10, 10)).astype(np.uint8))
    np.save(tmp_path / "gt.npy", rng.integers(0, 12, LABEL_SHAPE).astype(np.uint8))
    rc, _, err = _faults.cli(capsys, "viz", tmp_path / "small.npy", "--gt", tmp_path / "gt.npy", "--formats", "png",
                             "--size", "64x48", "--views", "top", "--out", tmp_path / "viz")
    assert rc == 0
    assert err.splitlines() == [
        "torchssc viz: warning: the prediction is 10x10x10 voxels of 0.08 m (0.8 x 0.8 x 0.8 m) but the ground "
        "truth 60x36x60 voxels of 0.08 m (4.8 x 2.88 x 4.8 m): they do not cover the same box, so the "
        "side-by-side views are not comparable"]
    rc, _, err = _faults.cli(capsys, "viz", tmp_path / "gt.npy", "--gt", tmp_path / "gt.npy", "--formats", "png",
                             "--size", "64x48", "--views", "top", "--out", tmp_path / "viz")
    assert rc == 0 and err == ""


def test_fine_volume_beside_the_label_grid_covers_the_same_box():
    fine = Volume(np.zeros(FINE_SHAPE, np.uint8), FINE_VOXEL)
    coarse = Volume(np.zeros(LABEL_SHAPE, np.uint8), LABEL_VOXEL)
    assert box_mismatch(coarse, fine) is None and box_mismatch(coarse, None) is None
    assert "do not cover the same box" in box_mismatch(coarse, Volume(np.zeros((60, 40, 60), np.uint8), LABEL_VOXEL))
