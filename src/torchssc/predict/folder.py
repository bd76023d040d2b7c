"""``torchssc predict --depth DIR``: every RGB-D frame of a folder (:mod:`torchssc.io.scans`).

Per frame: depth (and RGB) → pose → SSC box → the model's inputs by the preparation code
(:func:`~torchssc.predict.predict.frame_batch`) → a label volume, a picture and a viewer page.

* **With poses** (ScanNet's ``pose/<n>.txt``): the box is placed from gravity, the world's up axis,
  as SSCNet places it (:func:`torchssc.prepare.box.place_box`); the floor height is ``floor``
  (metres) or, with ``floor=None``, found in the frame's depth (:func:`~torchssc.prepare.box.floor_height`).
* **Without**: the pose is estimated from the depth (:func:`torchssc.predict.pose.estimate_pose`:
  gravity, floor, room directions), the floor at z = 0 of that estimate.

A frame that fails is reported (one line naming it) and the others are finished.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from torchssc.geometry import Intrinsics
from torchssc.io.scans import ScanFolder, ScanFrame, read_scan_color, read_scan_depth, read_scan_pose
from torchssc.predict.predict import frame_batch
from torchssc.prepare.box import floor_height, place_box


@dataclass
class FrameInputs:
    """One frame ready for the model: ``batch`` (keys of :func:`frame_batch`), ``pose``,
    ``origin``, ``how`` (where the pose and floor came from)."""

    batch: dict[str, torch.Tensor]
    pose: np.ndarray
    origin: np.ndarray
    how: str


def frame_inputs(folder: ScanFolder, frame: ScanFrame, *, floor: float | None = None, rgb: bool = False,
                 fine: bool = False, seed: int = 0) -> FrameInputs:
    """Read one frame of a folder and build its batch (module docstring).

    Args:
        floor: world height of the floor for posed frames; None = from the depth.
        rgb: read the colour image (required then). fine: also SSCNet's flipped fine TSDF.
    Raises:
        FileNotFoundError / ValueError naming the frame's file.
    """
    cam = folder.intrinsics
    depth = read_scan_depth(frame.depth, cam)
    colour = None
    if rgb:
        if frame.color is None:
            raise FileNotFoundError(f"{frame.depth}: the model reads RGB and frame '{frame.name}' has no colour image")
        colour = read_scan_color(frame.color, cam)
    if frame.pose is not None:
        pose = read_scan_pose(frame.pose, folder.axis_alignment)
        level = floor_height(depth, pose, cam) if floor is None else float(floor)
        how = f"pose from {frame.pose}, floor at z = {level:.3f} m ({'given' if floor is not None else 'from the depth'})"
    else:
        from torchssc.predict.pose import estimate_pose

        est = estimate_pose(depth, cam, seed=seed)
        pose, level = est.pose, 0.0
        how = (f"estimated pose: camera {est.camera_height:.3f} m above the floor, wall-direction confidence "
               f"{est.yaw_confidence:.2f}")
    origin = place_box(pose, level)
    batch = frame_batch(depth, pose, origin, intrinsics=cam, rgb=colour, fine=fine)
    return FrameInputs(batch=batch, pose=pose, origin=origin, how=how)


@dataclass
class FolderSummary:
    """Outcome of :func:`predict_folder`: ``written`` files per frame, ``failed`` frame -> reason."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    written: dict[str, list[Path]] = field(default_factory=dict)

    def line(self) -> str:
        return f"{len(self.done)} frame(s) predicted, {len(self.failed)} failed"


def predict_folder(
    model: torch.nn.Module,
    folder: ScanFolder,
    out: str | os.PathLike,
    *,
    needs: tuple[str, ...],
    formats: tuple[str, ...] = ("npy", "png", "html"),
    floor: float | None = None,
    every: int = 1,
    seed: int = 0,
    progress: bool = True,
    report: Callable[[str], None] = print,
    spec="nyu",
    raw: bool = False,
) -> FolderSummary:
    """Predict every ``every``-th frame of ``folder`` into ``out``: ``<name>.npy`` (the label
    volume, with ``<name>_pose.txt``), ``<name>.png`` (picture), ``<name>.html`` (viewer), and
    ``ply`` / ``glb`` meshes when asked.

    Args:
        needs: the model's input keys (``rgb`` and ``tsdf_fine`` are built when listed; ``prior``
            is refused: a folder of frames has no 2D prior).
        report: called with one line per failed frame.
        raw: keep the network's output everywhere; by default each frame's depth decides what its
            camera saw (:func:`torchssc.predict.observation.apply_observation`).
    Raises:
        ValueError: the model needs an input no folder of frames gives (``prior``).
    """
    from tqdm import tqdm

    from torchssc.geometry import LABEL_VOXEL
    from torchssc.io.atomic import save_npy_atomic, write_bytes_atomic
    from torchssc.predict.observation import apply_observation
    from torchssc.predict.predict import predict_labels
    from torchssc.viz.export import export_scene
    from torchssc.viz.volumes import Volume

    if "prior" in needs:
        raise ValueError(f"{folder.root}: the model needs input 'prior' (a 2D semantic prior per frame), which a "
                         "folder of frames does not give; use one frame with --prior, or a model without it")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = FolderSummary()
    frames = folder.frames[:: max(1, every)]
    for frame in tqdm(frames, desc="predict", unit="frame", disable=not progress):
        try:
            inputs = frame_inputs(folder, frame, floor=floor, rgb="rgb" in needs, fine="tsdf_fine" in needs, seed=seed)
            labels = predict_labels(model, inputs.batch, seed=seed)
            if not raw:
                labels = apply_observation(labels, inputs.batch["visibility"][0].numpy())
            written: list[Path] = []
            if "npy" in formats:
                save_npy_atomic(out / f"{frame.name}.npy", labels)
                text = io.StringIO()
                np.savetxt(text, inputs.pose, fmt="%.9g")
                write_bytes_atomic(out / f"{frame.name}_pose.txt", text.getvalue().encode())
                written += [out / f"{frame.name}.npy", out / f"{frame.name}_pose.txt"]
            viz = [f for f in formats if f != "npy"]
            if viz:
                volume = Volume(labels=labels, voxel=LABEL_VOXEL, origin=inputs.origin, pose=inputs.pose,
                                intrinsics=folder.intrinsics, name="prediction")
                written += export_scene(out, frame.name, pred=volume, formats=viz, spec=spec)
        except (OSError, ValueError, RuntimeError) as exc:
            summary.failed[frame.name] = str(exc)
            report(f"FAILED frame {frame.name}: {exc}")
            continue
        summary.done.append(frame.name)
        summary.written[frame.name] = written
    return summary


def run_folder(args, *, default_formats: tuple[str, str], default_intrinsics: Intrinsics) -> int:
    """``torchssc predict --depth DIR``: every frame of the folder; exit status 1 when a frame
    failed (each reported on stderr), 0 otherwise.

    Args:
        args: the parsed ``predict`` arguments. default_formats: ``(the --formats default, what a
            folder gets when it was not given)``. default_intrinsics: the ``--intrinsics`` default
            (then the folder's own camera is used).
    """
    import sys

    from tqdm import tqdm

    from torchssc.engine.checkpoint import load_model
    from torchssc.io.scans import open_scan_folder
    from torchssc.models import model_inputs

    camera = None if args.intrinsics is default_intrinsics else args.intrinsics
    folder = open_scan_folder(args.depth, camera)
    if args.every < 1:
        raise ValueError(f"--every must be >= 1, got {args.every}")
    text = default_formats[1] if args.formats == default_formats[0] else args.formats
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    model, state = load_model(args.checkpoint, device=args.device)  # the checkpoint's own recipe
    needs = tuple(model_inputs(state["config"]["model"]["name"], model))
    aligned = ", poses aligned by the scene's axisAlignment" if folder.axis_alignment is not None else ""
    print(f"{folder.root}: {len(folder.frames)} frame(s), {folder.kind} layout, camera "
          f"{folder.intrinsics.describe()}{aligned}")
    summary = predict_folder(
        model, folder, args.out, needs=needs, formats=formats, floor=args.floor, every=args.every, seed=args.seed,
        progress=not args.no_progress, report=lambda line: tqdm.write(line, file=sys.stderr),
        spec=state["config"].get("data", {}).get("dataset", "nyu"), raw=args.raw,
    )
    print(f"{summary.line()}; wrote {sum(len(w) for w in summary.written.values())} files to {args.out}")
    return 1 if summary.failed else 0
