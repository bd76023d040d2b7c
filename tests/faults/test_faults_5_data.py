"""Item 5: a corrupt ``.npz`` is named whenever it is read, and ``data.check`` finds bad scenes
before the first step."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

import _engine_tiny as tiny
import _faults
from torchssc.data.check import check_scene
from torchssc.io.prepared import frame_paths, load_npz, write_split


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _faults.make_clean_frames(root, n=2, seed=7)
    return root


def _recipe(tmp_path: Path, data: Path) -> Path:
    return tiny.write_recipe(tmp_path / "tiny.yaml", data, tmp_path / "runs", epochs=1, iters_per_epoch=1,
                             sampler="shuffle")  # both frames in the first batch


def test_zlib_error_names_the_file(data):
    tsdf = frame_paths(data, "0002")["tsdf"]
    _faults.corrupt_deflate(tsdf)
    with pytest.raises(zlib.error):  # numpy's own error names nothing
        with np.load(tsdf) as npz:
            npz["arr_0"]
    with pytest.raises(ValueError, match=f"^{tsdf}: unreadable npz \\(error: Error -3"):
        load_npz(tsdf, "arr_0", "arr_1")
    assert check_scene(data, "0002")[0].startswith(f"{tsdf}: unreadable npz")


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_frame_met_in_training_is_one_line_naming_it(tmp_path, data, capsys, workers):
    """Without the pre-flight check the file is met when first sampled: one line naming it, also when
    a DataLoader worker read it (its message carries the worker's traceback)."""
    tsdf = frame_paths(data, "0002")["tsdf"]
    _faults.corrupt_deflate(tsdf)
    rc, _, err = _faults.cli(capsys, "train", _recipe(tmp_path, data), f"data.num_workers={workers}")
    assert rc == 2
    assert _faults.error_line(err, "train").startswith(f"{tsdf}: unreadable npz (error: Error -3")


def test_data_check_stops_before_the_first_step_naming_the_scene(tmp_path, data, capsys):
    tsdf = frame_paths(data, "0002")["tsdf"]
    _faults.corrupt_deflate(tsdf)
    rc, _, err = _faults.cli(capsys, "train", _recipe(tmp_path, data), "data.check=true")
    line = _faults.error_line(err, "train")
    assert rc == 2
    assert line.startswith(f"data.check: 1 of 2 scenes are bad, first 0002: {tsdf}: unreadable npz")
    assert line.endswith(f"torchssc check-data {data} lists every problem")
    assert not (tmp_path / "runs").exists()  # nothing written: not even the run folder


def test_data_check_passes_clean_data_and_checks_validation_scenes(tmp_path, data, capsys, caplog):
    recipe = _recipe(tmp_path, data)
    with caplog.at_level("INFO", logger="torchssc.train"):
        rc, _, err = _faults.cli(capsys, "train", recipe, "data.check=true")
    assert rc == 0, err
    assert any(r.getMessage().startswith("data.check: 2 scenes clean") for r in caplog.records)
    # a bad validation scene, not trained on, is found too
    write_split(data, "train_only", ["0002"])
    write_split(data, "val", ["0001"])
    frame_paths(data, "0001")["label"].write_bytes(b"not an npz")
    rc, _, err = _faults.cli(capsys, "train", recipe, "data.check=true", "run.name=v", "data.train_split=train_only",
                             "data.val_split=val", "train.eval_every=1", "train.global_batch=1")
    assert rc == 2 and "1 of 2 scenes are bad, first 0001: " in _faults.error_line(err, "train")
