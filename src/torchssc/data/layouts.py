"""Readers of the file layouts other than torchssc's own (docs/datasets.md, "Layouts").

:class:`~torchssc.data.SSCDataset` reads the ``torchssc`` layout through
:mod:`torchssc.io.prepared`; for any other ``spec.layout`` it asks :func:`open_layout` for a
reader, which lists the frames of a split, checks that the requested inputs exist, and reads a
frame into the same :class:`~torchssc.io.prepared.PreparedFrame`, deriving what the layout does
not store (:mod:`torchssc.prepare.derive`) and refusing in one line what it cannot give.

=================== ============================================ ===============================
layout              what it stores                               extra inputs it gives
=================== ============================================ ===============================
``edgenet``         fine flipped TSDF, 60-grid labels, weights,  ``tsdf_fine`` (derived)
                    pixel -> fine voxel list (one npz a frame)
``nyucad_torchssc`` 60-grid TSDF and voxel -> pixel mapping      ``rgb``, ``prior`` (from NYU's
                    (NYUCAD/), labels and label_weight (NYU/)    folder, when present)
``scans``           RGB-D frames with poses and intrinsics and   ``rgb``, ``depth``, ``pose``,
                    a label volume per frame                     ``visibility``, ``tsdf_fine``
=================== ============================================ ===============================

The base keys (``tsdf``, ``mapping``, ``label``, ``label_weight``, ``sketch_gt``) come from
every layout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from torchssc.datasets import DatasetSpec
from torchssc.io import edgenet as edgenet_io
from torchssc.io import nyucad_torchssc as cad_io
from torchssc.io.prepared import (
    OPTIONAL_KEYS, PreparedFrame, frame_paths, load_npz, read_labels, read_prior, read_rgb, read_split,
)
from torchssc.prepare.derive import (
    distance_from_flipped, mapping_from_pixel_voxels, sscnet_from_flipped, surface_from_pixel_voxels,
)
from torchssc.prepare.downsample import downsample_mean
from torchssc.prepare.label_weight import label_weight as compute_label_weight


class Layout:
    """A reader of one layout under ``root`` (subclasses set :attr:`name`, :attr:`fields`)."""

    name = ""
    fields: frozenset[str] = frozenset()
    """The :data:`~torchssc.io.prepared.OPTIONAL_KEYS` file fields this layout can give."""
    carries = ""
    """What the layout stores, for the refusal message."""
    has_meta = False
    """Whether every frame has a pose, origin and intrinsics."""

    def __init__(self, root: str | os.PathLike, spec: DatasetSpec):
        self.root = Path(root)
        self.spec = spec

    # -- listing ---------------------------------------------------------------------------
    def ids(self, split: str) -> list[str]:
        """Frame ids of a split name."""
        raise NotImplementedError

    def scenes(self, splits: tuple[str, ...]) -> dict[str, list[str]]:
        """Split -> ids for ``check-data``."""
        return {split: self.ids(split) for split in splits}

    def example_file(self, frame_id: str) -> Path:
        """A file of the frame, to name in messages."""
        raise NotImplementedError

    def missing(self, frame_id: str, fields: frozenset[str]) -> list[Path]:
        """Files of the frame (base inputs and ``fields``) that do not exist."""
        raise NotImplementedError

    # -- checking and reading --------------------------------------------------------------
    def check_files(self, ids: list[str], files: Mapping[str, str], readers: Mapping[str, str], what: str) -> None:
        """Refuse inputs the layout cannot give; list missing files.

        Args:
            files: requested file field -> the batch key asking for it; readers: key -> who.
        Raises:
            ValueError: one line naming a file, the key, who needs it and the layout.
            FileNotFoundError: listing the missing files.
        """
        for field, key in files.items():
            if field not in self.fields:
                who = readers.get(key) or "this run"
                raise ValueError(
                    f"{self.example_file(ids[0])}: {who} needs input '{key}', which the '{self.name}' layout "
                    f"does not carry ({self.carries}); it comes from {OPTIONAL_KEYS[key][1]}")
        missing = [p for i in ids for p in self.missing(i, frozenset(files))]
        if missing:
            shown = "\n  ".join(str(p) for p in missing[:20])
            more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise FileNotFoundError(f"{self.root}: {len(missing)} file(s) missing for {what} "
                                    f"(layout {self.name}):\n  {shown}{more}")

    def read(self, frame_id: str, want: frozenset[str]) -> PreparedFrame:
        """One frame with the base fields and those of ``want`` (file fields)."""
        raise NotImplementedError

    def check_scene(self, frame_id: str) -> list[str]:
        """Problems of one frame, each ``"<path>: <what>"`` (empty when clean)."""
        try:
            self.read(frame_id, frozenset())
        except (FileNotFoundError, ValueError) as exc:
            return [str(exc)]
        return []


# ------------------------------------------------------------------------------------------
class EdgeNetLayout(Layout):
    """EdgeNet-style npz files (:mod:`torchssc.io.edgenet`); the folder is the split.

    A split ``s`` is the folder ``<root>/<s>`` (or ``<root>/NYUCAD<s>``) when it exists, else
    ``root`` itself when it holds npz files (the shared sample: one folder, no split list).
    Derived: the 60-grid TSDF (the block mean of the distance of the flipped fine TSDF), the
    voxel -> pixel Mapping (from the pixel -> fine-voxel list) and SSCNet's flipped input
    ``tsdf_fine``. ``label_weight`` is the file's ``weights > 0`` (every occupied voxel and a
    selection of empty ones, never one outside the room), not the release's rule: the file has 0
    where NYU has 255, and the rule would count those voxels as empty.
    """

    name = "edgenet"
    fields = frozenset({"tsdf_fine"})
    carries = "a fine flipped TSDF, 60-grid labels and weights, a pixel -> voxel list; no images, no camera"

    def __init__(self, root, spec):
        super().__init__(root, spec)
        self._files: dict[str, Path] = {}

    def split_folder(self, split: str) -> Path:
        for candidate in (self.root / split, self.root / f"NYUCAD{split}"):
            if candidate.is_dir() and any(candidate.glob("*.npz")):
                return candidate
        if any(self.root.glob("*.npz")):
            return self.root
        raise FileNotFoundError(f"{self.root}: no npz files for split '{split}' (looked in {self.root / split}, "
                                f"{self.root / ('NYUCAD' + split)} and {self.root}; layout edgenet)")

    def ids(self, split: str) -> list[str]:
        folder = self.split_folder(split)
        ids = edgenet_io.list_frames(folder)
        for frame_id in ids:
            self._files[frame_id] = edgenet_io.frame_file(folder, frame_id)
        return ids

    def scenes(self, splits):
        if any(self.root.glob("*.npz")):  # the folder is the split
            return {self.root.name: self.ids(self.root.name)}
        return super().scenes(splits)

    def _file(self, frame_id: str) -> Path:
        if frame_id not in self._files:
            for folder in [self.root, *sorted(p for p in self.root.iterdir() if p.is_dir())]:
                path = edgenet_io.frame_file(folder, frame_id)
                if path.is_file():
                    self._files[frame_id] = path
                    break
            else:
                return edgenet_io.frame_file(self.root, frame_id)
        return self._files[frame_id]

    def example_file(self, frame_id):
        return self._file(frame_id)

    def missing(self, frame_id, fields):
        path = self._file(frame_id)
        return [] if path.is_file() else [path]

    def read(self, frame_id, want):
        spec = self.spec
        raw = edgenet_io.read_edgenet(self._file(frame_id), spec.grid, spec.fine_grid, spec.no_pixel,
                                      spec.num_classes)
        tsdf = downsample_mean(distance_from_flipped(raw.tsdf), spec.fine_factor)
        mapping = mapping_from_pixel_voxels(raw.pixel_voxels, spec.fine_grid, spec.fine_factor, spec.no_pixel)
        # the file's own weights, not the release's rule: this preprocessor writes 0 where NYU has
        # 255 (outside the room), and the rule would score those voxels as empty (docs/nyucad.md)
        frame = PreparedFrame(tsdf=tsdf, label_weight=(raw.weights > 0).astype(np.uint8), mapping=mapping,
                              label=raw.label, sketch=None)
        if "tsdf_fine" in want:
            frame.tsdf_fine = sscnet_from_flipped(raw.tsdf, surface_from_pixel_voxels(raw.pixel_voxels,
                                                                                      spec.fine_grid))
        return frame


# ------------------------------------------------------------------------------------------
class NyucadTorchsscLayout(Layout):
    """TorchSSC-lineage NYUCAD (:mod:`torchssc.io.nyucad_torchssc`): inputs from ``NYUCAD/``,
    labels, ``label_weight`` (``T/`` arr_1), RGB and prior from the NYU folder ``root``."""

    name = "nyucad_torchssc"
    fields = frozenset({"rgb", "prior"})
    carries = "NYUCAD's 60-grid TSDF and mapping, NYU's labels, label_weight, RGB and prior"

    def __init__(self, root, spec):
        super().__init__(root, spec)
        self.cad = cad_io.nyucad_folder(self.root)
        self.index = cad_io.index_frames(self.cad)

    def ids(self, split):
        return read_split(self.root, split)

    def _cad_files(self, frame_id: str) -> dict[str, Path]:
        split_dir = self.index.get(frame_id, self.cad / "<split>")
        return cad_io.frame_files(split_dir, frame_id)

    def example_file(self, frame_id):
        return self._cad_files(frame_id)["tsdf"]

    def missing(self, frame_id, fields):
        nyu = frame_paths(self.root, frame_id)
        paths = [*self._cad_files(frame_id).values(), nyu["label"], nyu["tsdf"]]
        paths += [nyu[f] for f in fields if f in nyu]
        return [p for p in paths if not p.is_file()]

    def read(self, frame_id, want):
        spec = self.spec
        if frame_id not in self.index:
            raise FileNotFoundError(f"{self.cad}: no <split>/TSDF_lr/NYU{frame_id}_0000_voxels.npz (layout {self.name})")
        tsdf, mapping = cad_io.read_inputs(self.index[frame_id], frame_id, spec.grid, spec.no_pixel)
        nyu = frame_paths(self.root, frame_id)
        (weight,) = load_npz(nyu["tsdf"], "arr_1")
        if weight.size != spec.grid_numel or not np.all((weight == 0) | (weight == 1)):
            raise ValueError(f"{nyu['tsdf']}: arr_1 (label_weight) must be {spec.grid_numel} values 0/1")
        frame = PreparedFrame(tsdf=tsdf, label_weight=weight.reshape(spec.grid).astype(np.uint8), mapping=mapping,
                              label=read_labels(nyu["label"], spec), sketch=None)
        if nyu["sketch"].is_file():
            frame.sketch = np.load(nyu["sketch"], allow_pickle=False).reshape(spec.grid).astype(np.uint8)
        if "rgb" in want:
            frame.rgb = read_rgb(nyu["rgb"])
        if "prior" in want:
            frame.prior = read_prior(nyu["prior"], spec.image_size[::-1])
        return frame


# ------------------------------------------------------------------------------------------
class ScansLayout(Layout):
    """A folder of RGB-D frames with a label volume each (:mod:`torchssc.io.scans`): your own
    labelled scans. The inputs are built from the depth, pose and camera by the preparation code
    (fine TSDF -> 60-grid mean, voxel -> pixel mapping, ``label_weight`` by the release's rule),
    in the box of the label file's ``origin`` (default: SSCNet's box for the pose, floor at z = 0).
    Splits: ``<root>/<split>.txt`` (frame names), else every frame with a label volume."""

    name = "scans"
    fields = frozenset({"rgb", "depth", "meta", "visibility", "tsdf_fine"})
    carries = "depth, pose, camera, colour and a label volume per frame; no 2D prior, no ForkNet volumes"
    has_meta = True

    def __init__(self, root, spec):
        super().__init__(root, spec)
        from torchssc.geometry import Intrinsics
        from torchssc.io.scans import open_scan_folder

        own = (self.root / "intrinsic" / "intrinsic_depth.txt").is_file() or any(
            (self.root / name).is_file() for name in ("intrinsics.txt", "intrinsics.json"))
        cam = None if own else Intrinsics(*spec.intrinsics, width=spec.image_size[0], height=spec.image_size[1])
        self.folder = open_scan_folder(self.root, cam)

    def ids(self, split):
        if (self.root / f"{split}.txt").is_file():
            return read_split(self.root, split)
        return [f.name for f in self.folder.frames if f.label is not None]

    def _frame(self, frame_id: str):
        return self.folder.frame(frame_id)

    def example_file(self, frame_id):
        try:
            return self._frame(frame_id).depth
        except FileNotFoundError:
            return self.root / "depth" / f"{frame_id}.png"

    def missing(self, frame_id, fields):
        try:
            frame = self._frame(frame_id)
        except FileNotFoundError:
            return [self.root / "depth" / f"{frame_id}.png"]
        paths = [self.root / "pose" / f"{frame_id}.txt"] if frame.pose is None else []
        paths += [self.root / "label" / f"{frame_id}.npz"] if frame.label is None else []
        paths += [self.root / "color" / f"{frame_id}.png"] if "rgb" in fields and frame.color is None else []
        return paths

    def read(self, frame_id, want):
        from torchssc.io.scans import read_label_volume, read_scan_color, read_scan_depth, read_scan_pose
        from torchssc.prepare.box import place_box
        from torchssc.prepare.mapping import voxel_pixel_mapping
        from torchssc.prepare.tsdf import compute_tsdf, depth_hits
        from torchssc.prepare.visibility import visibility_volume

        spec, folder = self.spec, self.folder
        frame = self._frame(frame_id)
        if frame.pose is None or frame.label is None:
            raise FileNotFoundError(f"{frame.depth}: frame '{frame_id}' needs pose/{frame_id}.txt and "
                                    f"label/{frame_id}.npz (layout scans)")
        cam = folder.intrinsics
        depth = read_scan_depth(frame.depth, cam)
        pose = read_scan_pose(frame.pose, folder.axis_alignment)
        label, origin = read_label_volume(frame.label, spec.grid, spec.num_classes, spec.ignore_id)
        origin = place_box(pose, 0.0) if origin is None else origin
        geo = dict(intrinsics=cam, voxel=spec.fine_voxel)
        hits = depth_hits(depth, pose, origin, shape=spec.fine_grid, **geo)
        fine = compute_tsdf(depth, pose, origin, shape=spec.fine_grid, hits=hits, **geo)
        tsdf = downsample_mean(fine.distance, spec.fine_factor)
        mapping = voxel_pixel_mapping(depth, pose, origin, fine_shape=spec.fine_grid, factor=spec.fine_factor,
                                      hits=hits, **geo)
        out = PreparedFrame(tsdf=tsdf, label_weight=compute_label_weight(label, tsdf), mapping=mapping,
                            label=label, sketch=None, pose=pose, origin=origin, intrinsics=cam.as_array())
        if "rgb" in want:
            if frame.color is None:
                raise FileNotFoundError(f"{frame.depth}: frame '{frame_id}' has no colour image (layout scans)")
            out.rgb = read_scan_color(frame.color, cam)
        if "depth" in want:
            out.depth = depth
        if "visibility" in want:
            out.visibility = visibility_volume(fine, label, spec.fine_factor)
        if "tsdf_fine" in want:
            out.tsdf_fine = fine.sscnet_input()
        return out


LAYOUT_CLASSES: dict[str, type[Layout]] = {
    ScansLayout.name: ScansLayout,
    EdgeNetLayout.name: EdgeNetLayout,
    NyucadTorchsscLayout.name: NyucadTorchsscLayout,
}


def register_layout(cls: type[Layout]) -> type[Layout]:
    """Add a layout class (by its ``name``)."""
    LAYOUT_CLASSES[cls.name] = cls
    return cls


def open_layout(spec: DatasetSpec, root: str | os.PathLike) -> Layout:
    """The reader of ``spec.layout`` over ``root`` (not for ``torchssc``, read by io.prepared).

    Raises:
        ValueError: a layout with no reader here.
    """
    if spec.layout not in LAYOUT_CLASSES:
        raise ValueError(f"dataset '{spec.name}': layout '{spec.layout}' has no reader "
                         f"(readers: torchssc, {', '.join(LAYOUT_CLASSES)})")
    return LAYOUT_CLASSES[spec.layout](root, spec)


def detect_layout(root: str | os.PathLike) -> str:
    """A best guess of the layout of a folder, for ``check-data`` without ``--dataset``:
    ``edgenet`` when it (or a sub-folder) holds npz files with EdgeNet's keys, else ``torchssc``."""
    root = Path(root)
    candidates = sorted(root.glob("*.npz"))[:1] + sorted(root.glob("*/*.npz"))[:1]
    for path in candidates:
        try:
            with np.load(path, allow_pickle=False) as data:
                if all(k in data.files for k in edgenet_io.KEYS):
                    return "edgenet"
        except (OSError, ValueError):
            continue
    return "torchssc"
