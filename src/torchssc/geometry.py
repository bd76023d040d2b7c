"""Geometry and class conventions shared by every torchssc module (docs/data.md).

This is the one place the conventions are written down; everything else refers here.

Frames
    *World*: gravity aligned, **z up**, floor at z = 0 (metres).
    *Camera*: x right, y down, z forward (pinhole).
    A *pose* is the 4x4 **camera-to-world** matrix: ``p_world = R @ p_cam + t``.

Scene box and grids
    The box spans 4.8 m (world X) x 2.88 m (world Z, up) x 4.8 m (world Y).
    *Fine grid*: 0.02 m voxels, array shape ``FINE_SHAPE = (240, 144, 240)``.
    *Label grid*: 0.08 m voxels, shape ``LABEL_SHAPE = (60, 36, 60)`` (factor 4).
    Arrays are C-order with axes **[world X, world Z (up), world Y]**: the corner of voxel
    ``(a, b, c)`` nearest the origin is at ``origin + size * (a, c, b)`` in world (x, y, z), i.e.
    X from ``a``, Y from ``c``, Z from ``b``. Flat index = C-order ravel of the shape.

Pixels
    Images are ``(H, W)`` = ``(480, 640)``; a flat pixel index is ``v * W + u`` (row ``v``,
    column ``u``); ``H * W`` (307200 for NYU) means "no pixel".

Classes
    12 labels: 0 empty, 1 ceiling, 2 floor, 3 wall, 4 window, 5 chair, 6 bed, 7 sofa, 8 table,
    9 tvs, 10 furniture, 11 objects; 255 = ignore (outside the room). mIoU is the mean over 1..11.
    Raw NYU ground truth uses 36 classes, mapped with :data:`NYU36_TO_11`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------------
# Grids
FINE_VOXEL = 0.02
"""Fine voxel edge (m)."""
FINE_SHAPE = (240, 144, 240)
"""Fine grid shape, axes [world X, world Z (up), world Y]."""
DOWNSAMPLE = 4
LABEL_VOXEL = FINE_VOXEL * DOWNSAMPLE
"""Label-grid voxel edge (m)."""
LABEL_SHAPE = (60, 36, 60)
"""Label grid shape, axes [world X, world Z (up), world Y]."""
LABEL_NUMEL = 60 * 36 * 60
FINE_NUMEL = 240 * 144 * 240

ORIGIN_DEPTH = 3.4
"""SSCNet rule: distance along the optical axis of the box's reference point (m)."""
ORIGIN_OFFSET_XYZ = (2.4, 2.4, 1.44)
"""SSCNet rule: reference point minus this offset gives the origin (world x, y, z)."""
ORIGIN_Z = -0.05
"""SSCNet rule: the box starts 5 cm below the floor."""

# --------------------------------------------------------------------------------------------
# Classes
NUM_CLASSES = 12
IGNORE_LABEL = 255
CLASS_NAMES = (
    "empty", "ceiling", "floor", "wall", "window", "chair",
    "bed", "sofa", "table", "tvs", "furniture", "objects",
)
NYU36_TO_11 = np.array(
    [0, 1, 2, 3, 4, 11, 5, 6, 7, 8, 8, 10, 10, 10, 11, 11, 9, 8, 11, 11,
     11, 11, 11, 11, 11, 11, 11, 10, 10, 11, 8, 10, 11, 9, 11, 11, 11],
    dtype=np.uint8,
)
"""Lookup from raw NYU36 id (0..36) to the 12-label space; 255 passes through."""
PALETTE = np.array(
    [
        (22, 191, 206), (214, 38, 40), (43, 160, 43), (158, 216, 229),
        (114, 158, 206), (204, 204, 91), (255, 186, 119), (147, 102, 188),
        (30, 119, 181), (188, 188, 33), (255, 127, 12), (196, 175, 214),
    ],
    dtype=np.uint8,
)
"""RGB colour of labels 0..11, as used by the field."""
IGNORE_COLOR = np.array((153, 153, 153), dtype=np.uint8)


def map_36_to_11(labels: np.ndarray) -> np.ndarray:
    """Map raw NYU36 labels to the 12-label space.

    Args:
        labels: integer array of any shape with values in 0..36 or 255.
    Returns:
        ``uint8`` array of the same shape with values in 0..11 or 255.
    Raises:
        ValueError: if a value is neither in 0..36 nor 255.
    """
    labels = np.asarray(labels)
    lut = np.full(256, 254, dtype=np.uint8)  # 254 marks "invalid"
    lut[: len(NYU36_TO_11)] = NYU36_TO_11
    lut[IGNORE_LABEL] = IGNORE_LABEL
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"raw labels must be in 0..36 or 255, got range {labels.min()}..{labels.max()}")
    out = lut[labels.astype(np.int64)]
    if (out == 254).any():
        bad = np.unique(labels[out == 254])
        raise ValueError(f"raw labels must be in 0..36 or 255, found {bad.tolist()[:10]}")
    return out


def palette_with_ignore() -> np.ndarray:
    """``(256, 3) uint8`` colour lookup: labels 0..11 as :data:`PALETTE`, everything else grey."""
    lut = np.tile(IGNORE_COLOR, (256, 1))
    lut[:NUM_CLASSES] = PALETTE
    return lut


# --------------------------------------------------------------------------------------------
# Visibility codes of label-grid voxels (docs/data.md), stored in the prepared layout's
# Visibility/ volume and used by the ``sscnet`` evaluation protocol.
VIS_OUTSIDE_VIEW = 0
"""Projects outside the image or lies behind the camera."""
VIS_FREE = 1
"""Observed free space in front of the measured surface."""
VIS_SURFACE = 2
"""Contains an observed surface voxel."""
VIS_OCCLUDED = 3
"""In the view, behind the measured surface."""
VIS_MISSING_DEPTH = 4
"""Projects onto a pixel with no (or out-of-range) depth."""
VIS_OUTSIDE_ROOM = 5
"""Labelled 255 (outside the room)."""


# --------------------------------------------------------------------------------------------
# Intrinsics
@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics and image size (pixels). A per-dataset setting, never a constant."""

    fx: float = 518.8579
    fy: float = 518.8579
    cx: float = 320.0
    cy: float = 240.0
    width: int = 640
    height: int = 480

    @property
    def matrix(self) -> np.ndarray:
        """``(3, 3) float64`` camera matrix K."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @property
    def num_pixels(self) -> int:
        """``width * height``: also the "no pixel" value of a mapping."""
        return self.width * self.height

    def as_array(self) -> np.ndarray:
        """``(6,) float64``: fx, fy, cx, cy, width, height (for storing next to a frame)."""
        return np.array([self.fx, self.fy, self.cx, self.cy, self.width, self.height], dtype=np.float64)

    @classmethod
    def from_array(cls, values) -> "Intrinsics":
        """Inverse of :meth:`as_array`; 4 values (fx, fy, cx, cy) keep the default 640x480."""
        v = [float(x) for x in np.asarray(values).ravel()]
        if len(v) == 4:
            return cls(*v)
        if len(v) == 6:
            return cls(v[0], v[1], v[2], v[3], int(round(v[4])), int(round(v[5])))
        raise ValueError(f"intrinsics need 4 (fx,fy,cx,cy) or 6 (+width,height) values, got {len(v)}")

    @classmethod
    def parse(cls, text: str) -> "Intrinsics":
        """A preset name (:data:`INTRINSICS_PRESETS`: ``release``, ``sscnet``), or
        ``"fx,fy,cx,cy"`` / ``"fx,fy,cx,cy,width,height"``."""
        if text.strip() in INTRINSICS_PRESETS:
            return INTRINSICS_PRESETS[text.strip()]
        try:
            values = [float(x) for x in text.split(",")]
        except ValueError as exc:
            raise ValueError(
                f"cannot parse intrinsics {text!r}: give a preset ({', '.join(INTRINSICS_PRESETS)}) "
                f"or fx,fy,cx,cy[,width,height] ({exc})"
            ) from None
        return cls.from_array(values)

    def preset_name(self) -> str | None:
        """The name of the preset these intrinsics equal, or None."""
        return next((name for name, preset in INTRINSICS_PRESETS.items() if preset == self), None)

    def describe(self) -> str:
        """``"release (fx 518.8579, fy 519.4696, cx 325.58, cy 253.74, 640x480)"``."""
        values = f"fx {self.fx:g}, fy {self.fy:g}, cx {self.cx:g}, cy {self.cy:g}, {self.width}x{self.height}"
        name = self.preset_name()
        return f"{name} ({values})" if name else values


# The two NYU conventions (docs/data.md). Intrinsics belong to a dataset: NYU/NYUCAD depthbin
# defaults to RELEASE; synthetic rooms and user data record their own.
RELEASE_INTRINSICS = Intrinsics(fx=518.8579, fy=519.4696, cx=325.58, cy=253.74)
"""The Kinect calibration the released TorchSSC NYU files were computed with (640 x 480)."""
SSCNET_INTRINSICS = Intrinsics(fx=518.8579, fy=518.8579, cx=320.0, cy=240.0)
"""SSCNet's ideal camera (its data layer and flipped fine TSDF; the synthetic rooms)."""
INTRINSICS_PRESETS = {"release": RELEASE_INTRINSICS, "sscnet": SSCNET_INTRINSICS}
"""Named intrinsics a user can give instead of ``fx,fy,cx,cy``."""
NYU_INTRINSICS = SSCNET_INTRINSICS
"""Alias of :data:`SSCNET_INTRINSICS` (the default camera of rendering and prediction)."""


# --------------------------------------------------------------------------------------------
# Transforms (numpy, float64 by default; all vectorised over leading dimensions)
def backproject(depth: np.ndarray, intrinsics: Intrinsics = NYU_INTRINSICS) -> np.ndarray:
    """Back-project a depth image into camera coordinates.

    Args:
        depth: ``(H, W)`` metres; 0 = missing.
    Returns:
        ``(H, W, 3) float64`` camera points ``(x, y, z)``; ``z = depth`` (missing pixels give 0).
    """
    depth = np.asarray(depth, dtype=np.float64)
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x = (u - intrinsics.cx) * depth / intrinsics.fx
    y = (v - intrinsics.cy) * depth / intrinsics.fy
    return np.stack([x, y, depth], axis=-1)


def transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform. ``points``: ``(..., 3)``; returns ``(..., 3) float64``."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def camera_to_world(points_cam: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Camera ``(..., 3)`` -> world ``(..., 3)`` with the camera-to-world ``pose`` (4x4)."""
    return transform(points_cam, pose)


def world_to_camera(points_world: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """World ``(..., 3)`` -> camera ``(..., 3)``; ``pose`` is camera-to-world (4x4)."""
    pose = np.asarray(pose, dtype=np.float64)
    rot, t = pose[:3, :3], pose[:3, 3]
    return (np.asarray(points_world, dtype=np.float64) - t) @ rot  # R^T (p - t), row form


def world_to_grid(points_world: np.ndarray, origin: np.ndarray, voxel: float = FINE_VOXEL) -> np.ndarray:
    """World points -> continuous grid coordinates in **array axis order** (X, Z, Y).

    Args:
        points_world: ``(..., 3)`` world (x, y, z) metres.
        origin: ``(3,)`` world (x, y, z) of the grid's corner.
        voxel: voxel edge (m).
    Returns:
        ``(..., 3) float64`` coordinates ``(a, b, c)``; ``floor`` gives the voxel index.
    """
    rel = (np.asarray(points_world, dtype=np.float64) - np.asarray(origin, dtype=np.float64)) / voxel
    return rel[..., [0, 2, 1]]


def grid_to_world(index: np.ndarray, origin: np.ndarray, voxel: float = FINE_VOXEL) -> np.ndarray:
    """Grid coordinates ``(..., 3)`` in array order (a, b, c) -> world (x, y, z) of that corner.

    ``world = origin + voxel * (a, c, b)`` (no +0.5: the corner nearest the origin).
    """
    idx = np.asarray(index, dtype=np.float64)
    return np.asarray(origin, dtype=np.float64) + voxel * idx[..., [0, 2, 1]]


def check_pose(pose: np.ndarray, where: str = "pose") -> np.ndarray:
    """A camera-to-world pose checked to be a rigid transform, as ``(4, 4) float64``.

    Args:
        where: what to name in the error (a file).
    Raises:
        ValueError: not 4x4, non-finite values, a last row other than ``(0, 0, 0, 1)``, or a
            rotation that is not one (``R^T R`` off the identity by more than 1e-3, or
            ``det R`` not near +1; an all-zero pose fails here).
    """
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"{where}: a pose must be a 4x4 camera-to-world matrix, got shape {pose.shape}")
    if not np.all(np.isfinite(pose)):
        raise ValueError(f"{where}: the pose has non-finite values (NaN or inf)")
    if not np.allclose(pose[3], (0, 0, 0, 1), atol=1e-6):
        raise ValueError(f"{where}: the pose's last row must be 0 0 0 1, got {pose[3].tolist()}")
    rot = pose[:3, :3]
    if np.abs(rot.T @ rot - np.eye(3)).max() > 1e-3 or abs(np.linalg.det(rot) - 1) > 1e-3:
        raise ValueError(f"{where}: the pose's 3x3 part is not a rotation (R^T R != I or det != 1)")
    return pose


def voxel_origin_for_pose(pose: np.ndarray) -> np.ndarray:
    """SSCNet's rule for the box origin of a new frame (no .bin available).

    ``p = R @ (0, 0, 3.4) + t``; ``origin = p - (2.4, 2.4, 1.44)``; ``origin.z = -0.05``.

    Args:
        pose: ``(4, 4)`` camera-to-world.
    Returns:
        ``(3,) float64`` world (x, y, z).
    """
    pose = np.asarray(pose, dtype=np.float64)
    p = pose[:3, :3] @ np.array([0.0, 0.0, ORIGIN_DEPTH]) + pose[:3, 3]
    origin = p - np.array(ORIGIN_OFFSET_XYZ)
    origin[2] = ORIGIN_Z
    return origin


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (C's ``roundf``), unlike numpy's half-to-even."""
    x = np.asarray(x)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def project(points_cam: np.ndarray, intrinsics: Intrinsics = NYU_INTRINSICS) -> tuple[np.ndarray, np.ndarray]:
    """Project camera points to pixel (u, v), rounded half away from zero (SSCNet's rule).

    Args:
        points_cam: ``(..., 3)`` camera coordinates; z must be non-zero where the result is used.
    Returns:
        ``(u, v)``, each ``(...) int64`` (column, row). Points with ``z <= 0`` give garbage: mask
        them with ``points_cam[..., 2] > 0``.
    """
    p = np.asarray(points_cam, dtype=np.float64)
    z = np.where(p[..., 2] == 0, 1e-12, p[..., 2])
    u = round_half_away(p[..., 0] * intrinsics.fx / z + intrinsics.cx)
    v = round_half_away(p[..., 1] * intrinsics.fy / z + intrinsics.cy)
    return u.astype(np.int64), v.astype(np.int64)


def depth_to_grid_index(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    voxel: float = FINE_VOXEL,
    shape: tuple[int, int, int] = FINE_SHAPE,
    rounding: str = "floor",
) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel, the voxel its back-projected point falls in.

    Args:
        depth: ``(H, W)`` metres, 0 = missing.
        pose: ``(4, 4)`` camera-to-world; origin: ``(3,)`` world corner of the grid.
        voxel, shape: the grid (fine grid by default; ``LABEL_VOXEL, LABEL_SHAPE`` for 60-res).
        rounding: ``"floor"`` (SSCNet/TorchSSC) or ``"rint"`` (the DDRNet/AICNet code).
    Returns:
        ``(index, valid)``: ``(H, W, 3) int64`` grid index (a, b, c) and ``(H, W) bool`` which is
        True where the depth is valid and the index lies inside ``shape``.
    """
    cam = backproject(depth, intrinsics)
    grid = world_to_grid(camera_to_world(cam, pose), origin, voxel)
    if rounding == "floor":
        idx = np.floor(grid)
    elif rounding == "rint":
        idx = np.rint(grid)
    else:
        raise ValueError(f"rounding must be 'floor' or 'rint', got {rounding!r}")
    idx = idx.astype(np.int64)
    valid = np.asarray(depth) > 0
    valid &= np.all((idx >= 0) & (idx < np.asarray(shape)), axis=-1)
    return idx, valid
