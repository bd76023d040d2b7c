"""Item 2: resume falls back to the newest checkpoint that loads and is complete, checkpoints are
fsynced, and a full disk is one line that leaves the earlier files intact."""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path

import pytest
import torch

import _engine_tiny as tiny
import _faults
from torchssc.config import load_config
from torchssc.engine import checkpoint as ckpt_mod
from torchssc.engine.checkpoint import load_checkpoint, newest_resumable, resume_checkpoint
from torchssc.engine.train import main
from torchssc.io import atomic


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    """A finished run of 2 epochs x 2 iterations: epoch_0001.pt, epoch_0002.pt, last.pt."""
    tiny.make_frames(tmp_path / "data", n=3, seed=2)
    recipe = tiny.write_recipe(tmp_path / "tiny.yaml", tmp_path / "data", tmp_path / "runs", epochs=2,
                               iters_per_epoch=2)
    main(load_config(recipe))
    return tmp_path / "runs" / "tiny"


def _folder(run: Path) -> Path:
    return run / "checkpoints"


def test_truncated_last_falls_back_to_the_newest_epoch_file(run, caplog):
    """A truncated ``last.pt`` used to end ``--resume`` in a traceback."""
    last = _folder(run) / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    with caplog.at_level(logging.INFO, logger="torchssc.checkpoint"):
        chosen = resume_checkpoint(run, True)
    assert chosen == _folder(run) / "epoch_0002.pt"
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"resume: passed over {last}: unreadable checkpoint") for m in messages), messages
    assert any(m.startswith(f"resume: from {chosen} (iteration 4)") for m in messages), messages


def test_stale_last_never_wins_over_a_newer_epoch_file(run):
    """``last.pt`` one epoch behind (its copy failed) used to be resumed from, redoing an epoch on
    top of the newer epoch file."""
    shutil.copyfile(_folder(run) / "epoch_0001.pt", _folder(run) / "last.pt")
    chosen, iteration, skipped = newest_resumable(run)
    assert (chosen.name, iteration) == ("epoch_0002.pt", 4)
    assert skipped == [f"{_folder(run) / 'last.pt'}: older (iteration 2) than epoch_0002.pt (iteration 4)"]


def test_every_bad_file_is_passed_over_with_its_reason(run):
    folder = _folder(run)
    (folder / "epoch_0002.pt").write_bytes(b"garbage")
    state = load_checkpoint(folder / "last.pt")
    del state["optimizer"]  # an evaluation-only checkpoint
    torch.save(state, folder / "last.pt")
    chosen, iteration, skipped = newest_resumable(run)
    assert (chosen.name, iteration) == ("epoch_0001.pt", 2)
    assert [s.split(": ", 1)[0] for s in skipped] == [str(folder / "last.pt"), str(folder / "epoch_0002.pt")]
    assert "missing ['optimizer']" in skipped[0] and "unreadable checkpoint" in skipped[1]


def test_resume_through_the_cli_continues_from_the_fallback(run, capsys):
    (_folder(run) / "last.pt").write_bytes(b"")
    rc, _, err = _faults.cli(capsys, "train", run / "config.yaml", "train.epochs=3", "--resume")
    assert rc == 0, err
    assert load_checkpoint(_folder(run) / "epoch_0003.pt")["iteration"] == 6


def test_nothing_resumable_is_one_line(run, capsys):
    for path in _folder(run).iterdir():
        path.write_bytes(b"x")
    rc, _, err = _faults.cli(capsys, "train", run / "config.yaml", "--resume")
    line = _faults.error_line(err, "train")
    assert rc == 2 and line.startswith(f"resume: no usable checkpoint in {_folder(run)}: ")
    assert line.count("unreadable checkpoint") == 3


def test_checkpoints_are_fsynced_around_the_rename(run, monkeypatch):
    synced: list[Path] = []
    real = atomic._fsync
    monkeypatch.setattr(atomic, "_fsync", lambda path: (synced.append(Path(path)), real(path)))
    ckpt_mod.save_checkpoint(_folder(run) / "epoch_0005.pt", load_checkpoint(_folder(run) / "last.pt"), also_last=True)
    # each file's temporary before its rename, then the folder after it
    assert synced[0].name.startswith(".epoch_0005.pt.")
    assert synced[1] == _folder(run)
    assert synced[2].name.startswith(".last.pt.") and synced[3] == _folder(run)


def _full_disk_at(monkeypatch, call: int, where) -> None:
    """Make the ``call``-th use of ``where`` ("save" or "copy") in the checkpoint module fail with
    ENOSPC after writing part of the file."""
    calls = {"n": 0}
    real = torch.save if where == "save" else shutil.copyfile

    def full(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            Path(dst).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kwargs)

    if where == "save":
        monkeypatch.setattr(ckpt_mod.torch, "save", full)
    else:
        monkeypatch.setattr(ckpt_mod.shutil, "copyfile", full)


def test_full_disk_is_one_line_and_keeps_earlier_files(tmp_path, capsys, monkeypatch):
    """A full disk at the epoch-2 checkpoint used to end in a traceback."""
    tiny.make_frames(tmp_path / "data", n=3, seed=2)
    recipe = tiny.write_recipe(tmp_path / "tiny.yaml", tmp_path / "data", tmp_path / "runs", epochs=3,
                               iters_per_epoch=1)
    _full_disk_at(monkeypatch, 2, "save")
    rc, _, err = _faults.cli(capsys, "train", recipe)
    folder = tmp_path / "runs" / "tiny" / "checkpoints"
    assert rc == 2
    assert _faults.error_line(err, "train") == f"no space left on the device writing {folder / 'epoch_0002.pt'}"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_0001.pt", "last.pt"]  # no temporaries
    assert load_checkpoint(folder / "epoch_0001.pt")["iteration"] == 1
    assert load_checkpoint(folder / "last.pt")["iteration"] == 1


def test_full_disk_while_copying_last_then_resume_takes_the_epoch_file(tmp_path, capsys, monkeypatch):
    tiny.make_frames(tmp_path / "data", n=3, seed=2)
    recipe = tiny.write_recipe(tmp_path / "tiny.yaml", tmp_path / "data", tmp_path / "runs", epochs=3,
                               iters_per_epoch=1)
    _full_disk_at(monkeypatch, 2, "copy")  # epoch_0002.pt is written, its copy to last.pt is not
    rc, _, err = _faults.cli(capsys, "train", recipe)
    folder = tmp_path / "runs" / "tiny" / "checkpoints"
    assert rc == 2 and _faults.error_line(err, "train") == f"no space left on the device writing {folder / 'last.pt'}"
    assert load_checkpoint(folder / "last.pt")["iteration"] == 1  # stale, intact
    assert load_checkpoint(folder / "epoch_0002.pt")["iteration"] == 2
    monkeypatch.undo()
    assert resume_checkpoint(tmp_path / "runs" / "tiny", True) == folder / "epoch_0002.pt"


class _Crafted:
    """A pickle that runs code when loaded without ``weights_only``: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "ran")


def test_crafted_pickle_is_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "marker"
    torch.save({"format_version": 1, "model": _Crafted(marker), "config": {}, "epoch": 1, "iteration": 1},
               tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", tmp_path / "evil.pt", "--depth", tmp_path / "d.png")
    assert rc == 2 and "evil.pt: unreadable checkpoint" in _faults.error_line(err, "predict")
    assert not marker.exists()


SLOW_TRAIN = """
import sys, time
sys.path.insert(0, {engine!r})
import torch
torch.set_num_threads(1)
import _engine_tiny as tiny
from torchssc.models.registry import MODELS

class Slow(tiny.TinySSC):
    def forward(self, batch):
        time.sleep(0.15)  # time to be killed in
        return super().forward(batch)

MODELS.register({name!r})(lambda **kw: Slow(**kw))
from torchssc.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_9_then_resume_gives_bitwise_the_same_model(tmp_path):
    """Killed with SIGKILL during epoch 2 of 4 (in a process of its own), ``--resume`` ends with the
    weights of a run never interrupted, and no temporary file is left behind."""
    import os
    import signal
    import subprocess
    import sys

    tiny.make_frames(tmp_path / "data", n=3, seed=11)
    recipe = tiny.write_recipe(tmp_path / "tiny.yaml", tmp_path / "data", tmp_path / "runs", epochs=4,
                               iters_per_epoch=3)
    model = [f"model.name={_faults.SLOW_MODEL}", "model.kwargs.dropout=0.3"]  # dropout: the RNG streams matter
    script = tmp_path / "slow_train.py"
    script.write_text(SLOW_TRAIN.format(engine=str(Path(tiny.__file__).parent), name=_faults.SLOW_MODEL))
    killed = subprocess.Popen([sys.executable, str(script), "train", str(recipe), "run.name=killed", *model],
                              env={**os.environ, "PYTHONPATH": str(_faults.SRC), "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "runs" / "killed" / "checkpoints"
    assert _faults.wait_for(lambda: (folder / "epoch_0001.pt").is_file() or killed.poll() is not None, timeout=120)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (folder / "epoch_0004.pt").exists()  # it did not finish
    full = main(load_config(recipe, ["run.name=full", *model]))  # here, the same model without the sleep
    resumed = main(load_config(recipe, ["run.name=killed", *model]), resume=True)
    a, b = load_checkpoint(full["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    assert resumed["checkpoint"].name == "epoch_0004.pt" and a["iteration"] == b["iteration"] == 12
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(not p.name.startswith(".") for p in folder.iterdir())


def test_resume_removes_the_temporaries_of_a_killed_writer(run):
    """A checkpoint write killed half-way leaves a hidden temporary; the next run removes it (a live
    writer's, named by its process id, would stay)."""
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = _folder(run) / f".epoch_0003.pt.{dead.pid}.k2j4.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    main(load_config(run / "config.yaml", ["train.epochs=3"]), resume=True)
    assert not stale.exists() and (_folder(run) / "epoch_0003.pt").is_file()
