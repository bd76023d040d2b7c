"""Item 7: an output folder that cannot be written is one line and a stop, not a failure per frame
and a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import _engine_tiny as tiny
import _faults
from torchssc.prepare import runner


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    _faults.make_raw_frames(tmp_path / "NYUtrain", 2)
    return tmp_path / "NYUtrain"


def test_prepare_out_is_a_file(raw, tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    rc, _, err = _faults.cli(capsys, "prepare", "--raw", raw, "--out", tmp_path / "out", "--no-progress")
    assert rc == 2 and err == f"torchssc prepare: error: {tmp_path / 'out'}: the output is a file, not a folder\n"


def test_prepare_out_inside_a_file(raw, tmp_path, capsys):
    (tmp_path / "file").write_text("a file")
    rc, _, err = _faults.cli(capsys, "prepare", "--raw", raw, "--out", tmp_path / "file" / "out", "--no-progress")
    assert rc == 2 and _faults.error_line(err, "prepare").startswith(
        f"{tmp_path / 'file' / 'out'}: cannot write the output folder")


def test_prepare_out_read_only(raw, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make the probe write fail as it would
        def refused(*args, **kwargs):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(runner.tempfile, "TemporaryFile", refused)
    else:
        out.chmod(0o555)
    try:
        rc, _, err = _faults.cli(capsys, "prepare", "--raw", raw, "--out", out, "--no-progress")
    finally:
        out.chmod(0o755)
    assert rc == 2 and err == f"torchssc prepare: error: {out}: cannot write the output folder (Permission denied)\n"
    assert list(out.iterdir()) == []


def test_train_eval_predict_outputs_that_are_files(tmp_path, capsys):
    """The other commands' output folders: one line each, naming the path."""
    tiny.make_frames(tmp_path / "data", n=2, seed=9)
    tiny.make_frames(tmp_path / "data", n=2, seed=9, split="test")
    (tmp_path / "runs").write_text("a file where the run folders go")
    recipe = tiny.write_recipe(tmp_path / "tiny.yaml", tmp_path / "data", tmp_path / "runs", epochs=1,
                               iters_per_epoch=1)
    rc, _, err = _faults.cli(capsys, "train", recipe)
    assert rc == 2 and str(tmp_path / "runs") in _faults.error_line(err, "train")

    rc, _, err = _faults.cli(capsys, "train", recipe, f"run.dir={tmp_path / 'ok'}")
    assert rc == 0, err
    run = tmp_path / "ok" / "tiny"
    (tmp_path / "reports").write_text("a file")
    rc, _, err = _faults.cli(capsys, "eval", run, "--out", tmp_path / "reports", "--no-progress")
    assert rc == 2 and str(tmp_path / "reports") in _faults.error_line(err, "eval")

    from torchssc.io.depthbin import write_depth_png
    write_depth_png(tmp_path / "depth.png", np.full((480, 640), 2.0, np.float32))
    np.savetxt(tmp_path / "pose.txt", _faults.level_pose())
    (tmp_path / "pred").write_text("a file")
    rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", run / "checkpoints" / "last.pt", "--depth",
                             tmp_path / "depth.png", "--pose", tmp_path / "pose.txt", "--out", tmp_path / "pred",
                             "--formats", "npy")
    assert rc == 2 and str(tmp_path / "pred") in _faults.error_line(err, "predict")
