"""Batch preparation of a raw depthbin split into the prepared TorchSSC layout.

:func:`prepare_split` finds every ``NYU%04d_0000.bin`` (+ ``.png`` depth) in a raw folder
(``NYUtrain/``, ``NYUtest/``, a synthetic split, ...), prepares each frame with
:func:`torchssc.prepare.pipeline.prepare_depthbin` in worker processes, writes it with
:func:`torchssc.io.prepared.write_frame` and finally lists every complete frame in
``<out>/<split>.txt``.

* **Resumable.** A frame whose files all exist already (:func:`~torchssc.io.prepared.missing_files`)
  is skipped. Every file is written atomically and the sketch last, so an interrupted run leaves
  no frame that looks complete but is not.
* **Robust.** A frame that fails is reported by name with the reason; the others still finish.
  A full disk is not a frame's fault: the run stops there (the frames in progress finish or
  fail, none is started), and says so once (:attr:`PrepareSummary.stopped`).
* **RGB** (optional everywhere): ``NYU%04d_colors.png`` beside the ``.bin`` is used when present
  (that is how the synthetic generator writes it); ``rgb_dir`` looks there instead (an image
  missing there fails the frame); ``rgb_mat`` extracts image ``int(id)`` (1-based) from the
  official ``nyu_depth_v2_labeled.mat``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import tempfile
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from torchssc.datasets import get_dataset_spec
from torchssc.geometry import RELEASE_INTRINSICS, Intrinsics
from torchssc.io.atomic import is_disk_full, remove_stale_temporaries
from torchssc.io.depthbin import read_intrinsics_file
from torchssc.io.nyu_mat import NyuLabeledMat, read_nyu_rgb
from torchssc.io.prepared import (
    REQUIRED, SPLITS, frame_paths, missing_files, read_rgb, read_split, write_frame, write_split,
)
from torchssc.prepare.downsample import TIE_RULES
from torchssc.prepare.forknet import CLASS_MAPS

logger = logging.getLogger(__name__)

BIN_PATTERN = re.compile(r"^NYU(\d{4})_0000\.bin$")
"""Raw frame file name; the 4 digits are the frame id (the 1-based NYUv2 image index)."""

PREPARED_FIELDS = REQUIRED + ("sketch", "meta", "depth", "visibility")
"""Fields of :func:`~torchssc.io.prepared.frame_paths` every prepared frame has; ``rgb`` and
``tsdf_fine`` are added when an RGB source exists / ``fine`` is asked for, ``forknet`` and
``label_fine`` when ``forknet`` / ``fine_labels`` are."""


def rgb_name(frame_id: str) -> str:
    """``NYU<id>_colors.png``: the RGB file name, beside the ``.bin`` or in an RGB folder."""
    return f"NYU{frame_id}_colors.png"


def find_frames(raw_dir: str | os.PathLike) -> dict[str, Path]:
    """Frame id -> ``.bin`` path for every ``NYU%04d_0000.bin`` in ``raw_dir``, sorted by id.

    Raises:
        FileNotFoundError: ``raw_dir`` is not a folder or holds no such file.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{raw_dir}: raw folder does not exist")
    frames = {}
    for path in raw_dir.iterdir():
        match = BIN_PATTERN.match(path.name)
        if match and path.is_file():
            frames[match.group(1)] = path
    if not frames:
        raise FileNotFoundError(f"{raw_dir}: no NYU%04d_0000.bin frames found")
    return dict(sorted(frames.items()))


def infer_split(raw_dir: str | os.PathLike) -> str:
    """``"test"`` when the folder's name contains "test" (any case), else ``"train"``."""
    return "test" if "test" in Path(raw_dir).resolve().name.lower() else "train"


@dataclass(frozen=True)
class _Task:
    """Everything a worker process needs to prepare one frame (picklable)."""

    frame_id: str
    bin_path: Path
    out_root: Path
    rgb_kind: str | None  # None, "png" or "mat"
    rgb_path: Path | None
    intrinsics: Intrinsics
    fine: bool
    fine_intrinsics: Intrinsics | None
    tie_rule: str
    extras: tuple[tuple[str, object], ...] = ()  # optional prepare_frame keywords (forknet, fine_labels)


@dataclass
class PrepareSummary:
    """Outcome of :func:`prepare_split`.

    Attributes:
        split: split name; split_file: the list written (``<out>/<split>.txt``).
        intrinsics: the camera the frames were prepared with; intrinsics_source: where it came
            from (``"given"``, the ``intrinsics.json`` path, or ``"default"`` = NYU release).
        prepared, skipped: frame ids prepared now / already complete.
        failed: frame id -> reason (exception type and message, which names the bad file).
        listed: every id now in the split list.
        interrupted: the run was stopped by Ctrl-C (the frames not done are neither prepared
            nor failed; a rerun resumes).
        stopped: why the run stopped before the end ("no space left on the device writing
            <file>"), or "" (the frames not done are neither prepared nor failed; a rerun resumes).
        total: frames in the raw folder.
    """

    split: str
    split_file: Path
    intrinsics: Intrinsics = RELEASE_INTRINSICS
    intrinsics_source: str = "default"
    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)
    interrupted: bool = False
    stopped: str = ""
    total: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and not self.stopped

    @property
    def not_done(self) -> int:
        """Frames neither prepared, skipped nor failed (a stopped or interrupted run's rest)."""
        return self.total - len(self.prepared) - len(self.skipped) - len(self.failed)

    def stop_line(self) -> str:
        """The one error line of a stopped run: why, and how many frames are prepared."""
        done = len(self.prepared) + len(self.skipped)
        return (f"{self.stopped}; stopped with {done} of {self.total} frames prepared, {self.not_done} not done: "
                "free some space and rerun to prepare the rest")

    def line(self) -> str:
        """One-line summary: ``prepared / skipped / failed`` counts and the split list."""
        failed = ""
        if self.failed:
            ids = list(self.failed)
            failed = " (" + ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "") + ")"
        stopped = "interrupted; " if self.interrupted else ""
        stopped = "stopped, no space left on the device; " if self.stopped else stopped
        not_done = f", {self.not_done} not done" if self.stopped else ""
        return (
            f"{self.split}: {stopped}{len(self.prepared)} prepared, {len(self.skipped)} skipped, "
            f"{len(self.failed)} failed{failed}{not_done}; {len(self.listed)} frames listed in {self.split_file}; "
            f"intrinsics {self.intrinsics.describe()} [{self.intrinsics_source}]"
        )


def _rgb_source(
    frame_id: str, bin_path: Path, rgb_dir: Path | None, rgb_mat: Path | None
) -> tuple[str | None, Path | None]:
    if rgb_mat is not None:
        return "mat", rgb_mat
    if rgb_dir is not None:
        return "png", rgb_dir / rgb_name(frame_id)
    beside = bin_path.parent / rgb_name(frame_id)
    return ("png", beside) if beside.is_file() else (None, None)


def _load_rgb(task: _Task) -> np.ndarray | None:
    """``(H, W, 3) uint8`` from the task's source, checked against the intrinsics' image size."""
    if task.rgb_kind is None:
        return None
    if task.rgb_kind == "mat":
        rgb = read_nyu_rgb(task.rgb_path, int(task.frame_id))
        where = f"{task.rgb_path} image {int(task.frame_id)}"
    else:
        if not task.rgb_path.is_file():
            raise FileNotFoundError(f"{task.rgb_path}: no RGB image for frame {task.frame_id}")
        rgb = read_rgb(task.rgb_path)
        where = str(task.rgb_path)
    expected = (task.intrinsics.height, task.intrinsics.width)
    if rgb.shape[:2] != expected:
        raise ValueError(
            f"{where}: RGB is {rgb.shape[1]}x{rgb.shape[0]}, expected {expected[1]}x{expected[0]} "
            "(the depth image size of the intrinsics)"
        )
    return rgb


def _prepare_one(task: _Task) -> tuple[str, str | None, bool]:
    """Prepare and write one frame. Returns ``(frame_id, None, False)`` or ``(frame_id, reason,
    disk_full)``; ``disk_full``: the frame failed because the disk is full, and ``reason`` is
    :func:`torchssc.io.atomic.no_space_error`'s message."""
    from torchssc.prepare import pipeline  # looked up at call time (tests may substitute it)

    try:
        rgb = _load_rgb(task)
        frame = pipeline.prepare_depthbin(
            task.bin_path, rgb=rgb, intrinsics=task.intrinsics, fine=task.fine,
            fine_intrinsics=task.fine_intrinsics, tie_rule=task.tie_rule, **dict(task.extras),
        )
        write_frame(task.out_root, task.frame_id, frame)
    except Exception as exc:  # reported per frame; the other frames go on, unless the disk is full
        if is_disk_full(exc, task.out_root):
            return task.frame_id, (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)), True
        return task.frame_id, f"{type(exc).__name__}: {exc}", False
    return task.frame_id, None, False


def _need(task: _Task) -> tuple[str, ...]:
    need = PREPARED_FIELDS
    if task.fine:
        need += ("tsdf_fine",)
    if task.rgb_kind is not None:
        need += ("rgb",)
    extras = dict(task.extras)
    need += ("forknet",) if extras.get("forknet") else ()
    need += ("label_fine",) if extras.get("fine_labels") else ()
    return need


def _is_complete(task: _Task) -> bool:
    return not missing_files(task.out_root, task.frame_id, _need(task))


def prepare_split(
    raw_dir: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    split: str | None = None,
    rgb_dir: str | os.PathLike | None = None,
    rgb_mat: str | os.PathLike | None = None,
    workers: int = 1,
    fine: bool = False,
    tie_rule: str = "default",
    intrinsics: Intrinsics | None = None,
    fine_intrinsics: Intrinsics | None = None,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    forknet: bool = False,
    forknet_class_map: str = "standard",
    fine_labels: bool = False,
    dataset: str = "nyu",
) -> PrepareSummary:
    """Prepare every frame of a raw depthbin folder into ``out_root`` (TorchSSC layout).

    Args:
        raw_dir: folder of ``NYU%04d_0000.bin`` + ``NYU%04d_0000.png`` (and optionally
            ``NYU%04d_colors.png``).
        out_root: prepared root; created when needed.
        split: ``"train"`` or ``"test"``; None infers it from ``raw_dir``'s name.
        rgb_dir: folder of ``NYU%04d_colors.png`` (every frame must have one there).
        rgb_mat: the official ``nyu_depth_v2_labeled.mat``; frame id = 1-based image index.
        workers: worker processes (1 = in this process). Workers are started with
            "forkserver" (or "spawn"), so a script calling this with ``workers > 1`` needs the
            usual ``if __name__ == "__main__":`` guard.
        fine: also write the fine flipped TSDF (``TSDFFine/``, for SSCNet).
        dataset: the dataset spec (a built-in name or a spec YAML, :mod:`torchssc.datasets`)
            whose label map and classes turn the raw labels into the label grid (NYU36 -> 11).
        tie_rule: downsampling tie rule, ``"default"`` (smallest class) or ``"sscnet"``.
        intrinsics: camera intrinsics of the depth (and RGB) images; None = those recorded in
            ``<raw_dir>/intrinsics.json`` (``torchssc synth`` writes it), else the ``dataset``
            spec's camera (``nyucad``: SSCNet's; docs/nyucad.md), else the NYU release
            convention (:data:`~torchssc.geometry.RELEASE_INTRINSICS`).
        fine_intrinsics: intrinsics of the fine flipped TSDF; None = SSCNet's camera for NYU
            (release intrinsics), the dataset's own otherwise
            (:func:`~torchssc.prepare.pipeline.default_fine_intrinsics`).
        progress: show a tqdm progress bar.
        report: called with one line per failed frame as it fails
            (``"NYU0003_0000.bin: <reason>"``); default: ``logging`` at WARNING level.
        forknet: also write ForkNet's 80x48x80 volumes (``ForkNet/``), with the 36 -> 11 map
            ``forknet_class_map`` (:mod:`torchssc.prepare.forknet`).
        fine_labels: also write the 240x144x240 labels (``LabelFine/``, CCPNet-style target).
    Returns:
        a :class:`PrepareSummary`. Failed frames are in ``summary.failed``; nothing is raised
        for them. A full disk stops the run: ``summary.stopped`` says where, and
        :meth:`PrepareSummary.stop_line` how many frames are done.
    Raises:
        FileNotFoundError / ValueError for bad arguments (missing folder, no frames, unreadable
        .mat, both RGB sources, bad split, tie rule or worker count).

    The split list ``<out_root>/<split>.txt`` is rewritten (atomically, sorted) to hold the ids
    already listed there plus every complete frame of ``raw_dir``; frames of ``raw_dir`` that
    are not complete after this run are dropped from it.
    """
    raw_dir, out_root = Path(raw_dir), Path(out_root)
    if rgb_dir is not None and rgb_mat is not None:
        raise ValueError("give at most one RGB source: rgb_dir or rgb_mat")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    split = infer_split(raw_dir) if split is None else split
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    frames = find_frames(raw_dir)
    source = "given"
    if intrinsics is None:
        intrinsics = read_intrinsics_file(raw_dir)
        source = str(raw_dir / "intrinsics.json") if intrinsics is not None else "default"
        if intrinsics is None and dataset != "nyu":  # the dataset spec's camera (NYU's is the default)
            spec = get_dataset_spec(dataset)
            intrinsics = Intrinsics(*spec.intrinsics, width=spec.image_size[0], height=spec.image_size[1])
            source = f"dataset {spec.name}"
        intrinsics = intrinsics or RELEASE_INTRINSICS
    rgb_dir = Path(rgb_dir) if rgb_dir is not None else None
    if rgb_dir is not None and not rgb_dir.is_dir():
        raise FileNotFoundError(f"{rgb_dir}: RGB folder does not exist")
    rgb_mat = Path(rgb_mat) if rgb_mat is not None else None
    if rgb_mat is not None:
        with NyuLabeledMat(rgb_mat) as mat:  # fail early on a bad file, not once per frame
            count = len(mat)
        beyond = [i for i in frames if int(i) > count]
        if beyond:
            logger.warning("%s holds %d images; frames %s have no RGB there and will fail", rgb_mat, count, beyond)

    if forknet_class_map not in CLASS_MAPS:
        raise ValueError(f"forknet_class_map must be one of {CLASS_MAPS}, got {forknet_class_map!r}")
    get_dataset_spec(dataset)  # a bad spec is one error here, not one per frame
    extras = () if dataset == "nyu" else (("spec", str(dataset)),)
    if forknet:
        extras += (("forknet", True), ("forknet_class_map", forknet_class_map))
    if fine_labels:
        extras += (("fine_labels", True),)
    _check_output_folder(out_root)
    for folder in {path.parent for path in frame_paths(out_root, "0000").values()}:
        for stale in remove_stale_temporaries(folder):
            logger.info("removed %s (left by a killed writer)", stale)

    tasks = []
    for frame_id, bin_path in frames.items():
        kind, path = _rgb_source(frame_id, bin_path, rgb_dir, rgb_mat)
        tasks.append(_Task(frame_id, bin_path, out_root, kind, path, intrinsics, bool(fine), fine_intrinsics,
                           tie_rule, extras))

    summary = PrepareSummary(
        split=split, split_file=out_root / f"{split}.txt", intrinsics=intrinsics, intrinsics_source=source,
        total=len(tasks),
    )
    todo: list[_Task] = []
    for task in tasks:
        if _is_complete(task):
            summary.skipped.append(task.frame_id)
        else:
            todo.append(task)

    bar = tqdm(total=len(todo), desc=f"prepare {split}", unit="frame", disable=not progress or not todo)

    def record(task: _Task, reason: str | None, disk_full: bool = False) -> None:
        if disk_full:  # not the frame's fault: not done; the run stops (said once, by the caller)
            summary.stopped = summary.stopped or reason
        elif reason is None:
            summary.prepared.append(task.frame_id)
        else:
            summary.failed[task.frame_id] = reason
            message = f"{task.bin_path.name}: {reason}"
            if report is None:
                logger.warning("failed %s", message)
            else:
                report(message)
        bar.update(1)

    try:
        if workers == 1 or len(todo) <= 1:
            for task in todo:
                record(task, *_prepare_one(task)[1:])
                if summary.stopped:
                    break
        else:
            _run_pool(todo, workers, record, stop=lambda: bool(summary.stopped))
    except KeyboardInterrupt:  # Ctrl-C: frames finished so far are kept and listed
        summary.interrupted = True
    finally:
        bar.close()
        summary.prepared.sort()
        summary.skipped.sort()
        summary.failed = dict(sorted(summary.failed.items()))
        summary.listed = _listed_after(out_root, split, tasks, summary)
    return summary


def _listed_after(out_root: Path, split: str, tasks: list[_Task], summary: PrepareSummary) -> list[str]:
    """:func:`_update_split_list`; on a run stopped by a full disk that cannot write the list either,
    the list on disk stays as it was (it names only complete frames) and the stop line says so."""
    try:
        return _update_split_list(out_root, split, tasks)
    except OSError as exc:
        if not (summary.stopped and is_disk_full(exc, out_root)):
            raise
        summary.stopped += f" (and {summary.split_file}, which was left as it was)"
        return read_split(out_root, split) if summary.split_file.is_file() else []


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker as soon as the process that started it is gone (killed)."""
    while True:
        time.sleep(0.5)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def _worker_init(parent_pid: int) -> None:
    """Workers ignore Ctrl-C (the parent handles it) and die with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _run_pool(todo: list[_Task], workers: int, record: Callable[[_Task, str | None, bool], None],
              stop: Callable[[], bool] = lambda: False) -> None:
    """Prepare ``todo`` in worker processes, recording each frame as it finishes.

    On Ctrl-C, or once ``stop()`` is true after a frame is recorded (a full disk), the queued
    frames are cancelled and the frames being prepared finish and are recorded; then
    KeyboardInterrupt propagates (Ctrl-C) or this returns (``stop``).
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(todo)), mp_context=context,
        initializer=_worker_init, initargs=(os.getpid(),),
    )
    futures: dict[Future, _Task] = {pool.submit(_prepare_one, task): task for task in todo}
    done: set[Future] = set()

    def collect(future: Future) -> None:
        try:
            _, reason, disk_full = future.result()
        except Exception as exc:  # e.g. BrokenProcessPool: a worker died
            reason, disk_full = f"worker process failed: {type(exc).__name__}: {exc}", False
        done.add(future)
        record(futures[future], reason, disk_full)

    def finish_running() -> None:
        for future in futures:
            future.cancel()  # queued frames: dropped
        running = [f for f in futures if f not in done and not f.cancelled()]
        for future in as_completed(running):  # frames in progress: finish them
            collect(future)
        pool.shutdown(wait=True, cancel_futures=True)

    try:
        for future in as_completed(futures):
            collect(future)
            if stop():
                finish_running()
                return
    except KeyboardInterrupt:
        finish_running()
        raise
    pool.shutdown()


def _check_output_folder(out_root: Path) -> None:
    """Fail once, naming the folder, when it cannot hold the prepared frames.

    Raises:
        ValueError: ``out_root`` is a file, cannot be created, or is not writable.
    """
    if out_root.exists() and not out_root.is_dir():
        raise ValueError(f"{out_root}: the output is a file, not a folder")
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_root):
            pass
    except OSError as exc:
        raise ValueError(f"{out_root}: cannot write the output folder ({exc.strerror or exc})") from None


def _update_split_list(out_root: Path, split: str, tasks: list[_Task]) -> list[str]:
    """Merge the already-listed ids with the complete frames of ``tasks``; write atomically."""
    listed = set(read_split(out_root, split)) if (out_root / f"{split}.txt").is_file() else set()
    for task in tasks:
        if _is_complete(task):
            listed.add(task.frame_id)
        else:
            listed.discard(task.frame_id)
    ids = sorted(listed)
    write_split(out_root, split, ids)
    return ids
