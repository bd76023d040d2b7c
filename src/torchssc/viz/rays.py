"""Exact voxel ray casting in numpy, and the colouring of what the rays hit.

No OpenGL and no display: every pixel casts one ray through the voxel grid, vectorised over all
rays at once. Each loop iteration moves every still-travelling ray out of the largest cube of
empty voxels around its current voxel (the cube's half-size is the voxel's chessboard distance
to the nearest occupied voxel, minus one — "empty-space skipping" with a distance field, as in
Cohen & Sheffer 1994, "Proximity clouds"); next to occupied voxels this is the one-voxel step of
Amanatides & Woo (1987). The loop runs at most ``D + H + W`` times. The first occupied voxel a
ray enters is what the pixel shows — exact, no sampling — and the face it entered through gives
a fixed per-direction shade (:func:`shade_hits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from torchssc.geometry import LABEL_VOXEL, PALETTE
from torchssc.viz.camera import Camera
from torchssc.viz.labels import BACKGROUND, check_labels, default_voxel, occupied

# Shade of each face direction, indexed by normal code ``2 * axis + (0 if + else 1)`` with the
# grid axes (a = world X, b = world Z up, c = world Y): tops brightest, bottoms darkest.
FACE_SHADE = np.array([0.80, 0.70, 1.00, 0.55, 0.90, 0.65], dtype=np.float32)
EDGE_SHADE = 0.72
"""Brightness factor of the thin outline drawn along voxel edges in ``"shaded"`` mode."""


@dataclass
class VoxelHits:
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


def cast_rays(
    labels: np.ndarray,
    camera: Camera,
    *,
    voxel: float | None = None,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    rays: tuple[np.ndarray, np.ndarray] | None = None,
) -> VoxelHits:
    """Cast one ray per pixel of ``camera`` into a label volume; exact first-hit voxels.

    Args:
        labels: ``(D, H, W)`` integer volume (axes X, Z, Y); 1..11 are solid, the rest empty.
        camera: the view.
        voxel: voxel edge in metres (default: :func:`default_voxel`).
        origin: ``(3,)`` world (x, y, z) of the grid's corner.
        rays: ``camera.rays()`` when already computed.
        palette: ``(>= num_classes, 3) uint8`` colour per class id (the dataset spec's
            ``palette``; NYU's by default).
    Returns:
        :class:`VoxelHits` of shape ``(camera.height, camera.width)``.
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


def _hits(label, depth, normal, vox, camera: Camera) -> VoxelHits:
    hw = (camera.height, camera.width)
    return VoxelHits(label.reshape(hw), depth.reshape(hw), normal.reshape(hw), vox.reshape(hw + (3,)))


def shade_hits(
    hits: VoxelHits,
    camera: Camera,
    *,
    mode: str = "shaded",
    voxel: float = LABEL_VOXEL,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    background: Sequence[int] = BACKGROUND,
    rays: tuple[np.ndarray, np.ndarray] | None = None,
    palette: np.ndarray = PALETTE,
) -> np.ndarray:
    """Colour ray hits.

    Args:
        hits, camera: a :func:`cast_rays` result and its camera.
        mode: ``"flat"`` = exact palette colours (for tests and masks); ``"shaded"`` = a fixed
            shade per face direction (:data:`FACE_SHADE`) and a thin darker outline along voxel
            edges, so single voxels stay readable.
        voxel, origin: the grid the hits came from.
        background: RGB of pixels that hit nothing.
        rays: ``camera.rays()`` when already computed.
        palette: ``(>= num_classes, 3) uint8`` colour per class id (the dataset spec's
            ``palette``; NYU's by default).
    Returns:
        ``(H, W, 3) uint8`` image.
    """
    if mode not in ("flat", "shaded"):
        raise ValueError(f"shading mode must be 'flat' or 'shaded', got {mode!r}")
    img = np.empty(hits.label.shape + (3,), dtype=np.uint8)
    img[:] = np.asarray(background, dtype=np.uint8)
    hit = hits.label > 0
    colour = np.asarray(palette)[hits.label[hit]].astype(np.float32)
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
