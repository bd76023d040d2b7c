"""Cameras for the renders: the frame's own pinhole camera, a 3/4 view from above, a top-down map.

Cameras use torchssc.geometry's pinhole convention (x right, y down, z forward; pixel ``(u, v)`` is
centred on integer coordinates, as in :func:`torchssc.geometry.project`), or an orthographic
projection for maps. Positions and bounds are world (x, y, z) metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from torchssc.geometry import NYU_INTRINSICS, Intrinsics, grid_to_world
from torchssc.viz.labels import occupied

VIEWS = ("camera", "oblique", "top")
"""Named views: the frame's own camera (needs a pose), a 3/4 view from above, a top-down map."""
VIEWS_FROM_ABOVE = ("oblique", "top")


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

    Camera axes follow torchssc.geometry (x right, y down, z forward); ``up`` (world) appears upwards in
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


# --------------------------------------------------------------------------------------------
# The HTML viewer's first view
VIEWER_BEHIND = 1.0
"""How far (m) behind the frame's camera the viewer's first view stands."""
DEFAULT_PITCH = 15.0
"""Degrees below the horizon of the assumed camera of a volume without a pose."""


@dataclass(frozen=True)
class OrbitView:
    """A view of the viewer page: an eye looking at a target, in metres from the grid's corner
    (world axes x, y, z up, the page's coordinates).

    Attributes:
        eye: ``(3,)`` where the view stands. target: ``(3,)`` what it looks at (the orbit centre).
    """

    eye: np.ndarray
    target: np.ndarray

    def orbit(self) -> dict[str, float | list[float]]:
        """The page's orbit parameters: ``eye = target + dist * (cos p cos y, cos p sin y, sin p)``.

        Returns:
            ``{"target": [x, y, z], "yaw": y, "pitch": p, "dist": d}`` (radians, metres).
        """
        offset = np.asarray(self.eye, np.float64) - np.asarray(self.target, np.float64)
        dist = float(np.linalg.norm(offset))
        return {"target": [float(v) for v in self.target], "yaw": math.atan2(offset[1], offset[0]),
                "pitch": math.asin(max(-1.0, min(1.0, offset[2] / dist))), "dist": dist}


def nyu_default_camera(box: Sequence[float], pitch: float = DEFAULT_PITCH) -> tuple[np.ndarray, np.ndarray]:
    """The camera assumed for a volume without a pose, as NYU's boxes place it.

    NYU's box lies in front of the camera (SSCNet's rule: the box's centre 3.4 m along the optical
    axis, the camera about 1 m outside the box's near side), and in 96% of the released scenes the
    image's x axis runs along the grid's first axis (measured on every 15th Mapping file of the
    release: the pixel column correlates with the voxel's first index above 0.5), so the camera
    looks along world +y. Assumed: it looks at the box's centre from ``1 m`` outside the ``y = 0``
    side, ``pitch`` degrees down.

    Args:
        box: ``(3,)`` extent (m) of the grid in world (x, y, z).
    Returns:
        ``(position (3,), forward (3,) unit)`` in metres from the grid's corner.
    """
    box = np.asarray(box, dtype=np.float64)
    centre = box / 2
    p = math.radians(pitch)
    forward = np.array([0.0, math.cos(p), -math.sin(p)])
    along = (centre[1] + 1.0) / forward[1]  # the centre is this far ahead, the camera 1 m outside
    return centre - along * forward, forward


def viewer_view(
    box: Sequence[float],
    pose: np.ndarray | None = None,
    origin: Sequence[float] | None = None,
    *,
    behind: float = VIEWER_BEHIND,
) -> OrbitView:
    """The viewer's first view: from ``behind`` metres behind the frame's camera, looking along
    its optical axis into the room.

    The target is the point of the optical axis nearest the grid's centre (at least 1 m ahead),
    so orbiting turns about the room. Without a pose and an origin the camera is
    :func:`nyu_default_camera`'s.

    Args:
        box: ``(3,)`` extent (m) of the grid in world (x, y, z).
        pose: ``(4, 4)`` camera-to-world of the frame, or None.
        origin: ``(3,)`` world corner of the grid (needed with ``pose``), or None.
    Returns:
        :class:`OrbitView` in metres from the grid's corner.
    """
    box = np.asarray(box, dtype=np.float64)
    if pose is not None and origin is not None:
        pose = np.asarray(pose, dtype=np.float64)
        position = pose[:3, 3] - np.asarray(origin, dtype=np.float64)
        forward = pose[:3, 2] / np.linalg.norm(pose[:3, 2])
    else:
        position, forward = nyu_default_camera(box)
    ahead = max(float(np.dot(box / 2 - position, forward)), 1.0)
    return OrbitView(eye=position - behind * forward, target=position + ahead * forward)
