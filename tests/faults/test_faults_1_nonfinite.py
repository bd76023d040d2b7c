"""Item 1: broken numbers are refused at load, a model that goes non-finite is never checkpointed,
and ``torchssc eval`` says when a model's logits are not finite."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import _engine_tiny as tiny
import _faults
from torchssc.config import load_config
from torchssc.engine.checkpoint import (
    FORMAT_VERSION, NonFiniteError, list_checkpoints, load_checkpoint, non_finite_tensors, save_checkpoint,
)
from torchssc.engine.train import main


@pytest.fixture()
def recipe(tmp_path: Path) -> Path:
    tiny.make_frames(tmp_path / "data", n=3, seed=1)
    return tiny.write_recipe(tmp_path / "tiny.yaml", tmp_path / "data", tmp_path / "runs", epochs=3, iters_per_epoch=1)


def _finite(path: Path) -> bool:
    return not non_finite_tensors(load_checkpoint(path)["model"])


@pytest.mark.parametrize("override, key", [
    ("optim.lr=.nan", "optim.lr"),  # once: exit 0 with NaN weights
    ("optim.lr=.inf", "optim.lr"),
    ("optim.lr=1e39", "optim.lr"),  # beyond float32: once a RuntimeError mid-run
    ("optim.lr=-0.1", "optim.lr"),
    ("optim.lr=0", "optim.lr"),
    ("optim.weight_decay=-1e-3", "optim.weight_decay"),
    ("optim.momentum=.nan", "optim.momentum"),
    ("optim.poly_power=.inf", "optim.poly_power"),
    ("optim.betas=[0.9, .nan]", "optim.betas"),
    ("data.fine=1", "data.fine"),  # a number for a boolean
    ("train.progress=maybe", "train.progress"),
    ("train.deterministic=null", "train.deterministic"),
    ("data.check=2", "data.check"),
    ("train.epochs=0", "train.epochs"),
    ("train.iters_per_epoch=-2", "train.iters_per_epoch"),
    ("data.root=7", "data.root"),
])
def test_bad_numbers_are_refused_at_load_naming_the_key(recipe, capsys, override, key):
    with pytest.raises(ValueError, match=f"config key '{key}'"):
        load_config(recipe, [override])
    rc, _, err = _faults.cli(capsys, "train", recipe, override)
    assert rc == 2 and f"'{key}'" in _faults.error_line(err, "train")
    assert not (recipe.parent / "runs").exists()  # nothing was written


def test_nan_learning_rate_no_longer_trains(recipe, capsys):
    """The issue's case: ``optim.lr=.nan train.epochs=1`` exited 0 with NaN weights."""
    rc, _, err = _faults.cli(capsys, "train", recipe, "optim.lr=.nan", "train.epochs=1")
    assert rc == 2 and "optim.lr" in _faults.error_line(err, "train")
    assert not (recipe.parent / "runs" / "tiny").exists()


def test_huge_learning_rate_stops_naming_a_finite_checkpoint(recipe, caplog):
    """``optim.lr=1e38``: the run stops at a named step, and the checkpoint its message calls the last
    good one is finite, as is every checkpoint left."""
    cfg = load_config(recipe, ["optim.lr=1e38"])
    with pytest.raises(NonFiniteError, match=r"at iteration \d+ \(epoch \d+\)") as info:
        main(cfg)
    named = Path(str(info.value).rsplit(": ", 1)[1])
    assert named.is_file() and _finite(named)
    for path in (recipe.parent / "runs" / "tiny" / "checkpoints").glob("*.pt"):
        assert _finite(path), path


def test_model_with_non_finite_buffer_is_never_checkpointed(recipe):
    """The weights go inf while the loss stays finite (a BatchNorm running variance): the run used to
    write the broken checkpoint and exit 0. Now it stops after the step, naming it, writes nothing,
    and names the last finite checkpoint."""
    cfg = load_config(recipe, [f"model.name={_faults.BROKEN_MODEL}", "model.kwargs.at=2"])
    with pytest.raises(NonFiniteError) as info:
        main(cfg)
    message = str(info.value)
    assert "after iteration 2 (epoch 2)" in message and "bn.running_var" in message
    assert "without writing epoch_0002.pt" in message and message.endswith("epoch_0001.pt")
    folder = recipe.parent / "runs" / "tiny" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_0001.pt", "last.pt"]
    assert _finite(folder / "epoch_0001.pt") and _finite(folder / "last.pt")


def test_cli_names_the_step_and_exits_1(recipe, capsys, caplog):
    with caplog.at_level(logging.ERROR, logger="torchssc.train"):
        rc, _, _ = _faults.cli(capsys, "train", recipe, f"model.name={_faults.BROKEN_MODEL}", "model.kwargs.at=1")
    assert rc == 1
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "non-finite model after iteration 1 (epoch 1)" in record.getMessage()
    assert record.getMessage().endswith("none written yet")
    assert list_checkpoints(recipe.parent / "runs" / "tiny") == {}


def test_save_checkpoint_refuses_non_finite_state(tmp_path):
    model = tiny.TinySSC()
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    state = {"format_version": FORMAT_VERSION, "model": model.state_dict(), "config": {}, "epoch": 1, "iteration": 1}
    with pytest.raises(NonFiniteError, match="'model.head.weight' has 1 NaN/inf value"):
        save_checkpoint(tmp_path / "x.pt", state)
    assert list(tmp_path.iterdir()) == []


def test_eval_warns_about_non_finite_logits(recipe, capsys, caplog):
    """A checkpoint whose model outputs NaN used to score 0.0 silently."""
    assert main(load_config(recipe, ["train.epochs=1"]))["iteration"] == 1
    run = recipe.parent / "runs" / "tiny"
    state = load_checkpoint(run / "checkpoints" / "epoch_0001.pt")
    state["model"]["head.bias"][3] = float("nan")
    broken = run / "checkpoints" / "epoch_0002.pt"
    torch.save(state, broken)  # as an older torchssc, or another tool, could have written it
    with caplog.at_level(logging.WARNING, logger="torchssc.eval"):
        rc, _, _ = _faults.cli(capsys, "eval", run, "--checkpoints", "1-2", "--split", "train", "--no-progress")
    assert rc == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "non-finite" in r.getMessage()]
    assert warnings == [f"{broken}: non-finite logits (NaN/inf) for 3 of 3 frames: the model is broken and its "
                        "scores of those frames mean nothing"]
