"""The data doctor: check every scene of a prepared folder before a long run.

:func:`check_scene` reads one scene's files as they are on disk (no dtype conversion) and lists
what is wrong with them; :func:`check_root` does it for every scene of the split lists, in
worker processes. Checked, per scene:

* the required files (``TSDF/`` or ``T/``, ``Mapping/``, ``Label/`` or ``L/``) are present and
  readable, with 129,600 values each (flat or 60x36x60);
* dtypes: integer labels and mapping, floating-point TSDF; label_weight all 0 or 1;
* label values in 0..11 or 255; mapping values in ``0..W*H`` (``W*H`` = no pixel);
* the TSDF is finite and within [-1, 1];
* label_weight follows the rule of ``docs/data.md``: 1 exactly where the label is a class
  (1..11) or the TSDF is below -0.5;
* optional files, when present: the sketch (60x36x60, 0/1), the 2D prior (8-bit, the image's
  size, ids 0..13; present for every scene when the folder has a ``seg_result_label13/``), the
  ``Meta/`` file (pose, origin, intrinsics).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.io.prepared import SPLITS, frame_paths, load_npz, read_prior, read_split
from torchssc.prepare.label_weight import label_weight


class _Bad(Exception):
    """A problem with one file: ``str`` is ``"<path>: <what>"``."""


def _values(path: Path, grid: tuple[int, ...], key: str = "arr_0", array: np.ndarray | None = None) -> np.ndarray:
    """The flat values of one array, checked to be one per voxel of ``grid`` (129,600 for NYU)."""
    if array is None:
        try:
            (array,) = load_npz(path, key)
        except (FileNotFoundError, ValueError) as exc:
            raise _Bad(str(exc)) from None
    numel = int(np.prod(grid))
    if array.size != numel or array.shape not in ((numel,), tuple(grid)):
        raise _Bad(f"{path}: {key} has shape {array.shape}, expected ({numel},) or {tuple(grid)}")
    return array.reshape(-1)


def _need_dtype(path: Path, key: str, array: np.ndarray, kind: str) -> None:
    ok = np.issubdtype(array.dtype, np.integer) if kind == "integer" else np.issubdtype(array.dtype, np.floating)
    if not ok:
        raise _Bad(f"{path}: {key} must be {kind}, got dtype {array.dtype}")


def _check_tsdf(path: Path, grid: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    try:
        tsdf, weight = load_npz(path, "arr_0", "arr_1")
    except (FileNotFoundError, ValueError) as exc:
        raise _Bad(str(exc)) from None
    tsdf, weight = _values(path, grid, "arr_0", tsdf), _values(path, grid, "arr_1", weight)
    _need_dtype(path, "arr_0 (TSDF)", tsdf, "floating-point")
    if not np.all(np.isfinite(tsdf)):
        raise _Bad(f"{path}: arr_0 (TSDF) has {int((~np.isfinite(tsdf)).sum())} non-finite values")
    if np.abs(tsdf).max() > 1:
        raise _Bad(f"{path}: arr_0 (TSDF) has values outside [-1, 1] (max |v| {float(np.abs(tsdf).max()):.3g})")
    if not np.all((weight == 0) | (weight == 1)):
        bad = np.unique(weight[(weight != 0) & (weight != 1)])[:3].tolist()
        raise _Bad(f"{path}: arr_1 (label_weight) must be 0 or 1, found {bad}")
    return tsdf, weight


def _check_labels(path: Path, grid: tuple[int, ...], num_classes: int) -> np.ndarray:
    label = _values(path, grid)
    _need_dtype(path, "arr_0 (labels)", label, "integer")
    bad = (label < 0) | ((label >= num_classes) & (label != 255))
    if bad.any():
        raise _Bad(f"{path}: labels must be 0..{num_classes - 1} or 255, found {np.unique(label[bad])[:5].tolist()} "
                   f"on {int(bad.sum())} voxels")
    return label


def _check_mapping(path: Path, grid: tuple[int, ...], num_pixels: int) -> None:
    mapping = _values(path, grid)
    _need_dtype(path, "arr_0 (mapping)", mapping, "integer")
    if mapping.min() < 0 or mapping.max() > num_pixels:
        raise _Bad(f"{path}: mapping must be in 0..{num_pixels} ({num_pixels} = no pixel), "
                   f"found {int(mapping.min())}..{int(mapping.max())}")


def _check_sketch(path: Path, grid: tuple[int, ...]) -> None:
    if path.is_file():
        try:
            sketch = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise _Bad(f"{path}: unreadable npy ({exc})") from None
        sketch = _values(path, grid, "sketch", sketch)
        if not np.all((sketch == 0) | (sketch == 1)):
            raise _Bad(f"{path}: sketch must be 0 or 1")


def _check_prior(path: Path, image_size: tuple[int, int]) -> None:
    """The 2D prior, when the scene has one; a folder with a prior folder needs every scene's prior
    (a training run that reads the priors needs them all)."""
    if not path.is_file():
        if path.parent.is_dir():
            raise _Bad(f"{path}: missing: {path.parent.name}/ holds the 2D priors of this folder, every "
                       "scene needs its own")
        return
    try:
        read_prior(path, image_size)
    except (FileNotFoundError, ValueError) as exc:
        raise _Bad(str(exc)) from None


def check_scene(root: str | os.PathLike, frame_id: str, spec: DatasetSpec | str = "nyu") -> list[str]:
    """Problems of one scene, each ``"<path>: <what is wrong>"``; empty when the scene is clean.

    Every file is checked even after a problem is found in another, so one run names them all.
    ``spec``: the dataset (its grid, classes and image size; NYU's by default).
    """
    spec = get_dataset_spec(spec)
    grid = spec.grid
    paths = frame_paths(root, frame_id)
    problems: list[str] = []
    image_size, num_pixels = spec.image_size[::-1], spec.no_pixel
    if paths["meta"].is_file():
        try:
            (intrinsics,) = load_npz(paths["meta"], "intrinsics")
            width, height = int(intrinsics.ravel()[4]), int(intrinsics.ravel()[5])
            image_size, num_pixels = (height, width), width * height
        except (ValueError, IndexError) as exc:
            problems.append(f"{paths['meta']}: {exc}")
    tsdf = weight = label = None
    for name, check in (
        ("tsdf", lambda: _check_tsdf(paths["tsdf"], grid)),
        ("label", lambda: _check_labels(paths["label"], grid, spec.num_classes)),
        ("mapping", lambda: _check_mapping(paths["mapping"], grid, num_pixels)),
        ("sketch", lambda: _check_sketch(paths["sketch"], grid)),
        ("prior", lambda: _check_prior(paths["prior"], image_size)),
    ):
        try:
            result = check()
        except _Bad as exc:
            problems.append(str(exc))
            continue
        if name == "tsdf":
            tsdf, weight = result
        elif name == "label":
            label = result
    if tsdf is not None and label is not None:
        rule = label_weight(label, tsdf).astype(bool)
        broken = int((rule != (weight > 0)).sum())
        if broken:
            problems.append(f"{paths['tsdf']}: arr_1 (label_weight) breaks the rule (1 where the label is "
                            f"a class, 1..{spec.num_classes - 1}, or the TSDF < -0.5) on {broken} voxels")
    return problems


@dataclass
class CheckReport:
    """Outcome of :func:`check_root`: ``scenes`` checked per split, ``bad`` id -> problems."""

    root: Path
    scenes: dict[str, int] = field(default_factory=dict)
    bad: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.bad

    def summary(self) -> str:
        splits = ", ".join(f"{name} {count}" for name, count in self.scenes.items())
        total = sum(self.scenes.values())
        verdict = "all clean" if self.ok else f"{len(self.bad)} bad"
        return f"{self.root}: {total} scenes checked ({splits}): {verdict}"


def _check_one(job: tuple[str, str, DatasetSpec]) -> tuple[str, list[str]]:
    root, frame_id, spec = job
    return frame_id, check_scene(root, frame_id, spec)


def check_root(
    root: str | os.PathLike, splits: tuple[str, ...] = SPLITS, workers: int = 1, progress: bool = False,
    dataset: str | os.PathLike | None = None,
) -> CheckReport:
    """Check every scene listed in ``<root>/<split>.txt`` for the given splits.

    Args:
        splits: split names whose lists must exist. workers: processes (1 = this one).
        progress: show a progress bar.
        dataset: a dataset spec (name or YAML path) whose layout the folder has; None guesses
            it (:func:`torchssc.data.layouts.detect_layout`). A layout other than ``torchssc``
            is checked by its reader (:func:`check_layout`).
    Raises:
        FileNotFoundError: ``root`` or a split list is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such data folder")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    from torchssc.data.layouts import detect_layout
    from torchssc.datasets import get_dataset_spec

    spec = get_dataset_spec(dataset) if dataset is not None else None
    if spec is not None and spec.layout != "torchssc" or spec is None and detect_layout(root) != "torchssc":
        return check_layout(root, splits, spec or get_dataset_spec(LAYOUT_DEFAULT_SPECS[detect_layout(root)]),
                            progress=progress)
    report = CheckReport(root=root)
    ids: list[str] = []
    for split in splits:
        listed = read_split(root, split)
        report.scenes[split] = len(listed)
        ids += [i for i in listed if i not in ids]
    jobs = [(str(root), frame_id, spec or get_dataset_spec("nyu")) for frame_id in ids]
    from tqdm import tqdm

    with tqdm(total=len(jobs), desc="check-data", unit="scene", disable=not progress) as bar:
        if workers == 1:
            results = (_check_one(job) for job in jobs)
            for frame_id, problems in results:
                if problems:
                    report.bad[frame_id] = problems
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                for frame_id, problems in pool.map(_check_one, jobs, chunksize=16):
                    if problems:
                        report.bad[frame_id] = problems
                    bar.update(1)
    return report


LAYOUT_DEFAULT_SPECS = {"edgenet": "nyucad_edgenet"}
"""The spec a detected layout is checked with when ``check-data`` is given none."""


def check_layout(root: Path, splits: tuple[str, ...], spec, progress: bool = False) -> CheckReport:
    """Check every scene of a folder in another layout (:mod:`torchssc.data.layouts`): each frame
    is read as training would read it (every file, key, shape, dtype and range checked). A
    layout without split lists (``edgenet``) has one split, its folder."""
    from tqdm import tqdm

    from torchssc.data.layouts import open_layout

    layout = open_layout(spec, root)
    report = CheckReport(root=root)
    scenes = layout.scenes(splits)
    ids: list[str] = []
    for split, listed in scenes.items():
        report.scenes[split] = len(listed)
        ids += [i for i in listed if i not in ids]
    for frame_id in tqdm(ids, desc="check-data", unit="scene", disable=not progress):
        problems = layout.check_scene(frame_id)
        if problems:
            report.bad[frame_id] = problems
    return report
