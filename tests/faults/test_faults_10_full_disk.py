"""Item 10: a real full disk is one line naming the file, in every command that writes.

The disk is real: a tiny tmpfs mounted for the test (root on Linux; otherwise the tests skip with
the reason), filled by a file until the kernel says ENOSPC. The writers do not say ENOSPC
themselves: ``torch.save`` raised ``RuntimeError: [enforce fail at inline_container.cc:672] .
unexpected pos ...`` (a traceback) and ``np.save`` ``129600 requested and 65408 written`` (naming
neither the file nor the cause, and ``prepare`` repeated it for each remaining frame).
"""

from __future__ import annotations

import gc
import re
from pathlib import Path

import numpy as np
import pytest

import _engine_tiny as tiny
import _faults
from torchssc.engine import train as train_mod
from torchssc.engine.checkpoint import load_checkpoint
from torchssc.io.depthbin import write_depth_png

def _no_temporaries(folder: Path) -> list[str]:
    """Hidden temporaries of :func:`torchssc.io.atomic.atomic_path` left under ``folder``."""
    return sorted(str(p) for p in folder.rglob(".*.tmp*"))


def _fill_before_checkpoint(monkeypatch, disk: Path, call: int, leave: int) -> None:
    """Fill ``disk`` (leaving ``leave`` bytes) right before the ``call``-th checkpoint is written."""
    calls = {"n": 0}
    real = train_mod.save_checkpoint

    def save(path, state, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            _faults.fill_disk(disk, leave)
        return real(path, state, **kwargs)

    monkeypatch.setattr(train_mod, "save_checkpoint", save)


@pytest.mark.parametrize("leave", [0, 12 << 10])
def test_real_full_disk_while_a_checkpoint_is_written_is_one_line(tmp_path, capsys, monkeypatch, leave):
    """``torch.save`` on a full tmpfs raised a RuntimeError ("unexpected pos"): a traceback, rc 1."""
    tiny.make_frames(tmp_path / "data", n=3, seed=2)
    with _faults.small_disk(tmp_path / "disk", 1024) as disk:
        recipe = tiny.write_recipe(tmp_path / "tiny.yaml", tmp_path / "data", disk / "runs", epochs=3,
                                   iters_per_epoch=1)
        _fill_before_checkpoint(monkeypatch, disk, 2, leave)
        rc, _, err = _faults.cli(capsys, "train", recipe)
        folder = disk / "runs" / "tiny" / "checkpoints"
        assert rc == 2, err
        assert _faults.error_line(err, "train") == f"no space left on the device writing {folder / 'epoch_0002.pt'}"
        assert sorted(p.name for p in folder.iterdir()) == ["epoch_0001.pt", "last.pt"]  # no temporaries
        assert load_checkpoint(folder / "epoch_0001.pt")["iteration"] == 1
        assert load_checkpoint(folder / "last.pt")["iteration"] == 1


def test_torch_and_numpy_writers_on_a_full_disk_are_recognised(tmp_path):
    """The two errno-less failures of a real full disk are told from other errors by the file
    system's free space, read before the partial temporary is removed."""
    import torch

    from torchssc.io.atomic import atomic_path, is_disk_full, no_space_error, save_npy_atomic

    with _faults.small_disk(tmp_path / "disk", 256) as disk:
        _faults.fill_disk(disk, 8 << 10)
        with pytest.raises(OSError, match=re.escape(f"no space left on the device writing {disk / 'a.pt'}")):
            with atomic_path(disk / "a.pt") as tmp:
                torch.save({"w": torch.zeros(100_000)}, tmp)
        with pytest.raises(OSError, match=re.escape(f"no space left on the device writing {disk / 'b.npy'}")):
            save_npy_atomic(disk / "b.npy", np.zeros(129_600, np.uint8))
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
        gc.collect()  # torch's writer, held by the traceback, keeps the unlinked temporary open
        assert _faults.free_bytes(disk) >= 8 << 10  # the temporaries' space is back
        # the same errno-less errors on a disk with room are not a full disk
        assert not is_disk_full(RuntimeError("unexpected pos 576 vs 534"), tmp_path)
    assert is_disk_full(OSError(28, "No space left on device"))
    assert not is_disk_full(ValueError("x"), tmp_path)
    assert no_space_error("f").errno == 28


def _predict_world(tmp_path: Path) -> tuple[Path, list[str]]:
    checkpoint = _faults.tiny_checkpoint(tmp_path / "tiny.pt")
    write_depth_png(tmp_path / "depth.png", np.full((480, 640), 2.0, np.float32))
    np.savetxt(tmp_path / "pose.txt", _faults.level_pose())
    return checkpoint, ["--depth", tmp_path / "depth.png", "--pose", tmp_path / "pose.txt"]


@pytest.mark.parametrize("formats, first", [("npy", "scene.npy"), ("ply", "scene.ply")])
def test_real_full_disk_in_predict_is_one_line(tmp_path, capsys, formats, first):
    """``np.save`` said ``129600 requested and 65408 written``: neither the file nor the cause."""
    checkpoint, inputs = _predict_world(tmp_path)
    with _faults.small_disk(tmp_path / "disk", 256) as disk:
        out = disk / "pred"
        out.mkdir()
        _faults.fill_disk(disk, 8 << 10)
        rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", checkpoint, *inputs, "--out", out,
                                 "--formats", formats)
        assert rc == 2, err
        assert _faults.error_line(err, "predict") == f"no space left on the device writing {out / first}"
        assert _no_temporaries(disk) == []


def test_real_full_disk_in_eval_save_is_one_line(tmp_path, capsys):
    tiny.make_frames(tmp_path / "data", n=2, seed=3)
    tiny.make_frames(tmp_path / "data", n=2, seed=3, split="test")
    recipe = tiny.write_recipe(tmp_path / "tiny.yaml", tmp_path / "data", tmp_path / "runs", epochs=1,
                               iters_per_epoch=1)
    rc, _, err = _faults.cli(capsys, "train", recipe)
    assert rc == 0, err
    with _faults.small_disk(tmp_path / "disk", 256) as disk:
        _faults.fill_disk(disk, 8 << 10)
        rc, _, err = _faults.cli(capsys, "eval", tmp_path / "runs" / "tiny", "--save", disk / "saved",
                                 "--out", tmp_path / "reports", "--no-progress")
        assert rc == 2, err
        assert _faults.error_line(err, "eval") == \
            f"no space left on the device writing {disk / 'saved' / 'results' / '0001.npy'}"
        assert _no_temporaries(disk) == []


def _frame_bytes(tmp_path: Path) -> int:
    """Bytes on a tmpfs (whole 4 KiB pages) of one prepared tiny frame."""
    _faults.make_raw_frames(tmp_path / "one" / "NYUtrain", 1)
    rc = _faults.cli_main(["prepare", "--raw", str(tmp_path / "one" / "NYUtrain"), "--out",
                           str(tmp_path / "one" / "out"), "--no-progress"])
    assert rc == 0
    files = [p for p in (tmp_path / "one" / "out").rglob("*") if p.is_file() and p.suffix != ".txt"]
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in files)


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_real_full_disk_in_prepare_stops_once_and_says_how_many_were_done(tmp_path, capsys, workers):
    """``prepare`` printed ``N requested and M written`` for each remaining frame (38 lines) and went
    on failing; now it stops, says why once, and how many frames were done."""
    per_frame = _frame_bytes(tmp_path)
    raw = tmp_path / "NYUtrain"
    _faults.make_raw_frames(raw, 5)
    with _faults.small_disk(tmp_path / "disk", 1024) as disk:
        out = disk / "out"
        out.mkdir()
        _faults.fill_disk(disk, int(2.5 * per_frame))  # two frames fit, the third does not
        rc, stdout, err = _faults.cli(capsys, "prepare", "--raw", raw, "--out", out, "--no-progress",
                                      "--workers", workers)
        assert rc == 2, err
        line = _faults.error_line(err, "prepare")
        assert line.startswith("no space left on the device writing "), line
        assert "FAILED" not in err and "requested and" not in err
        done = re.search(r"; stopped with (\d) of 5 frames prepared, (\d) not done: free some space and rerun to "
                         r"prepare the rest$", line)
        assert done and int(done[1]) + int(done[2]) == 5, line
        prepared = int(done[1])
        assert prepared == 2 if workers == 1 else prepared <= 2  # two frames fit; in parallel, maybe fewer
        assert f"{prepared} prepared, 0 skipped, 0 failed, {5 - prepared} not done" in stdout
        split = out / "train.txt"
        if f"(and {split}, which was left as it was)" not in line:  # the list needs room too
            assert split.read_text().split() == [f"{i:04d}" for i in range(1, prepared + 1)] or workers > 1
            assert len(split.read_text().split()) == prepared
        assert _no_temporaries(disk) == []
        _faults.fill_disk(disk, 0).unlink()  # room again: a rerun prepares the rest
        rc, stdout, err = _faults.cli(capsys, "prepare", "--raw", raw, "--out", out, "--no-progress")
        assert rc == 0, err
        assert (out / "train.txt").read_text().split() == ["0001", "0002", "0003", "0004", "0005"]


def test_a_full_disk_while_preparing_synthetic_rooms_is_one_error(tmp_path, monkeypatch):
    """``generate_and_prepare`` (``torchssc demo``) went on with the frames missing: it checked only
    for failed frames, and a full disk fails none."""
    from torchssc.prepare import runner
    from torchssc.synth.generator import generate_and_prepare

    raw = tmp_path / "raw"
    for split in ("train", "test"):  # rooms already generated: only the preparation runs
        (raw / f"NYU{split}").mkdir(parents=True)
        (raw / f"{split}.txt").write_text("1\n" if split == "train" else "2\n")
    full = f"no space left on the device writing {tmp_path / 'prepared' / 'TSDF' / '0001.npz'}"

    def stopped(raw_dir, out_root, *, split, **kwargs):
        return runner.PrepareSummary(split=split, split_file=Path(out_root) / f"{split}.txt", stopped=full, total=1)

    monkeypatch.setattr(runner, "prepare_split", stopped)
    with pytest.raises(OSError) as caught:
        generate_and_prepare(tmp_path, frames=2, progress=False)
    assert caught.value.strerror == (f"{full}; stopped with 0 of 1 frames prepared, 1 not done: free some space "
                                     "and rerun to prepare the rest")
