"""Everything ``torchssc viz`` writes for one scene: PNG renders, PLY/GLB meshes, HTML viewer.

A library function so other commands (eval, predict) can write the same outputs.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.geometry import NYU_INTRINSICS
from torchssc.viz.html import write_html
from torchssc.viz.mesh import voxel_mesh, write_glb, write_ply
from torchssc.viz.camera import content_bounds, default_views
from torchssc.viz.compose import compose, save_png
from torchssc.viz.render import render_views
from torchssc.viz.volumes import Volume, mask_volume

FORMATS = ("png", "ply", "glb", "html")


def downsample_volume(volume: Volume) -> Volume:
    """A fine (e.g. 240x144x240) volume reduced 4x per axis with the docs/data.md label rule."""
    from torchssc.prepare.downsample import downsample_labels

    if any(s % 4 for s in volume.labels.shape):
        raise ValueError(f"{volume.name}: shape {volume.labels.shape} is not divisible by 4")
    return replace(volume, labels=downsample_labels(volume.labels, raw=False), voxel=volume.voxel * 4)


def box_mismatch(gt: Volume | None, pred: Volume | None) -> str | None:
    """A one-line warning when a ground truth and a prediction shown side by side do not cover
    the same box (their shape times voxel size differs by more than one voxel), else ``None``.

    A 240x144x240 volume of 0.02 m beside a 60x36x60 one of 0.08 m covers the same box: no warning.
    """
    if gt is None or pred is None:
        return None

    def extent(v: Volume) -> np.ndarray:
        return np.asarray(v.labels.shape, np.float64) * v.voxel

    def describe(v: Volume) -> str:
        shape = "x".join(str(n) for n in v.labels.shape)
        box = " x ".join(f"{e:g}" for e in np.round(extent(v), 3))
        return f"{shape} voxels of {v.voxel:g} m ({box} m)"

    if np.abs(extent(gt) - extent(pred)).max() <= max(gt.voxel, pred.voxel) + 1e-9:
        return None
    return (f"the prediction is {describe(pred)} but the ground truth {describe(gt)}: "
            "they do not cover the same box, so the side-by-side views are not comparable")


def export_scene(
    out_dir: str | os.PathLike,
    name: str,
    *,
    gt: Volume | None = None,
    pred: Volume | None = None,
    formats: Sequence[str] = FORMATS,
    views: Sequence[str] | None = None,
    masks: Sequence[str] = (),
    size: tuple[int, int] = (480, 360),
    shading: str = "shaded",
    hide_ceiling_above: bool = True,
    class_boundaries: bool = False,
    spec: DatasetSpec | str = "nyu",
) -> list[Path]:
    """Write renders, meshes and a viewer for a ground truth, a prediction, or both.

    Camera and placement (pose, origin, intrinsics, label_weight) come from either volume,
    the ground truth first. With both volumes the PNG shows them side by side (one row per view)
    and the viewer switches between them; meshes are written per volume (``<name>_gt``,
    ``<name>_pred``); with one volume the files are just ``<name>.<ext>``.

    Args:
        out_dir: output folder (created).
        name: file stem.
        formats: subset of :data:`FORMATS`.
        views: named views (default: all that the known pose allows).
        masks: names from :data:`torchssc.viz.volumes.MASKS`, applied to every volume.
        spec: the dataset (:mod:`torchssc.datasets`): class names and colours everywhere.
    Returns:
        the paths written.
    """
    spec = get_dataset_spec(spec)
    volumes = [(tag, v) for tag, v in (("gt", gt), ("pred", pred)) if v is not None]
    if not volumes:
        raise ValueError("export_scene needs a ground truth, a prediction or both")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown format(s) {bad}; choose from {', '.join(FORMATS)}")
    context = gt if gt is not None else pred
    for v in (pred, gt):  # fill the context's missing pieces from the other volume
        if v is not None:
            context = replace(
                context,
                pose=context.pose if context.pose is not None else v.pose,
                origin=context.origin if context.origin is not None else v.origin,
                intrinsics=context.intrinsics or v.intrinsics,
                label_weight=context.label_weight if context.label_weight is not None else v.label_weight,
            )
    volumes = [(tag, mask_volume(v, masks, context=context)) for tag, v in volumes]
    pose, origin = context.pose, context.origin
    intrinsics = context.intrinsics or NYU_INTRINSICS
    views = list(default_views(pose) if views is None else views)
    out_dir = Path(out_dir)
    written: list[Path] = []

    if "png" in formats:
        grid_origin = np.zeros(3) if origin is None else origin
        boxes = np.stack([content_bounds(v.labels, v.voxel, grid_origin) for _, v in volumes])
        bounds = np.stack([boxes[:, 0].min(axis=0), boxes[:, 1].max(axis=0)])  # same framing for all
        columns = [
            render_views(v.labels, views=views, size=size, pose=pose, origin=origin, voxel=v.voxel,
                         intrinsics=intrinsics, shading=shading, hide_ceiling_above=hide_ceiling_above,
                         bounds=bounds, spec=spec)
            for _, v in volumes
        ]
        titles = [_title(tag, v, len(volumes)) for tag, v in volumes]
        if len(volumes) == 1:
            image = compose([columns[0]], column_titles=views, spec=spec)
        else:
            image = compose([list(row) for row in zip(*columns)], column_titles=titles, row_titles=views, spec=spec)
        path = out_dir / f"{name}.png"
        save_png(path, image)
        written.append(path)
    mesh_origin = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    for fmt, writer in (("ply", write_ply), ("glb", write_glb)):
        if fmt not in formats:
            continue
        for tag, v in volumes:
            mesh = voxel_mesh(v.labels, v.voxel, mesh_origin, class_boundaries=class_boundaries,
                              palette=spec.palette_lut())
            stem = name if len(volumes) == 1 else f"{name}_{tag}"
            path = out_dir / f"{stem}.{fmt}"
            writer(path, mesh)
            written.append(path)
    if "html" in formats:
        path = out_dir / f"{name}.html"
        write_html(path, {_title(tag, v, len(volumes)): v.labels for tag, v in volumes}, title=f"torchssc: {name}",
                   voxel=volumes[0][1].voxel, origin=origin, spec=spec, pose=pose)
        written.append(path)
    return written


def _title(tag: str, volume: Volume, count: int) -> str:
    if count == 1 or volume.name == LIFTED_PRIOR:
        return volume.name
    return {"gt": "ground truth", "pred": "prediction"}[tag]


LIFTED_PRIOR = "lifted 2D prior"
"""Name (and panel title) of the volume ``torchssc viz --prior`` makes from a 2D prior."""
