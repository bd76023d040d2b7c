"""Item 4: a user error in ``train``, ``eval`` or ``predict`` is ONE line naming the file or key and
what is wrong, with exit status 2 (each case below was a traceback); ``--debug`` shows the
traceback."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import _engine_tiny as tiny
import _faults
from torchssc.config import load_config
from torchssc.engine.train import main as train_main
from torchssc.io.depthbin import write_depth_png


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny frames, a trained run (1 epoch), a run of a wider model, broken files of every kind."""
    base = tmp_path_factory.mktemp("user_errors")
    data = base / "data"
    tiny.make_frames(data, n=3, seed=4)
    tiny.make_frames(data, n=3, seed=5, split="test")
    recipe = tiny.write_recipe(base / "tiny.yaml", data, base / "runs", epochs=1, iters_per_epoch=1)
    train_main(load_config(recipe))
    train_main(load_config(recipe, ["run.name=wide", "model.kwargs.width=8"]))
    run = base / "runs" / "tiny"
    good = run / "checkpoints" / "epoch_0001.pt"
    (base / "corrupt.pt").write_bytes(good.read_bytes()[:3000])
    (base / "typo.yaml").write_text(recipe.read_text().replace("lr:", "lrr:"))
    (base / "broken.yaml").write_text("optim: {lr: [1\n")
    write_depth_png(base / "depth.png", np.full((480, 640), 2.0, np.float32))
    write_depth_png(base / "small.png", np.full((48, 64), 2.0, np.float32))
    (base / "garbage.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(base / "rgb_small.png")
    (base / "pose3.txt").write_text("1 2 3\n")
    (base / "pose_nan.txt").write_text(" ".join(["nan"] * 16))
    (base / "pose_zero.txt").write_text(" ".join(["0"] * 16))
    return types.SimpleNamespace(base=base, recipe=recipe, run=run, good=good,
                                 wide=base / "runs" / "wide" / "checkpoints" / "epoch_0001.pt")


def _predict(w, *extra):
    return ("predict", "--checkpoint", w.good, "--out", w.base / "pred", "--formats", "npy", *extra)


# (command line from the world, what the one line must contain)
CASES = {
    "train: unknown key in the recipe": (lambda w: ("train", w.base / "typo.yaml"), "unknown config key 'optim.lrr'"),
    "train: mistyped override": (lambda w: ("train", w.recipe, "train.epoch=3"), "unknown config key 'train.epoch'"),
    "train: missing recipe": (lambda w: ("train", w.base / "nope.yaml"), "nope.yaml: no such config file"),
    "train: broken YAML": (lambda w: ("train", w.base / "broken.yaml"), "broken.yaml: not valid YAML"),
    "train: missing data": (lambda w: ("train", w.recipe, "data.root=/nonexistent", "run.name=x"),
                            "/nonexistent/train.txt: no split list"),
    "train: unknown model": (lambda w: ("train", w.recipe, "model.name=nope", "run.name=x"), "unknown model 'nope'"),
    "train: missing checkpoint": (lambda w: ("train", w.recipe, "--resume-from", w.base / "nope.pt"),
                                  "nope.pt: no such checkpoint"),
    "train: corrupt checkpoint": (lambda w: ("train", w.recipe, "run.name=x", "--resume-from", w.base / "corrupt.pt"),
                                  "corrupt.pt: unreadable checkpoint"),
    "train: checkpoint of another model": (
        lambda w: ("train", w.recipe, "run.name=x", "train.epochs=2", "--resume-from", w.wide),
        "weights do not fit model 'engine_test_tiny': 6 keys of another shape"),
    "eval: missing run": (lambda w: ("eval", w.base / "runs" / "nope"), "nope: no such config file"),
    "eval: folder without config.yaml": (lambda w: ("eval", w.base / "runs"), "a run folder must hold config.yaml"),
    "eval: missing checkpoint": (lambda w: ("eval", w.run, "--checkpoints", "7"), "no checkpoint for epoch 7"),
    "eval: corrupt checkpoint": (lambda w: ("eval", w.run, "--checkpoints", w.base / "corrupt.pt"),
                                 "corrupt.pt: unreadable checkpoint"),
    "eval: checkpoint of another model": (lambda w: ("eval", w.run, "--checkpoints", w.wide),
                                          "epoch_0001.pt: weights do not fit model 'engine_test_tiny'"),
    "eval: unknown protocol": (lambda w: ("eval", w.run, "--protocol", "nyu"), "unknown protocol 'nyu'"),
    "eval: missing split": (lambda w: ("eval", w.run, "--split", "val"), "val.txt: no split list"),
    "predict: missing checkpoint": (lambda w: ("predict", "--checkpoint", w.base / "nope.pt", "--depth",
                                               w.base / "depth.png"), "nope.pt: no such checkpoint"),
    "predict: corrupt checkpoint": (lambda w: ("predict", "--checkpoint", w.base / "corrupt.pt", "--depth",
                                               w.base / "depth.png"), "corrupt.pt: unreadable checkpoint"),
    "predict: missing depth": (lambda w: _predict(w, "--depth", w.base / "nope.png"), "nope.png: no such depth image"),
    "predict: not an image": (lambda w: _predict(w, "--depth", w.base / "garbage.png"), "garbage.png"),
    "predict: wrong depth size": (lambda w: _predict(w, "--depth", w.base / "small.png"),
                                  "small.png: depth is 64x48, expected 640x480"),
    "predict: wrong RGB size": (lambda w: _predict(w, "--depth", w.base / "depth.png", "--rgb", w.base / "rgb_small.png"),
                                "rgb_small.png: RGB is 10x10, expected 640x480"),
    "predict: pose of 3 numbers": (lambda w: _predict(w, "--depth", w.base / "depth.png", "--pose", w.base / "pose3.txt"),
                                   "pose3.txt: a pose needs 16 numbers"),
    "predict: NaN pose": (lambda w: _predict(w, "--depth", w.base / "depth.png", "--pose", w.base / "pose_nan.txt"),
                          "pose_nan.txt: the pose has non-finite values"),
    "predict: all-zero pose": (lambda w: _predict(w, "--depth", w.base / "depth.png", "--pose", w.base / "pose_zero.txt"),
                               "pose_zero.txt: the pose's last row must be 0 0 0 1"),
    "predict: missing pose": (lambda w: _predict(w, "--depth", w.base / "depth.png", "--pose", w.base / "nope.txt"),
                              "nope.txt: no such pose file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_user_error_is_one_line_and_exit_2(world, capsys, case):
    argv, expected = CASES[case]
    argv = argv(world)
    rc, _, err = _faults.cli(capsys, *argv)
    line = _faults.error_line(err, argv[0])
    assert rc == 2 and expected in line, line
    assert len(line) < 600


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(world, where):
    argv = ["eval", str(world.run), "--protocol", "nyu"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(ValueError, match="unknown protocol 'nyu'"):
        _faults.cli_main(argv)


def test_ctrl_c_is_one_line_and_exit_130(world, capsys, monkeypatch):
    import torchssc.engine.train as train_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "main", interrupted)
    rc, _, err = _faults.cli(capsys, "train", world.recipe, "run.name=x")
    assert rc == 130 and err == "torchssc train: interrupted\n"


@pytest.mark.slow
def test_another_models_checkpoint_is_one_line_from_the_console(tmp_path):
    """The issue's worst case (540 lines): ``eval`` of a run given an SSCNet checkpoint, run as a
    user runs it, in a process of its own: stderr holds exactly one line."""
    tiny.make_frames(tmp_path / "data", n=1, seed=6, split="test")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"data: {{root: {tmp_path / 'data'}, num_workers: 0}}\n"
                                     "model: {name: ddrnet, kwargs: {}}\ntrain: {device: cpu}\n")
    other = _faults.tiny_checkpoint(tmp_path / "sscnet.pt", model="sscnet")
    proc = subprocess.run([sys.executable, "-m", "torchssc.cli", "eval", str(run), "--checkpoints", str(other)],
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(_faults.SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"torchssc eval: error: {other}: weights do not fit model 'ddrnet': ")
