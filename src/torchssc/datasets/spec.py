"""Dataset declarations (docs/datasets.md): what a dataset *is*, written once, read everywhere.

A :class:`DatasetSpec` holds a dataset's class names and colours, the ignore id, the map from the
source's label ids, the scoring grid and voxel size, the fine grid's factor, the default camera
and the file layout. Models (``num_classes``), losses, metrics (class names), report columns,
the viz palette and legend, and prepare's label map all take it from the spec, never from a
constant. Specs are YAML files: the built-in ones (``nyu``, ``synth``, ...) are package data in
``torchssc/datasets/<name>.yaml``; a user's dataset in a supported layout is one YAML file,
named by its path wherever a dataset name is accepted (``data.dataset=my_rooms.yaml``).

Grid axes are [world X, world Z (up), world Y], as in :mod:`torchssc.geometry`.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from torchssc.io.yaml_file import read_yaml_file

LAYOUTS = ("torchssc", "edgenet", "nyucad_torchssc", "scans")
"""File layouts a spec may name (docs/datasets.md#layouts): ``torchssc`` is the prepared
TorchSSC layout, the released NYU files (``L/``, ``T/``) included; ``edgenet`` the EdgeNet-style
npz (one file a frame, the folder is the split); ``nyucad_torchssc`` the TorchSSC-lineage NYUCAD
folders (``NYUCAD/<split>/TSDF_lr``, ``mapping``) with NYU's labels; ``scans`` a folder of RGB-D
frames with poses, intrinsics and a label volume per frame (:mod:`torchssc.io.scans`). Readers:
:mod:`torchssc.data.layouts`."""

FIELDS = ("name", "description", "classes", "palette", "ignore_id", "ignore_color", "label_map",
          "class_weights", "grid", "voxel_size", "fine_factor", "intrinsics", "image_size", "layout")
"""The keys of a spec file, in the order docs/datasets.md explains them."""
REQUIRED_FIELDS = ("name", "classes", "grid", "voxel_size", "intrinsics", "image_size")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset's declaration.

    Attributes:
        name: the registered name (``nyu``).
        classes: class names by id; id 0 is "empty", mIoU is over ids ``1..num_classes-1``.
        palette: ``(num_classes, 3)`` RGB colours, by class id.
        ignore_id: the label of voxels no metric or loss looks at (255).
        ignore_color: the RGB colour drawn for ``ignore_id``.
        label_map: source label id -> class id (NYU36 -> 11 for NYU; ``ignore_id`` passes
            through), or ``None`` when the source already uses the class ids.
        class_weights: one loss weight per class, or ``None``; a recipe asks for them with
            ``loss.kwargs.class_weights: dataset`` (NYU's: square-root median-frequency weights
            of its training scenes, :mod:`torchssc.losses.class_weighted`).
        grid: the scoring grid ``(D0, D1, D2)``, axes [world X, world Z (up), world Y].
        voxel_size: edge of a grid voxel (m).
        fine_factor: fine voxels per grid voxel along each axis (the fine grid is
            ``grid * fine_factor``).
        intrinsics: default camera ``(fx, fy, cx, cy)`` in pixels.
        image_size: ``(W, H)`` of the images the mapping's pixel indices refer to.
        layout: the file layout it is read from (:data:`LAYOUTS`).
        description: one line for ``torchssc list``.
        path: the YAML file it was read from (``None`` for a spec built in code).
    """

    name: str
    classes: tuple[str, ...]
    grid: tuple[int, int, int]
    voxel_size: float
    intrinsics: tuple[float, float, float, float]
    image_size: tuple[int, int]
    palette: tuple[tuple[int, int, int], ...] = ()
    ignore_id: int = 255
    ignore_color: tuple[int, int, int] = (153, 153, 153)
    label_map: tuple[int, ...] | None = None
    class_weights: tuple[float, ...] | None = None
    fine_factor: int = 4
    layout: str = "torchssc"
    description: str = ""
    path: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.palette:
            object.__setattr__(self, "palette", default_palette(len(self.classes)))

    # -- derived ------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Classes including empty (12 for NYU)."""
        return len(self.classes)

    @property
    def grid_numel(self) -> int:
        """Voxels of the scoring grid (129,600 for NYU)."""
        return math.prod(self.grid)

    @property
    def fine_grid(self) -> tuple[int, int, int]:
        """The fine grid's shape (240, 144, 240 for NYU)."""
        return tuple(s * self.fine_factor for s in self.grid)  # type: ignore[return-value]

    @property
    def fine_voxel(self) -> float:
        """Edge of a fine voxel (m)."""
        return self.voxel_size / self.fine_factor

    @property
    def no_pixel(self) -> int:
        """The mapping value meaning "no pixel": ``W * H`` (307,200 for NYU)."""
        return self.image_size[0] * self.image_size[1]

    def palette_lut(self) -> np.ndarray:
        """``(256, 3) uint8`` colour lookup: class ids by :attr:`palette`, anything else grey."""
        lut = np.tile(np.asarray(self.ignore_color, np.uint8), (256, 1))
        lut[: self.num_classes] = np.asarray(self.palette, np.uint8)
        return lut

    def map_labels(self, labels: np.ndarray, where: str = "labels") -> np.ndarray:
        """Source label ids -> class ids through :attr:`label_map` (``ignore_id`` kept).

        Args:
            labels: integer array of any shape.
            where: what to name in an error (e.g. the file).
        Returns:
            ``uint8`` array of the same shape, values in ``0..num_classes-1`` or ``ignore_id``.
        Raises:
            ValueError: naming ``where`` and the values the map does not know.
        """
        labels = np.asarray(labels)
        table = np.arange(self.num_classes) if self.label_map is None else np.asarray(self.label_map)
        lut = np.zeros(256, dtype=np.uint8)
        known = np.zeros(256, dtype=bool)
        lut[: len(table)], known[: len(table)] = table, True
        lut[self.ignore_id], known[self.ignore_id] = self.ignore_id, True
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"{where}: label ids must be in 0..{len(table) - 1} or {self.ignore_id}, "
                             f"got range {labels.min()}..{labels.max()}")
        index = labels.astype(np.int64)
        if not known[index].all():
            bad = np.unique(labels[~known[index]])
            raise ValueError(f"{where}: label ids must be in 0..{len(table) - 1} or {self.ignore_id} "
                             f"({self.name}), found {bad.tolist()[:10]}")
        return lut[index]


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """``n`` distinct colours for a spec that names none (evenly spaced hues, empty grey-blue)."""
    import colorsys

    colours = [(22, 191, 206)]
    for i in range(1, n):
        r, g, b = colorsys.hsv_to_rgb((i - 1) / max(1, n - 1), 0.65, 0.9)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return tuple(colours[:n])


# ------------------------------------------------------------------------------------------
# Reading a spec file
def _fail(source: str, key: str, value: Any, expected: str) -> None:
    raise ValueError(f"{source}: '{key}' = {value!r}: expected {expected}")


def _ints(source: str, key: str, value: Any, n: int | None, lo: int = 0, hi: int | None = None) -> tuple[int, ...]:
    ok = isinstance(value, (list, tuple)) and (n is None or len(value) == n) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi) for v in value)
    if not ok:
        what = f"{n} integers" if n else "a list of integers"
        _fail(source, key, value, f"{what} in {lo}..{hi if hi is not None else 'inf'}")
    return tuple(int(v) for v in value)


def _positive(source: str, key: str, value: Any) -> float:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        _fail(source, key, value, "a finite number > 0")
    return float(value)


def spec_from_dict(data: Any, source: str = "<dict>") -> DatasetSpec:
    """Validate a spec mapping (a parsed YAML file) and build the :class:`DatasetSpec`.

    Raises:
        ValueError: naming ``source`` and the key: an unknown key (with the nearest known one),
            a missing key, or a value of the wrong type or range.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a dataset spec must be a mapping of keys, got {type(data).__name__}")
    for key in data:
        if key not in FIELDS:
            near = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else f" (known: {', '.join(FIELDS)})"
            raise ValueError(f"{source}: unknown dataset key '{key}'{hint}")
    for key in REQUIRED_FIELDS:
        if key not in data:
            raise ValueError(f"{source}: dataset key '{key}' is missing (docs/datasets.md)")
    name = data["name"]
    if not isinstance(name, str) or not name:
        _fail(source, "name", name, "a non-empty string")
    classes = data["classes"]
    if not (isinstance(classes, list) and 2 <= len(classes) <= 254 and all(isinstance(c, str) and c for c in classes)
            and len(set(classes)) == len(classes)):
        _fail(source, "classes", classes, "a list of 2..254 distinct names (id 0 = empty)")
    ignore_id = data.get("ignore_id", 255)
    if not (isinstance(ignore_id, int) and len(classes) <= ignore_id <= 255):
        _fail(source, "ignore_id", ignore_id, f"an integer in {len(classes)}..255")
    palette = data.get("palette")
    if palette is not None:
        if not (isinstance(palette, list) and len(palette) == len(classes)):
            _fail(source, "palette", palette, f"{len(classes)} RGB triples, one per class")
        palette = tuple(_ints(source, f"palette[{i}]", c, 3, 0, 255) for i, c in enumerate(palette))
    label_map = data.get("label_map")
    if label_map is not None:
        label_map = _ints(source, "label_map", label_map, None, 0, len(classes) - 1)
        if not 1 <= len(label_map) <= 255:
            _fail(source, "label_map", label_map, "1..255 class ids, indexed by source id")
    class_weights = data.get("class_weights")
    if class_weights is not None:
        if not (isinstance(class_weights, list) and len(class_weights) == len(classes)):
            _fail(source, "class_weights", class_weights, f"{len(classes)} numbers, one per class")
        class_weights = tuple(_positive(source, "class_weights", w) for w in class_weights)
    grid = _ints(source, "grid", data["grid"], 3, 1)
    fine_factor = data.get("fine_factor", 4)
    if not (isinstance(fine_factor, int) and not isinstance(fine_factor, bool) and fine_factor >= 1):
        _fail(source, "fine_factor", fine_factor, "a positive integer")
    intrinsics = data["intrinsics"]
    if not (isinstance(intrinsics, list) and len(intrinsics) == 4):
        _fail(source, "intrinsics", intrinsics, "[fx, fy, cx, cy] in pixels")
    intrinsics = tuple(_positive(source, "intrinsics", v) for v in intrinsics)
    image_size = _ints(source, "image_size", data["image_size"], 2, 1)
    layout = data.get("layout", "torchssc")
    if layout not in LAYOUTS:
        _fail(source, "layout", layout, f"one of {list(LAYOUTS)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        _fail(source, "description", description, "a string")
    return DatasetSpec(
        name=name, classes=tuple(classes), grid=grid, voxel_size=_positive(source, "voxel_size", data["voxel_size"]),
        intrinsics=intrinsics, image_size=image_size, palette=palette or (), ignore_id=int(ignore_id),
        ignore_color=_ints(source, "ignore_color", data.get("ignore_color", [153, 153, 153]), 3, 0, 255),
        label_map=label_map, class_weights=class_weights, fine_factor=int(fine_factor), layout=layout, description=description,
        path=None if source == "<dict>" else source,
    )


def read_spec(path: str | os.PathLike) -> DatasetSpec:
    """Read and validate one spec YAML file (errors name the file)."""
    return spec_from_dict(read_yaml_file(path, "dataset spec"), str(Path(path)))


# ------------------------------------------------------------------------------------------
# The registry: the built-in YAML files, plus specs registered in code
def specs_dir() -> Path:
    """The folder of the built-in specs, ``torchssc/datasets`` inside the installed package."""
    return Path(str(importlib.resources.files("torchssc") / "datasets"))


def list_datasets() -> list[str]:
    """Names of the built-in dataset specs, sorted."""
    return sorted(p.stem for p in specs_dir().glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def _builtin(name: str) -> DatasetSpec:
    """A built-in spec, read once (specs are immutable)."""
    return read_spec(specs_dir() / f"{name}.yaml")


def get_dataset_spec(name_or_path: str | os.PathLike | DatasetSpec) -> DatasetSpec:
    """The spec registered as ``name`` (``"nyu"``), or the one in a YAML file (a path).

    Raises:
        FileNotFoundError: neither a built-in name nor an existing file (the names are listed).
        ValueError: a malformed spec file (naming the file and the key).
    """
    if isinstance(name_or_path, DatasetSpec):
        return name_or_path
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return read_spec(path)
    if path.parent == Path(".") and not path.suffix and path.name in list_datasets():
        return _builtin(path.name)
    raise FileNotFoundError(
        f"{name_or_path}: no such dataset (built-in: {', '.join(list_datasets())}; or the path of a spec YAML)"
    )


__all__ = ["DatasetSpec", "LAYOUTS", "get_dataset_spec", "list_datasets", "read_spec", "spec_from_dict",
           "default_palette", "specs_dir"]
