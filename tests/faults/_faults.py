"""Helpers of the fault-injection suite (not a test module): CLI runs that capture the one error
line, tiny raw depthbin frames for ``torchssc prepare``, a model that breaks its own buffers, and a
real full disk (a tiny tmpfs, mounted when the tests run as root on Linux).

Registration is idempotent, as in ``_engine_tiny``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

import _engine_tiny as tiny
from torchssc.cli import main as cli_main
from torchssc.geometry import voxel_origin_for_pose
from torchssc.io.depthbin import write_bin, write_depth_png
from torchssc.models.registry import MODELS

SRC = Path(__file__).resolve().parents[2] / "src"
BROKEN_MODEL = "fault_test_inf_buffer"
SLOW_MODEL = "fault_test_slow"


class InfBufferSSC(tiny.TinySSC):
    """The tiny model, whose BatchNorm running variance becomes inf from training forward call
    ``at`` on (as a real BatchNorm's does when its inputs overflow float32), while the training
    loss stays finite: training mode normalises with the batch's own statistics."""

    def __init__(self, at: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.at, self.calls = at, 0

    def forward(self, batch: dict) -> dict:
        out = super().forward(batch)
        if self.training:
            self.calls += 1
            if self.calls >= self.at:
                # a new tensor: the old one may be saved for the backward pass
                self.bn.running_var = torch.full_like(self.bn.running_var, float("inf"))
        return out


def _build_broken(*, at: int = 1, width: int = 4) -> torch.nn.Module:
    return InfBufferSSC(at=at, width=width)


def _build_plain(**kwargs) -> torch.nn.Module:
    return tiny.TinySSC(**kwargs)


def register() -> None:
    tiny.register()
    if BROKEN_MODEL not in MODELS.names():
        MODELS.register(BROKEN_MODEL)(_build_broken)
    if SLOW_MODEL not in MODELS.names():  # a subprocess registers a slowed-down twin
        MODELS.register(SLOW_MODEL)(_build_plain)


register()


def cli(capsys, *argv) -> tuple[int, str, str]:
    """``torchssc *argv`` in this process: ``(exit status, stdout, stderr)``."""
    capsys.readouterr()
    rc = cli_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def error_line(err: str, command: str) -> str:
    """The message of the one error line a failed command printed (asserts there is exactly one
    line on stderr besides log lines, and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"torchssc {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0][len(f"torchssc {command}: error: "):]


def level_pose(height: float = 1.2) -> np.ndarray:
    """Camera-to-world of a level camera ``height`` m up, looking along world +Y."""
    pose = np.eye(4)
    pose[:3, :3] = [[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]
    pose[2, 3] = height
    return pose


def make_raw_frames(raw: Path, n: int, *, start: int = 1) -> list[Path]:
    """``n`` raw depthbin frames ``NYU<id>_0000.bin/.png`` (a floor and a wall, a flat depth image
    2 m ahead), enough for ``torchssc prepare``; returns the ``.bin`` paths."""
    raw.mkdir(parents=True, exist_ok=True)
    pose = level_pose()
    labels = np.zeros((240, 144, 240), np.uint8)
    labels[:, :10, :] = 2  # floor
    labels[:, :, 200:] = 21  # a wall (NYU36 id)
    paths = []
    for i in range(start, start + n):
        bin_path = raw / f"NYU{i:04d}_0000.bin"
        write_bin(bin_path, voxel_origin_for_pose(pose), pose, labels)
        write_depth_png(bin_path.with_suffix(".png"), np.full((480, 640), 2.0, np.float32))
        paths.append(bin_path)
    return paths


def _default_ctrl_c() -> None:
    """Ctrl-C as in a terminal's foreground job: a test run started in the background of a
    shell (``pytest &``) ignores SIGINT, and children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn_cli(*argv, cwd: Path) -> subprocess.Popen:
    """``python -m torchssc.cli *argv`` in a new session (its own process group), one thread,
    with the default Ctrl-C."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torchssc.cli", *map(str, argv)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_ctrl_c)


def session_processes(sid: int) -> list[int]:
    """Process ids whose session id is ``sid`` (Linux ``/proc``), zombies left out."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(condition, timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def tiny_checkpoint(path: Path, model: str = tiny.MODEL, **kwargs) -> Path:
    """An evaluation checkpoint of a freshly built ``model`` (the engine tests' tiny one by
    default) with its recipe, written by the ordinary :func:`save_checkpoint`."""
    from torchssc.config import DEFAULTS, load_config
    from torchssc.engine.builders import build_model
    from torchssc.engine.checkpoint import FORMAT_VERSION, save_checkpoint

    recipe = path.with_suffix(".yaml")
    recipe.write_text(f"model: {{name: {model}, kwargs: {dict(kwargs) or {}}}}\ndata: {{rgb: false}}\n")
    cfg = load_config(recipe)
    assert set(cfg) == set(DEFAULTS)
    torch.manual_seed(0)
    save_checkpoint(path, {"format_version": FORMAT_VERSION, "model": build_model(cfg).state_dict(), "config": cfg,
                           "epoch": 1, "iteration": 1})
    return path


def make_clean_frames(root: Path, n: int, seed: int = 0, split: str = "train") -> list[str]:
    """``n`` tiny prepared frames that the data doctor passes (``label_weight`` follows the rule
    of docs/data.md, unlike ``_engine_tiny.make_frames``' all-ones weights) and the split list."""
    from torchssc.geometry import LABEL_NUMEL, LABEL_SHAPE
    from torchssc.io.prepared import PreparedFrame, write_frame, write_split

    rng = np.random.default_rng(seed)
    ids = [f"{i + 1:04d}" for i in range(n)]
    for fid in ids:
        label = rng.integers(0, 12, size=LABEL_SHAPE).astype(np.uint8)
        tsdf = rng.uniform(-1, 1, size=LABEL_SHAPE).astype(np.float32)
        weight = (((label >= 1) & (label <= 11)) | (tsdf < -0.5)).astype(np.uint8)
        write_frame(root, fid, PreparedFrame(tsdf=tsdf, label_weight=weight, label=label,
                                             mapping=rng.integers(0, 307201, size=LABEL_NUMEL),
                                             sketch=rng.integers(0, 2, size=LABEL_SHAPE).astype(np.uint8)))
    write_split(root, split, ids)
    return ids


def corrupt_deflate(path: Path) -> None:
    """Flip bytes of an ``.npz``'s compressed stream so that reading it raises ``zlib.error``
    (not a zip error: the one torchssc once let through unnamed)."""
    import io
    import zlib

    original = path.read_bytes()
    for offset in range(40, 400, 4):
        data = bytearray(original)
        for i in range(offset, offset + 16):
            data[i] ^= 0xFF
        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as npz:
                for key in npz.keys():
                    npz[key]
        except zlib.error:
            path.write_bytes(bytes(data))
            return
        except Exception:  # another error: try the next offset
            continue
    raise AssertionError(f"{path}: could not make a zlib error")


@contextlib.contextmanager
def small_disk(where: Path, size_kib: int = 1024) -> Iterator[Path]:
    """A real file system of ``size_kib`` KiB (tmpfs) mounted on ``where`` (created) for the ``with``
    body, and always unmounted after it. Skips the test, with the reason, where it cannot be made:
    not Linux, not root, no ``mount`` or a mount refused (a container without the capability)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("a real full disk needs root on Linux (to mount a tiny tmpfs)")
    if not (shutil.which("mount") and shutil.which("umount")):
        pytest.skip("a real full disk needs the mount and umount commands")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a real full disk: {done.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)  # busy: detach now, freed when released


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Fill ``folder``'s file system with a file ``folder/filler`` until the kernel says ENOSPC,
    then give back ``leave`` bytes (rounded by the file system to its blocks). Returns the file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            os.write(fd, bytes(1 << 16))
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    try:
        while True:  # the last blocks, smaller than the chunk above
            os.write(fd, bytes(512))
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    os.truncate(filler, max(filler.stat().st_size - leave, 0))
    return filler


def free_bytes(folder: Path) -> int:
    """Bytes left for this process on ``folder``'s file system."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize
