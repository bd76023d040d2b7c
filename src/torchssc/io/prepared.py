"""The prepared "TorchSSC" layout (docs/data.md), read and written.

::

    <root>/train.txt, test.txt      one 4-digit id per line ("0003")
    <root>/RGB/NYU<id>_colors.png   8-bit RGB, 640x480 (optional)
    <root>/TSDF/<id>.npz            arr_0: TSDF 60x36x60; arr_1: label_weight (129,600)
    <root>/Mapping/<id>.npz         arr_0: 129,600 pixel indices (v*640+u), 307200 = no pixel
    <root>/Label/<id>.npz           arr_0: 129,600 labels 0..11 or 255
    <root>/sketch3D/<id>.npy        60x36x60 binary sketch (optional: computed from the labels)

The released NYU files are read as they are: ``L/`` and ``T/`` (the names SISNet and CVSformer
use) stand for ``Label/`` and ``TSDF/``; int32 labels, float64 weights and int64 mappings are
accepted; a missing ``sketch3D/`` file is left to the reader (``SSCDataset`` computes it from
the labels, about 14 ms, never written into the data folder); the 2D semantic prior is read when present:

    <root>/seg_result_label13/<id>.png  8-bit 480x640 NYU-13 ids 0..13 (0 void)

torchssc's own extras, which do not disturb the layout:

    <root>/Meta/<id>.npz            pose (4x4 camera-to-world), origin (3,), intrinsics (6,)
    <root>/Depth/<id>.png           the frame's depth, same rotated-millimetre codec as depthbin
    <root>/Visibility/<id>.npz      arr_0: 60x36x60 uint8 visibility codes (prepare.visibility)
    <root>/TSDFFine/<id>.npz        arr_0: 240x144x240 float16 flipped TSDF (SSCNet input)
    <root>/ForkNet/<id>.npz         tsdf, label, surface: ForkNet's 80x48x80 volumes (float32
                                    projective TSDF, -2 invalid; uint8 labels; uint8 0/1)
    <root>/LabelFine/<id>.npz       arr_0: 240x144x240 uint8 labels 0..11, 255 (CCPNet-style target)

Readers accept any dtype and flat or 3-D shapes; writers use compact dtypes and write every
file atomically, so a frame whose files all exist is complete.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.geometry import FINE_SHAPE
from torchssc.io.atomic import atomic_path, write_bytes_atomic
from torchssc.io.depthbin import read_depth_png, write_depth_png

FORKNET_GRID = tuple(s // 3 for s in FINE_SHAPE)
"""ForkNet's grid (80, 48, 80): 3 fine voxels per voxel (:mod:`torchssc.prepare.projective_tsdf`)."""

SPLITS = ("train", "test")
PRIOR_CLASSES = 14
"""Ids of the 2D semantic prior: 0 void, then NYU-13 (bed, books, ceiling, chair, floor,
furniture, objects, picture, sofa, table, tv, wall, window)."""
FOLDER_ALIASES = {"Label": "L", "TSDF": "T"}
"""Folder name -> the name the released NYU files (SISNet/CVSformer) use for it."""


@dataclass
class PreparedFrame:
    """One prepared frame. Shapes use the label grid ``(60, 36, 60)`` (axes per geometry).

    Attributes:
        tsdf: ``(60, 36, 60) float32`` TorchSSC TSDF (mean of fine values, unobserved = 0).
        label_weight: ``(60, 36, 60) uint8`` 0/1.
        mapping: ``(129600,) int64`` pixel index per voxel; ``H*W`` = no pixel.
        label: ``(60, 36, 60) uint8`` 0..11 or 255.
        sketch: ``(60, 36, 60) uint8`` 0/1; ``None`` when read from a folder without
            ``sketch3D/`` (compute it with :func:`torchssc.prepare.sketch.sketch_from_labels`).
        rgb: ``(H, W, 3) uint8`` or None.
        pose: ``(4, 4) float64`` camera-to-world, or None.
        origin: ``(3,) float64`` world corner of the grid, or None.
        intrinsics: ``(6,) float64`` fx, fy, cx, cy, W, H, or None.
        visibility: ``(60, 36, 60) uint8`` codes, or None.
        tsdf_fine: ``(240, 144, 240)`` flipped fine TSDF (float16 on disk), or None.
        depth: ``(H, W) float32`` metres (0 = missing), or None.
        prior: ``(H, W) uint8`` 2D semantic prior, ids 0..13 (:data:`PRIOR_CLASSES`), or None.
        forknet_tsdf, forknet_label, forknet_surface: ForkNet's ``(80, 48, 80)`` volumes
            (:mod:`torchssc.prepare.forknet`), or None.
        label_fine: ``(240, 144, 240) uint8`` fine labels 0..11 / 255, or None.
    """

    tsdf: np.ndarray
    label_weight: np.ndarray
    mapping: np.ndarray
    label: np.ndarray
    sketch: np.ndarray | None
    rgb: np.ndarray | None = None
    pose: np.ndarray | None = None
    origin: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    visibility: np.ndarray | None = None
    tsdf_fine: np.ndarray | None = None
    depth: np.ndarray | None = None
    prior: np.ndarray | None = None
    forknet_tsdf: np.ndarray | None = None
    forknet_label: np.ndarray | None = None
    forknet_surface: np.ndarray | None = None
    label_fine: np.ndarray | None = None


# ------------------------------------------------------------------------------------------
# Paths
def _folder(root: Path, name: str) -> Path:
    """``root/name``, or its release alias (``L``, ``T``) when only that one exists."""
    alias = FOLDER_ALIASES.get(name)
    if alias is not None and not (root / name).is_dir() and (root / alias).is_dir():
        return root / alias
    return root / name


def frame_paths(root: str | os.PathLike, frame_id: str) -> dict[str, Path]:
    """Every file a frame may have, by field name."""
    root = Path(root)
    return {
        "rgb": root / "RGB" / f"NYU{frame_id}_colors.png",
        "tsdf": _folder(root, "TSDF") / f"{frame_id}.npz",
        "mapping": root / "Mapping" / f"{frame_id}.npz",
        "label": _folder(root, "Label") / f"{frame_id}.npz",
        "sketch": root / "sketch3D" / f"{frame_id}.npy",
        "meta": root / "Meta" / f"{frame_id}.npz",
        "depth": root / "Depth" / f"{frame_id}.png",
        "visibility": root / "Visibility" / f"{frame_id}.npz",
        "tsdf_fine": root / "TSDFFine" / f"{frame_id}.npz",
        "prior": root / "seg_result_label13" / f"{frame_id}.png",
        "forknet": root / "ForkNet" / f"{frame_id}.npz",
        "label_fine": root / "LabelFine" / f"{frame_id}.npz",
    }


REQUIRED = ("tsdf", "mapping", "label")
"""Files every prepared frame has (the sketch is computed from the labels when missing)."""

BASE_KEYS = ("tsdf", "mapping", "label", "label_weight", "sketch_gt")
"""Batch keys every item has: they come from the files of :data:`REQUIRED`."""

OPTIONAL_KEYS: dict[str, tuple[str, str]] = {
    "rgb": ("rgb", "RGB images (NYU: torchssc prepare --rgb-mat nyu_depth_v2_labeled.mat; or a model without "
                   "RGB, e.g. sketch_aware_ssc_prior or sketch_aware_ssc_tsdf: torchssc list)"),
    "prior": ("prior", "a 2D semantic prior per frame (seg_result_label13/<id>.png, NYU-13 ids)"),
    "depth": ("depth", "depth images (torchssc prepare writes Depth/)"),
    "pose": ("meta", "the camera of each frame (torchssc prepare writes Meta/)"),
    "origin": ("meta", "the camera of each frame (torchssc prepare writes Meta/)"),
    "intrinsics": ("meta", "the camera of each frame (torchssc prepare writes Meta/)"),
    "visibility": ("visibility", "visibility volumes (torchssc prepare writes Visibility/); the 'torchssc' "
                                 "and 'all' protocols need none"),
    "tsdf_fine": ("tsdf_fine", "the fine flipped TSDF (torchssc prepare --fine)"),
    "forknet_tsdf": ("forknet", "ForkNet's volumes (torchssc prepare --forknet)"),
    "forknet_label": ("forknet", "ForkNet's volumes (torchssc prepare --forknet)"),
    "forknet_surface": ("forknet", "ForkNet's volumes (torchssc prepare --forknet)"),
    "label_fine": ("label_fine", "the fine labels (torchssc prepare --fine-labels)"),
}
"""Batch keys a model, loss or protocol may declare beyond :data:`BASE_KEYS`: key -> (the
:func:`frame_paths` field it is read from, what provides that file)."""


def missing_files(root: str | os.PathLike, frame_id: str, need: tuple[str, ...] = REQUIRED) -> list[Path]:
    """Files among ``need`` (field names of :func:`frame_paths`) that do not exist."""
    paths = frame_paths(root, frame_id)
    return [paths[k] for k in need if not paths[k].is_file()]


# ------------------------------------------------------------------------------------------
# Split lists
def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Frame ids listed in ``<root>/<split>.txt`` (blank lines ignored)."""
    path = Path(root) / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no split list '{split}.txt' in {root}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def write_split(root: str | os.PathLike, split: str, ids: list[str]) -> None:
    """Write ``<root>/<split>.txt`` atomically, one id per line."""
    write_bytes_atomic(Path(root) / f"{split}.txt", "".join(f"{i}\n" for i in ids).encode())


# ------------------------------------------------------------------------------------------
# Tolerant array readers
def load_npz(path: Path, *keys: str) -> tuple[np.ndarray, ...]:
    """The arrays ``keys`` (default ``arr_0``) of one ``.npz``, opened once."""
    keys = keys or ("arr_0",)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            found = list(data.keys())
            arrays = {k: data[k] for k in keys if k in found}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{path}: unreadable npz ({type(exc).__name__}: {exc})") from None
    for key in keys:
        if key not in arrays:
            raise ValueError(f"{path}: has no array '{key}' (found {found})")
    return tuple(arrays[k] for k in keys)


def _as_grid(arr: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {arr.size} values, expected {int(np.prod(shape))} for shape {shape}")
    return arr.reshape(shape)


RGB_MODES = ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA")
"""Pillow modes :func:`read_rgb` takes: 8-bit colour (with alpha, or a palette) and 8-bit grey."""

_MODE_NAMES = {"I": "a 32-bit integer single-channel image", "F": "a 32-bit float single-channel image",
               "1": "a 1-bit black-and-white image", "CMYK": "a CMYK image"}


def _not_rgb(img: Image.Image) -> str | None:
    """What ``img`` is when it is not 8-bit RGB or grey, else None (from its header; the pixels are
    not read). Pillow opens a 16-bit colour PNG as mode ``RGB`` and drops the low bytes: its
    tiles' raw mode (``RGB;16B``) tells."""
    rawmodes = [t.args if isinstance(t.args, str) else (t.args[0] if t.args and isinstance(t.args[0], str) else "")
                for t in getattr(img, "tile", None) or []]
    sixteen = img.mode.startswith("I;16") or any(";16" in raw for raw in rawmodes)
    if img.mode in RGB_MODES:
        return "a 16-bit colour image" if sixteen else None
    if img.mode.startswith("I") and sixteen:
        name = "a 16-bit single-channel image (a depth image?)"
    else:
        name = _MODE_NAMES.get(img.mode, "an image of another kind")
    return f"{name}, Pillow mode {img.mode}"


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit RGB image as ``(H, W, 3) uint8`` (grey, palette or RGBA are converted).

    Raises:
        FileNotFoundError / ValueError naming the file: unreadable, or not 8-bit RGB or grey (a
        16-bit depth PNG, a float or 1-bit image, 16-bit colour), saying what it is.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such RGB image")
    try:
        with Image.open(path) as img:
            what = _not_rgb(img)
            if what is not None:
                raise ValueError(f"{path}: not an 8-bit RGB or grey image: {what}")
            return np.array(img.convert("RGB"))
    except OSError as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from None


def write_rgb(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write ``(H, W, 3) uint8`` as PNG atomically."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{path}: RGB must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def read_prior(path: str | os.PathLike, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A 2D semantic prior PNG: ``(H, W) uint8`` ids 0..13 (:data:`PRIOR_CLASSES`).

    Args:
        size: the expected ``(H, W)`` (the depth image's).
    Raises:
        FileNotFoundError / ValueError naming the file (unreadable, not single-channel 8-bit,
        wrong size, an id above 13).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prior image")
    try:
        with Image.open(path) as img:
            mode = img.mode
            prior = np.array(img)
    except OSError as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from None
    if mode not in ("L", "P") or prior.ndim != 2:
        raise ValueError(f"{path}: the prior must be a single-channel 8-bit label image, got mode {mode}")
    if prior.shape != tuple(size):
        raise ValueError(f"{path}: prior is {prior.shape[1]}x{prior.shape[0]}, expected {size[1]}x{size[0]}")
    if prior.size and prior.max() >= PRIOR_CLASSES:
        raise ValueError(f"{path}: prior ids must be 0..{PRIOR_CLASSES - 1}, found {int(prior.max())}")
    return prior.astype(np.uint8)


def read_labels(path: Path, spec: DatasetSpec | str = "nyu") -> np.ndarray:
    """``spec.grid uint8`` labels (NYU: ``(60, 36, 60)``, 0..11 or 255) from a ``Label/`` (or
    ``L/``) ``.npz``."""
    spec = get_dataset_spec(spec)
    label = _as_grid(load_npz(path)[0], spec.grid, path)
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"{path}: labels must be integers, got dtype {label.dtype}")
    bad = (label < 0) | ((label >= spec.num_classes) & (label != spec.ignore_id))
    if bad.any():
        raise ValueError(f"{path}: labels must be 0..{spec.num_classes - 1} or {spec.ignore_id} ({spec.name}), "
                         f"found {np.unique(label[bad])[:5].tolist()}")
    return label.astype(np.uint8)


def read_frame(
    root: str | os.PathLike,
    frame_id: str,
    rgb: bool = True,
    fine: bool = False,
    visibility: bool = False,
    depth: bool = False,
    prior: bool = False,
    forknet: bool = False,
    fine_labels: bool = False,
    spec: DatasetSpec | str = "nyu",
) -> PreparedFrame:
    """Read a prepared frame (torchssc's layout or the released NYU files as they are).

    Args:
        spec: the dataset (:mod:`torchssc.datasets`): its grids, classes and image size.
        rgb: read the RGB image when it exists (a missing one gives ``rgb=None``).
        fine: also read the fine flipped TSDF (must exist).
        visibility: also read the visibility volume (must exist).
        depth: also read the depth image (must exist).
        prior: also read the 2D semantic prior (must exist).
        forknet: also read ForkNet's volumes (must exist).
        fine_labels: also read the fine labels (must exist).
    Raises:
        FileNotFoundError / ValueError naming the missing or malformed file.
    """
    spec = get_dataset_spec(spec)
    grid = spec.grid
    p = frame_paths(root, frame_id)
    tsdf, weight = load_npz(p["tsdf"], "arr_0", "arr_1")
    tsdf = _as_grid(tsdf, grid, p["tsdf"]).astype(np.float32)
    weight = _as_grid(weight, grid, p["tsdf"]).astype(np.uint8)
    mapping = _as_grid(load_npz(p["mapping"])[0], (spec.grid_numel,), p["mapping"]).astype(np.int64)
    label = read_labels(p["label"], spec)
    if p["sketch"].is_file():
        try:
            sketch = np.load(p["sketch"], allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{p['sketch']}: unreadable npy ({exc})") from None
        sketch = _as_grid(sketch, grid, p["sketch"]).astype(np.uint8)
    else:
        sketch = None  # the dataset computes it from the labels (prepare.sketch)
    frame = PreparedFrame(tsdf=tsdf, label_weight=weight, mapping=mapping, label=label, sketch=sketch)
    if rgb and p["rgb"].is_file():
        frame.rgb = read_rgb(p["rgb"])
    if p["meta"].is_file():
        meta = load_npz(p["meta"], "pose", "origin", "intrinsics")
        frame.pose = meta[0].astype(np.float64).reshape(4, 4)
        frame.origin = meta[1].astype(np.float64).reshape(3)
        frame.intrinsics = meta[2].astype(np.float64).ravel()
    image_size = spec.image_size[::-1] if frame.intrinsics is None else (int(frame.intrinsics[5]), int(frame.intrinsics[4]))
    if visibility:
        frame.visibility = _as_grid(load_npz(p["visibility"])[0], grid, p["visibility"]).astype(np.uint8)
    if depth:
        frame.depth = read_depth_png(p["depth"])
    if fine:
        frame.tsdf_fine = _as_grid(load_npz(p["tsdf_fine"])[0], spec.fine_grid, p["tsdf_fine"]).astype(np.float32)
    if prior:
        frame.prior = read_prior(p["prior"], image_size)
    if forknet:
        arrays = load_npz(p["forknet"], "tsdf", "label", "surface")
        frame.forknet_tsdf, frame.forknet_label, frame.forknet_surface = (
            _as_grid(a, FORKNET_GRID, p["forknet"]).astype(t) for a, t in zip(arrays, (np.float32, np.uint8, np.uint8))
        )
    if fine_labels:
        frame.label_fine = _as_grid(load_npz(p["label_fine"])[0], spec.fine_grid, p["label_fine"]).astype(np.uint8)
    return frame


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def write_frame(root: str | os.PathLike, frame_id: str, frame: PreparedFrame) -> None:
    """Write every field of ``frame`` that is set, each file atomically, compact dtypes.

    The grids are the frame's own: ``frame.label``'s shape (3-D) is the label grid, and
    ``frame.tsdf_fine`` / ``frame.label_fine`` keep theirs."""
    p = frame_paths(root, frame_id)
    grid = np.shape(frame.label)
    if len(grid) != 3:
        raise ValueError(f"{p['label']}: frame.label must be a 3-D grid, got shape {grid}")
    if frame.rgb is not None:
        write_rgb(p["rgb"], frame.rgb)
    if frame.pose is not None:
        _save_npz(
            p["meta"],
            pose=np.asarray(frame.pose, np.float64).reshape(4, 4),
            origin=np.asarray(frame.origin, np.float64).reshape(3),
            intrinsics=np.asarray(frame.intrinsics, np.float64).ravel(),
        )
    if frame.depth is not None:
        write_depth_png(p["depth"], frame.depth)
    if frame.visibility is not None:
        _save_npz(p["visibility"], arr_0=np.asarray(frame.visibility, np.uint8).reshape(grid))
    if frame.tsdf_fine is not None:
        _save_npz(p["tsdf_fine"], arr_0=np.asarray(frame.tsdf_fine, np.float16))
    if frame.forknet_tsdf is not None:
        _save_npz(
            p["forknet"],
            tsdf=np.asarray(frame.forknet_tsdf, np.float32).reshape(FORKNET_GRID),
            label=np.asarray(frame.forknet_label, np.uint8).reshape(FORKNET_GRID),
            surface=np.asarray(frame.forknet_surface, np.uint8).reshape(FORKNET_GRID),
        )
    if frame.label_fine is not None:
        _save_npz(p["label_fine"], arr_0=np.asarray(frame.label_fine, np.uint8))
    _save_npz(p["label"], arr_0=np.asarray(frame.label, np.uint8).ravel())
    _save_npz(p["mapping"], arr_0=np.asarray(frame.mapping).astype(np.int32).ravel())
    _save_npz(
        p["tsdf"],
        arr_0=np.asarray(frame.tsdf, np.float32).ravel(),
        arr_1=np.asarray(frame.label_weight, np.uint8).ravel(),
    )
    # The sketch is written last: with it present the frame is complete.
    with atomic_path(p["sketch"]) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(frame.sketch, np.uint8).reshape(grid))
