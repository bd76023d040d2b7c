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
    assert _faults.error_line(err, "train") == f"no space left writing {folder / 'epoch_0002.pt'}"
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
    assert rc == 2 and _faults.error_line(err, "train") == f"no space left writing {folder / 'last.pt'}"
    assert load_checkpoint(folder / "last.pt")["iteration"] == 1  # stale, intact
    assert load_checkpoint(folder / "epoch_0002.pt")["iteration"] == 2
    monkeypatch.undo()
    assert resume_checkpoint(tmp_path / "runs" / "tiny", True) == folder / "epoch_0002.pt"
