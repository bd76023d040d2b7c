"""Raw depthbin frame -> prepared TorchSSC frame (docs/data.md), all stages in one call.

Stages: fine TSDF (:mod:`.tsdf`), 36->11 label downsampling and TSDF mean (:mod:`.downsample`),
label_weight (:mod:`.label_weight`), voxel->pixel mapping (:mod:`.mapping`), sketch
(:mod:`.sketch`) and visibility (:mod:`.visibility`).

With the release intrinsics (the default for depthbin input) the TSDF, label_weight, labels and
mapping of NYU frames equal the released TorchSSC files bit for bit (``docs/data.md``).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from torchssc.geometry import (
    DOWNSAMPLE, FINE_VOXEL, IGNORE_LABEL, RELEASE_INTRINSICS, SSCNET_INTRINSICS, Intrinsics, check_pose,
)
from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.io.depthbin import check_depth, read_bin, read_depth_png
from torchssc.io.prepared import PreparedFrame
from torchssc.prepare.downsample import TIE_RULES, downsample_labels, downsample_mean
from torchssc.prepare.forknet import forknet_volumes
from torchssc.prepare.label_weight import label_weight as compute_label_weight
from torchssc.prepare.mapping import voxel_pixel_mapping
from torchssc.prepare.sketch import sketch_from_labels
from torchssc.prepare.tsdf import compute_tsdf, depth_hits
from torchssc.prepare.visibility import visibility_volume

STAGES = (
    "hits", "tsdf", "labels", "tsdf_mean", "label_weight", "mapping", "sketch", "visibility", "fine",
)
"""Keys of the ``timings`` dict filled by :func:`prepare_frame`."""


@contextmanager
def _timed(timings: dict | None, name: str):
    """Add the CPU seconds of the block (``time.process_time``) to ``timings[name]``."""
    start = time.process_time()
    yield
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + time.process_time() - start


def prepare_frame(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    raw_labels: np.ndarray,
    *,
    intrinsics: Intrinsics,
    rgb: np.ndarray | None = None,
    fine: bool = False,
    fine_intrinsics: Intrinsics | None = None,
    tie_rule: str = "default",
    voxel: float = FINE_VOXEL,
    timings: dict | None = None,
    forknet: bool = False,
    forknet_class_map: str = "standard",
    fine_labels: bool = False,
    spec: DatasetSpec | str = "nyu",
) -> PreparedFrame:
    """Prepare one frame.

    Args:
        depth: ``(H, W)`` metres, 0 = missing (``H, W`` from ``intrinsics``).
        pose: ``(4, 4)`` camera-to-world. origin: ``(3,)`` world (x, y, z) of the grid corner.
        raw_labels: ``(D, H, W)`` fine labels, raw NYU36 ids 0..36 or 255 (normally
            ``(240, 144, 240)``; any shape divisible by 4 works).
        intrinsics: camera intrinsics and image size (of the dataset: :func:`default_fine_intrinsics`).
        rgb: optional ``(H, W, 3) uint8`` image, passed through.
        fine: also return SSCNet's flipped fine TSDF (``tsdf_fine``).
        fine_intrinsics: intrinsics of that fine TSDF; None = :func:`default_fine_intrinsics`.
        tie_rule: label downsampling rule, ``"default"`` or ``"sscnet"``.
        voxel: fine voxel edge (m).
        timings: if a dict, CPU seconds per stage (:data:`STAGES`) are added to it.
        forknet: also return ForkNet's 80x48x80 volumes (:mod:`torchssc.prepare.forknet`;
            timed as ``"forknet"``); ``forknet_class_map`` is their 36 -> 11 map.
        fine_labels: also return the fine labels mapped 36 -> 11 (``label_fine``).
        spec: the dataset (:mod:`torchssc.datasets`): its ``label_map`` (NYU36 -> 11 for NYU)
            and classes turn the raw labels into the label grid.
    Returns:
        :class:`~torchssc.io.prepared.PreparedFrame` with label-grid fields ``(D/4, H/4, W/4)``:
        ``tsdf`` float32, ``label_weight`` uint8, ``mapping`` ``(D*H*W/64,)`` int64 (``W*H`` = no
        pixel), ``label`` uint8, ``sketch`` uint8, ``visibility`` uint8; ``depth`` float32,
        ``pose`` float64, ``origin`` float64, ``intrinsics`` ``(6,)`` float64, ``rgb``, and
        ``tsdf_fine`` float32 when ``fine``, ``forknet_*`` when ``forknet``, ``label_fine`` uint8
        when ``fine_labels``.
    """
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    spec = get_dataset_spec(spec)
    raw_labels = np.asarray(raw_labels)
    shape = raw_labels.shape
    if raw_labels.ndim != 3 or any(s % DOWNSAMPLE or s == 0 for s in shape):
        raise ValueError(f"raw_labels must be a 3-D grid with sizes divisible by {DOWNSAMPLE}, got {shape}")
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (intrinsics.height, intrinsics.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"rgb must be ({intrinsics.height}, {intrinsics.width}, 3) uint8, got {rgb.shape} {rgb.dtype}"
            )
    depth = np.asarray(depth)  # computed in float32 (the kernel of the release), whatever the input
    if not np.issubdtype(depth.dtype, np.number):
        raise ValueError(f"depth must be numeric metres, got dtype {depth.dtype}")
    pose = np.asarray(pose, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64).reshape(-1)

    with _timed(timings, "hits"):
        hits = depth_hits(depth, pose, origin, intrinsics=intrinsics, voxel=voxel, shape=shape)
    with _timed(timings, "tsdf"):
        fine_tsdf = compute_tsdf(
            depth, pose, origin, intrinsics=intrinsics, voxel=voxel, shape=shape, hits=hits
        )
    with _timed(timings, "labels"):
        label = downsample_labels(raw_labels, tie_rule=tie_rule, raw=spec.label_map is not None,
                                  label_map=spec.label_map, num_classes=spec.num_classes)
    with _timed(timings, "tsdf_mean"):
        tsdf = downsample_mean(fine_tsdf.distance)
    with _timed(timings, "label_weight"):
        weight = compute_label_weight(label, tsdf)
    with _timed(timings, "mapping"):
        mapping = voxel_pixel_mapping(
            depth, pose, origin, intrinsics=intrinsics, voxel=voxel, fine_shape=shape, hits=hits
        )
    with _timed(timings, "sketch"):
        sketch = sketch_from_labels(label, spec.ignore_id)
    with _timed(timings, "visibility"):
        visibility = visibility_volume(fine_tsdf, label)
    tsdf_fine = None
    if fine:
        fine_intrinsics = default_fine_intrinsics(intrinsics) if fine_intrinsics is None else fine_intrinsics
        with _timed(timings, "fine"):
            if fine_intrinsics != intrinsics:
                fine_tsdf = compute_tsdf(depth, pose, origin, intrinsics=fine_intrinsics, voxel=voxel, shape=shape)
            tsdf_fine = fine_tsdf.sscnet_input()
    extras = {}
    if forknet:
        with _timed(timings, "forknet"):
            vol = forknet_volumes(
                depth, pose, origin, raw_labels, intrinsics=intrinsics, fine_voxel=voxel, class_map=forknet_class_map
            )
        extras.update(forknet_tsdf=vol.tsdf, forknet_label=vol.label, forknet_surface=vol.surface)
    if fine_labels:
        extras["label_fine"] = spec.map_labels(raw_labels)
    return PreparedFrame(
        tsdf=tsdf,
        label_weight=weight,
        mapping=mapping,
        label=label,
        sketch=sketch,
        rgb=rgb,
        pose=pose.copy(),
        origin=origin.copy(),
        intrinsics=intrinsics.as_array(),
        visibility=visibility,
        tsdf_fine=tsdf_fine,
        depth=depth.astype(np.float32),
        **extras,
    )


def default_fine_intrinsics(intrinsics: Intrinsics) -> Intrinsics:
    """Intrinsics of SSCNet's flipped fine TSDF for a dataset taken with ``intrinsics``.

    SSCNet's model input follows SSCNet's own data layer, which used its ideal camera: for NYU
    (release intrinsics) that is :data:`~torchssc.geometry.SSCNET_INTRINSICS`; any other dataset
    keeps its own camera.
    """
    return SSCNET_INTRINSICS if intrinsics == RELEASE_INTRINSICS else intrinsics


def check_raw_labels(labels: np.ndarray, path: str | os.PathLike, spec: DatasetSpec | str = "nyu") -> None:
    """Refuse, naming ``path``, labels that are not source ids of the dataset's ``label_map``
    (raw NYU36 ids 0..36 for NYU) or 255 (outside the room).

    Raises:
        ValueError: ``"<path>: labels must be raw NYU36 ids 0..36 or 255, found [100] on 1 voxel"``.
    """
    spec = get_dataset_spec(spec)
    known = len(spec.label_map) if spec.label_map is not None else spec.num_classes
    what = "raw NYU36 ids" if spec.name == "nyu" else f"source ids of {spec.name}"
    labels = np.asarray(labels)
    bad = (labels >= known) & (labels != IGNORE_LABEL)
    if labels.dtype.kind == "i":
        bad |= labels < 0
    if bad.any():
        count = int(bad.sum())
        raise ValueError(f"{path}: labels must be {what} 0..{known - 1} or {IGNORE_LABEL}, "
                         f"found {np.unique(labels[bad])[:10].tolist()} on {count} voxel{'s' if count != 1 else ''}")


def prepare_depthbin(
    bin_path: str | os.PathLike,
    *,
    rgb: np.ndarray | None = None,
    intrinsics: Intrinsics = RELEASE_INTRINSICS,
    **kwargs,
) -> PreparedFrame:
    """Prepare ``NYUxxxx_0000.bin`` and the depth ``.png`` beside it.

    Args:
        bin_path: the ``.bin`` file; its depth image is the same path with suffix ``.png``.
        rgb: optional ``(H, W, 3) uint8`` image for the frame.
        intrinsics: the camera (default: the NYU release convention).
        **kwargs: passed to :func:`prepare_frame` (``fine``, ``fine_intrinsics``, ``tie_rule``,
            ``timings``, ``forknet``, ``forknet_class_map``, ``fine_labels``).
    Raises:
        FileNotFoundError: the ``.bin`` or the ``.png`` is missing.
        ValueError: either file is malformed or degenerate (the message names it): a pose that
            is not a rigid transform (all zero, NaN), labels that are not NYU36 ids or 255, a
            depth with no valid pixel, or depth in plain millimetres.
    """
    bin_path = Path(bin_path)
    timings = kwargs.get("timings")
    with _timed(timings, "read"):
        raw = read_bin(bin_path)
        check_pose(raw.pose, str(bin_path))
        check_raw_labels(raw.labels, bin_path, kwargs.get("spec", "nyu"))
        png = bin_path.with_suffix(".png")
        depth = check_depth(read_depth_png(png, size=(intrinsics.height, intrinsics.width)), png)
    return prepare_frame(depth, raw.pose, raw.origin, raw.labels, rgb=rgb, intrinsics=intrinsics, **kwargs)
