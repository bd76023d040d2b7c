"""Fine-grid TSDF from one depth image: SSCNet's algorithm (SPEC §4.1), exact and vectorised.

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

How it is made fast without changing the result:

* Camera coordinates of voxel corners are affine in the voxel index, so each is a sum of three
  1-D terms; the projection test ``round(fx * x / z + cx) in [0, W)`` is evaluated as
  ``0 < (fx * x + (cx + 0.5) * z) / z < W`` (mathematically the same; float64), one slab of the
  grid at a time so the temporaries stay in cache.
* The distance is only needed up to the truncation (12 voxels). The squared distance is
  separable (``min da² + db² + dc²`` = three 1-D min-plus passes), so it is computed exactly in
  integers, capped at ``12² + 1``, on the bounding box of the surface voxels grown by 12 voxels
  (every voxel outside it is farther than 12 from every surface voxel, hence exactly 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torchssc.geometry import (
    FINE_SHAPE,
    FINE_VOXEL,
    NYU_INTRINSICS,
    Intrinsics,
    depth_to_grid_index,
)

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


@dataclass
class FineTSDF:
    """Core TSDF result on a grid of shape ``(D, H, W)`` (axes per :mod:`torchssc.geometry`).

    Attributes:
        distance: ``(D, H, W) float32`` signed truncated distance ``sign * min(1, dist / T)`` on
            observed voxels, 0 on surface voxels, 0 on unobserved voxels.
        observed: ``(D, H, W) bool``: surface voxels plus the voxels observed by step 2.
        surface: ``(D, H, W) bool``: voxels containing a back-projected depth point.
        in_view: ``(D, H, W) bool``: non-surface voxels whose corner is in front of the camera
            and projects inside the image, whatever the depth there (a superset of the
            non-surface observed voxels; the difference is missing/out-of-range depth).
    """

    distance: np.ndarray
    observed: np.ndarray
    surface: np.ndarray
    in_view: np.ndarray

    def filled(self, fill: float) -> np.ndarray:
        """``(D, H, W) float32``: :attr:`distance` with unobserved voxels set to ``fill``."""
        out = self.distance.copy()
        if fill != 0.0:
            out[~self.observed] = np.float32(fill)
        return out

    def torchssc_values(self) -> np.ndarray:
        """``(D, H, W) float32`` TorchSSC convention: unobserved = 0 (input of ``arr_0``)."""
        return self.distance.copy()

    def sscnet_input(self) -> np.ndarray:
        """``(D, H, W) float32`` SSCNet's network input: fill 1.0, then :func:`flip_tsdf`."""
        return flip_tsdf(self.filled(1.0))


def flip_tsdf(values: np.ndarray) -> np.ndarray:
    """SSCNet's flipped TSDF ``s * max(0.001, 1 - |v|)``, ``s = 1`` where ``|v| < 0.001`` else sign(v).

    Args:
        values: any shape, signed truncated distances in [-1, 1].
    Returns:
        ``float32`` array of the same shape: surface 1, free/unknown 0.001, occluded -0.001.
    """
    v = np.asarray(values, dtype=np.float32)
    mag = np.maximum(np.float32(FLIP_EPS), np.float32(1.0) - np.abs(v))
    return np.where((v < 0) & (np.abs(v) >= np.float32(FLIP_EPS)), -mag, mag).astype(np.float32)


def _check_inputs(depth, pose, origin, intrinsics: Intrinsics):
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
    return depth, pose, origin


def surface_voxels(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    *,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    voxel: float = FINE_VOXEL,
    shape: tuple[int, int, int] = FINE_SHAPE,
) -> np.ndarray:
    """Voxels hit by back-projected depth points (step 1).

    Args:
        depth: ``(H, W)`` metres, 0 = missing. pose: ``(4, 4)`` camera-to-world.
        origin: ``(3,)`` world corner of the grid. voxel: edge (m). shape: grid shape.
    Returns:
        ``shape`` bool array.
    """
    depth, pose, origin = _check_inputs(depth, pose, origin, intrinsics)
    idx, valid = depth_to_grid_index(depth, pose, origin, intrinsics, voxel, shape)
    surface = np.zeros(shape, dtype=bool)
    hit = idx[valid]
    surface[hit[:, 0], hit[:, 1], hit[:, 2]] = True
    return surface


def _project_grid(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    intrinsics: Intrinsics,
    voxel: float,
    shape: tuple[int, int, int],
    slab: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2-3 without the distance: per voxel corner, is it in view / observed / behind?

    Returns:
        ``(in_view, observed, behind)``, each ``shape`` bool: in front of the camera and inside
        the image; additionally depth in [0.5, 8] m there; additionally ``depth - z <= -1e-4``
        (sign -1). Surface voxels are not excluded here.
    """
    d0, d1, d2 = shape
    rot, t = pose[:3, :3], pose[:3, 3]
    # Camera coordinates of the corner of voxel (a, b, c): R^T (origin + voxel*(a, c, b) - t)
    #   = base + a * voxel * R[0] + b * voxel * R[2] + c * voxel * R[1]   (rows of R).
    base = rot.T @ (origin - t)
    step_a, step_b, step_c = voxel * rot[0], voxel * rot[2], voxel * rot[1]
    fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    width, height = intrinsics.width, intrinsics.height
    # Projective numerators: u + 0.5 = (fx x + (cx + 0.5) z) / z, likewise for v.
    lin_u = fx * np.array([1.0, 0.0, 0.0]) + (cx + 0.5) * np.array([0.0, 0.0, 1.0])
    lin_v = fy * np.array([0.0, 1.0, 0.0]) + (cy + 0.5) * np.array([0.0, 0.0, 1.0])
    rows = np.stack([lin_u, lin_v, np.array([0.0, 0.0, 1.0])])  # (3, 3): numerators u, v and z
    ia, ib, ic = np.arange(d0), np.arange(d1), np.arange(d2)
    # (3, d1, d2) planes of b, c terms plus base; (3, d0) terms of a.
    plane = (rows @ base)[:, None, None] + (rows @ step_b)[:, None, None] * ib[None, :, None] + (
        rows @ step_c
    )[:, None, None] * ic[None, None, :]
    along_a = (rows @ step_a)[:, None] * ia[None, :]

    depth_ext = np.append(np.asarray(depth, dtype=np.float64).ravel(), 0.0)  # last = "no pixel"
    no_pixel = width * height
    in_view = np.empty(shape, dtype=bool)
    observed = np.empty(shape, dtype=bool)
    behind = np.empty(shape, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for a0 in range(0, d0, slab):
            a1 = min(a0 + slab, d0)
            num_u = plane[0] + along_a[0, a0:a1, None, None]
            num_v = plane[1] + along_a[1, a0:a1, None, None]
            z = plane[2] + along_a[2, a0:a1, None, None]
            pu = np.divide(num_u, z, out=num_u)  # u + 0.5 before flooring
            pv = np.divide(num_v, z, out=num_v)
            view = z > 0
            view &= pu > 0
            view &= pu < width
            view &= pv > 0
            view &= pv < height
            pix = pv.astype(np.int64)  # floor (positive where it matters)
            pix *= width
            pix += pu.astype(np.int64)
            pix[~view] = no_pixel
            d = depth_ext[pix]
            obs = d >= MIN_DEPTH
            obs &= d <= MAX_DEPTH
            d -= z
            in_view[a0:a1] = view
            observed[a0:a1] = obs
            behind[a0:a1] = obs & (d <= -SIGN_EPS)
    return in_view, observed, behind


def _minplus_pass(f: np.ndarray, truncation: int, cap: int) -> np.ndarray:
    """``out[i] = min_{|d| <= T} f[i + d] + d²`` along axis 0, saturating at ``cap`` (uint8)."""
    out = f.copy()
    tmp = np.empty_like(f)
    limit = np.empty_like(f)
    n = f.shape[0]
    for d in range(1, min(truncation, n - 1) + 1):
        sq = d * d
        limit_d = limit[: n - d]
        limit_d.fill(cap - sq)
        t = tmp[: n - d]
        # candidate = min(f, cap - d²) + d²  <= cap: saturating add without overflow.
        np.minimum(f[d:], limit_d, out=t)
        t += np.uint8(sq)
        np.minimum(out[: n - d], t, out=out[: n - d])
        np.minimum(f[: n - d], limit_d, out=t)
        t += np.uint8(sq)
        np.minimum(out[d:], t, out=out[d:])
    return out


def truncated_squared_distance(surface: np.ndarray, truncation: int = TRUNCATION_VOXELS) -> np.ndarray:
    """Exact squared Euclidean distance (voxels) to the nearest ``True`` voxel, capped.

    Args:
        surface: ``(D, H, W) bool``.
        truncation: T (voxels), at most 15.
    Returns:
        ``(D, H, W) uint8``: ``min(d², T² + 1)``; ``T² + 1`` means "farther than T" (also when
        there is no surface voxel at all).
    """
    if not 1 <= truncation <= 15:
        raise ValueError(f"truncation must be in 1..15 voxels, got {truncation}")
    cap = truncation * truncation + 1
    surface = np.asarray(surface, dtype=bool)
    out = np.full(surface.shape, cap, dtype=np.uint8)
    if not surface.any():
        return out
    lo, hi = [], []
    for axis in range(3):
        hit = np.flatnonzero(surface.any(axis=tuple(i for i in range(3) if i != axis)))
        lo.append(max(int(hit[0]) - truncation, 0))
        hi.append(min(int(hit[-1]) + truncation + 1, surface.shape[axis]))
    crop = tuple(slice(l, h) for l, h in zip(lo, hi))
    f = np.where(surface[crop], np.uint8(0), np.uint8(cap))
    # Three separable passes, each on a contiguous copy with the pass axis first.
    f = _minplus_pass(f, truncation, cap)                                        # axes (0, 1, 2)
    f = _minplus_pass(np.ascontiguousarray(f.transpose(1, 0, 2)), truncation, cap)  # (1, 0, 2)
    f = _minplus_pass(np.ascontiguousarray(f.transpose(2, 1, 0)), truncation, cap)  # (2, 0, 1)
    out[crop] = f.transpose(1, 2, 0)
    return out


def compute_tsdf(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    *,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    voxel: float = FINE_VOXEL,
    shape: tuple[int, int, int] = FINE_SHAPE,
    truncation: int = TRUNCATION_VOXELS,
) -> FineTSDF:
    """SSCNet's fine TSDF (module docstring) as signed distance + masks.

    Args:
        depth: ``(H, W)`` metres (0 = missing), ``H, W`` as in ``intrinsics``.
        pose: ``(4, 4)`` camera-to-world. origin: ``(3,)`` world (x, y, z) of the grid corner.
        intrinsics: pinhole intrinsics and image size.
        voxel: voxel edge (m). shape: grid shape, axes [world X, world Z, world Y].
        truncation: truncation distance in voxels (12 = 0.24 m at 0.02 m).
    Returns:
        :class:`FineTSDF`.
    """
    depth, pose, origin = _check_inputs(depth, pose, origin, intrinsics)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"grid shape must be 3 positive sizes, got {shape}")
    surface = surface_voxels(depth, pose, origin, intrinsics=intrinsics, voxel=voxel, shape=shape)
    in_view, observed, behind = _project_grid(depth, pose, origin, intrinsics, voxel, shape)
    in_view &= ~surface
    observed &= ~surface
    behind &= ~surface

    sq = truncated_squared_distance(surface, truncation)
    lut = np.minimum(1.0, np.sqrt(np.arange(truncation * truncation + 2)) / truncation).astype(np.float32)
    distance = lut[sq]
    np.negative(distance, out=distance, where=behind)
    observed |= surface
    distance[~observed] = 0.0
    return FineTSDF(distance=distance, observed=observed, surface=surface, in_view=in_view)
