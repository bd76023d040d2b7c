"""The torch Dataset over the prepared TorchSSC layout (:mod:`torchssc.io.prepared`).

One item is a dict of tensors (shapes without the batch dimension; after
``torch.utils.data.default_collate`` each gains a leading ``B``, and ``"id"`` becomes a list):

=================  ==========================  =============================================
key                shape, dtype                meaning
=================  ==========================  =============================================
``id``             str                         4-digit frame id, e.g. ``"0001"``
``rgb``            ``(3, H, W) float32``       ImageNet-normalised RGB (only when loaded)
``tsdf``           ``(1, 60, 36, 60) float32`` TorchSSC TSDF (mean of fine TSDF, unobserved 0)
``mapping``        ``(129600,) int64``         flat pixel index ``v*W+u`` per voxel; ``H*W`` none
``label``          ``(60, 36, 60) int64``      0..11, 255 = ignore
``label_weight``   ``(60, 36, 60) float32``    0/1
``sketch_gt``      ``(60, 36, 60) int64``      0/1
``tsdf_fine``      ``(1, 240, 144, 240) f32``  SSCNet flipped TSDF (``fine=True``)
``depth``          ``(1, H, W) float32``       metres, 0 = missing (``depth=True``)
``visibility``     ``(60, 36, 60) int64``      ``geometry.VIS_*`` codes (``visibility=True``)
``prior``          ``(H, W) int64``            2D semantic prior, ids 0..13 (``prior`` on/auto)
``pose``           ``(4, 4) float32``          camera-to-world (when every frame has Meta/)
``origin``         ``(3,) float32``            world corner of the grid (idem)
``intrinsics``     ``(6,) float32``            fx, fy, cx, cy, W, H (idem)
``forknet_tsdf``   ``(1, 80, 48, 80) f32``     ForkNet's input: projective TSDF, invalid -> 0
                                               (``forknet=True``)
``forknet_label``  ``(80, 48, 80) int64``      ForkNet's labels 0..11, 255 (idem)
``forknet_surface`` ``(80, 48, 80) uint8``     1 on voxels holding a depth point (idem)
``label_fine``     ``(240, 144, 240) uint8``   fine labels 0..11, 255 (``fine_labels=True``)
=================  ==========================  =============================================

Grid axes are [world X, world Z (up), world Y] (see :mod:`torchssc.geometry`). Optional keys
are decided once for the whole dataset, so every item has the same keys and batches collate.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from torchssc.data.layouts import open_layout
from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.io.prepared import BASE_KEYS, OPTIONAL_KEYS, REQUIRED, frame_paths, read_frame, read_split
from torchssc.prepare.sketch import sketch_from_labels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet (pixel values scaled to [0, 1])."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet (pixel values scaled to [0, 1])."""

MAX_LISTED_MISSING = 20
"""How many missing paths the construction error lists before summarising."""


def normalize_rgb(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3) uint8`` RGB -> ``(3, H, W) float32`` ImageNet-normalised.

    ``out[c] = (rgb[..., c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]``.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"RGB must be (H, W, 3), got shape {rgb.shape}")
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(torch.float32) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return (x - mean) / std


def _missing_report(missing: list[Path], what: str) -> str:
    shown = "\n  ".join(str(p) for p in missing[:MAX_LISTED_MISSING])
    more = len(missing) - MAX_LISTED_MISSING
    tail = f"\n  ... and {more} more" if more > 0 else ""
    return f"{len(missing)} file(s) missing for {what}:\n  {shown}{tail}"


class SSCDataset(Dataset):
    """Prepared SSC frames under ``root`` (TorchSSC layout plus torchssc's extras).

    Every item has :data:`~torchssc.io.prepared.BASE_KEYS` (``tsdf``, ``mapping``, ``label``,
    ``label_weight``, ``sketch_gt``) and ``id``; the other keys are loaded exactly when asked
    for (``keys``): a model, its loss and the evaluation protocol declare what they read, and
    the engine asks for the union (docs/architecture.md). ``pose``, ``origin`` and
    ``intrinsics`` are also included when every frame has its ``Meta/`` file (frames prepared by
    ``torchssc prepare`` do; third-party TorchSSC data does not).

    Args:
        root: folder holding ``train.txt``/``test.txt``, ``TSDF/``, ``Mapping/``, ``Label/``
            (or the release's ``T/``, ``Mapping/``, ``L/``), and optionally ``sketch3D/``
            (computed from the labels when missing), ``RGB/``, ``Meta/``, ``Depth/``,
            ``Visibility/``, ``TSDFFine/``, ``seg_result_label13/``, ``ForkNet/``, ``LabelFine/``.
        split: a split name (reads ``<root>/<split>.txt``, e.g. ``"train"``, ``"test"``) or an
            explicit sequence of frame ids (``"0001"``; ints are formatted ``%04d``).
        keys: batch keys beyond the base ones, each of
            :data:`~torchssc.io.prepared.OPTIONAL_KEYS` (``rgb``, ``prior``, ``depth``, ``pose``,
            ``visibility``, ``tsdf_fine``, ``forknet_tsdf``, ``label_fine``, ...); a mapping
            ``{key: who needs it}`` (e.g. ``"model 'ddrnet'"``) makes the missing-file error name
            the reader.
        spec: the dataset's declaration (:mod:`torchssc.datasets`; a name, a YAML path or a
            :class:`~torchssc.datasets.DatasetSpec`): its grid shapes the tensors, its classes
            bound the labels.

    Raises:
        FileNotFoundError: listing the missing files (up to 20, then a count) of every frame
            that lacks a required or requested file, or when the split list does not exist; the
            first line names the key, who needs it and what provides it.
        ValueError: an empty split or an unknown key.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | Sequence[str | int],
        *,
        keys: Iterable[str] | Mapping[str, str] = (),
        spec: DatasetSpec | str = "nyu",
    ):
        self.root = Path(root)
        self.spec = get_dataset_spec(spec)
        # any layout but torchssc's own is read by its reader (data/layouts.py, docs/datasets.md)
        self.layout = None if self.spec.layout == "torchssc" else open_layout(self.spec, self.root)
        if isinstance(split, str):
            self.split_name: str | None = str(split)
            self.ids = read_split(self.root, str(split)) if self.layout is None else self.layout.ids(str(split))
        else:
            self.split_name = None
            self.ids = [f"{int(i):04d}" if isinstance(i, (int, np.integer)) else str(i) for i in split]
        if not self.ids:
            where = f"{self.root / (self.split_name + '.txt')}" if self.split_name else "the id list"
            raise ValueError(f"{where}: no frames listed")
        readers = dict(keys) if isinstance(keys, Mapping) else {k: "" for k in keys}
        unknown = sorted(set(readers) - set(OPTIONAL_KEYS) - set(BASE_KEYS))
        if unknown:
            raise ValueError(f"unknown batch key(s) {unknown}; known: {', '.join(BASE_KEYS + tuple(OPTIONAL_KEYS))}")
        self.keys = tuple(k for k in OPTIONAL_KEYS if k in readers)
        files = {OPTIONAL_KEYS[k][0]: k for k in reversed(self.keys)}  # file field -> first key reading it
        self.files = frozenset(files)
        if self.layout is not None:
            what = f"split '{self.split_name}'" if self.split_name else f"{len(self.ids)} listed frame(s)"
            self.layout.check_files(self.ids, files, readers, what)
            self.has_meta = self.layout.has_meta
            return
        self._check_files(files, readers)
        self.has_meta = "meta" in self.files or all(
            frame_paths(self.root, i)["meta"].is_file() for i in self.ids)

    def _check_files(self, files: dict[str, str], readers: dict[str, str]) -> None:
        """Every listed frame has the base files and those of the requested keys."""
        missing: list[Path] = []
        lacking: dict[str, list[Path]] = {}
        for frame_id in self.ids:
            paths = frame_paths(self.root, frame_id)
            missing.extend(paths[k] for k in REQUIRED if not paths[k].is_file())
            for field in files:
                if not paths[field].is_file():
                    lacking.setdefault(field, []).append(paths[field])
        what = f"split '{self.split_name}'" if self.split_name else f"{len(self.ids)} listed frame(s)"
        if missing:
            raise FileNotFoundError(f"{self.root}: " + _missing_report(missing + sum(lacking.values(), []), what))
        if lacking:  # a declared input the folder does not have: say who needs it and what gives it
            field, paths = next(iter(lacking.items()))
            key = files[field]
            who = readers.get(key) or "this run"
            raise FileNotFoundError(
                f"{who} needs input '{key}', which {self.root} lacks for {len(paths)} of the {len(self.ids)} "
                f"frame(s) of {what} (e.g. {paths[0]}); it comes from {OPTIONAL_KEYS[key][1]}")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        frame_id = self.ids[index]
        want = self.files
        frame = self.layout.read(frame_id, want) if self.layout is not None else read_frame(
            self.root, frame_id, rgb="rgb" in want, fine="tsdf_fine" in want, visibility="visibility" in want,
            depth="depth" in want, prior="prior" in want, forknet="forknet" in want,
            fine_labels="label_fine" in want, spec=self.spec,
        )
        grid = self.spec.grid
        item: dict = {"id": frame_id}
        if "rgb" in want:
            if frame.rgb is None:  # deleted after construction
                raise FileNotFoundError(f"{frame_paths(self.root, frame_id)['rgb']}: missing")
            item["rgb"] = normalize_rgb(frame.rgb)
        item["tsdf"] = torch.from_numpy(frame.tsdf.astype(np.float32)).reshape(1, *grid)
        item["mapping"] = torch.from_numpy(frame.mapping.astype(np.int64)).reshape(-1)
        item["label"] = torch.from_numpy(frame.label.astype(np.int64)).reshape(grid)
        item["label_weight"] = torch.from_numpy(frame.label_weight.astype(np.float32)).reshape(grid)
        sketch = frame.sketch if frame.sketch is not None else sketch_from_labels(frame.label, self.spec.ignore_id)
        item["sketch_gt"] = torch.from_numpy(sketch.astype(np.int64)).reshape(grid)
        if "tsdf_fine" in want:
            item["tsdf_fine"] = torch.from_numpy(frame.tsdf_fine.astype(np.float32)).unsqueeze(0)
        if "depth" in want:
            item["depth"] = torch.from_numpy(frame.depth.astype(np.float32)).unsqueeze(0)
        if "visibility" in want:
            item["visibility"] = torch.from_numpy(frame.visibility.astype(np.int64)).reshape(grid)
        if "prior" in want:
            item["prior"] = torch.from_numpy(frame.prior.astype(np.int64))
        if "forknet" in want:
            tsdf = frame.forknet_tsdf
            tsdf = np.where(tsdf < -1.0, np.float32(0.0), tsdf)  # ForkNet's loader: invalid (-2) -> 0
            item["forknet_tsdf"] = torch.from_numpy(tsdf.astype(np.float32)).unsqueeze(0)
            item["forknet_label"] = torch.from_numpy(frame.forknet_label.astype(np.int64))
            item["forknet_surface"] = torch.from_numpy(frame.forknet_surface.astype(np.uint8))
        if "label_fine" in want:
            item["label_fine"] = torch.from_numpy(frame.label_fine.astype(np.uint8))
        if self.has_meta:
            if frame.pose is None:  # deleted after construction
                raise FileNotFoundError(f"{frame_paths(self.root, frame_id)['meta']}: missing")
            item["pose"] = torch.from_numpy(frame.pose.astype(np.float32))
            item["origin"] = torch.from_numpy(frame.origin.astype(np.float32))
            item["intrinsics"] = torch.from_numpy(frame.intrinsics.astype(np.float32))
            self._check_image_size(frame_id, item)
        return item

    def _check_image_size(self, frame_id: str, item: dict) -> None:
        """RGB and depth must have the size the mapping's pixel indices refer to."""
        width, height = (int(round(float(x))) for x in item["intrinsics"][4:6])
        for key in ("rgb", "depth"):
            if key in item and tuple(item[key].shape[1:]) != (height, width):
                path = frame_paths(self.root, frame_id)[key]
                raise ValueError(
                    f"{path}: image is {item[key].shape[2]}x{item[key].shape[1]}, but the frame's "
                    f"intrinsics (Meta/{frame_id}.npz) say {width}x{height}"
                )

    def __repr__(self) -> str:
        split = self.split_name if self.split_name is not None else f"<{len(self.ids)} ids>"
        extras = list(self.keys) + (["meta"] if self.has_meta and "pose" not in self.keys else [])
        return (f"SSCDataset(root={str(self.root)!r}, split={split!r}, frames={len(self)}, "
                f"dataset={self.spec.name!r}, extras={extras})")
