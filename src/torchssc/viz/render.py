"""Headless software renderer for label volumes: exact voxel ray casting in numpy, PNG out.

No OpenGL and no display: every pixel casts one ray through the voxel grid, vectorised over all
rays at once. Each loop iteration moves every still-travelling ray out of the largest cube of
empty voxels around its current voxel (the cube's half-size is the voxel's chessboard distance
to the nearest occupied voxel, minus one — "empty-space skipping" with a distance field, as in
Cohen & Sheffer 1994, "Proximity clouds"); next to occupied voxels this is the one-voxel step of
Amanatides & Woo (1987). The loop runs at most ``D + H + W`` times. The first occupied voxel a
ray enters is what the pixel shows — exact, no sampling — and the face it entered through gives
a fixed per-direction shade.

Volumes follow :mod:`torchssc.geometry`: arrays ``(D, H, W)`` with axes [world X, world Z (up),
world Y]; voxel ``(a, b, c)`` spans ``origin + voxel * (a, c, b)`` to ``+ voxel`` in world
(x, y, z) metres. Labels 1..11 are drawn with :data:`~torchssc.geometry.PALETTE`; 0 (empty) and
255 (ignore) are never drawn.

Cameras use the SPEC's pinhole convention (x right, y down, z forward; pixel ``(u, v)`` is
centred on integer coordinates, as in :func:`torchssc.geometry.project`), or an orthographic
projection for maps.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from torchssc.geometry import (
    CLASS_NAMES,
    FINE_SHAPE,
    FINE_VOXEL,
    IGNORE_LABEL,
    LABEL_VOXEL,
    NUM_CLASSES,
    NYU_INTRINSICS,
    PALETTE,
    Intrinsics,
    grid_to_world,
)
from torchssc.io.atomic import atomic_path

BACKGROUND = (255, 255, 255)
"""Default background colour (white: not in the palette)."""

# Shade of each face direction, indexed by normal code ``2 * axis + (0 if + else 1)`` with the
# grid axes (a = world X, b = world Z up, c = world Y): tops brightest, bottoms darkest.
FACE_SHADE = np.array([0.80, 0.70, 1.00, 0.55, 0.90, 0.65], dtype=np.float32)
EDGE_SHADE = 0.72
"""Brightness factor of the thin outline drawn along voxel edges in ``"shaded"`` mode."""

VIEWS = ("camera", "oblique", "top")
"""Named views: the frame's own camera (needs a pose), a 3/4 view from above, a top-down map."""
VIEWS_FROM_ABOVE = ("oblique", "top")


def default_voxel(shape: Sequence[int]) -> float:
    """Voxel edge (m) assumed for a volume of ``shape``: 0.02 for the fine grid, else 0.08."""
    return FINE_VOXEL if tuple(shape) == FINE_SHAPE else LABEL_VOXEL


def check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Validate a ``(D, H, W)`` label volume with values 0..11 or 255; returns it as ``uint8``.

    Raises:
        ValueError: wrong number of dimensions or a value outside 0..11 and 255.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"{name}: expected a (D, H, W) volume, got shape {labels.shape}")
    if labels.size:
        bad = (labels < 0) | ((labels >= NUM_CLASSES) & (labels != IGNORE_LABEL))
        if bad.any():
            values = np.unique(labels[bad])[:10].tolist()
            raise ValueError(f"{name}: labels must be 0..{NUM_CLASSES - 1} or 255, found {values}")
    return labels.astype(np.uint8, copy=False)


def occupied(labels: np.ndarray) -> np.ndarray:
    """``(D, H, W) bool``: voxels that are drawn (labels 1..11; not 0, not 255)."""
    labels = np.asarray(labels)
    return (labels >= 1) & (labels < NUM_CLASSES)


# --------------------------------------------------------------------------------------------
# Cameras
@dataclass(frozen=True)
class Camera:
    """A pinhole or orthographic camera in world coordinates.

    Attributes:
        rotation: ``(3, 3)`` world-from-camera rotation; its columns are the camera's x (right),
            y (down) and z (forward) axes in world coordinates (as the top-left of a pose).
        position: ``(3,)`` world (x, y, z) of the camera centre (metres).
        fx, fy, cx, cy: pinhole intrinsics in pixels (ignored when ``ortho`` is set, except
            ``cx, cy``, the image point on the optical axis).
        width, height: image size in pixels.
        ortho: metres per pixel of an orthographic camera; ``None`` = pinhole.
    """

    rotation: np.ndarray
    position: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    ortho: float | None = None

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """One ray per pixel, row-major (``v * width + u``).

        Returns:
            ``(origins, directions)``, each ``(height * width, 3) float64`` world; directions
            have unit length, so ray parameters are metres.
        """
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        u, v = u.ravel(), v.ravel()
        rot = np.asarray(self.rotation, dtype=np.float64)
        pos = np.asarray(self.position, dtype=np.float64)
        if self.ortho is None:
            cam = np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u)], axis=1)
            dirs = cam @ rot.T
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            origins = np.broadcast_to(pos, dirs.shape).copy()
        else:
            cam = np.stack([(u - self.cx) * self.ortho, (v - self.cy) * self.ortho, np.zeros_like(u)], axis=1)
            origins = pos + cam @ rot.T
            dirs = np.broadcast_to(rot[:, 2] / np.linalg.norm(rot[:, 2]), origins.shape).copy()
        return origins, dirs


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``(3, 3)`` world-from-camera rotation of a camera at ``eye`` looking at ``target``.

    Camera axes follow the SPEC (x right, y down, z forward); ``up`` (world) appears upwards in
    the image. Raises ``ValueError`` when the view direction is parallel to ``up``.
    """
    eye, target, up = (np.asarray(x, dtype=np.float64) for x in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    norm = np.linalg.norm(right)
    if norm < 1e-9:
        raise ValueError("look_at: view direction is parallel to the up vector")
    right /= norm
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def box_extent(shape: Sequence[int], voxel: float) -> np.ndarray:
    """``(3,)`` world (x, y, z) size in metres of a grid of ``shape`` (axes X, Z, Y)."""
    return voxel * np.array([shape[0], shape[2], shape[1]], dtype=np.float64)


def grid_bounds(shape: Sequence[int], voxel: float, origin: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """``(2, 3)`` world (x, y, z) min and max corners of the whole grid."""
    lo = np.asarray(origin, dtype=np.float64)
    return np.stack([lo, lo + box_extent(shape, voxel)])


def content_bounds(labels: np.ndarray, voxel: float, origin: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """``(2, 3)`` world min and max corners of the occupied voxels (the whole grid if none)."""
    occ = occupied(labels)
    if not occ.any():
        return grid_bounds(labels.shape, voxel, origin)
    idx = np.argwhere(occ)
    corners = grid_to_world(np.stack([idx.min(axis=0), idx.max(axis=0) + 1]), origin, voxel)
    return np.stack([corners.min(axis=0), corners.max(axis=0)])


def camera_from_pose(
    pose: np.ndarray,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    size: tuple[int, int] = (480, 360),
) -> Camera:
    """The frame's own camera, with its intrinsics rescaled to an output ``size = (W, H)``
    (pixel centres on integer coordinates, as :func:`torchssc.geometry.project`).

    Args:
        pose: ``(4, 4)`` camera-to-world.
        intrinsics: the frame's intrinsics (for its own image size).
    """
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"pose must be (4, 4), got {pose.shape}")
    w, h = size
    # One scale for both axes (square pixels stay square); an output of another aspect ratio
    # shows the whole original image centred, with a little more around it on one axis.
    scale = min(w / intrinsics.width, h / intrinsics.height)
    pad_x, pad_y = (w - intrinsics.width * scale) / 2, (h - intrinsics.height * scale) / 2
    return Camera(
        rotation=pose[:3, :3], position=pose[:3, 3],
        fx=intrinsics.fx * scale, fy=intrinsics.fy * scale,
        cx=(intrinsics.cx + 0.5) * scale - 0.5 + pad_x, cy=(intrinsics.cy + 0.5) * scale - 0.5 + pad_y,
        width=w, height=h,
    )


def oblique_camera(
    bounds: np.ndarray,
    *,
    size: tuple[int, int] = (480, 360),
    azimuth: float = -120.0,
    elevation: float = 45.0,
    fov: float = 40.0,
) -> Camera:
    """A pinhole camera looking at the centre of ``bounds`` from above, framing all of it.

    Args:
        bounds: ``(2, 3)`` world (x, y, z) min and max corners of what to show.
        azimuth: degrees, direction from the centre to the eye in the world x-y plane
            (0 = +x, 90 = +y).
        elevation: degrees above the horizontal.
        fov: field of view (degrees) of the image's shorter side.
    """
    bounds = np.asarray(bounds, dtype=np.float64)
    centre = bounds.mean(axis=0)
    radius = max(float(np.linalg.norm(bounds[1] - bounds[0])) / 2, 1e-3)
    w, h = size
    dist = radius / math.sin(math.radians(fov) / 2)
    az, el = math.radians(azimuth), math.radians(elevation)
    eye = centre + dist * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    focal = (min(w, h) / 2) / math.tan(math.radians(fov) / 2)
    return Camera(look_at(eye, centre), eye, focal, focal, (w - 1) / 2, (h - 1) / 2, w, h)


def top_camera(bounds: np.ndarray, *, size: tuple[int, int] = (480, 360), margin: float = 1.08) -> Camera:
    """An orthographic camera looking straight down on ``bounds`` (``(2, 3)`` world min/max),
    world +y up in the image, all of it framed."""
    bounds = np.asarray(bounds, dtype=np.float64)
    extent = np.maximum(bounds[1] - bounds[0], 1e-3)
    centre = bounds.mean(axis=0)
    w, h = size
    scale = margin * max(extent[0] / w, extent[1] / h)
    rotation = np.stack([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]], axis=1)
    position = centre + np.array([0.0, 0.0, extent[2]])
    return Camera(rotation, position, 1.0, 1.0, (w - 1) / 2, (h - 1) / 2, w, h, ortho=scale)


def azimuth_behind(pose: np.ndarray | None, offset: float = -30.0) -> float:
    """Azimuth (degrees) of a point behind a posed camera, turned by ``offset``; -120 without pose."""
    if pose is None:
        return -120.0
    forward = np.asarray(pose, dtype=np.float64)[:3, 2]
    if math.hypot(forward[0], forward[1]) < 1e-6:
        return -120.0
    return math.degrees(math.atan2(-forward[1], -forward[0])) + offset


# --------------------------------------------------------------------------------------------
# Ray casting
@dataclass
class RayHits:
    """What each pixel sees. All arrays are ``(H, W)``.

    Attributes:
        label: ``uint8`` class of the first occupied voxel hit; 0 = nothing.
        depth: ``float64`` metres along the ray to the hit; ``inf`` = nothing.
        normal: ``int8`` face entered, ``2 * axis + (0 if the outward normal is + else 1)`` over the
            grid axes (a, b, c) = (X, Z, Y); -1 = nothing (or the camera sits in the voxel).
        voxel: ``(H, W, 3) int64`` grid index of the voxel hit; -1 = nothing.
    """

    label: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    voxel: np.ndarray


def raycast(
    labels: np.ndarray,
    camera: Camera,
    *,
    voxel: float | None = None,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    rays: tuple[np.ndarray, np.ndarray] | None = None,
) -> RayHits:
    """Cast one ray per pixel of ``camera`` into a label volume; exact first-hit voxels.

    Args:
        labels: ``(D, H, W)`` integer volume (axes X, Z, Y); 1..11 are solid, the rest empty.
        camera: the view.
        voxel: voxel edge in metres (default: :func:`default_voxel`).
        origin: ``(3,)`` world (x, y, z) of the grid's corner.
        rays: ``camera.rays()`` when already computed.
    Returns:
        :class:`RayHits` of shape ``(camera.height, camera.width)``.
    """
    labels = check_labels(labels)
    voxel = default_voxel(labels.shape) if voxel is None else float(voxel)
    shape = np.array(labels.shape, dtype=np.int64)
    origins_w, dirs_w = camera.rays() if rays is None else rays
    n = origins_w.shape[0]
    # Grid coordinates (a, b, c) = ((x - ox), (z - oz), (y - oy)) / voxel; with unit world
    # directions divided by voxel, the ray parameter stays in metres.
    o = (origins_w - np.asarray(origin, dtype=np.float64))[:, [0, 2, 1]] / voxel
    d = dirs_w[:, [0, 2, 1]] / voxel

    out_label = np.zeros(n, dtype=np.uint8)
    out_depth = np.full(n, np.inf)
    out_normal = np.full(n, -1, dtype=np.int8)
    out_voxel = np.full((n, 3), -1, dtype=np.int64)

    # Slab test against the whole box: entry/exit parameters, and the axis of entry.
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (0.0 - o) * inv
        t2 = (shape - o) * inv
    parallel = d == 0
    inside_slab = (o >= 0) & (o <= shape)
    tlo = np.where(parallel, np.where(inside_slab, -np.inf, np.inf), np.minimum(t1, t2))
    thi = np.where(parallel, np.where(inside_slab, np.inf, -np.inf), np.maximum(t1, t2))
    entry_axis = np.argmax(tlo, axis=1)
    t_enter = np.maximum(tlo.max(axis=1), 0.0)
    t_exit = thi.min(axis=1)
    live = np.flatnonzero(t_enter < t_exit)
    if live.size == 0 or not occupied(labels).any():
        return _hits(out_label, out_depth, out_normal, out_voxel, camera)

    o, d, inv, t = o[live], d[live], inv[live], t_enter[live]
    axis = np.where(tlo[live].max(axis=1) <= 0, -1, entry_axis[live])  # -1: starts inside the box
    g = np.clip(np.floor(o + d * t[:, None]).astype(np.int64), 0, shape - 1)
    # The entry face's own index can round to the wrong side: pin it from the direction.
    rows = np.flatnonzero(axis >= 0)
    g[rows, axis[rows]] = np.where(d[rows, axis[rows]] > 0, 0, shape[axis[rows]] - 1)

    # Empty-space skipping: a voxel whose chessboard distance to the nearest occupied voxel is
    # k has only empty voxels within k - 1 of it, so the ray may jump to the exit of that cube.
    # k = 1 is one ordinary grid step; k = 0 is a hit; -1 pads the grid (the ray has left).
    pshape = shape + 2
    dist = np.full(tuple(pshape), -1, dtype=np.int32)
    dist[1:-1, 1:-1, 1:-1] = skip_distance(occupied(labels))
    dist = dist.ravel()
    ps0, ps1 = int(pshape[1] * pshape[2]), int(pshape[2])
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    flat_labels = labels.ravel()
    plus = d > 0
    sgn = np.where(plus, 1, -1)
    # (target - o) * inv with inv = 0 and + inf where a ray is parallel to an axis: never NaN.
    never = np.where(d == 0, np.inf, 0.0)
    inv = np.where(d == 0, 0.0, inv)
    for _ in range(int(shape.sum()) + 3):  # every iteration moves each ray by >= 1 voxel
        k = dist[(g[:, 0] + 1) * ps0 + (g[:, 1] + 1) * ps1 + (g[:, 2] + 1)]
        done = k <= 0
        if done.any():
            h = np.flatnonzero(k == 0)
            if h.size:
                r = live[h]
                a = axis[h]
                out_label[r] = flat_labels[g[h] @ strides]
                out_depth[r] = t[h]
                out_normal[r] = np.where(a >= 0, 2 * a + plus[h, np.maximum(a, 0)], -1)
                out_voxel[r] = g[h]
            gone = np.flatnonzero(done)
            if gone.size == live.size:
                break
            if 4 * gone.size > live.size:  # drop finished rays once they are a quarter
                keep = np.flatnonzero(~done)
                live, g, t, axis, k = live[keep], g[keep], t[keep], axis[keep], k[keep]
                o, d, inv, never, plus, sgn = o[keep], d[keep], inv[keep], never[keep], plus[keep], sgn[keep]
            else:  # park them on the padding corner, where they stay (and never hit) until then
                g[gone] = -1
                k[gone] = 1
                inv[gone] = 0.0
                never[gone] = 0.0
        # Leave the empty cube [g - (k-1), g + k) through its nearest face.
        kk = k[:, None]
        lo = g - (kk - 1)
        hi = g + kk
        tt = (np.where(plus, hi, lo) - o) * inv + never
        axis = np.argmin(tt, axis=1)
        rows = np.arange(live.size)
        t = tt[rows, axis]
        gn = np.floor(o + d * t[:, None]).astype(np.int64)
        np.clip(gn, lo, hi - 1, out=gn)
        gn[rows, axis] += sgn[rows, axis]  # cross the exit face
        g = np.clip(gn, -1, shape, out=gn)  # beyond the grid: onto the padding, i.e. done
    return _hits(out_label, out_depth, out_normal, out_voxel, camera)


def skip_distance(occ: np.ndarray, *, exact_max: int = 1_000_000, block: int = 4) -> np.ndarray:
    """A lower bound of each voxel's chessboard distance to the nearest occupied voxel.

    Args:
        occ: ``(D, H, W) bool`` occupancy.
        exact_max: grids up to this many voxels get the exact distance
            (``scipy.ndimage.distance_transform_cdt``); larger ones use ``block``-sized blocks:
            a voxel in a block whose block-level distance is ``kb >= 1`` is at least
            ``block * (kb - 1) + 1`` from anything occupied (cheap and still a safe bound).
    Returns:
        ``(D, H, W) int32``: 0 on occupied voxels, >= 1 elsewhere (a large value when nothing
        is occupied).
    """
    occ = np.asarray(occ, dtype=bool)
    if not occ.any():
        return np.full(occ.shape, max(occ.shape, default=1) + 1, dtype=np.int32)
    if occ.size <= exact_max:
        return ndimage.distance_transform_cdt(~occ, metric="chessboard").astype(np.int32)
    pad = [(0, -s % block) for s in occ.shape]
    blocks = np.pad(occ, pad).reshape(
        occ.shape[0] // block + bool(pad[0][1]), block,
        occ.shape[1] // block + bool(pad[1][1]), block,
        occ.shape[2] // block + bool(pad[2][1]), block,
    ).any(axis=(1, 3, 5))
    kb = ndimage.distance_transform_cdt(~blocks, metric="chessboard").astype(np.int32)
    bound = np.maximum(block * (kb - 1) + 1, 1)
    for axis in range(3):
        bound = np.repeat(bound, block, axis=axis)
    bound = bound[: occ.shape[0], : occ.shape[1], : occ.shape[2]]
    return np.where(occ, 0, bound).astype(np.int32)


def _hits(label, depth, normal, vox, camera: Camera) -> RayHits:
    hw = (camera.height, camera.width)
    return RayHits(label.reshape(hw), depth.reshape(hw), normal.reshape(hw), vox.reshape(hw + (3,)))


def shade(
    hits: RayHits,
    camera: Camera,
    *,
    mode: str = "shaded",
    voxel: float = LABEL_VOXEL,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    background: Sequence[int] = BACKGROUND,
    rays: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Colour ray hits.

    Args:
        hits, camera: a :func:`raycast` result and its camera.
        mode: ``"flat"`` = exact palette colours (for tests and masks); ``"shaded"`` = a fixed
            shade per face direction (:data:`FACE_SHADE`) and a thin darker outline along voxel
            edges, so single voxels stay readable.
        voxel, origin: the grid the hits came from.
        background: RGB of pixels that hit nothing.
        rays: ``camera.rays()`` when already computed.
    Returns:
        ``(H, W, 3) uint8`` image.
    """
    if mode not in ("flat", "shaded"):
        raise ValueError(f"shading mode must be 'flat' or 'shaded', got {mode!r}")
    img = np.empty(hits.label.shape + (3,), dtype=np.uint8)
    img[:] = np.asarray(background, dtype=np.uint8)
    hit = hits.label > 0
    colour = PALETTE[hits.label[hit]].astype(np.float32)
    if mode == "shaded":
        factor = FACE_SHADE[np.maximum(hits.normal[hit], 0)].copy()
        # Outline: where the hit point is within about a pixel of an edge of its face.
        origins, dirs = camera.rays() if rays is None else rays
        flat = np.flatnonzero(hit.ravel())
        t = hits.depth.ravel()[flat]
        point = origins[flat] + dirs[flat] * t[:, None]
        g = (point - np.asarray(origin, dtype=np.float64))[:, [0, 2, 1]] / voxel
        local = g - hits.voxel.reshape(-1, 3)[flat]
        if camera.ortho is None:
            footprint = t / max(camera.fx, 1e-9) / voxel
        else:
            footprint = np.full_like(t, camera.ortho / voxel)
        normal_axis = np.maximum(hits.normal[hit], 0) // 2
        # A face seen at a grazing angle is squeezed on screen by |cos| of the angle.
        cos = np.abs(dirs[flat][:, [0, 2, 1]][np.arange(len(flat)), normal_axis])
        squeezed = footprint / np.maximum(cos, 1e-3)
        width = np.clip(0.8 * footprint, 0.03, 0.25)
        nearest = np.minimum(local, 1.0 - local)  # distance to the slab faces, per axis
        nearest[np.arange(len(flat)), normal_axis] = np.inf  # in-face axes only
        edge = (nearest.min(axis=1) < width) & (squeezed < 0.3)  # no outline under ~3 px/voxel
        factor[edge] *= EDGE_SHADE
        colour *= factor[:, None]
    img[hit] = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    return img


# --------------------------------------------------------------------------------------------
# Views
def make_camera(
    view: str | Camera,
    bounds: np.ndarray,
    *,
    pose: np.ndarray | None = None,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    size: tuple[int, int] = (480, 360),
) -> Camera:
    """The :class:`Camera` for a named view (see :data:`VIEWS`) or ``view`` itself.

    Args:
        bounds: ``(2, 3)`` world min/max corners that ``"oblique"`` and ``"top"`` frame.
        pose: ``(4, 4)`` camera-to-world: needed by ``"camera"``; ``"oblique"`` then looks from
            behind-above that camera (turned 30 degrees).
    """
    if isinstance(view, Camera):
        return view
    if view == "camera":
        if pose is None:
            raise ValueError("view 'camera' needs the frame's pose (and origin)")
        return camera_from_pose(pose, intrinsics, size)
    if view == "oblique":
        return oblique_camera(bounds, size=size, azimuth=azimuth_behind(pose))
    if view == "top":
        return top_camera(bounds, size=size)
    raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")


def default_views(pose: np.ndarray | None) -> tuple[str, ...]:
    """All of :data:`VIEWS` when a pose is known, else the views that need none."""
    return VIEWS if pose is not None else VIEWS_FROM_ABOVE


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
    Returns:
        ``(H, W, 3) uint8`` image.
    """
    labels = check_labels(labels)
    voxel = default_voxel(labels.shape) if voxel is None else float(voxel)
    origin = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    if origin.shape != (3,):
        raise ValueError(f"origin must have 3 values (world x, y, z), got shape {origin.shape}")
    if bounds is None:
        bounds = content_bounds(labels, voxel, origin)
    camera = make_camera(view, bounds, pose=pose, intrinsics=intrinsics, size=size)
    if hide_ceiling_above and isinstance(view, str) and view in VIEWS_FROM_ABOVE:
        labels = np.where(labels == CLASS_NAMES.index("ceiling"), 0, labels).astype(np.uint8)
    rays = camera.rays()
    hits = raycast(labels, camera, voxel=voxel, origin=origin, rays=rays)
    return shade(hits, camera, mode=shading, voxel=voxel, origin=origin, background=background, rays=rays)


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
) -> list[np.ndarray]:
    """Render several views (default :func:`default_views`); see :func:`render_view`.

    Returns:
        one ``(H, W, 3) uint8`` image per view.
    """
    views = default_views(pose) if views is None else views
    return [
        render_view(labels, v, size=size, pose=pose, origin=origin, voxel=voxel, intrinsics=intrinsics,
                    shading=shading, hide_ceiling_above=hide_ceiling_above, bounds=bounds)
        for v in views
    ]


# --------------------------------------------------------------------------------------------
# Composition: grids of panels, titles, legend
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def legend(width: int, classes: Sequence[int] | None = None, *, font_size: int = 14) -> np.ndarray:
    """A class legend strip: a swatch of :data:`PALETTE` and the name from :data:`CLASS_NAMES`.

    Args:
        width: strip width in pixels; entries wrap onto as many rows as needed.
        classes: class ids to list (default 1..11).
    Returns:
        ``(h, width, 3) uint8`` image on the default background.
    """
    classes = list(range(1, NUM_CLASSES)) if classes is None else list(classes)
    font = _font(font_size)
    pad, swatch = 8, font_size
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [swatch + 6 + int(math.ceil(probe.textlength(CLASS_NAMES[c], font=font))) + 16 for c in classes]
    rows, x = [[]], pad
    for c, w in zip(classes, widths):
        if x + w > width - pad and rows[-1]:
            rows.append([])
            x = pad
        rows[-1].append((c, x))
        x += w
    line = swatch + 8
    img = Image.new("RGB", (width, pad * 2 + line * len(rows)), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(rows):
        y = pad + r * line
        for c, x0 in row:
            draw.rectangle([x0, y, x0 + swatch, y + swatch], fill=tuple(int(v) for v in PALETTE[c]), outline=(60, 60, 60))
            draw.text((x0 + swatch + 6, y + swatch / 2), CLASS_NAMES[c], fill=(30, 30, 30), font=font, anchor="lm")
    return np.asarray(img)


def _title(image: np.ndarray, text: str, font_size: int = 14) -> np.ndarray:
    h, w = image.shape[:2]
    bar = font_size + 10
    img = Image.new("RGB", (w, h + bar), BACKGROUND)
    img.paste(Image.fromarray(image), (0, bar))
    ImageDraw.Draw(img).text((w / 2, bar / 2), text, fill=(30, 30, 30), font=_font(font_size), anchor="mm")
    return np.asarray(img)


def compose(
    panels: Sequence[Sequence[np.ndarray]],
    *,
    column_titles: Sequence[str] | None = None,
    row_titles: Sequence[str] | None = None,
    with_legend: bool = True,
    gap: int = 4,
) -> np.ndarray:
    """Lay out ``panels[row][column]`` (all ``(H, W, 3) uint8``, same size) in a grid.

    Titles go above the columns and into a small corner label of each row's first panel; a class
    legend is added below. Returns ``(H', W', 3) uint8``.
    """
    if not panels or not panels[0]:
        raise ValueError("compose needs at least one panel")
    h, w = panels[0][0].shape[:2]
    for row in panels:
        for p in row:
            if p.shape != (h, w, 3):
                raise ValueError(f"all panels must be ({h}, {w}, 3), got {p.shape}")
    n_rows, n_cols = len(panels), max(len(r) for r in panels)
    canvas = Image.new("RGB", (n_cols * w + (n_cols + 1) * gap, n_rows * h + (n_rows + 1) * gap), (200, 200, 200))
    font = _font(13)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(panels):
        for c, p in enumerate(row):
            x, y = gap + c * (w + gap), gap + r * (h + gap)
            canvas.paste(Image.fromarray(p), (x, y))
            if row_titles is not None and c == 0:
                draw.text((x + 6, y + 4), row_titles[r], fill=(90, 90, 90), font=font)
    out = np.asarray(canvas)
    if column_titles is not None:
        bar = np.asarray(Image.new("RGB", (out.shape[1], 1), BACKGROUND))
        titles = Image.new("RGB", (out.shape[1], 26), BACKGROUND)
        td = ImageDraw.Draw(titles)
        for c, text in enumerate(column_titles[:n_cols]):
            td.text((gap + c * (w + gap) + w / 2, 13), text, fill=(30, 30, 30), font=_font(16), anchor="mm")
        out = np.concatenate([np.asarray(titles), bar, out], axis=0)
    if with_legend:
        out = np.concatenate([out, legend(out.shape[1])], axis=0)
    return out


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
    return _title(out, title, 16) if title else out


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an ``(H, W, 3) uint8`` image as PNG, atomically."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{path}: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", optimize=True)
