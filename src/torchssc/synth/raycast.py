"""Exact ray casting of yaw-rotated boxes (depth, box id, surface point and normal per pixel).

Each pixel's ray is ``o + t * d`` with ``o`` the camera centre and ``d = R @ K^-1 (u, v, 1)``,
i.e. the direction whose camera-frame z component is 1, so the ray parameter ``t`` at a hit
*is* the depth (metres along the optical axis) that a depth camera reports. Pixel ``(u, v)``
is sampled at its integer coordinates, the convention of :func:`torchssc.geometry.backproject`,
so back-projecting the depth gives back the hit points exactly.

A box is hit where the ray, expressed in the box's frame, enters all three slabs
``|x_i| <= half_i`` (Kay & Kajiya's slab method). Boxes are processed one at a time but each
only over the pixels of its projected bounding rectangle, vectorised over those pixels, with a
z-buffer keeping the nearest hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torchssc.geometry import NYU_INTRINSICS, Intrinsics, world_to_camera
from torchssc.synth.scene import Boxes, box_corners

NEAR = 1e-3
"""Hits closer than this (m, along the ray parameter) are ignored."""


@dataclass
class RayHits:
    """Result of :func:`raycast`.

    Attributes:
        depth: ``(H, W) float64`` metres along the optical axis; 0 where no box is hit.
        index: ``(H, W) int64`` index of the box hit, -1 where none.
        dirs: ``(H, W, 3) float64`` world ray directions (camera-frame z = 1).
    """

    depth: np.ndarray
    index: np.ndarray
    dirs: np.ndarray


def ray_directions(pose: np.ndarray, intrinsics: Intrinsics = NYU_INTRINSICS) -> np.ndarray:
    """World ray directions of every pixel, scaled so their camera-frame z is 1.

    Args:
        pose: ``(4, 4)`` camera-to-world.
    Returns:
        ``(H, W, 3) float64`` world directions; pixel ``(v, u)`` looks through ``(u, v)``.
    """
    h, w = intrinsics.height, intrinsics.width
    x = (np.arange(w, dtype=np.float64) - intrinsics.cx) / intrinsics.fx
    y = (np.arange(h, dtype=np.float64) - intrinsics.cy) / intrinsics.fy
    rot = np.asarray(pose, np.float64)[:3, :3]
    # R @ (x, y, 1) = x * R[:, 0] + y * R[:, 1] + R[:, 2], built by broadcasting (no (H*W,3)@(3,3)).
    return x[None, :, None] * rot[:, 0] + y[:, None, None] * rot[:, 1] + rot[:, 2]


_EDGES = np.array([(i, j) for i in range(8) for j in range(i + 1, 8) if bin(i ^ j).count("1") == 1])
"""The 12 edges of a box as pairs of :func:`~torchssc.synth.scene.box_corners` indices."""


def _screen_rect(corners_world: np.ndarray, pose: np.ndarray, intrinsics: Intrinsics) -> tuple[int, int, int, int]:
    """Pixel rectangle ``(v0, v1, u0, u1)`` (half-open) that contains a box's projection.

    The box's edges are clipped against the plane ``z_cam = NEAR`` first, so a box partly
    behind the camera still gets a tight rectangle; a box wholly behind it gets an empty one.
    """
    cam = world_to_camera(corners_world, pose)
    front = cam[:, 2] > NEAR
    if not front.any():
        return 0, 0, 0, 0
    points = [cam[front]]
    if not front.all():
        a, b = cam[_EDGES[:, 0]], cam[_EDGES[:, 1]]
        cross = (a[:, 2] > NEAR) != (b[:, 2] > NEAR)
        a, b = a[cross], b[cross]
        s = (NEAR * 1.0001 - a[:, 2]) / (b[:, 2] - a[:, 2])
        points.append(a + s[:, None] * (b - a))
    pts = np.concatenate(points)
    u = pts[:, 0] / pts[:, 2] * intrinsics.fx + intrinsics.cx
    v = pts[:, 1] / pts[:, 2] * intrinsics.fy + intrinsics.cy
    u0 = int(np.clip(np.floor(u.min()) - 1, 0, intrinsics.width))
    u1 = int(np.clip(np.ceil(u.max()) + 2, 0, intrinsics.width))
    v0 = int(np.clip(np.floor(v.min()) - 1, 0, intrinsics.height))
    v1 = int(np.clip(np.ceil(v.max()) + 2, 0, intrinsics.height))
    return v0, v1, u0, u1


def ray_box(origin: np.ndarray, dirs: np.ndarray, center: np.ndarray, half: np.ndarray, yaw: float) -> np.ndarray:
    """Entry parameter of rays into one box (slab method), ``inf`` where the ray misses.

    Args:
        origin: ``(3,)`` ray origin (world). dirs: ``(..., 3)`` ray directions (world).
        center, half: ``(3,)`` box centre and half extents; yaw: rotation about z (rad).
    Returns:
        ``(...) float64`` the smallest ``t > NEAR`` at which the ray enters the box, else ``inf``
        (rays starting inside the box count as misses).
    """
    c, s = np.cos(yaw), np.sin(yaw)
    rel = np.asarray(origin, np.float64) - center
    o = np.array([c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2]])
    dx = c * dirs[..., 0] + s * dirs[..., 1]
    dy = -s * dirs[..., 0] + c * dirs[..., 1]
    t_near = np.full(dirs.shape[:-1], -np.inf)
    t_far = np.full(dirs.shape[:-1], np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, d in enumerate((dx, dy, dirs[..., 2])):
            inv = 1.0 / d
            t1 = (-half[i] - o[i]) * inv
            t2 = (half[i] - o[i]) * inv
            np.maximum(t_near, np.minimum(t1, t2), out=t_near)
            np.minimum(t_far, np.maximum(t1, t2), out=t_far)
        hit = (t_near <= t_far) & (t_near > NEAR)  # NaN (ray in a face plane) compares False
    return np.where(hit, t_near, np.inf)


def raycast(boxes: Boxes, pose: np.ndarray, intrinsics: Intrinsics = NYU_INTRINSICS) -> RayHits:
    """Depth image and box id of every pixel.

    Args:
        boxes: the scene's N boxes (world). pose: ``(4, 4)`` camera-to-world.
        intrinsics: camera model and image size ``(H, W)``.
    Returns:
        :class:`RayHits` with ``(H, W)`` depth (m, 0 = no hit) and box index (-1 = none).
    """
    pose = np.asarray(pose, np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"pose must be (4, 4), got {pose.shape}")
    dirs = ray_directions(pose, intrinsics)
    origin = pose[:3, 3]
    zbuf = np.full((intrinsics.height, intrinsics.width), np.inf)
    index = np.full((intrinsics.height, intrinsics.width), -1, dtype=np.int64)
    corners = box_corners(boxes)
    for i in range(len(boxes)):
        v0, v1, u0, u1 = _screen_rect(corners[i], pose, intrinsics)
        if v0 >= v1 or u0 >= u1:
            continue
        t = ray_box(origin, dirs[v0:v1, u0:u1], boxes.center[i], boxes.half[i], boxes.yaw[i])
        win = zbuf[v0:v1, u0:u1]
        closer = t < win
        win[closer] = t[closer]
        index[v0:v1, u0:u1][closer] = i
    depth = np.where(np.isfinite(zbuf), zbuf, 0.0)
    return RayHits(depth=depth, index=index, dirs=dirs)


def surface_frames(boxes: Boxes, hits: RayHits, pose: np.ndarray) -> dict[str, np.ndarray]:
    """Geometry of the hit surface at every pixel with a hit (float32: for shading and noise).

    Returns a dict of arrays over the ``P`` hit pixels (in C order of the image):
        ``"pixels"``: ``(P,) int64`` flat pixel index ``v * W + u``;
        ``"world"``: ``(P, 3) float32`` hit points (m); ``"local"``: ``(P, 3)`` the same in the
        box frame; ``"normal"``: ``(P, 3)`` outward unit normal of the face hit (world);
        ``"axis"``: ``(P,) int64`` the box axis (0, 1, 2) normal to that face;
        ``"box"``: ``(P,) int64`` box index; ``"ray"``: ``(P, 3)`` the pixel's ray direction.
    """
    flat = np.flatnonzero(hits.index.ravel() >= 0)
    box = hits.index.ravel()[flat]
    dirs = hits.dirs.reshape(-1, 3)[flat].astype(np.float32)
    origin = np.asarray(pose, np.float64)[:3, 3]
    depth = hits.depth.ravel()[flat].astype(np.float32)[:, None]
    # relative to the box centre in float64 first (world coordinates can be large), then float32
    rel = (origin - boxes.center).astype(np.float32)[box] + dirs * depth
    world = rel + boxes.center.astype(np.float32)[box]
    cs = np.stack([np.cos(boxes.yaw), np.sin(boxes.yaw)], axis=1).astype(np.float32)[box]
    c, s = cs[:, 0], cs[:, 1]
    local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], axis=1)
    rows = np.arange(len(flat))
    axis = np.argmax(np.abs(local) / boxes.half.astype(np.float32)[box], axis=1)
    sign = np.where(local[rows, axis] < 0, np.float32(-1), np.float32(1))
    # outward normal: the local axis' unit vector, rotated by yaw (z normals stay vertical)
    normal = np.zeros_like(local)
    normal[:, 0] = np.where(axis == 0, c, np.where(axis == 1, -s, 0)) * sign
    normal[:, 1] = np.where(axis == 0, s, np.where(axis == 1, c, 0)) * sign
    normal[:, 2] = np.where(axis == 2, sign, 0)
    return {"pixels": flat, "world": world, "local": local, "normal": normal, "axis": axis, "box": box, "ray": dirs}
