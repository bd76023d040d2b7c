"""Scene representation of the synthetic rooms: boxes rotated about the vertical axis.

Every surface of a synthetic room (floor, ceiling, walls, windows, furniture parts, small
objects) is a box ``{p : |Rz(-yaw) (p - center)| <= half}`` in world coordinates (metres,
z up, floor at z = 0, see :mod:`torchssc.geometry`). Boxes only rotate about the world z axis
(yaw), which keeps the ray caster and the voxeliser exact and cheap.

Raw label ids are NYU36 ids (docs/data.md); :data:`RAW` names the ones the generator uses, each
mapping through :data:`torchssc.geometry.NYU36_TO_11` to the class in its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from torchssc.geometry import NYU36_TO_11

# Raw NYU36 ids used by the generator, by what they stand for (-> 11-class label).
RAW = {
    "ceiling": 1,     # -> 1 ceiling
    "floor": 2,       # -> 2 floor
    "wall": 3,        # -> 3 wall
    "window": 4,      # -> 4 window
    "chair": 6,       # -> 5 chair
    "bed": 7,         # -> 6 bed
    "sofa": 8,        # -> 7 sofa
    "table": 9,       # -> 8 table
    "desk": 10,       # -> 8 table
    "cabinet": 12,    # -> 10 furniture
    "bookshelf": 13,  # -> 10 furniture
    "dresser": 11,    # -> 10 furniture
    "tv": 16,         # -> 9 tvs
    "monitor": 33,    # -> 9 tvs
    "pillow": 20,     # -> 11 objects
    "books": 21,      # -> 11 objects
    "box": 36,        # -> 11 objects
    "lamp": 35,       # -> 11 objects
    "bottle": 5,      # -> 11 objects
    "picture": 14,    # -> 11 objects
}

# Materials: how :mod:`torchssc.synth.render` textures a surface.
PLAIN, WOOD, FABRIC, TILES, STRIPES, GLASS, SCREEN, WALLPAPER = range(8)


@dataclass
class Part:
    """One box in a furniture item's local frame (x along the width, y towards the front, z up).

    Attributes:
        center: ``(3,)`` local centre (m). half: ``(3,)`` half extents (m).
        raw: NYU36 raw id. color: ``(3,)`` base RGB in [0, 1]. material: a material code.
    """

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    raw: int
    color: np.ndarray
    material: int


@dataclass
class Boxes:
    """A set of N yaw-rotated boxes (structure of arrays, world frame).

    Attributes:
        center: ``(N, 3) float64`` world centre (m).
        half: ``(N, 3) float64`` half extents along the box's own axes (m), all > 0.
        yaw: ``(N,) float64`` rotation about world z (rad); local x -> (cos, sin, 0).
        raw: ``(N,) uint8`` NYU36 raw ids (1..36).
        color: ``(N, 3) float32`` base RGB in [0, 1].
        material: ``(N,) int8`` material codes.
        tex_seed: ``(N,) int64`` per-instance texture seeds.
        paint_order: ``(N,) int16``: the voxeliser paints lower values first (later wins).
    """

    center: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    raw: np.ndarray
    color: np.ndarray
    material: np.ndarray
    tex_seed: np.ndarray
    paint_order: np.ndarray

    def __len__(self) -> int:
        return len(self.center)

    @property
    def label11(self) -> np.ndarray:
        """``(N,) uint8`` class of each box in the 12-label space."""
        return NYU36_TO_11[self.raw]


@dataclass
class BoxList:
    """Mutable accumulator of boxes, turned into :class:`Boxes` by :meth:`finish`."""

    rows: list = field(default_factory=list)

    def add(self, center, half, yaw, raw, color, material, tex_seed, paint_order) -> None:
        half = np.asarray(half, dtype=np.float64)
        if np.any(half <= 0):
            raise ValueError(f"box half extents must be positive, got {half}")
        self.rows.append((np.asarray(center, np.float64), half, float(yaw), int(raw),
                          np.asarray(color, np.float32), int(material), int(tex_seed), int(paint_order)))

    def finish(self) -> Boxes:
        if not self.rows:
            raise ValueError("a scene needs at least one box")
        cols = list(zip(*self.rows))
        return Boxes(
            center=np.stack(cols[0]), half=np.stack(cols[1]), yaw=np.array(cols[2], np.float64),
            raw=np.array(cols[3], np.uint8), color=np.stack(cols[4]).astype(np.float32),
            material=np.array(cols[5], np.int8), tex_seed=np.array(cols[6], np.int64),
            paint_order=np.array(cols[7], np.int16),
        )


@dataclass
class Scene:
    """A synthetic room seen by one camera.

    Attributes:
        size: ``(3,)`` room interior (width along world x, depth along world y, height) in m;
            the interior is ``[0, W] x [0, D] x [0, H]``.
        boxes: every surface as :class:`Boxes`.
        pose: ``(4, 4) float64`` camera-to-world.
        light: ``(3,)`` world position of the point light (m).
    """

    size: np.ndarray
    boxes: Boxes
    pose: np.ndarray
    light: np.ndarray


def rot2(yaw: float) -> np.ndarray:
    """``(2, 2)`` rotation by ``yaw`` radians (local -> world in the xy-plane)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s], [s, c]])


def rects_overlap(c1, h1, yaw1, c2, h2, yaw2, margin: float = 0.0) -> bool:
    """Separating-axis test of two oriented rectangles in the xy-plane.

    Args:
        c1, c2: ``(2,)`` centres; h1, h2: ``(2,)`` half extents (m); yaw1, yaw2: rotations (rad).
        margin: both rectangles are grown by this much (m) before the test.
    Returns:
        True when the (grown) rectangles overlap or touch.
    """
    r1, r2 = rot2(yaw1), rot2(yaw2)
    h1 = np.asarray(h1, np.float64) + margin
    h2 = np.asarray(h2, np.float64) + margin
    d = np.asarray(c2, np.float64) - np.asarray(c1, np.float64)
    for axis in (r1[:, 0], r1[:, 1], r2[:, 0], r2[:, 1]):
        p1 = h1[0] * abs(axis @ r1[:, 0]) + h1[1] * abs(axis @ r1[:, 1])
        p2 = h2[0] * abs(axis @ r2[:, 0]) + h2[1] * abs(axis @ r2[:, 1])
        if abs(axis @ d) > p1 + p2:
            return False
    return True


def rect_corners(c, h, yaw) -> np.ndarray:
    """``(4, 2)`` corners of an oriented rectangle (centre ``c``, half extents ``h``, ``yaw``)."""
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    return np.asarray(c, np.float64) + (signs * np.asarray(h, np.float64)) @ rot2(yaw).T


def box_corners(boxes: Boxes) -> np.ndarray:
    """``(N, 8, 3) float64`` world corners of every box."""
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, 8).T  # (8, 3)
    local = signs[None] * boxes.half[:, None, :]  # (N, 8, 3)
    c, s = np.cos(boxes.yaw)[:, None], np.sin(boxes.yaw)[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], axis=-1) + boxes.center[:, None, :]
