"""Folders of RGB-D frames of your own (docs/predict.md, "A folder of frames"; docs/datasets.md).

Two layouts are read:

* **ScanNet's exporter** (``scannet``)::

      <root>/depth/<n>.png                   16-bit depth, millimetres (0 = missing)
      <root>/color/<n>.jpg or .png           RGB (any size: resized to the depth's)
      <root>/pose/<n>.txt                    4x4 camera-to-world (ScanNet marks lost frames -inf)
      <root>/intrinsic/intrinsic_depth.txt   4x4 (or 3x3) camera matrix of the depth
      <root>/<scene>.txt                     optional: ScanNet's scene file; its
                                             ``axisAlignment`` (16 numbers) is applied to the poses
      <root>/label/<n>.npz                   optional: a label volume per frame (training)
      <root>/train.txt, test.txt             optional: frame names per split

* **a plain folder** (``plain``): every ``<name>.png`` is a 16-bit depth image (millimetres),
  ``<name>_color.png`` / ``_rgb.png`` its RGB, and one intrinsics file for all: ``intrinsics.txt``
  (``fx fy cx cy``, or a 3x3 / 4x4 matrix) or ``intrinsics.json`` (as ``torchssc synth`` writes).
  No poses: ``torchssc predict`` estimates them from the depth.

A **label volume** (``label/<n>.npz``) holds ``labels``: the grid of the dataset spec (NYU:
``(60, 36, 60)``, axes [world X, world Z up, world Y]) of class ids ``0..C-1`` or the spec's
``ignore_id``; and optionally ``origin``: ``(3,)`` the world corner of that grid (default: SSCNet's
box for the frame's pose with the floor at world z = 0, :func:`torchssc.geometry.voxel_origin_for_pose`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from torchssc.geometry import Intrinsics, check_pose
from torchssc.io.depthbin import read_png16
from torchssc.io.prepared import load_npz

DEPTH_SCALE = 1000.0
"""Depth PNG units per metre (millimetres)."""
COLOR_SUFFIXES = ("_color", "_rgb")
_NUMBER = re.compile(r"^\d+$")


@dataclass
class ScanFrame:
    """The files of one frame (``None`` where the folder has none)."""

    name: str
    depth: Path
    color: Path | None = None
    pose: Path | None = None
    label: Path | None = None


@dataclass
class ScanFolder:
    """A folder of frames: its ``kind`` (``scannet`` / ``plain``), camera, frames in order, and
    ScanNet's ``axis_alignment`` (4x4, applied to every pose) when its scene file has one."""

    root: Path
    kind: str
    intrinsics: Intrinsics
    frames: list[ScanFrame] = field(default_factory=list)
    axis_alignment: np.ndarray | None = None

    def frame(self, name: str) -> ScanFrame:
        for frame in self.frames:
            if frame.name == name:
                return frame
        raise FileNotFoundError(f"{self.root}: no frame '{name}' (no depth image of that name)")


def _order(name: str) -> tuple:
    return (0, int(name), name) if _NUMBER.match(name) else (1, 0, name)


def _first(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def read_matrix_intrinsics(path: Path, size: tuple[int, int]) -> Intrinsics:
    """Intrinsics from a text file: ``fx fy cx cy [w h]`` or a 3x3 / 4x4 matrix; ``size`` =
    ``(W, H)`` of the depth images when the file does not say."""
    try:
        values = np.loadtxt(path, dtype=np.float64).ravel()
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable intrinsics ({exc})") from None
    if values.size in (9, 16):
        k = values.reshape(3, 3) if values.size == 9 else values.reshape(4, 4)[:3, :3]
        values = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
    if values.size == 4:
        values = np.concatenate([values, size])
    if values.size != 6 or not np.all(np.isfinite(values)) or values[0] <= 0 or values[1] <= 0:
        raise ValueError(f"{path}: intrinsics must be fx fy cx cy [w h] or a 3x3/4x4 camera matrix")
    return Intrinsics.from_array(values)


def read_json_intrinsics(path: Path) -> Intrinsics:
    """``intrinsics.json`` (keys fx, fy, cx, cy, width, height)."""
    try:
        v = json.loads(path.read_text())
        return Intrinsics(float(v["fx"]), float(v["fy"]), float(v["cx"]), float(v["cy"]),
                          int(v["width"]), int(v["height"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: intrinsics.json needs fx, fy, cx, cy, width, height ({exc})") from None


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _axis_alignment(root: Path) -> np.ndarray | None:
    """ScanNet's ``axisAlignment = m00 ... m33`` from a scene file in ``root``, or None."""
    for path in sorted(root.glob("*.txt")):
        if path.name in ("train.txt", "test.txt", "intrinsics.txt"):
            continue
        for line in path.read_text(errors="replace").splitlines():
            if line.replace(" ", "").startswith("axisAlignment="):
                try:
                    values = np.array([float(x) for x in line.split("=", 1)[1].split()])
                except ValueError:
                    values = np.array([])
                if values.size != 16:
                    raise ValueError(f"{path}: axisAlignment needs 16 numbers, found {values.size}")
                return values.reshape(4, 4)
    return None


def open_scan_folder(root: str | os.PathLike, intrinsics: Intrinsics | None = None) -> ScanFolder:
    """Find the frames, camera and alignment of a folder in either layout (module docstring).

    Args:
        intrinsics: overrides the folder's own camera (required when it has no intrinsics file).
    Raises:
        FileNotFoundError / ValueError naming the folder or file: no depth image, no camera.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of frames")
    if (root / "depth").is_dir():
        depths = sorted((p for p in (root / "depth").glob("*.png")), key=lambda p: _order(p.stem))
        if not depths:
            raise FileNotFoundError(f"{root / 'depth'}: no depth PNG")
        frames = [ScanFrame(
            name=p.stem, depth=p,
            color=_first(root / "color" / f"{p.stem}.jpg", root / "color" / f"{p.stem}.png"),
            pose=_first(root / "pose" / f"{p.stem}.txt"),
            label=_first(root / "label" / f"{p.stem}.npz"),
        ) for p in depths]
        cam_file = root / "intrinsic" / "intrinsic_depth.txt"
        if intrinsics is None:
            if not cam_file.is_file():
                raise FileNotFoundError(f"{cam_file}: missing (the depth camera; or pass --intrinsics)")
            intrinsics = read_matrix_intrinsics(cam_file, _image_size(depths[0]))
        return ScanFolder(root, "scannet", intrinsics, frames, _axis_alignment(root))
    pngs = sorted(root.glob("*.png"), key=lambda p: _order(p.stem))
    depths = [p for p in pngs if not p.stem.endswith(COLOR_SUFFIXES)]
    if not depths:
        raise FileNotFoundError(f"{root}: no depth PNG (a folder of <name>.png depth images, or ScanNet's "
                                "depth/ color/ pose/ intrinsic/ layout)")
    frames = [ScanFrame(name=p.stem, depth=p,
                        color=_first(*(root / f"{p.stem}{s}.png" for s in COLOR_SUFFIXES))) for p in depths]
    if intrinsics is None:
        if (root / "intrinsics.txt").is_file():
            intrinsics = read_matrix_intrinsics(root / "intrinsics.txt", _image_size(depths[0]))
        elif (root / "intrinsics.json").is_file():
            intrinsics = read_json_intrinsics(root / "intrinsics.json")
        else:
            raise FileNotFoundError(f"{root}: no intrinsics.txt or intrinsics.json (one camera for every "
                                    "frame; or pass --intrinsics)")
    return ScanFolder(root, "plain", intrinsics, frames)


def read_scan_depth(path: Path, intrinsics: Intrinsics) -> np.ndarray:
    """``(H, W) float32`` metres from a millimetre PNG (float32 division, as the release's
    decoding); refuses a size other than the camera's or an image with no valid pixel."""
    raw = read_png16(path, size=(intrinsics.height, intrinsics.width))
    depth = raw.astype(np.float32) / np.float32(DEPTH_SCALE)
    if not (depth > 0).any():
        raise ValueError(f"{path}: no valid depth (every pixel is 0)")
    return depth


def read_scan_pose(path: Path, axis_alignment: np.ndarray | None = None) -> np.ndarray:
    """``(4, 4) float64`` camera-to-world (aligned when ``axis_alignment`` is given).

    Raises:
        ValueError naming the file: not 16 numbers, or not a rigid transform (ScanNet's -inf).
    """
    try:
        values = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable pose ({exc})") from None
    if values.size != 16:
        raise ValueError(f"{path}: a pose needs 16 numbers (4x4 camera-to-world), found {values.size}")
    pose = values.reshape(4, 4)
    if not np.all(np.isfinite(pose)):
        raise ValueError(f"{path}: pose is not finite (a frame the scanner lost track of)")
    if axis_alignment is not None:
        pose = axis_alignment @ pose
    return check_pose(pose, str(path))


def read_scan_color(path: Path, intrinsics: Intrinsics) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB at the depth's size (bilinear resize when the sizes differ, as
    ScanNet's 1296x968 colour for its 640x480 depth)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.size != (intrinsics.width, intrinsics.height):
            img = img.resize((intrinsics.width, intrinsics.height), Image.BILINEAR)
        return np.array(img)


def read_label_volume(path: Path, grid: tuple[int, int, int], num_classes: int,
                      ignore_id: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(labels grid uint8, origin (3,) float64 or None)`` of one ``label/<n>.npz``.

    Raises:
        ValueError naming the file and the key (shape, dtype, values).
    """
    (labels,) = load_npz(path, "labels")
    if labels.shape != tuple(grid) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' must be an integer grid {tuple(grid)}, got {labels.shape} {labels.dtype}")
    bad = (labels < 0) | ((labels >= num_classes) & (labels != ignore_id))
    if bad.any():
        raise ValueError(f"{path}: 'labels' must be 0..{num_classes - 1} or {ignore_id}, "
                         f"found {np.unique(labels[bad])[:5].tolist()}")
    origin = None
    with np.load(path, allow_pickle=False) as data:
        if "origin" in data.files:
            origin = np.asarray(data["origin"], np.float64).reshape(-1)
            if origin.size != 3 or not np.all(np.isfinite(origin)):
                raise ValueError(f"{path}: 'origin' must be 3 finite numbers (the grid's world corner)")
    return labels.astype(np.uint8), origin
