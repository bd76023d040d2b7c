"""Procedural room layout: walls, windows, furniture against walls, a hand-held camera.

:func:`sample_scene` draws one room from a ``numpy.random.Generator``. The room interior is
``[0, W] x [0, D] x [0, H]`` (world metres, z up), W and D in 3..7 m and H in 2.4..3.2 m.
Floor, ceiling and walls are slabs of 3..5 cm just outside the interior; windows are boxes
set into the walls (1 cm proud of them, so rays meet them before the wall). Furniture stands on
the floor, rotated about z, without interpenetration: every item's floor footprint (an
oriented rectangle) is tested against the others and against the camera's keep-out zones with
the separating-axis theorem before it is accepted.
"""

from __future__ import annotations

import math

import numpy as np

from torchssc.geometry import NYU36_TO_11
from torchssc.synth import furniture as F
from torchssc.synth.furniture import Item, pick
from torchssc.synth.scene import (
    GLASS, PLAIN, RAW, TILES, WALLPAPER, WOOD, BoxList, Scene, rect_corners, rects_overlap, rot2,
)

ROOM_SIZE_RANGE = (3.0, 7.0)
ROOM_HEIGHT_RANGE = (2.4, 3.2)
CAMERA_HEIGHT_RANGE = (1.0, 1.6)
CAMERA_PITCH_RANGE_DEG = (5.0, 25.0)

# Paint order of the voxeliser by 11-class label: structure first, small things last.
_PAINT = {1: 0, 2: 0, 3: 0, 4: 1, 9: 3, 11: 3}


class _Layout:
    """Footprints placed so far and the room they must stay in.

    A footprint is ``(centre (2,), half (2,), yaw, (z0, z1))``: an oriented rectangle on the
    floor and the height interval the item occupies above it; two footprints collide when the
    rectangles overlap and the height intervals do too (a picture may hang above a sofa).
    """

    def __init__(self, width: float, depth: float):
        self.width, self.depth = width, depth
        self.rects: list[tuple[np.ndarray, np.ndarray, float, tuple[float, float]]] = []

    def wall(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Wall ``k`` (0: y=0, 1: x=W, 2: y=D, 3: x=0): start point, direction, inward normal, length."""
        w, d = self.width, self.depth
        return [
            (np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), w),
            (np.array([w, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), d),
            (np.array([w, d]), np.array([-1.0, 0.0]), np.array([0.0, -1.0]), w),
            (np.array([0.0, d]), np.array([0.0, -1.0]), np.array([1.0, 0.0]), d),
        ][k]

    def fits(self, rects: list, margin: float = 0.03) -> bool:
        """True when every footprint is inside the room, clear of every placed one and of the
        ones before it in ``rects``."""
        for k, (c, h, yaw, (z0, z1)) in enumerate(rects):
            corners = rect_corners(c, h, yaw)
            if corners.min() < 0.0 or np.any(corners.max(axis=0) > (self.width, self.depth)):
                return False
            for c2, h2, yaw2, (w0, w1) in self.rects + rects[:k]:
                if z0 < w1 + margin and w0 < z1 + margin and rects_overlap(c, h, yaw, c2, h2, yaw2, margin / 2):
                    return False
        return True


def facing_yaw(normal: np.ndarray) -> float:
    """Yaw that turns an item's local +y (its front) onto the 2-D direction ``normal``."""
    return math.atan2(-normal[0], normal[1])


def _against_wall(rng, layout: _Layout, half) -> tuple[np.ndarray, float] | None:
    """A random spot with the item's back to a wall: ``(centre (2,), yaw)`` or None."""
    k = int(rng.integers(4))
    start, direction, normal, length = layout.wall(k)
    if length < 2 * half[0] + 0.1:
        return None
    s = rng.uniform(half[0] + 0.03, length - half[0] - 0.03)
    centre = start + direction * s + normal * (half[1] + rng.uniform(0.01, 0.05))
    return centre, facing_yaw(normal)


def _free(rng, layout: _Layout, half, aligned: float = 0.8) -> tuple[np.ndarray, float]:
    """A random spot in the room, yaw mostly aligned with the walls (plus a little jitter)."""
    r = math.hypot(*half) + 0.05
    lo = np.array([r, r])
    hi = np.maximum(lo + 1e-3, np.array([layout.width, layout.depth]) - r)
    centre = rng.uniform(lo, hi)
    if rng.random() < aligned:
        yaw = rng.integers(4) * math.pi / 2 + rng.normal(0.0, math.radians(6))
    else:
        yaw = rng.uniform(-math.pi, math.pi)
    return centre, float(yaw)


def _with_chairs(rng, item: Item, sides: list[int]) -> list[tuple[Item, np.ndarray, float]]:
    """Chairs at the given sides of a table (0: front +y, 1: back -y, 2: +x end, 3: -x end).

    Returns ``(chair, local centre (2,), local yaw)`` with each chair's front facing the table.
    """
    out = []
    hx, hy = item.half
    for side in sides:
        ch = F.chair(rng)
        gap = rng.uniform(0.06, 0.2)
        jitter = rng.normal(0.0, math.radians(5))
        if side in (0, 1):
            x = rng.uniform(-max(hx - ch.half[0], 0.0), max(hx - ch.half[0], 0.0)) * 0.6
            sign = 1.0 if side == 0 else -1.0
            centre = np.array([x, sign * (hy + ch.half[1] + gap)])
            yaw = (math.pi if side == 0 else 0.0) + jitter
        else:
            sign = 1.0 if side == 2 else -1.0
            centre = np.array([sign * (hx + ch.half[1] + gap), 0.0])
            yaw = (math.pi / 2 if side == 2 else -math.pi / 2) + jitter
        out.append((ch, centre, yaw))
    return out


def _place_group(rng, layout: _Layout, group: list[tuple[Item, np.ndarray, float]], wall: bool,
                 attempts: int = 40) -> list[tuple[Item, np.ndarray, float]] | None:
    """Place a group (first member = anchor) by its anchor; every footprint must fit.

    Returns the members' world ``(item, centre (2,), yaw)``, or None after ``attempts`` tries.
    """
    anchor = group[0][0]
    for _ in range(attempts):
        spot = _against_wall(rng, layout, anchor.half) if wall else _free(rng, layout, anchor.half)
        if spot is None:
            continue
        centre, yaw = spot
        placed = [(it, centre + rot2(yaw) @ c, yaw + y) for it, c, y in group]
        rects = [(c, np.asarray(it.half), y, it.z_range) for it, c, y in placed]
        if layout.fits(rects):
            layout.rects.extend(rects)
            return placed
    return None


def _emit_item(rng, boxes: BoxList, item: Item, centre: np.ndarray, yaw: float) -> None:
    """Add an item's parts, and small objects on its supports, to ``boxes`` (world frame)."""
    rot = rot2(yaw)
    for p in item.parts:
        xy = centre + rot @ np.asarray(p.center[:2])
        z = p.center[2] + item.elevation
        label = int(NYU36_TO_11[p.raw])
        boxes.add((xy[0], xy[1], z), p.half, yaw, p.raw, p.color, p.material,
                  rng.integers(2**31), _PAINT.get(label, 2))
    for sx, sy, shx, shy, top in item.supports:
        area = 4 * shx * shy
        n = int(rng.integers(1, 3 + int(area / 0.1)))
        placed: list[tuple[np.ndarray, np.ndarray, float]] = []
        for _ in range(n):
            parts, half = F.small_object(rng)
            for _try in range(8):
                oyaw = rng.uniform(-math.pi, math.pi)
                oc = np.array([sx, sy]) + rng.uniform(-1, 1, 2) * np.array([shx, shy])
                corners = rect_corners(oc, half, oyaw)
                inside = np.all(np.abs(corners - (sx, sy)) <= (shx, shy))
                if inside and not any(rects_overlap(oc, half, oyaw, c2, h2, y2, 0.01) for c2, h2, y2 in placed):
                    placed.append((oc, np.asarray(half), oyaw))
                    orot = rot2(oyaw)
                    for p in parts:
                        xy = centre + rot @ (oc + orot @ np.asarray(p.center[:2]))
                        boxes.add((xy[0], xy[1], top + item.elevation + p.center[2]), p.half, yaw + oyaw,
                                  p.raw, p.color, p.material, rng.integers(2**31), 3)
                    break


def wall_distance(pos: np.ndarray, heading: float, width: float, depth: float) -> float:
    """Horizontal distance (m) from ``pos`` (2,) inside the room to the wall ahead along ``heading``."""
    d = np.array([math.cos(heading), math.sin(heading)])
    with np.errstate(divide="ignore"):
        t = np.where(d > 0, (np.array([width, depth]) - pos) / d, np.where(d < 0, -pos / d, np.inf))
    return float(t.min())


def _camera(rng, width: float, depth: float) -> tuple[np.ndarray, np.ndarray, float]:
    """A hand-held Kinect: ``(pose (4, 4), position (3,), heading yaw)``.

    Standing 0.3..1.5 m from a wall (further in if the room is large), 1.0..1.6 m high, looking
    towards the middle of the room (+-10 deg) at a wall 1.8..5.0 m away when the room allows it
    (so the far wall is inside the label box, 1..5.8 m ahead), pitched down 5..25 deg, rolled
    by a degree or two.
    """
    layout = _Layout(width, depth)
    best = None
    for attempt in range(40):
        start, direction, normal, length = layout.wall(int(rng.integers(4)))
        across = depth if abs(normal[1]) > 0 else width
        back = rng.uniform(0.3, min(1.5 + attempt * 0.1, across - 0.6))
        pos2 = start + direction * rng.uniform(0.5, length - 0.5) + normal * back
        target = np.array([width, depth]) * (0.5 + rng.uniform(-0.2, 0.2, 2))
        heading = math.atan2(*(target - pos2)[::-1]) + rng.normal(0.0, math.radians(10))
        miss = abs(np.clip(wall_distance(pos2, heading, width, depth), 1.8, 5.0)
                   - wall_distance(pos2, heading, width, depth))
        if best is None or miss < best[0]:
            best = (miss, pos2, heading)
        if miss == 0.0:
            break
    _, pos2, heading = best
    pitch = math.radians(rng.uniform(*CAMERA_PITCH_RANGE_DEG))
    roll = math.radians(float(np.clip(rng.normal(0.0, 1.5), -4, 4)))
    height = rng.uniform(*CAMERA_HEIGHT_RANGE)
    fwd = np.array([math.cos(pitch) * math.cos(heading), math.cos(pitch) * math.sin(heading), -math.sin(pitch)])
    right = np.array([math.sin(heading), -math.cos(heading), 0.0])
    down = np.cross(fwd, right)
    # roll about the optical axis
    cr, sr = math.cos(roll), math.sin(roll)
    right, down = cr * right + sr * down, -sr * right + cr * down
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = right, down, fwd
    pose[:3, 3] = (pos2[0], pos2[1], height)
    return pose, pose[:3, 3].copy(), heading


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw one furnished room and a camera in it.

    Args:
        rng: the frame's generator (the whole scene follows from its state).
    Returns:
        a :class:`~torchssc.synth.scene.Scene`; the camera is inside the room and outside every box.
    """
    width, depth = rng.uniform(*ROOM_SIZE_RANGE, size=2)
    height = rng.uniform(*ROOM_HEIGHT_RANGE)
    t = rng.uniform(0.03, 0.05)
    boxes = BoxList()

    def slab(x0, x1, y0, y1, z0, z1, raw, color, material, order=0):
        boxes.add(((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2), ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2),
                  0.0, raw, color, material, rng.integers(2**31), order)

    wall_color = pick(rng, np.array([(0.92, 0.90, 0.85), (0.85, 0.88, 0.92), (0.95, 0.88, 0.75),
                                     (0.80, 0.85, 0.78), (0.90, 0.80, 0.80)]), 0.03)
    wall_mat = WALLPAPER if rng.random() < 0.3 else PLAIN
    floor_mat = TILES if rng.random() < 0.4 else WOOD
    floor_color = pick(rng, F.WOODS if floor_mat == WOOD else np.array([(0.8, 0.8, 0.78), (0.6, 0.55, 0.5)]))
    slab(-t, width + t, -t, depth + t, -t, 0.0, RAW["floor"], floor_color, floor_mat)
    slab(-t, width + t, -t, depth + t, height, height + t, RAW["ceiling"], np.array([0.95, 0.95, 0.94]), PLAIN)
    slab(-t, 0.0, -t, depth + t, -t, height + t, RAW["wall"], wall_color, wall_mat)
    slab(width, width + t, -t, depth + t, -t, height + t, RAW["wall"], wall_color, wall_mat)
    slab(0.0, width, -t, 0.0, -t, height + t, RAW["wall"], wall_color, wall_mat)
    slab(0.0, width, depth, depth + t, -t, height + t, RAW["wall"], wall_color, wall_mat)

    layout = _Layout(width, depth)
    for _ in range(int(rng.integers(1, 3))):
        start, direction, normal, length = layout.wall(int(rng.integers(4)))
        ww = rng.uniform(0.8, min(2.0, length - 0.6))
        s = rng.uniform(0.3 + ww / 2, length - 0.3 - ww / 2)
        z0 = rng.uniform(0.7, 1.0)
        z1 = min(height - 0.2, z0 + rng.uniform(1.0, 1.5))
        c = start + direction * s + normal * (0.01 - t) / 2  # spans the wall, 1 cm proud
        half_along, half_across = ww / 2, (t + 0.01) / 2
        hx, hy = (half_along, half_across) if abs(direction[0]) > 0 else (half_across, half_along)
        boxes.add((c[0], c[1], (z0 + z1) / 2), (hx, hy, (z1 - z0) / 2), 0.0, RAW["window"],
                  np.array([0.75, 0.85, 0.95]), GLASS, rng.integers(2**31), 1)

    pose, cam, heading = _camera(rng, width, depth)
    look = np.array([math.cos(heading), math.sin(heading)])
    layout.rects.append((cam[:2], np.array([0.35, 0.35]), 0.0, (0.0, height)))
    layout.rects.append((cam[:2] + 0.75 * look, np.array([0.45, 0.5]), facing_yaw(look), (0.0, height)))

    # What goes in the room, largest first; (builder, against a wall?, chair sides or None).
    plan: list[tuple] = []
    has_bed, has_sofa = rng.random() < 0.55, rng.random() < 0.6
    if not (has_bed or has_sofa):
        has_bed, has_sofa = (True, False) if rng.random() < 0.5 else (False, True)
    if has_bed:
        plan.append((F.bed, True, None))
    if has_sofa:
        plan.append((F.sofa, True, None))
    if rng.random() < 0.45:
        plan.append((lambda r: F.cabinet(r, "wardrobe"), True, None))
    if rng.random() < 0.75:
        n = int(rng.integers(1, 5))
        plan.append((F.table, False, list(rng.permutation(4)[:n])))
    if rng.random() < 0.45:
        plan.append((lambda r: F.table(r, "desk"), True, [0]))
    if rng.random() < 0.55:
        plan.append((F.tv_stand, True, None))
    for _ in range(int(rng.integers(2, 6))):
        kind = rng.choice(["bookshelf", "cabinet", "dresser", "nightstand"])
        plan.append(((F.bookshelf if kind == "bookshelf" else (lambda r, k=str(kind): F.cabinet(r, k))), True, None))
    if has_sofa and rng.random() < 0.5:
        plan.append((lambda r: F.table(r, "coffee"), False, None))
    for _ in range(int(rng.integers(0, 3))):
        plan.append((F.chair, False, None))
    for _ in range(int(rng.integers(2, 6))):
        plan.append((F.floor_object, False, None))
    if rng.random() < 0.4:
        plan.append((F.wall_tv, True, None))
    for _ in range(int(rng.integers(0, 3))):
        plan.append((F.wall_picture, True, None))

    for builder, wall, sides in plan:
        item = builder(rng)
        group = [(item, np.zeros(2), 0.0)]
        if sides is not None:
            group += _with_chairs(rng, item, [int(s) for s in sides])
        placed = _place_group(rng, layout, group, wall)
        if placed is None and len(group) > 1:  # try again without the chairs
            placed = _place_group(rng, layout, group[:1], wall)
        for it, c, y in placed or []:
            _emit_item(rng, boxes, it, c, y)

    light = np.array([width * rng.uniform(0.3, 0.7), depth * rng.uniform(0.3, 0.7), height - 0.3])
    return Scene(size=np.array([width, depth, height]), boxes=boxes.finish(), pose=pose, light=light)
