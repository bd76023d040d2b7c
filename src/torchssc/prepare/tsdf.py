"""Fine-grid TSDF from one depth image: SSCNet's algorithm (docs/data.md), exact and vectorised.

Definition (grid axes and corner convention as in :mod:`torchssc.geometry`):

1. *Surface voxels*: every pixel with depth > 0 is back-projected, moved to world by the pose
   and binned with ``floor((p_world - origin) / voxel)``; voxels hit are "surface".
2. *Observed*: every other voxel's **corner** (no +0.5) is moved into the camera and projected
   with round-half-away-from-zero; it is observed when ``z_cam > 0``, the pixel lies inside the
   image and the depth there is in ``[0.5, 8.0]`` m.
3. Observed voxels get ``sign * min(1, dist / 12)``: ``sign = +1`` if ``|depth - z_cam| < 1e-4``
   else ``sign(depth - z_cam)`` (+ in front of the measured surface, - behind it), and ``dist``
   the Euclidean distance in voxels to the nearest surface voxel. Surface voxels are 0.
4. Unobserved voxels get a fill value (:meth:`FineTSDF.filled`): 0.0 for the TorchSSC ``arr_0``,
   1.0 before SSCNet's flip (:func:`flip_tsdf`).

Arithmetic: the released TorchSSC NYU files were computed by a CUDA kernel in float32 with
fused multiply-adds, and this module reproduces them bit for bit (``docs/data.md``). Depth is
float32; the pose, origin, voxel size and intrinsics are rounded to float32; a pixel is
back-projected as ``x = (u - cx) * d / fx`` (float32, left to right) and moved to world with
``fma(r2, z, fma(r1, y, r0 * x)) + t``; a voxel corner is ``fma(i, voxel, origin) - t`` per axis,
moved into the camera with the same fused dot product (rows of ``R^T``) and projected with
``roundf(fma(fx, x / z, cx))``; the distance magnitude is ``sqrtf(d²) / 12`` in float32
(:mod:`torchssc.prepare.float32` emulates the fused operations exactly).

How it is made fast without changing the result:

* Camera coordinates of voxel corners are affine in the voxel index, so each is a sum of 1-D
  terms, evaluated in float64 from the float32-rounded inputs. float64 differs from the
  kernel's float32 by far less than a bound computed from the magnitudes involved
  (:func:`_float32_error_bound`), so only the voxels whose decision lies within that bound of a
  threshold (a pixel boundary, ``z = 0``, ``depth - z = -1e-4``) are recomputed in the exact
  float32 arithmetic (:func:`_observe_exact`, about 1% of the view). ``round_half_away(fx * x / z + cx)`` equals ``trunc(q) - 1`` with
  ``q = (fx * x + (cx + 1.5) * z) / z`` whenever ``q > 1`` (the same number, float64), so one
  division per axis and a lookup in a depth table padded by a one-pixel "outside" border give
  the pixel, its depth and its validity. The grid is processed a few slabs at a time so the
  temporaries stay in cache, each slab only inside a conservative box of the view frustum; the
  sign is a lookup by observation state.
* The distance is only needed up to the truncation (12 voxels). The squared distance is
  separable (``min da² + db² + dc²`` = three 1-D min-plus passes), so it is computed exactly in
  integers, capped at ``12² + 1``, on the bounding box of the surface voxels grown by 12 voxels
  (every voxel outside it is farther than 12 from every surface voxel, hence exactly 1); the
  magnitude ``min(1, sqrt(d²) / 12)`` is a lookup by ``d²`` inside that box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from torchssc.geometry import (
    FINE_SHAPE,
    FINE_VOXEL,
    NYU_INTRINSICS,
    Intrinsics,
)
from torchssc.prepare.float32 import fma32, roundf

TRUNCATION_VOXELS = 12
"""SSCNet's truncation: 0.24 m at 0.02 m voxels."""
MIN_DEPTH = 0.5
"""Smallest depth (m) that makes a voxel observed."""
MAX_DEPTH = 8.0
"""Largest depth (m) that makes a voxel observed."""
SIGN_EPS = 1e-4
"""``|depth - z_cam|`` below this counts as "in front" (sign +1), as in SSCNet."""
FLIP_EPS = 0.001
"""SSCNet's flip floor: free/unknown voxels become 0.001, occluded ones -0.001."""


# Per-voxel observation state (FineTSDF.state), ordered so that a larger value is "more seen".
STATE_OUTSIDE_VIEW = 0
"""Behind the camera or projecting outside the image."""
STATE_NO_DEPTH = 1
"""In view, but the depth at its pixel is missing or outside [0.5, 8] m."""
STATE_FRONT = 2
"""Observed, in front of the measured surface (sign +1)."""
STATE_BEHIND = 3
"""Observed, behind the measured surface (sign -1, occluded)."""
STATE_SURFACE = 4
"""Contains a back-projected depth point."""


@dataclass
class FineTSDF:
    """Core TSDF result on a grid of shape ``(D, H, W)`` (axes per :mod:`torchssc.geometry`).

    Attributes:
        distance: ``(D, H, W) float32`` signed truncated distance ``sign * min(1, dist / T)`` on
            observed voxels, 0 on surface voxels, 0 on unobserved voxels.
        state: ``(D, H, W) uint8`` observation state of every voxel, one of ``STATE_*``
            (0 outside view, 1 in view without valid depth, 2 observed in front, 3 observed
            behind, 4 surface).
    """

    distance: np.ndarray
    state: np.ndarray

    @property
    def surface(self) -> np.ndarray:
        """``(D, H, W) bool``: voxels containing a back-projected depth point."""
        return self.state == STATE_SURFACE

    @property
    def observed(self) -> np.ndarray:
        """``(D, H, W) bool``: surface voxels plus the voxels observed by step 2."""
        return self.state >= STATE_FRONT

    @property
    def in_view(self) -> np.ndarray:
        """``(D, H, W) bool``: non-surface voxels in front of the camera projecting inside the
        image, whatever the depth there (observed or not)."""
        return (self.state >= STATE_NO_DEPTH) & (self.state <= STATE_BEHIND)

    def filled(self, fill: float) -> np.ndarray:
        """``(D, H, W) float32``: :attr:`distance` with unobserved voxels set to ``fill``."""
        out = self.distance.copy()
        if fill != 0.0:
            out[self.state < STATE_FRONT] = np.float32(fill)
        return out

    def sscnet_input(self) -> np.ndarray:
        """``(D, H, W) float32`` SSCNet's network input: fill 1.0, then :func:`flip_tsdf`."""
        out = flip_tsdf(self.distance)
        np.copyto(out, np.float32(FLIP_EPS), where=self.state < STATE_FRONT)  # flip of 1.0
        return out


def flip_tsdf(values: np.ndarray) -> np.ndarray:
    """SSCNet's flipped TSDF ``s * max(0.001, 1 - |v|)``, ``s = 1`` where ``|v| < 0.001`` else sign(v).

    Args:
        values: any shape, signed truncated distances in [-1, 1].
    Returns:
        ``float32`` array of the same shape: surface 1, free/unknown 0.001, occluded -0.001.
    """
    v = np.asarray(values, dtype=np.float32)
    out = np.abs(v)
    np.subtract(np.float32(1.0), out, out=out)
    np.maximum(out, np.float32(FLIP_EPS), out=out)
    # s = -1 exactly where |v| >= 0.001 and v < 0
    np.negative(out, out=out, where=v <= -np.float32(FLIP_EPS))
    return out


def _check_inputs(depth, pose, origin, intrinsics: Intrinsics):
    """Checked ``(depth (H, W) float32, pose (4, 4) float64, origin (3,) float64)``."""
    depth = np.asarray(depth)
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(
            f"depth must be (H, W) = ({intrinsics.height}, {intrinsics.width}) to match the "
            f"intrinsics, got {depth.shape}"
        )
    if not np.all(np.isfinite(depth)):
        raise ValueError("depth contains non-finite values")
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"pose must be a 4x4 camera-to-world matrix, got shape {pose.shape}")
    origin = np.asarray(origin, dtype=np.float64).reshape(-1)
    if origin.shape != (3,):
        raise ValueError(f"origin must have 3 values (world x, y, z), got {origin.size}")
    return depth.astype(np.float32, copy=False), pose, origin


def _kernel_inputs(pose, origin, intrinsics: Intrinsics, voxel: float):
    """The kernel's float32 constants: ``(rot (3, 3), t (3,), origin (3,), voxel, fx, fy, cx, cy)``."""
    pose32 = np.asarray(pose, dtype=np.float32)
    f = np.float32
    return (pose32[:3, :3], pose32[:3, 3], np.asarray(origin, dtype=np.float32), f(voxel),
            f(intrinsics.fx), f(intrinsics.fy), f(intrinsics.cx), f(intrinsics.cy))


def depth_hits(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    *,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    voxel: float = FINE_VOXEL,
    shape: tuple[int, int, int] = FINE_SHAPE,
) -> tuple[np.ndarray, np.ndarray]:
    """The voxel of every back-projected depth point inside the grid (step 1).

    The kernel's float32 arithmetic (module docstring): ``x = (u - cx) * d / fx``,
    ``y = (v - cy) * d / fy``, ``z = d``; ``world = fma(r2, z, fma(r1, y, r0 * x)) + t`` per row
    ``r`` of the rotation; voxel ``floor((world - origin) / voxel)``.

    Args:
        depth: ``(H, W)`` metres, 0 = missing (computed as float32). pose: ``(4, 4)``
            camera-to-world. origin: ``(3,)`` world corner of the grid. voxel: edge (m).
            shape: grid shape.
    Returns:
        ``(pixels, voxels)``: ``(N,) int64`` flat pixel indices ``v * W + u`` in increasing
        order, and ``(N, 3) int64`` voxel indices ``(a, b, c)`` inside ``shape``.
    """
    depth, pose, origin = _check_inputs(depth, pose, origin, intrinsics)
    rot, t, origin32, unit, fx, fy, cx, cy = _kernel_inputs(pose, origin, intrinsics, voxel)
    pixels = np.flatnonzero(depth.ravel() > 0)
    d = depth.ravel()[pixels].astype(np.float32)
    v, u = np.divmod(pixels, intrinsics.width)
    x = (u.astype(np.float32) - cx) * d / fx
    y = (v.astype(np.float32) - cy) * d / fy
    # world axis per array axis (X, Z, Y), then the grid coordinate
    cells, inside = [], np.ones(pixels.size, dtype=bool)
    for axis, world_axis in enumerate((0, 2, 1)):
        r = rot[world_axis]
        world = fma32(r[2], d, fma32(r[1], y, r[0] * x)) + t[world_axis]
        coord = np.floor((world - origin32[world_axis]) / unit)
        inside &= (coord >= 0) & (coord < shape[axis])
        cells.append(coord)
    voxels = np.stack([c[inside] for c in cells], axis=1).astype(np.int64)
    return pixels[inside], voxels


def surface_voxels(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    *,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    voxel: float = FINE_VOXEL,
    shape: tuple[int, int, int] = FINE_SHAPE,
) -> np.ndarray:
    """Voxels hit by back-projected depth points (step 1): ``shape`` bool array.

    Args: as :func:`depth_hits`.
    """
    _, voxels = depth_hits(depth, pose, origin, intrinsics=intrinsics, voxel=voxel, shape=shape)
    surface = np.zeros(shape, dtype=bool)
    surface[voxels[:, 0], voxels[:, 1], voxels[:, 2]] = True
    return surface


def _feasible_range(terms, coefs, size: int) -> tuple[int, int]:
    """Indices ``i`` in ``[0, size)`` where every ``terms[k] + coefs[k] * i > 0`` may hold.

    ``terms[k]`` is the largest value the other variables can contribute to constraint ``k``,
    so the result is a superset of the feasible indices; it is grown by one index on each side
    (far more than float rounding can move a boundary) and may be empty (``lo >= hi``).
    """
    lo, hi = 0.0, float(size - 1)
    for term, c in zip(terms, coefs):
        if c > 0:
            lo = max(lo, -term / c)
        elif c < 0:
            hi = min(hi, -term / c)
        elif term <= 0:
            return 0, 0
    if lo > hi + 2.0:
        return 0, 0
    return max(math.floor(lo) - 1, 0), min(math.ceil(hi) + 2, size)


def _projection_affine(
    pose: np.ndarray, origin: np.ndarray, intrinsics: Intrinsics, voxel: float
) -> np.ndarray:
    """``(3, 4)`` coefficients ``(const, a, b, c)`` of the corner of voxel ``(a, b, c)``'s
    ``fx x + (cx + 1.5) z``, ``fy y + (cy + 1.5) z`` and ``z`` (camera coordinates), in float64
    from the kernel's float32-rounded inputs.

    The camera coordinates of the corner are ``R^T (origin + voxel * (a, c, b) - t)`` =
    ``base + a * voxel * R[0] + b * voxel * R[2] + c * voxel * R[1]`` (rows of R). Dividing the
    first two by z gives ``qu = fx x / z + cx + 1.5`` and ``qv``; ``round_half_away(fx x / z + cx)
    = trunc(qu) - 1`` whenever ``qu > 1``, so a corner is in view iff ``z > 0``,
    ``1 < qu < W + 1`` and ``1 < qv < H + 1``, and ``trunc(qu)``, ``trunc(qv)`` index a depth
    table padded by one pixel on each side, whose border marks "outside the image".
    """
    rot, t, origin, voxel, fx, fy, cx, cy = (
        np.asarray(x, dtype=np.float64) for x in _kernel_inputs(pose, origin, intrinsics, voxel)
    )
    rows = np.array([[fx, 0.0, cx + 1.5], [0.0, fy, cy + 1.5], [0.0, 0.0, 1.0]])
    base = rot.T @ (origin - t)
    steps = (voxel * rot[0], voxel * rot[2], voxel * rot[1])  # per a, b, c
    return np.stack([rows @ base] + [rows @ step for step in steps], axis=1)


def _float32_error_bound(pose, origin, intrinsics: Intrinsics, voxel: float, shape) -> float:
    """A bound (m) on how far the kernel's float32 camera coordinates of a voxel corner can be
    from the exact ones: about 6 roundings, each at most ``2^-24`` of a magnitude <= ``2 M``,
    where ``M`` bounds the world coordinates involved; doubled for safety."""
    rot, t, origin32, unit, *_ = _kernel_inputs(pose, origin, intrinsics, voxel)
    magnitude = float(np.abs(origin32).max()) + float(unit) * max(shape) + float(np.abs(t).max())
    return 24.0 * 2.0 ** -24 * magnitude


def _observe_exact(
    index: np.ndarray, depth: np.ndarray, pose, origin, intrinsics: Intrinsics, voxel: float
) -> np.ndarray:
    """Steps 2-3 for a few voxels, in the kernel's exact float32 arithmetic (module docstring).

    Args:
        index: ``(N, 3) int64`` voxel indices ``(a, b, c)``. depth: ``(H, W) float32``.
    Returns:
        ``(N,) uint8`` ``STATE_*`` codes 0..3.
    """
    rot, t, origin32, unit, fx, fy, cx, cy = _kernel_inputs(pose, origin, intrinsics, voxel)
    a, b, c = (index[:, k].astype(np.float32) for k in range(3))
    px = fma32(a, unit, origin32[0]) - t[0]  # world X from a, Y from c, Z from b
    py = fma32(c, unit, origin32[1]) - t[1]
    pz = fma32(b, unit, origin32[2]) - t[2]
    x, y, z = (fma32(rot[2, k], pz, fma32(rot[1, k], py, rot[0, k] * px)) for k in range(3))
    front = z > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        u = roundf(np.where(front, fma32(fx, x / z, cx), -1))
        v = roundf(np.where(front, fma32(fy, y / z, cy), -1))
    in_view = front & (u >= 0) & (u < intrinsics.width) & (v >= 0) & (v < intrinsics.height)
    d = depth[v[in_view], u[in_view]]
    behind = (d - z[in_view]).astype(np.float64) <= -SIGN_EPS  # float32 difference
    state = np.full(len(index), STATE_OUTSIDE_VIEW, dtype=np.uint8)
    state[in_view] = np.where(
        (d >= MIN_DEPTH) & (d <= MAX_DEPTH), np.where(behind, STATE_BEHIND, STATE_FRONT), STATE_NO_DEPTH
    )
    return state


def _near_integer(q: np.ndarray, tol: np.ndarray, upper: float) -> np.ndarray:
    """``q`` within ``tol`` of an integer in ``[0, upper]`` (a pixel boundary of the rounding)."""
    return (np.abs(q - np.rint(q)) < tol) & (q > -1.0) & (q < upper + 1.0)


def _view_constraints(affine: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """``(5, 4)`` rows ``(l0, la, lb, lc)``: ``l0 + la a + lb b + lc c > 0`` for in-view corners.

    Args:
        affine: ``(3, 4)`` numerators of ``qu``, ``qv`` and ``z`` as ``(const, a, b, c)``
            coefficients (see :func:`_observe_grid`).
    """
    num_u, num_v, num_z = affine
    w1, h1 = intrinsics.width + 1, intrinsics.height + 1
    return np.stack([num_z, num_u - num_z, w1 * num_z - num_u, num_v - num_z, h1 * num_z - num_v])


def _slab_view_box(lin, a0: int, a1: int, d1: int, d2: int) -> tuple[slice, slice] | None:
    """Conservative (b, c) box of the voxels of slab ``a0 <= a < a1`` that can be in view.

    Args:
        lin: 5 constraints ``(l0, la, lb, lc)``, ``l0 + la a + lb b + lc c > 0``, that every
            in-view voxel satisfies (``z > 0`` and the four image borders).
    Returns:
        ``(b slice, c slice)`` or None when no voxel of the slab can be in view.
    """
    a_best = [max(la * a0, la * (a1 - 1)) for _, la, _, _ in lin]
    b_terms = [l0 + ab + max(0.0, lc * (d2 - 1)) for (l0, _, _, lc), ab in zip(lin, a_best)]
    b_lo, b_hi = _feasible_range(b_terms, [lb for _, _, lb, _ in lin], d1)
    if b_lo >= b_hi:
        return None
    c_terms = [l0 + ab + max(lb * b_lo, lb * (b_hi - 1)) for (l0, _, lb, _), ab in zip(lin, a_best)]
    c_lo, c_hi = _feasible_range(c_terms, [lc for _, _, _, lc in lin], d2)
    if c_lo >= c_hi:
        return None
    return slice(b_lo, b_hi), slice(c_lo, c_hi)


def _observe_grid(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    intrinsics: Intrinsics,
    voxel: float,
    shape: tuple[int, int, int],
    slab: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2-3 without the distance: state and sign of every voxel.

    Surface voxels are not special-cased here (the caller overrides them).

    Returns:
        ``(state, sign)``: ``shape`` uint8 ``STATE_*`` codes 0..3, and float32 sign: +1 observed
        in front, -1 observed behind, 0 not observed.
    """
    depth = np.asarray(depth, dtype=np.float32)
    state, unsure = _observe_fast(depth, pose, origin, intrinsics, voxel, shape, slab)
    if len(unsure):
        exact = _observe_exact(unsure, depth, pose, origin, intrinsics, voxel)
        state[unsure[:, 0], unsure[:, 1], unsure[:, 2]] = exact
    sign_tab = np.zeros(4, dtype=np.float32)
    sign_tab[STATE_FRONT], sign_tab[STATE_BEHIND] = 1.0, -1.0
    return state, np.take(sign_tab, state)


def _observe_fast(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    intrinsics: Intrinsics,
    voxel: float,
    shape: tuple[int, int, int],
    slab: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2-3 in float64 (module docstring), and the voxels float64 cannot decide.

    Args:
        depth: ``(H, W) float32`` metres.
    Returns:
        ``(state, unsure)``: ``shape`` uint8 ``STATE_*`` codes 0..3, and ``(N, 3) int64``
        indices of the voxels whose state float32 rounding could change (a value within
        :func:`_float32_error_bound` of a threshold); their state here is float64's guess.
    """
    d0, d1, d2 = shape
    width, height = intrinsics.width, intrinsics.height
    affine = _projection_affine(pose, origin, intrinsics, voxel)
    const, coef_a, coef_b, coef_c = (col[:, None, None] for col in affine.T)  # (3, 1, 1) each
    ib = np.arange(d1, dtype=np.float64)[None, :, None]
    ic = np.arange(d2, dtype=np.float64)[None, None, :]
    plane = const + coef_b * ib + coef_c * ic  # (3, d1, d2): numerators of qu, qv and z
    along_a = coef_a[:, :, 0] * np.arange(d0, dtype=np.float64)[None, :]  # (3, d0)
    # In-view voxels satisfy 5 linear inequalities in (a, b, c): z > 0, 1 < qu < W + 1 and
    # 1 < qv < H + 1 (times z). Each slab is processed only inside a conservative box of them.
    lin = _view_constraints(affine, intrinsics).tolist()
    # float32 vs float64: camera coordinates differ by at most `delta` metres, hence a pixel
    # coordinate by at most fx * delta * (1 + |x / z|) / z plus two float32 roundings of ~640
    delta = _float32_error_bound(pose, origin, intrinsics, voxel, shape)
    pixel_tol = 2.0 * max(intrinsics.fx, intrinsics.fy) * delta
    z_tol = 2.0 * delta

    # Padded (H + 2, W + 2) tables: pixel code (0 border, 1 no valid depth, 2 valid depth) and
    # depth (NaN where not valid, so that comparisons with it are False).
    valid = (depth >= MIN_DEPTH) & (depth <= MAX_DEPTH)
    code_tab = np.zeros((height + 2, width + 2), dtype=np.uint8)
    code_tab[1:-1, 1:-1] = np.where(valid, STATE_FRONT, STATE_NO_DEPTH)
    depth_tab = np.full((height + 2, width + 2), np.nan, dtype=np.float32)
    depth_tab[1:-1, 1:-1] = np.where(valid, depth, np.nan)
    code_tab, depth_tab = code_tab.ravel(), depth_tab.ravel()

    state = np.zeros(shape, dtype=np.uint8)
    unsure_parts = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for a0 in range(0, d0, slab):
            a1 = min(a0 + slab, d0)
            box = _slab_view_box(lin, a0, a1, d1, d2)
            if box is None:
                continue  # the whole slab is outside the view: state 0
            sub = plane[(slice(None),) + box]
            z = sub[2] + along_a[2, a0:a1, None, None]
            qu = sub[0] + along_a[0, a0:a1, None, None]
            qv = sub[1] + along_a[1, a0:a1, None, None]
            np.divide(qu, z, out=qu)
            np.divide(qv, z, out=qv)
            tol = 1e-3 + pixel_tol / z
            unsure = _near_integer(qu, tol, width + 1.0) | _near_integer(qv, tol, height + 1.0)
            unsure &= z > z_tol
            unsure |= np.abs(z) <= z_tol
            if sub[2].min() + along_a[2, a0:a1].min() <= 0:  # part of the slab is behind the camera
                behind_cam = z <= 0
                qu[behind_cam] = 0.0
                qv[behind_cam] = 0.0
            np.clip(qu, 0.0, width + 1.0, out=qu)
            np.clip(qv, 0.0, height + 1.0, out=qv)
            pix = qv.astype(np.intp)
            pix *= width + 2
            pix += qu.astype(np.intp)
            code = np.take(code_tab, pix)
            diff = np.subtract(np.take(depth_tab, pix), z, dtype=np.float64)
            code += diff <= -SIGN_EPS  # observed and behind: 2 -> 3 (NaN compares False)
            unsure |= np.abs(diff + SIGN_EPS) < z_tol
            state[(slice(a0, a1),) + box] = code
            if unsure.any():
                local = np.argwhere(unsure)
                local += (a0, box[0].start, box[1].start)
                unsure_parts.append(local)
    unsure = np.concatenate(unsure_parts) if unsure_parts else np.zeros((0, 3), dtype=np.int64)
    return state, unsure


def _minplus_pass(f: np.ndarray, truncation: int, cap: int) -> np.ndarray:
    """``out[i] = min_{|d| <= T} f[i + d] + d²`` along axis 0, saturating at ``cap`` (uint8)."""
    out = f.copy()
    shifted = np.empty_like(f)
    limit = np.empty_like(f)
    n = f.shape[0]
    for d in range(1, min(truncation, n - 1) + 1):
        sq = d * d
        # shifted = min(f, cap - d²) + d² <= cap: a saturating add without uint8 overflow
        limit.fill(cap - sq)
        np.minimum(f, limit, out=shifted)
        shifted += np.uint8(sq)
        np.minimum(out[: n - d], shifted[d:], out=out[: n - d])
        np.minimum(out[d:], shifted[: n - d], out=out[d:])
    return out


def truncated_squared_distance(surface: np.ndarray, truncation: int = TRUNCATION_VOXELS) -> np.ndarray:
    """Exact squared Euclidean distance (voxels) to the nearest ``True`` voxel, capped.

    ``min(da² + db² + dc²)`` is separable: the 1-D squared distance along axis 0 (written
    directly around each ``True`` voxel), then two min-plus passes with ``d²`` along axes 1 and
    2. Every value is an exact small integer; anything beyond ``T`` is capped.

    Args:
        surface: ``(D, H, W) bool``.
        truncation: T (voxels), 1..15.
    Returns:
        ``(D, H, W) uint8``: ``min(d², T² + 1)``; ``T² + 1`` means "farther than T" (also when
        there is no ``True`` voxel at all).
    """
    surface = np.asarray(surface, dtype=bool)
    if surface.ndim != 3:
        raise ValueError(f"surface must be a 3-D grid, got shape {surface.shape}")
    hits = np.stack(np.unravel_index(np.flatnonzero(surface), surface.shape), axis=1)
    crop, squared = _squared_distance_crop(hits, surface.shape, truncation)
    out = np.full(surface.shape, truncation * truncation + 1, dtype=np.uint8)
    out[crop] = squared
    return out


def _squared_distance_crop(
    hits: np.ndarray, shape: tuple[int, int, int], truncation: int
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """:func:`truncated_squared_distance` on the bounding box of ``hits`` grown by T.

    Args:
        hits: ``(N, 3)`` indices of the True voxels (repeats allowed). shape: the grid.
    Returns:
        ``(crop, squared)``: the box as slices of the grid, and the capped squared distances
        inside it (a possibly non-contiguous uint8 view); every voxel outside is capped.
    """
    if not 1 <= truncation <= 15:
        raise ValueError(f"truncation must be in 1..15 voxels, got {truncation}")
    cap = truncation * truncation + 1
    if hits.size == 0:
        return (slice(0, 0),) * 3, np.zeros((0, 0, 0), dtype=np.uint8)
    # bounding box of the surface grown by T: everything outside is farther than T
    lo = np.maximum(hits.min(axis=0) - truncation, 0)
    hi = np.minimum(hits.max(axis=0) + truncation + 1, shape)
    crop_shape = tuple(int(x) for x in hi - lo)
    hits = hits - lo
    f = np.full(crop_shape, cap, dtype=np.uint8)
    flat = np.ravel_multi_index((hits[:, 0], hits[:, 1], hits[:, 2]), crop_shape)
    stride = crop_shape[1] * crop_shape[2]
    # pass 1 (axis 0): from the largest offset to 0, so smaller squares overwrite larger ones
    for d in range(truncation, -1, -1):
        for sgn in ((1, -1) if d else (1,)):
            a = hits[:, 0] + sgn * d
            ok = (a >= 0) & (a < crop_shape[0])
            f.ravel()[flat[ok] + sgn * d * stride] = d * d
    f = _minplus_pass(np.ascontiguousarray(f.transpose(1, 0, 2)), truncation, cap)  # axes (1, 0, 2)
    f = _minplus_pass(np.ascontiguousarray(f.transpose(2, 1, 0)), truncation, cap)  # axes (2, 0, 1)
    return tuple(slice(int(l), int(h)) for l, h in zip(lo, hi)), f.transpose(1, 2, 0)


def compute_tsdf(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    *,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    voxel: float = FINE_VOXEL,
    shape: tuple[int, int, int] = FINE_SHAPE,
    truncation: int = TRUNCATION_VOXELS,
    hits: tuple[np.ndarray, np.ndarray] | None = None,
) -> FineTSDF:
    """SSCNet's fine TSDF (module docstring) as signed distance + observation state.

    Args:
        depth: ``(H, W)`` metres (0 = missing), ``H, W`` as in ``intrinsics``.
        pose: ``(4, 4)`` camera-to-world. origin: ``(3,)`` world (x, y, z) of the grid corner.
        intrinsics: pinhole intrinsics and image size.
        voxel: voxel edge (m). shape: grid shape, axes [world X, world Z, world Y].
        truncation: truncation distance in voxels (12 = 0.24 m at 0.02 m).
        hits: the result of :func:`depth_hits` for these arguments, if already computed.
    Returns:
        :class:`FineTSDF`.
    """
    depth, pose, origin = _check_inputs(depth, pose, origin, intrinsics)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"grid shape must be 3 positive sizes, got {shape}")
    if not 1 <= truncation <= 15:
        raise ValueError(f"truncation must be in 1..15 voxels, got {truncation}")
    if hits is None:
        hits = depth_hits(depth, pose, origin, intrinsics=intrinsics, voxel=voxel, shape=shape)
    voxels = hits[1]
    # distinct surface voxels (many pixels share one): mark, then list them in C order
    surface = np.zeros(int(np.prod(shape)), dtype=bool)
    surface[np.ravel_multi_index((voxels[:, 0], voxels[:, 1], voxels[:, 2]), shape)] = True
    surface_flat = np.flatnonzero(surface)
    unique = np.stack(np.unravel_index(surface_flat, shape), axis=1)
    state, distance = _observe_grid(depth, pose, origin, intrinsics, voxel, shape)
    # |value| = min(1, dist / T): 1 outside the box around the surface, a lookup inside it
    crop, squared = _squared_distance_crop(unique, shape, truncation)
    # sqrtf(d²) / T in float32, as the kernel
    magnitude = np.sqrt(np.arange(truncation * truncation + 2, dtype=np.float32)) / np.float32(truncation)
    distance[crop] *= np.take(np.minimum(np.float32(1.0), magnitude), squared)
    state.ravel()[surface_flat] = STATE_SURFACE
    distance.ravel()[surface_flat] = 0.0
    return FineTSDF(distance=distance, state=state)
