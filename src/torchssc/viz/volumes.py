"""Load any label volume for visualisation, and mask it.

Sources:

* ``.npy`` / ``.npz`` label volumes — predictions saved by ``torchssc eval --save``
  (``results/<id>.npy``, 60x36x60 uint8), ground truth, anything else: flat or 3-D, any integer
  or integral float dtype; the 129,600- and 8,294,400-value flat forms are reshaped to the label
  and fine grids (:data:`~torchssc.geometry.LABEL_SHAPE`, :data:`~torchssc.geometry.FINE_SHAPE`),
  other sizes must already be 3-D. A ``(12, D, H, W)`` (or ``(1, 12, D, H, W)``) array is taken as
  class scores and reduced by argmax.
* raw depthbin ``.bin`` files (docs/data.md): 240x144x240 NYU36 labels, always mapped 36 -> 11, with
  their pose and origin.
* a prepared frame (:func:`load_prepared`): label, label_weight, pose, origin, intrinsics.

Class space (``classes``): ``"11"`` expects 0..11 and 255; ``"36"`` maps raw NYU36 ids with
:func:`~torchssc.geometry.map_36_to_11`; ``"auto"`` (default) maps when any value in 12..36 is
present and otherwise takes the volume as already in the 12-label space. A NYU36 volume that
happens to hold only ids <= 11 is therefore read as 12-label: pass ``classes="36"`` for raw data.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from torchssc.geometry import (
    IGNORE_LABEL,
    LABEL_NUMEL,
    LABEL_SHAPE,
    NYU_INTRINSICS,
    Intrinsics,
    grid_to_world,
    project,
    world_to_camera,
)
from torchssc.datasets import DatasetSpec, get_dataset_spec

CLASS_SPACES = ("auto", "11", "36")
MASKS = ("label_weight", "frustum")


@dataclass
class Volume:
    """A label volume and what is known about where it sits.

    Attributes:
        labels: ``(D, H, W) uint8`` 0..11 or 255 (axes [world X, world Z up, world Y]).
        voxel: voxel edge (m).
        origin: ``(3,) float64`` world corner of the grid, or None (unknown).
        pose: ``(4, 4) float64`` camera-to-world of the frame, or None.
        intrinsics: the frame's camera, or None (NYU's is assumed where one is needed).
        label_weight: ``(60, 36, 60) uint8`` 0/1 of the frame, or None.
        name: a short name for titles and file names.
    """

    labels: np.ndarray
    voxel: float
    origin: np.ndarray | None = None
    pose: np.ndarray | None = None
    intrinsics: Intrinsics | None = None
    label_weight: np.ndarray | None = None
    name: str = "volume"


def as_labels(array: np.ndarray, *, classes: str = "auto", source: str = "volume",
              spec: DatasetSpec | str = "nyu") -> np.ndarray:
    """Normalise an array to a ``(D, H, W) uint8`` volume of labels 0..11 / 255.

    Args:
        array: see the module docstring for accepted shapes and dtypes.
        classes: ``"auto"``, ``"11"`` or ``"36"`` (module docstring): "36" means the source ids
            of the dataset's ``label_map`` (NYU36 for NYU), "11" its class ids.
        source: name used in error messages (e.g. the file).
        spec: the dataset (:mod:`torchssc.datasets`): grids, class count, label map.
    Raises:
        ValueError: unknown shape, non-integral values, or labels outside the class space.
    """
    spec = get_dataset_spec(spec)
    num_classes, grid, fine = spec.num_classes, spec.grid, spec.fine_grid
    if classes not in CLASS_SPACES:
        raise ValueError(f"classes must be one of {CLASS_SPACES}, got {classes!r}")
    arr = np.asarray(array)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 4:
        if arr.shape[0] != num_classes:
            raise ValueError(f"{source}: 4-D array must be ({num_classes}, D, H, W) class scores, got {arr.shape}")
        arr = np.argmax(arr, axis=0)
    elif arr.ndim == 1:
        if arr.size == spec.grid_numel:
            arr = arr.reshape(grid)
        elif arr.size == int(np.prod(fine)):
            arr = arr.reshape(fine)
        else:
            raise ValueError(
                f"{source}: flat volume of {arr.size} values; expected {spec.grid_numel} ({'x'.join(map(str, grid))}) "
                f"or {int(np.prod(fine))} ({'x'.join(map(str, fine))}), or a 3-D array"
            )
    elif arr.ndim != 3:
        raise ValueError(f"{source}: expected a 3-D label volume (or flat / class scores), got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{source}: float labels must be whole numbers")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{source}: labels must be numeric, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"{source}: labels out of range {arr.min()}..{arr.max()} (expected 0..{num_classes - 1} or 255)")
    arr = arr.astype(np.int64)
    n_raw = len(spec.label_map) if spec.label_map is not None else 0
    raw = classes == "36" or (classes == "auto" and bool(np.any((arr >= num_classes) & (arr < n_raw))))
    if raw:
        return spec.map_labels(arr, source)
    bad = (arr >= num_classes) & (arr != IGNORE_LABEL)
    if bad.any():
        also = f" (or source ids 0..{n_raw - 1})" if n_raw else ""
        raise ValueError(f"{source}: labels must be 0..{num_classes - 1} or 255{also}, "
                         f"found {np.unique(arr[bad])[:10].tolist()}")
    return arr.astype(np.uint8)


def spec_voxel(shape: Sequence[int], spec: DatasetSpec) -> float:
    """Voxel edge (m) of a volume of ``shape`` in ``spec``'s grids: the fine voxel for the fine
    grid, the grid's voxel otherwise."""
    return spec.fine_voxel if tuple(shape) == spec.fine_grid else spec.voxel_size


def _read_array(path: Path, key: str | None) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{path}: unreadable .npy ({exc})") from None
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            if not keys:
                raise ValueError(f"{path}: holds no array (an empty .npz)")
            if key is None:
                if len(keys) == 1:
                    key = keys[0]
                elif "arr_0" in keys:
                    key = "arr_0"
                else:
                    raise ValueError(f"{path}: several arrays {keys}; name one with key=")
            if key not in keys:
                raise ValueError(f"{path}: has no array '{key}' (found {keys})")
            return data[key]
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path}: unreadable ({exc})") from None


def load_volume(path: str | os.PathLike, *, classes: str = "auto", key: str | None = None,
                spec: DatasetSpec | str = "nyu") -> Volume:
    """Load a label volume from ``.npy``, ``.npz`` or a depthbin ``.bin`` (see module docstring).

    Args:
        key: array name inside an ``.npz`` (default: its only array, else ``arr_0``).
    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown suffix, unreadable file, bad shape or labels (naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such volume file")
    name = path.stem
    if path.suffix == ".bin":
        from torchssc.io.depthbin import read_bin

        raw = read_bin(path)
        labels = as_labels(raw.labels, classes="36", source=str(path), spec=spec)
        return Volume(labels, spec_voxel(labels.shape, get_dataset_spec(spec)), np.asarray(raw.origin, np.float64),
                      np.asarray(raw.pose, np.float64), None, None, name)
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"{path}: unknown volume format (expected .npy, .npz or depthbin .bin)")
    labels = as_labels(_read_array(path, key), classes=classes, source=str(path), spec=spec)
    return Volume(labels, spec_voxel(labels.shape, get_dataset_spec(spec)), name=name)


def load_prepared(root: str | os.PathLike, frame_id: str, spec: DatasetSpec | str = "nyu") -> Volume:
    """The ground truth of a prepared frame with its label_weight and, when stored, camera.

    Uses :func:`torchssc.io.prepared.read_frame` (``Meta/<id>.npz`` gives pose, origin and
    intrinsics; without it they stay None).
    """
    from torchssc.io.prepared import read_frame

    spec = get_dataset_spec(spec)
    frame = read_frame(root, frame_id, rgb=False, spec=spec)
    intr = None if frame.intrinsics is None else Intrinsics.from_array(frame.intrinsics)
    labels = as_labels(frame.label, classes="11", source=f"{root}/Label/{frame_id}.npz", spec=spec)
    return Volume(labels, spec.voxel_size, frame.origin, frame.pose, intr,
                  np.asarray(frame.label_weight, np.uint8).reshape(spec.grid), frame_id)


# --------------------------------------------------------------------------------------------
# Masks
def frustum_mask(
    shape: Sequence[int],
    pose: np.ndarray,
    origin: Sequence[float],
    *,
    voxel: float,
    intrinsics: Intrinsics = NYU_INTRINSICS,
) -> np.ndarray:
    """Voxels whose **centre** projects into the image, in front of the camera.

    Args:
        shape: grid ``(D, H, W)`` (axes X, Z, Y); pose: ``(4, 4)`` camera-to-world;
        origin: ``(3,)`` world corner; voxel: edge (m); intrinsics: the camera.
    Returns:
        ``(D, H, W) bool`` (pixels rounded with :func:`torchssc.geometry.project`).
    """
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1) + 0.5
    cam = world_to_camera(grid_to_world(index, origin, voxel), pose)
    front = cam[..., 2] > 0
    cam[..., 2] = np.where(front, cam[..., 2], 1.0)  # keep projection finite behind the camera
    u, v = project(cam, intrinsics)
    return front & (u >= 0) & (u < intrinsics.width) & (v >= 0) & (v < intrinsics.height)


def weight_mask(label_weight: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``(D, H, W) bool`` where ``label_weight > 0``, repeated by a whole factor per axis when
    ``shape`` is finer (e.g. a 60x36x60 weight on a 240x144x240 volume).

    Raises:
        ValueError: the shapes are not whole multiples of each other.
    """
    weight = np.asarray(label_weight)
    if weight.ndim == 1 and weight.size == LABEL_NUMEL:
        weight = weight.reshape(LABEL_SHAPE)
    shape = tuple(int(s) for s in shape)
    if weight.ndim != 3 or any(s % w for s, w in zip(shape, weight.shape)):
        raise ValueError(f"label_weight of shape {weight.shape} does not fit a volume of shape {shape}")
    keep = weight > 0
    for axis, (s, w) in enumerate(zip(shape, weight.shape)):
        if s != w:
            keep = np.repeat(keep, s // w, axis=axis)
    return keep


def apply_mask(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``labels`` with every voxel outside ``keep`` (``(D, H, W) bool``) set to 0 (not drawn)."""
    labels = np.asarray(labels)
    if keep.shape != labels.shape:
        raise ValueError(f"mask shape {keep.shape} does not match labels {labels.shape}")
    return np.where(keep, labels, 0).astype(np.uint8)


def mask_volume(volume: Volume, masks: Sequence[str], *, context: Volume | None = None) -> Volume:
    """Apply named masks (:data:`MASKS`) to a volume.

    ``"label_weight"`` hides voxels whose label_weight is 0 — what makes raw predictions readable;
    ``"frustum"`` keeps the voxels in the camera's view. The weight, pose, origin and intrinsics
    come from ``volume`` or else ``context`` (e.g. the prepared frame beside a prediction).

    Raises:
        ValueError: an unknown mask, or one whose inputs are missing.
    """
    labels = volume.labels
    for name in masks:
        if name == "label_weight":
            weight = volume.label_weight if volume.label_weight is not None else getattr(context, "label_weight", None)
            if weight is None:
                raise ValueError(f"{volume.name}: --mask label_weight needs a prepared frame (label_weight)")
            labels = apply_mask(labels, weight_mask(weight, labels.shape))
        elif name == "frustum":
            pose = volume.pose if volume.pose is not None else getattr(context, "pose", None)
            origin = volume.origin if volume.origin is not None else getattr(context, "origin", None)
            intr = volume.intrinsics or getattr(context, "intrinsics", None) or NYU_INTRINSICS
            if pose is None or origin is None:
                raise ValueError(f"{volume.name}: --mask frustum needs the frame's pose and origin")
            labels = apply_mask(labels, frustum_mask(labels.shape, pose, origin, voxel=volume.voxel, intrinsics=intr))
        else:
            raise ValueError(f"unknown mask {name!r}; choose from {', '.join(MASKS)}")
    return replace(volume, labels=labels)
