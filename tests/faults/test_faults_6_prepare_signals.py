"""Item 6: ``prepare --workers 2`` leaves no process behind when it is killed, ends Ctrl-C with a
correct summary and exit status 130, and removes the temporaries of killed writers on the next run.

These tests run the command in a process of its own (a new session, so that its workers can be
found and Ctrl-C sent to its process group)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import _faults
from torchssc.io.prepared import frame_paths, missing_files, read_split
from torchssc.prepare.runner import PREPARED_FIELDS

FRAMES = 24


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw") / "NYUtrain"
    _faults.make_raw_frames(folder, FRAMES)
    return folder


def _started(out: Path) -> bool:
    """At least one frame is written: the worker pool is busy."""
    folder = out / "sketch3D"
    return folder.is_dir() and any(p.suffix == ".npy" and not p.name.startswith(".") for p in folder.iterdir())


def _spawn(raw: Path, out: Path) -> subprocess.Popen:
    proc = _faults.spawn_cli("prepare", "--raw", raw, "--out", out, "--workers", 2, "--no-progress", cwd=out.parent)
    if not _faults.wait_for(lambda: _started(out) or proc.poll() is not None, timeout=120):
        proc.kill()
        pytest.fail("prepare wrote no frame in 120 s")
    assert proc.poll() is None, proc.communicate()
    return proc


@pytest.mark.slow
def test_killed_parent_leaves_no_process_behind(raw, tmp_path):
    """Its four processes (forkserver, resource tracker, two workers) once stayed forever."""
    proc = _spawn(raw, tmp_path / "out")
    assert len(_faults.session_processes(proc.pid)) >= 3  # the parent and its helpers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    gone = _faults.wait_for(lambda: not _faults.session_processes(proc.pid), timeout=3.0)
    left = _faults.session_processes(proc.pid)
    for pid in left:  # clean up before failing
        os.kill(pid, signal.SIGKILL)
    assert gone, f"still alive {time.monotonic() - started:.1f} s after the kill: {left}"


@pytest.mark.slow
def test_ctrl_c_ends_with_exit_130_and_a_correct_summary(raw, tmp_path):
    """Ctrl-C once printed a traceback and listed complete frames as failed."""
    out = tmp_path / "out"
    proc = _spawn(raw, out)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole process group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "FAILED" not in stderr
    assert "interrupted; the frames above are complete, rerun to prepare the rest" in stderr
    match = re.search(r"train: interrupted; (\d+) prepared, 0 skipped, 0 failed; (\d+) frames listed", stdout)
    assert match, stdout
    prepared, listed = int(match.group(1)), int(match.group(2))
    ids = read_split(out, "train")
    assert 1 <= prepared == listed == len(ids) < FRAMES
    assert all(not missing_files(out, i, PREPARED_FIELDS) for i in ids)  # only complete frames listed
    assert _faults.wait_for(lambda: not _faults.session_processes(proc.pid), timeout=3.0)
    # a rerun prepares the rest and skips what is done
    rerun = subprocess.run(proc.args, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(_faults.SRC), "OMP_NUM_THREADS": "1"})
    assert rerun.returncode == 0, rerun.stderr
    assert f"{FRAMES - prepared} prepared, {prepared} skipped, 0 failed; {FRAMES} frames listed" in rerun.stdout


def test_temporaries_of_killed_writers_are_removed(tmp_path, capsys):
    """The hidden ``.tmp`` files of writers killed mid-write once stayed forever; a live writer's stay."""
    raw = tmp_path / "NYUtrain"
    _faults.make_raw_frames(raw, 1)
    out = tmp_path / "out"
    folder = frame_paths(out, "0001")["tsdf"].parent
    folder.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = folder / f".0001.npz.{dead.pid}.k2j4.tmp.npz"
    live = folder / f".0002.npz.{os.getpid()}.x9q1.tmp.npz"
    for path in (stale, live):
        path.write_bytes(b"half a file")
    rc, stdout, _ = _faults.cli(capsys, "prepare", "--raw", raw, "--out", out, "--no-progress")
    assert rc == 0 and "1 prepared" in stdout
    assert not stale.exists() and live.exists()
