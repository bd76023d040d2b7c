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
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from torchssc.geometry import LABEL_SHAPE
from torchssc.io.prepared import REQUIRED, frame_paths, read_frame, read_split

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

    Args:
        root: folder holding ``train.txt``/``test.txt``, ``TSDF/``, ``Mapping/``, ``Label/``
            (or the release's ``T/``, ``Mapping/``, ``L/``), and optionally ``sketch3D/``
            (computed from the labels when missing), ``RGB/``, ``Meta/``, ``Depth/``,
            ``Visibility/``, ``TSDFFine/``, ``seg_result_label13/``.
        split: a split name (reads ``<root>/<split>.txt``, e.g. ``"train"``, ``"test"``) or an
            explicit sequence of frame ids (``"0001"``; ints are formatted ``%04d``).
        rgb: ``True`` requires every frame's RGB; ``False`` never loads it; ``"auto"`` loads it
            when every listed frame has one and omits the key for all otherwise.
        fine: also load ``tsdf_fine`` (SSCNet input); required for every frame.
        depth: also load ``depth``; required for every frame.
        visibility: also load ``visibility``; required for every frame.
        prior: the 2D semantic prior (``seg_result_label13/<id>.png``, NYU-13 ids): ``True``
            requires it for every frame, ``False`` never loads it, ``"auto"`` loads it when
            every listed frame has one.
        forknet: also load ForkNet's volumes (``forknet_*``; ``ForkNet/``); required for every frame.
        fine_labels: also load ``label_fine`` (``LabelFine/``); required for every frame.

    ``pose``, ``origin`` and ``intrinsics`` are included when every frame has its ``Meta/``
    file (frames prepared by ``torchssc prepare`` do; third-party TorchSSC data does not).

    Raises:
        FileNotFoundError: listing the missing files (up to 20, then a count) of every frame
            that lacks a required or requested file, or when the split list does not exist.
        ValueError: an empty split or a bad ``rgb`` value.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | Sequence[str | int],
        *,
        rgb: bool | str = "auto",
        fine: bool = False,
        depth: bool = False,
        visibility: bool = False,
        prior: bool | str = False,
        forknet: bool = False,
        fine_labels: bool = False,
    ):
        for name, value in (("rgb", rgb), ("prior", prior)):
            if value not in (True, False, "auto"):
                raise ValueError(f"{name} must be True, False or 'auto', got {value!r}")
        self.root = Path(root)
        if isinstance(split, str):
            self.split_name: str | None = str(split)
            self.ids = read_split(self.root, str(split))
        else:
            self.split_name = None
            self.ids = [f"{int(i):04d}" if isinstance(i, (int, np.integer)) else str(i) for i in split]
        if not self.ids:
            where = f"{self.root / (self.split_name + '.txt')}" if self.split_name else "the id list"
            raise ValueError(f"{where}: no frames listed")
        self.fine = bool(fine)
        self.depth = bool(depth)
        self.visibility = bool(visibility)
        self.forknet = bool(forknet)
        self.fine_labels = bool(fine_labels)

        need = list(REQUIRED)
        if rgb is True:
            need.append("rgb")
        if self.fine:
            need.append("tsdf_fine")
        if self.depth:
            need.append("depth")
        if self.visibility:
            need.append("visibility")
        if prior is True:
            need.append("prior")
        if self.forknet:
            need.append("forknet")
        if self.fine_labels:
            need.append("label_fine")
        missing: list[Path] = []
        all_rgb = all_meta = all_prior = True
        for frame_id in self.ids:
            paths = frame_paths(self.root, frame_id)
            missing.extend(paths[k] for k in need if not paths[k].is_file())
            all_rgb &= paths["rgb"].is_file()
            all_meta &= paths["meta"].is_file()
            all_prior &= paths["prior"].is_file()
        if missing:
            what = f"split '{self.split_name}'" if self.split_name else f"{len(self.ids)} listed frame(s)"
            raise FileNotFoundError(f"{self.root}: " + _missing_report(missing, what))
        self.has_rgb = all_rgb if rgb == "auto" else bool(rgb)
        self.has_prior = all_prior if prior == "auto" else bool(prior)
        self.has_meta = all_meta

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        frame_id = self.ids[index]
        frame = read_frame(
            self.root, frame_id, rgb=self.has_rgb, fine=self.fine, visibility=self.visibility,
            depth=self.depth, prior=self.has_prior, forknet=self.forknet, fine_labels=self.fine_labels,
        )
        item: dict = {"id": frame_id}
        if self.has_rgb:
            if frame.rgb is None:  # deleted after construction
                raise FileNotFoundError(f"{frame_paths(self.root, frame_id)['rgb']}: missing")
            item["rgb"] = normalize_rgb(frame.rgb)
        item["tsdf"] = torch.from_numpy(frame.tsdf.astype(np.float32)).reshape(1, *LABEL_SHAPE)
        item["mapping"] = torch.from_numpy(frame.mapping.astype(np.int64)).reshape(-1)
        item["label"] = torch.from_numpy(frame.label.astype(np.int64)).reshape(LABEL_SHAPE)
        item["label_weight"] = torch.from_numpy(frame.label_weight.astype(np.float32)).reshape(LABEL_SHAPE)
        item["sketch_gt"] = torch.from_numpy(frame.sketch.astype(np.int64)).reshape(LABEL_SHAPE)
        if self.fine:
            item["tsdf_fine"] = torch.from_numpy(frame.tsdf_fine.astype(np.float32)).unsqueeze(0)
        if self.depth:
            item["depth"] = torch.from_numpy(frame.depth.astype(np.float32)).unsqueeze(0)
        if self.visibility:
            item["visibility"] = torch.from_numpy(frame.visibility.astype(np.int64)).reshape(LABEL_SHAPE)
        if self.has_prior:
            item["prior"] = torch.from_numpy(frame.prior.astype(np.int64))
        if self.forknet:
            tsdf = frame.forknet_tsdf
            tsdf = np.where(tsdf < -1.0, np.float32(0.0), tsdf)  # ForkNet's loader: invalid (-2) -> 0
            item["forknet_tsdf"] = torch.from_numpy(tsdf.astype(np.float32)).unsqueeze(0)
            item["forknet_label"] = torch.from_numpy(frame.forknet_label.astype(np.int64))
            item["forknet_surface"] = torch.from_numpy(frame.forknet_surface.astype(np.uint8))
        if self.fine_labels:
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
        extras = [k for k, on in (("rgb", self.has_rgb), ("fine", self.fine), ("depth", self.depth),
                                  ("visibility", self.visibility), ("prior", self.has_prior),
                                  ("meta", self.has_meta), ("forknet", self.forknet),
                                  ("fine_labels", self.fine_labels)) if on]
        return f"SSCDataset(root={str(self.root)!r}, split={split!r}, frames={len(self)}, extras={extras})"
