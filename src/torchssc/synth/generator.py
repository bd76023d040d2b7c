"""Synthetic frames and datasets in the raw depthbin format plus RGB (docs/data.md, §8).

One frame: :func:`generate_frame` draws a room (:mod:`~torchssc.synth.rooms`), ray casts its depth
(:mod:`~torchssc.synth.raycast`), shades its RGB and optionally corrupts the depth
(:mod:`~torchssc.synth.render`), and voxelises the 240x144x240 raw label grid in the box that
SSCNet's rule places in front of the camera (:mod:`~torchssc.synth.voxelize`).

A dataset (:func:`generate_dataset`) is ``DIR/NYUtrain`` and ``DIR/NYUtest`` holding, per frame,
``NYU%04d_0000.bin``, ``NYU%04d_0000.png`` (depth) and ``NYU%04d_colors.png`` (RGB) side by side,
plus ``DIR/train.txt`` and ``DIR/test.txt`` listing the 4-digit ids. Frame ids run 1..N.

Determinism: frame ``i`` depends only on ``(seed, i)`` through ``numpy.random.SeedSequence
([seed, i])`` (three spawned streams: scene, appearance, depth noise), so the same seed writes
the same bytes whatever the number of worker processes, and ``--noise none`` and ``kinect`` give
the same rooms and RGB.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np

from torchssc.geometry import FINE_SHAPE, FINE_VOXEL, NYU_INTRINSICS, Intrinsics, voxel_origin_for_pose
from torchssc.io.depthbin import read_intrinsics_file, write_bin, write_depth_png, write_intrinsics_file
from torchssc.io.prepared import write_rgb, write_split
from torchssc.synth.raycast import raycast, surface_frames
from torchssc.synth.render import NOISE_MODES, kinect_noise, shade
from torchssc.synth.rooms import sample_scene
from torchssc.synth.scene import Scene
from torchssc.synth.voxelize import voxelize

log = logging.getLogger(__name__)

SPLIT_DIRS = {"train": "NYUtrain", "test": "NYUtest"}


@dataclass
class SynthFrame:
    """One generated frame.

    Attributes:
        depth: ``(H, W) float32`` metres as written (noisy unless ``noise="none"``), 0 = missing.
        depth_exact: ``(H, W) float32`` ray-cast depth (m), 0 = no hit.
        rgb: ``(H, W, 3) uint8``.
        labels: ``(240, 144, 240) uint8`` raw NYU36 ids, 0 empty, 255 outside the room.
        pose: ``(4, 4) float32`` camera-to-world (as stored in the .bin).
        origin: ``(3,) float32`` grid corner, SSCNet's rule for ``pose``.
        scene: the room it was drawn from.
    """

    depth: np.ndarray
    depth_exact: np.ndarray
    rgb: np.ndarray
    labels: np.ndarray
    pose: np.ndarray
    origin: np.ndarray
    scene: Scene


def frame_streams(seed: int, frame_id: int) -> tuple[np.random.Generator, ...]:
    """The three generators (scene, appearance, noise) of frame ``frame_id`` under ``seed``."""
    if seed < 0 or frame_id < 0:
        raise ValueError(f"seed and frame id must be non-negative, got {seed}, {frame_id}")
    children = np.random.SeedSequence([int(seed), int(frame_id)]).spawn(3)
    return tuple(np.random.default_rng(c) for c in children)


def frame_geometry(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Camera pose and grid origin of a scene's frame, as the ``.bin`` stores them.

    The ``.bin`` holds float32, so the pose is rounded to float32 first and the origin follows
    SSCNet's rule (:func:`~torchssc.geometry.voxel_origin_for_pose`) from that pose, also
    rounded; images and labels are then made with exactly these values.

    Returns:
        ``(pose (4, 4), origin (3,))`` float64 holding float32-representable values.
    """
    pose = scene.pose.astype(np.float32).astype(np.float64)
    origin = voxel_origin_for_pose(pose).astype(np.float32).astype(np.float64)
    return pose, origin


def generate_frame(
    seed: int,
    frame_id: int,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    noise: str = "kinect",
    timings: dict[str, float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> SynthFrame:
    """Generate frame ``frame_id`` of the dataset with seed ``seed``.

    Args:
        intrinsics: camera model and image size (NYU 640x480 by default; tests use smaller).
        noise: ``"kinect"`` or ``"none"`` (exact ray-cast depth, rounded to mm when written).
        timings: if given, seconds per stage (layout, raycast, rgb, noise, voxelize) are added to it.
        clock: the clock of ``timings`` (e.g. ``time.process_time`` for CPU seconds).
    """
    if noise not in NOISE_MODES:
        raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
    last = [clock()]

    def lap(name):
        now = clock()
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + now - last[0]
        last[0] = now

    scene_rng, look_rng, noise_rng = frame_streams(seed, frame_id)
    scene = sample_scene(scene_rng)
    pose64, origin64 = frame_geometry(scene)
    pose, origin = pose64.astype(np.float32), origin64.astype(np.float32)
    lap("layout")
    hits = raycast(scene.boxes, pose64, intrinsics)
    surf = surface_frames(scene.boxes, hits, pose64)
    lap("raycast")
    rgb = shade(scene, surf, look_rng, intrinsics)
    lap("rgb")
    depth = kinect_noise(hits.depth, surf, noise_rng, intrinsics) if noise == "kinect" else hits.depth
    lap("noise")
    labels = voxelize(scene.boxes, scene.size, origin64, FINE_SHAPE, FINE_VOXEL)
    lap("voxelize")
    return SynthFrame(depth=depth.astype(np.float32), depth_exact=hits.depth.astype(np.float32), rgb=rgb,
                      labels=labels, pose=pose, origin=origin, scene=scene)


def frame_files(folder: str | os.PathLike, frame_id: int) -> dict[str, Path]:
    """Paths of a frame's three files in a raw split folder: ``bin``, ``depth``, ``rgb``."""
    folder = Path(folder)
    return {
        "bin": folder / f"NYU{frame_id:04d}_0000.bin",
        "depth": folder / f"NYU{frame_id:04d}_0000.png",
        "rgb": folder / f"NYU{frame_id:04d}_colors.png",
    }


def write_synth_frame(folder: str | os.PathLike, frame_id: int, frame: SynthFrame) -> None:
    """Write a frame's ``.bin``, depth ``.png`` and ``_colors.png`` into ``folder`` (atomically)."""
    paths = frame_files(folder, frame_id)
    write_bin(paths["bin"], frame.origin, frame.pose, frame.labels)
    write_depth_png(paths["depth"], frame.depth)
    write_rgb(paths["rgb"], frame.rgb)


def split_ids(frames: int, seed: int, test_fraction: float) -> tuple[list[int], list[int]]:
    """Which of the frame ids ``1..frames`` go to train and to test.

    ``round(test_fraction * frames)`` test frames chosen by the seed (at least one of each split
    when ``0 < test_fraction < 1`` and ``frames >= 2``). Returns sorted ``(train, test)`` ids.
    """
    if frames < 1:
        raise ValueError(f"need at least one frame, got {frames}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test fraction must be in [0, 1], got {test_fraction}")
    n_test = int(round(test_fraction * frames))
    if 0.0 < test_fraction < 1.0 and frames >= 2:
        n_test = min(max(n_test, 1), frames - 1)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED5]))
    test = set((rng.permutation(frames)[:n_test] + 1).tolist())
    ids = range(1, frames + 1)
    return [i for i in ids if i not in test], [i for i in ids if i in test]


def _work(job: tuple) -> int:
    folder, frame_id, seed, intrinsics_values, noise = job
    frame = generate_frame(seed, frame_id, Intrinsics.from_array(intrinsics_values), noise)
    write_synth_frame(folder, frame_id, frame)
    return frame_id


def generate_dataset(
    out: str | os.PathLike,
    frames: int,
    seed: int = 0,
    test_fraction: float = 0.2,
    noise: str = "kinect",
    workers: int = 1,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    progress: bool = False,
) -> dict[str, list[int]]:
    """Write a synthetic raw dataset (see the module docstring for the layout).

    Args:
        out: dataset folder (created). frames: number of frames N (ids 1..N).
        seed: dataset seed. test_fraction: share of frames in ``NYUtest``.
        noise: ``"kinect"`` or ``"none"``. workers: processes (1 = in this process); they are
            started with ``spawn``, so a script calling this must guard its entry point with
            ``if __name__ == "__main__":``.
        intrinsics: camera and image size. progress: show a progress bar.
    Returns:
        ``{"train": ids, "test": ids}``.
    Raises:
        ValueError: bad arguments, or ``out`` already holds frames that this run would not
            write (another N, seed or test fraction): they would end up in the prepared data.
            Running the same command again simply rewrites the same files.
    """
    if noise not in NOISE_MODES:
        raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    out = Path(out)
    train, test = split_ids(frames, seed, test_fraction)
    jobs = [(str(out / SPLIT_DIRS[name]), i, int(seed), intrinsics.as_array().tolist(), noise)
            for name, ids in (("train", train), ("test", test)) for i in ids]
    jobs.sort(key=lambda j: j[1])
    planned = {Path(folder) / f"NYU{i:04d}_0000.bin" for folder, i, *_ in jobs}
    stale = sorted(p for name in SPLIT_DIRS.values() for p in (out / name).glob("NYU*_0000.bin") if p not in planned)
    if stale:
        names = ", ".join(str(p) for p in stale[:3])
        raise ValueError(f"{out} holds {len(stale)} frame(s) this run would not write ({names}"
                         f"{', ...' if len(stale) > 3 else ''}); use an empty folder")
    for name in SPLIT_DIRS.values():
        (out / name).mkdir(parents=True, exist_ok=True)
        write_intrinsics_file(out / name, intrinsics)  # torchssc prepare reads it
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="synth", unit="frame")
    if workers == 1:
        for job in jobs:
            _work(job)
            if bar is not None:
                bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for _ in pool.map(_work, jobs, chunksize=1):
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    write_split(out, "train", [f"{i:04d}" for i in train])
    write_split(out, "test", [f"{i:04d}" for i in test])
    log.info("wrote %d train and %d test frames to %s", len(train), len(test), out)
    return {"train": train, "test": test}


def generate_and_prepare(out: str | os.PathLike, *, frames: int, seed: int = 0, test_fraction: float = 0.2,
                         workers: int = 1, fine: bool = False, prepared: str = "data",
                         progress: bool = True, forknet: bool = False, fine_labels: bool = False) -> Path:
    """Synthetic rooms ready to train on: generate ``frames`` rooms into ``<out>/raw`` (once; see
    :func:`generate_dataset`) and prepare both splits into ``<out>/<prepared>`` exactly as NYU
    (:func:`torchssc.prepare.runner.prepare_split`, resumable; ``fine`` adds the SSCNet TSDF,
    ``forknet`` ForkNet's volumes, ``fine_labels`` the 240x144x240 labels).
    Returns the prepared root.

    Raises:
        ValueError: ``<out>/raw`` already lists another number of rooms (it is never silently
            reused for another request).
        RuntimeError: a frame failed to prepare (the reason was reported).
        OSError: the disk is full (``"no space left on the device writing <file>; stopped with ..."``).
    """
    from torchssc.prepare.runner import prepare_split  # prepare does not depend on synth

    raw = Path(out) / "raw"
    if (raw / "test.txt").is_file():
        listed = sum(len((raw / f"{split}.txt").read_text().split()) for split in ("train", "test")
                     if (raw / f"{split}.txt").is_file())
        if listed != frames:
            raise ValueError(f"{raw} already holds {listed} synthetic rooms, not {frames}: "
                             f"use another folder or {listed} frames")
    else:
        log.info("generating %d synthetic rooms in %s", frames, raw)
        generate_dataset(raw, frames, seed=seed, test_fraction=test_fraction, workers=workers, progress=progress)
    root = Path(out) / prepared
    for split in ("train", "test"):
        # the rooms' camera: recorded beside them (rooms generated before it was recorded used NYU's)
        intrinsics = read_intrinsics_file(raw / f"NYU{split}") or NYU_INTRINSICS
        summary = prepare_split(raw / f"NYU{split}", root, split=split, workers=workers, fine=fine,
                                intrinsics=intrinsics, progress=progress, forknet=forknet, fine_labels=fine_labels)
        if summary.stopped:  # a full disk: one line (cli), not a failure of the rooms
            raise OSError(errno.ENOSPC, summary.stop_line())
        if summary.failed:
            raise RuntimeError(f"preparing {split} failed for {len(summary.failed)} frame(s): {summary.line()}")
    return root
