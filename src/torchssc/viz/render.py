"""Headless software renders of label volumes, PNG out: one view, several, or two volumes side by side.

The pieces: :mod:`~torchssc.viz.labels` (checks, what is drawn), :mod:`~torchssc.viz.camera`
(the views), :mod:`~torchssc.viz.rays` (exact voxel ray casting and shading) and
:mod:`~torchssc.viz.compose` (panels, titles, legend, PNG files).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.geometry import NYU_INTRINSICS, Intrinsics
from torchssc.viz.camera import VIEWS_FROM_ABOVE, Camera, content_bounds, default_views, make_camera
from torchssc.viz.compose import add_title, compose
from torchssc.viz.labels import BACKGROUND, check_labels, default_voxel
from torchssc.viz.rays import cast_rays, shade_hits

def render_view(
    labels: np.ndarray,
    view: str | Camera = "oblique",
    *,
    size: tuple[int, int] = (480, 360),
    pose: np.ndarray | None = None,
    origin: Sequence[float] | None = None,
    voxel: float | None = None,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    shading: str = "shaded",
    hide_ceiling_above: bool = True,
    bounds: np.ndarray | None = None,
    background: Sequence[int] = BACKGROUND,
    spec: DatasetSpec | str = "nyu",
) -> np.ndarray:
    """Render one view of a label volume.

    Args:
        labels: ``(D, H, W)`` uint8-compatible, 0..11 or 255 (axes X, Z, Y).
        view: a name from :data:`VIEWS` or a :class:`Camera`.
        size: output ``(W, H)`` pixels.
        pose: ``(4, 4)`` camera-to-world (for ``"camera"``; orients ``"oblique"``).
        origin: ``(3,)`` world corner of the grid (default (0, 0, 0); give it with a pose).
        voxel: voxel edge in metres (default :func:`default_voxel`).
        shading: ``"shaded"`` or ``"flat"`` (exact palette colours).
        hide_ceiling_above: leave out the ceiling class in the views from above
            (:data:`VIEWS_FROM_ABOVE`) so the room's inside shows.
        bounds: ``(2, 3)`` world min/max corners framed by ``"oblique"`` and ``"top"``
            (default :func:`content_bounds` of ``labels``; pass the same bounds to compare
            volumes view for view).
        spec: the dataset (:mod:`torchssc.datasets`): its classes and colours.
    Returns:
        ``(H, W, 3) uint8`` image.
    """
    spec = get_dataset_spec(spec)
    labels = check_labels(labels, num_classes=spec.num_classes)
    voxel = default_voxel(labels.shape) if voxel is None else float(voxel)
    origin = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    if origin.shape != (3,):
        raise ValueError(f"origin must have 3 values (world x, y, z), got shape {origin.shape}")
    if bounds is None:
        bounds = content_bounds(labels, voxel, origin)
    camera = make_camera(view, bounds, pose=pose, intrinsics=intrinsics, size=size)
    if hide_ceiling_above and isinstance(view, str) and view in VIEWS_FROM_ABOVE and "ceiling" in spec.classes:
        labels = np.where(labels == spec.classes.index("ceiling"), 0, labels).astype(np.uint8)
    rays = camera.rays()
    hits = cast_rays(labels, camera, voxel=voxel, origin=origin, rays=rays)
    return shade_hits(hits, camera, mode=shading, voxel=voxel, origin=origin, background=background, rays=rays,
                      palette=spec.palette_lut())


def render_views(
    labels: np.ndarray,
    *,
    views: Sequence[str | Camera] | None = None,
    size: tuple[int, int] = (480, 360),
    pose: np.ndarray | None = None,
    origin: Sequence[float] | None = None,
    voxel: float | None = None,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    shading: str = "shaded",
    hide_ceiling_above: bool = True,
    bounds: np.ndarray | None = None,
    spec: DatasetSpec | str = "nyu",
) -> list[np.ndarray]:
    """Render several views (default :func:`default_views`); see :func:`render_view`.

    Returns:
        one ``(H, W, 3) uint8`` image per view.
    """
    views = default_views(pose) if views is None else views
    return [
        render_view(labels, v, size=size, pose=pose, origin=origin, voxel=voxel, intrinsics=intrinsics,
                    shading=shading, hide_ceiling_above=hide_ceiling_above, bounds=bounds, spec=spec)
        for v in views
    ]


def render_comparison(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    views: Sequence[str | Camera] | None = None,
    size: tuple[int, int] = (480, 360),
    pose: np.ndarray | None = None,
    origin: Sequence[float] | None = None,
    voxel: float | None = None,
    pred_voxel: float | None = None,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    shading: str = "shaded",
    titles: tuple[str, str] = ("ground truth", "prediction"),
    hide_ceiling_above: bool = True,
) -> np.ndarray:
    """Ground truth and prediction side by side: one row per view, a legend below.

    Args:
        gt, pred: ``(D, H, W)`` label volumes of the same box (their resolutions may differ:
            e.g. a 240x144x240 ground truth beside a 60x36x60 prediction; give ``voxel`` and
            ``pred_voxel`` when they are not the defaults of :func:`default_voxel`).
        Others as :func:`render_views`.
    Returns:
        ``(H', W', 3) uint8`` image.
    """
    views = default_views(pose) if views is None else views
    origin = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    gt, pred = check_labels(gt, "gt"), check_labels(pred, "pred")
    boxes = [content_bounds(v, default_voxel(v.shape) if vx is None else vx, origin)
             for v, vx in ((gt, voxel), (pred, pred_voxel))]
    bounds = np.stack([np.minimum(boxes[0][0], boxes[1][0]), np.maximum(boxes[0][1], boxes[1][1])])
    common = dict(views=views, size=size, pose=pose, origin=origin, intrinsics=intrinsics,
                  shading=shading, hide_ceiling_above=hide_ceiling_above, bounds=bounds)
    left = render_views(gt, voxel=voxel, **common)
    right = render_views(pred, voxel=pred_voxel, **common)
    names = [v if isinstance(v, str) else "custom" for v in views]
    return compose([[a, b] for a, b in zip(left, right)], column_titles=list(titles), row_titles=names)


def render_panel(
    labels: np.ndarray,
    *,
    title: str | None = None,
    views: Sequence[str | Camera] | None = None,
    **kwargs,
) -> np.ndarray:
    """One volume's views in a row with a legend below (keywords as :func:`render_views`)."""
    views = default_views(kwargs.get("pose")) if views is None else views
    images = render_views(labels, views=views, **kwargs)
    names = [v if isinstance(v, str) else "custom" for v in views]
    out = compose([images], column_titles=names)
    return add_title(out, title, 16) if title else out
