"""Furniture built from boxes, in a local frame (metres).

Local frame of an item: x along its width, y towards its front (an item against a wall has its
back at ``-y``), z up with the floor at 0. Each builder takes a ``numpy.random.Generator`` and
returns an :class:`Item`: its parts, its footprint (half extents of the rectangle it covers on
the floor) and the support surfaces on which small objects may be put.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from torchssc.synth.scene import FABRIC, GLASS, PLAIN, RAW, SCREEN, STRIPES, TILES, WOOD, Part

WOODS = np.array([(0.55, 0.38, 0.22), (0.72, 0.55, 0.36), (0.36, 0.24, 0.15), (0.80, 0.70, 0.55),
                  (0.93, 0.93, 0.90), (0.25, 0.25, 0.27)])
FABRICS = np.array([(0.45, 0.50, 0.62), (0.62, 0.30, 0.28), (0.55, 0.60, 0.45), (0.80, 0.78, 0.72),
                    (0.35, 0.35, 0.38), (0.70, 0.58, 0.45), (0.30, 0.42, 0.55)])
BRIGHT = np.array([(0.85, 0.20, 0.20), (0.20, 0.50, 0.85), (0.95, 0.80, 0.25), (0.25, 0.70, 0.35),
                   (0.90, 0.90, 0.90), (0.60, 0.30, 0.70), (0.95, 0.55, 0.20)])


SMALL_OBJECT_MAX_HEIGHT = 0.55
"""Tallest object :func:`small_object` makes (m)."""


@dataclass
class Item:
    """A piece of furniture in its local frame.

    Attributes:
        kind: a name (``"bed"``, ``"sofa"``, ...).
        parts: the boxes, local frame.
        half: ``(hx, hy)`` half extents of its floor footprint (m), centred on the local origin.
        supports: ``(cx, cy, hx, hy, top_z)`` rectangles (local) where small objects may stand.
        elevation: height of the item's bottom above the floor (wall-mounted items), m.
    """

    kind: str
    parts: list[Part]
    half: tuple[float, float]
    supports: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    elevation: float = 0.0

    @property
    def z_range(self) -> tuple[float, float]:
        """``(bottom, top)`` heights (m) above the floor, small objects on supports excluded."""
        top = max(p.center[2] + p.half[2] for p in self.parts)
        if self.supports:  # room for what may stand on it (small objects are at most 0.55 m high)
            top = max(top, max(s[4] for s in self.supports) + SMALL_OBJECT_MAX_HEIGHT)
        bottom = min(p.center[2] - p.half[2] for p in self.parts)
        return bottom + self.elevation, top + self.elevation


def pick(rng: np.random.Generator, colors: np.ndarray, jitter: float = 0.06) -> np.ndarray:
    """One of ``colors`` ``(K, 3)`` with a per-instance jitter, clipped to [0, 1]."""
    base = colors[rng.integers(len(colors))]
    return np.clip(base + rng.normal(0.0, jitter, 3), 0.02, 0.98)


def part(x0, x1, y0, y1, z0, z1, raw, color, material) -> Part:
    """A :class:`Part` from its extents ``[x0, x1] x [y0, y1] x [z0, z1]`` (local, m)."""
    return Part(((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2),
                ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2), raw, color, material)


def legs(x0, x1, y0, y1, z1, size, raw, color, material) -> list[Part]:
    """Four square legs of side ``size`` under the rectangle ``[x0, x1] x [y0, y1]``, up to ``z1``."""
    out = []
    for lx in (x0, x1 - size):
        for ly in (y0, y1 - size):
            out.append(part(lx, lx + size, ly, ly + size, 0.0, z1, raw, color, material))
    return out


def bed(rng: np.random.Generator) -> Item:
    """Bed frame + mattress + headboard at the back (all bed), one or two pillows (objects)."""
    w, length = rng.uniform(1.0, 1.9), rng.uniform(1.9, 2.15)
    frame_h, mattress = rng.uniform(0.22, 0.35), rng.uniform(0.18, 0.28)
    head_h, head_t = rng.uniform(0.8, 1.2), rng.uniform(0.05, 0.09)
    wood, cloth = pick(rng, WOODS), pick(rng, FABRICS)
    x0, x1, y0, y1 = -w / 2, w / 2, -length / 2, length / 2
    top = frame_h + mattress
    parts = [
        part(x0, x1, y0 + head_t, y1, 0.0, frame_h, RAW["bed"], wood, WOOD),
        part(x0 + 0.02, x1 - 0.02, y0 + head_t, y1 - 0.02, frame_h, top, RAW["bed"], cloth, FABRIC),
        part(x0, x1, y0, y0 + head_t, 0.0, head_h, RAW["bed"], wood, WOOD),
    ]
    n_pillows = 1 if w < 1.3 else 2
    pw = (w - 0.2) / n_pillows - 0.05
    pillow = pick(rng, BRIGHT, 0.1) * 0.3 + 0.65
    for i in range(n_pillows):
        px = x0 + 0.1 + i * (pw + 0.05)
        parts.append(part(px, px + pw, y0 + head_t + 0.05, y0 + head_t + 0.45, top, top + rng.uniform(0.1, 0.16),
                          RAW["pillow"], pillow, FABRIC))
    return Item("bed", parts, (w / 2, length / 2))


def sofa(rng: np.random.Generator) -> Item:
    """Seat, back and two arms (sofa), sometimes cushions (objects) against the back."""
    w, d = rng.uniform(1.5, 2.4), rng.uniform(0.8, 1.0)
    seat, back_h, arm_h = rng.uniform(0.38, 0.46), rng.uniform(0.75, 0.95), rng.uniform(0.55, 0.68)
    arm_w, back_t = rng.uniform(0.12, 0.22), rng.uniform(0.15, 0.25)
    cloth = pick(rng, FABRICS)
    x0, x1, y0, y1 = -w / 2, w / 2, -d / 2, d / 2
    parts = [
        part(x0 + arm_w, x1 - arm_w, y0 + back_t, y1, 0.0, seat, RAW["sofa"], cloth, FABRIC),
        part(x0, x1, y0, y0 + back_t, 0.0, back_h, RAW["sofa"], cloth, FABRIC),
        part(x0, x0 + arm_w, y0 + back_t, y1, 0.0, arm_h, RAW["sofa"], cloth, FABRIC),
        part(x1 - arm_w, x1, y0 + back_t, y1, 0.0, arm_h, RAW["sofa"], cloth, FABRIC),
    ]
    if rng.random() < 0.6:
        cushion = pick(rng, BRIGHT, 0.1)
        cx = rng.uniform(x0 + arm_w + 0.05, x1 - arm_w - 0.45)
        parts.append(part(cx, cx + 0.4, y0 + back_t, y0 + back_t + 0.14, seat, seat + 0.36,
                          RAW["pillow"], cushion, FABRIC))
    return Item("sofa", parts, (w / 2, d / 2))


def table(rng: np.random.Generator, kind: str = "table") -> Item:
    """Top on four legs. ``kind``: ``"table"`` (dining), ``"coffee"`` (low) or ``"desk"``."""
    if kind == "coffee":
        w, d, h = rng.uniform(0.8, 1.3), rng.uniform(0.5, 0.75), rng.uniform(0.35, 0.5)
    elif kind == "desk":
        w, d, h = rng.uniform(1.0, 1.6), rng.uniform(0.55, 0.8), rng.uniform(0.72, 0.78)
    else:
        w, d, h = rng.uniform(0.9, 1.8), rng.uniform(0.7, 1.0), rng.uniform(0.70, 0.78)
    raw = RAW["desk"] if kind == "desk" else RAW["table"]
    t, leg = rng.uniform(0.03, 0.05), rng.uniform(0.04, 0.07)
    wood = pick(rng, WOODS)
    x0, x1, y0, y1 = -w / 2, w / 2, -d / 2, d / 2
    parts = [part(x0, x1, y0, y1, h - t, h, raw, wood, WOOD)]
    parts += legs(x0 + 0.03, x1 - 0.03, y0 + 0.03, y1 - 0.03, h - t, leg, raw, wood, WOOD)
    supports = [(0.0, 0.0, w / 2 - 0.05, d / 2 - 0.05, h)]
    if kind == "desk" and rng.random() < 0.7:
        # a monitor (tvs) on the desk, towards the back
        mw, mh = rng.uniform(0.45, 0.65), rng.uniform(0.3, 0.42)
        mx = rng.uniform(x0 + mw / 2 + 0.05, x1 - mw / 2 - 0.05)
        dark = np.full(3, rng.uniform(0.05, 0.15))
        parts.append(part(mx - 0.1, mx + 0.1, y0 + 0.06, y0 + 0.22, h, h + 0.02, RAW["monitor"], dark, PLAIN))
        parts.append(part(mx - 0.03, mx + 0.03, y0 + 0.1, y0 + 0.15, h + 0.02, h + 0.12, RAW["monitor"], dark, PLAIN))
        parts.append(part(mx - mw / 2, mx + mw / 2, y0 + 0.15, y0 + 0.19, h + 0.12, h + 0.12 + mh,
                          RAW["monitor"], dark, SCREEN))
        supports = [(0.0, 0.12, w / 2 - 0.05, d / 2 - 0.17, h)]
    return Item(kind, parts, (w / 2, d / 2), supports)


def chair(rng: np.random.Generator) -> Item:
    """Seat on four legs with a back at ``-y`` (chair)."""
    w, d = rng.uniform(0.4, 0.5), rng.uniform(0.4, 0.5)
    seat, t, leg = rng.uniform(0.42, 0.48), rng.uniform(0.03, 0.05), rng.uniform(0.03, 0.045)
    back, back_t = rng.uniform(0.35, 0.5), rng.uniform(0.03, 0.05)
    color = pick(rng, np.concatenate([WOODS, FABRICS]))
    mat = WOOD if rng.random() < 0.5 else PLAIN
    x0, x1, y0, y1 = -w / 2, w / 2, -d / 2, d / 2
    parts = [part(x0, x1, y0, y1, seat - t, seat, RAW["chair"], color, mat)]
    parts += legs(x0, x1, y0, y1, seat - t, leg, RAW["chair"], color, mat)
    parts.append(part(x0, x1, y0, y0 + back_t, seat, seat + back, RAW["chair"], color, mat))
    return Item("chair", parts, (w / 2, d / 2))


def cabinet(rng: np.random.Generator, kind: str = "cabinet") -> Item:
    """A closed box of furniture: ``"cabinet"``, ``"nightstand"``, ``"wardrobe"`` or ``"dresser"``."""
    if kind == "nightstand":
        w, d, h = rng.uniform(0.4, 0.55), rng.uniform(0.35, 0.45), rng.uniform(0.45, 0.65)
    elif kind == "wardrobe":
        w, d, h = rng.uniform(0.8, 1.6), rng.uniform(0.5, 0.65), rng.uniform(1.7, 2.1)
    elif kind == "dresser":
        w, d, h = rng.uniform(0.8, 1.5), rng.uniform(0.45, 0.6), rng.uniform(0.7, 1.1)
    else:
        w, d, h = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.6), rng.uniform(0.5, 1.0)
    raw = RAW["dresser"] if kind == "dresser" else RAW["cabinet"]
    color = pick(rng, WOODS)
    x0, x1, y0, y1 = -w / 2, w / 2, -d / 2, d / 2
    parts = [part(x0, x1, y0, y1 - 0.02, 0.0, h, raw, color, WOOD)]
    # drawer/door fronts: a thin slab proud of the body, a slightly different shade, panel lines
    front = np.clip(color * rng.uniform(0.8, 1.15), 0, 1)
    parts.append(part(x0 + 0.02, x1 - 0.02, y1 - 0.02, y1, 0.05, h - 0.03, raw, front, TILES))
    supports = [(0.0, 0.0, w / 2 - 0.04, d / 2 - 0.04, h)] if h < 1.3 else []
    return Item(kind, parts, (w / 2, d / 2), supports)


def bookshelf(rng: np.random.Generator) -> Item:
    """Open shelves (furniture) filled with rows of books (objects)."""
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.4), rng.uniform(1.2, 2.1)
    t = 0.025
    wood = pick(rng, WOODS)
    x0, x1, y0, y1 = -w / 2, w / 2, -d / 2, d / 2
    raw = RAW["bookshelf"]
    parts = [
        part(x0, x0 + t, y0, y1, 0.0, h, raw, wood, WOOD),
        part(x1 - t, x1, y0, y1, 0.0, h, raw, wood, WOOD),
        part(x0 + t, x1 - t, y0, y0 + 0.015, 0.0, h, raw, wood, WOOD),
    ]
    levels = list(np.arange(0.0, h - 0.25, rng.uniform(0.3, 0.4))) + [h - t]  # board bottoms
    for z in levels:
        parts.append(part(x0 + t, x1 - t, y0 + 0.015, y1, z, z + t, raw, wood, WOOD))
    for z, above in zip(levels[:-1], levels[1:]):
        room = above - (z + t) - 0.02  # free height between two boards
        x = x0 + t
        while x < x1 - t - 0.1 and room > 0.12:
            run = min(rng.uniform(0.1, 0.45), x1 - t - x)
            if rng.random() < 0.75:
                bh = rng.uniform(0.6, 1.0) * min(0.28, room)
                parts.append(part(x, x + run, y0 + 0.03, y1 - rng.uniform(0.01, 0.06), z + t, z + t + bh,
                                  RAW["books"], pick(rng, BRIGHT, 0.1), STRIPES))
            x += run + 0.005
    return Item("bookshelf", parts, (w / 2, d / 2))


def tv_stand(rng: np.random.Generator) -> Item:
    """A low cabinet (furniture) with a TV (tvs) on a foot on top."""
    w, d, h = rng.uniform(1.0, 1.8), rng.uniform(0.35, 0.5), rng.uniform(0.4, 0.6)
    color = pick(rng, WOODS)
    x0, x1, y0, y1 = -w / 2, w / 2, -d / 2, d / 2
    parts = [part(x0, x1, y0, y1, 0.0, h, RAW["cabinet"], color, WOOD)]
    tw = min(rng.uniform(0.8, 1.3), w - 0.1)
    th = tw * rng.uniform(0.55, 0.62)
    dark = np.full(3, rng.uniform(0.04, 0.12))
    parts.append(part(-0.15, 0.15, -0.1, 0.1, h, h + 0.03, RAW["tv"], dark, PLAIN))
    parts.append(part(-0.04, 0.04, -0.05, 0.02, h + 0.03, h + 0.1, RAW["tv"], dark, PLAIN))
    parts.append(part(-tw / 2, tw / 2, -0.04, 0.02, h + 0.1, h + 0.1 + th, RAW["tv"], dark, SCREEN))
    supports = [(x0 + (w / 2 - tw / 2) / 2, 0.0, max(0.02, (w / 2 - tw / 2) / 2 - 0.03), d / 2 - 0.04, h)]
    return Item("tv_stand", parts, (w / 2, d / 2), supports)


def wall_tv(rng: np.random.Generator) -> Item:
    """A flat TV (tvs) hung on a wall; its bottom is ``elevation`` above the floor."""
    tw = rng.uniform(0.8, 1.4)
    th = tw * rng.uniform(0.55, 0.62)
    t = rng.uniform(0.04, 0.07)
    dark = np.full(3, rng.uniform(0.04, 0.12))
    parts = [part(-tw / 2, tw / 2, -t / 2, t / 2, 0.0, th, RAW["tv"], dark, SCREEN)]
    return Item("wall_tv", parts, (tw / 2, t / 2), elevation=rng.uniform(0.9, 1.4))


def wall_picture(rng: np.random.Generator) -> Item:
    """A framed picture (objects) hung on a wall; its bottom is ``elevation`` above the floor."""
    w, h, t = rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.8), rng.uniform(0.02, 0.04)
    frame = pick(rng, WOODS)
    parts = [part(-w / 2, w / 2, -t / 2, t / 2, 0.0, h, RAW["picture"], frame, WOOD),
             part(-w / 2 + 0.04, w / 2 - 0.04, t / 2, t / 2 + 0.005, 0.04, h - 0.04, RAW["picture"],
                  pick(rng, BRIGHT, 0.15), FABRIC)]
    return Item("picture", parts, (w / 2, t / 2 + 0.0025), elevation=rng.uniform(1.1, 1.6))


def floor_object(rng: np.random.Generator) -> Item:
    """Something small on the floor (objects): a box, a bin, a floor lamp or a plant."""
    kind = rng.choice(["box", "bin", "lamp", "plant"])
    color = pick(rng, BRIGHT, 0.1)
    if kind == "box":
        w, d, h = rng.uniform(0.25, 0.55), rng.uniform(0.25, 0.45), rng.uniform(0.2, 0.5)
        parts = [part(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, RAW["box"], pick(rng, WOODS), PLAIN)]
    elif kind == "bin":
        w = rng.uniform(0.2, 0.32)
        parts = [part(-w / 2, w / 2, -w / 2, w / 2, 0.0, rng.uniform(0.3, 0.45), RAW["box"], color, PLAIN)]
    elif kind == "lamp":
        h, s = rng.uniform(1.3, 1.7), rng.uniform(0.12, 0.2)
        w = s
        parts = [part(-0.14, 0.14, -0.14, 0.14, 0.0, 0.04, RAW["lamp"], color * 0.5, PLAIN),
                 part(-0.015, 0.015, -0.015, 0.015, 0.04, h - 0.25, RAW["lamp"], color * 0.5, PLAIN),
                 part(-s, s, -s, s, h - 0.25, h, RAW["lamp"], np.array([0.95, 0.92, 0.8]), FABRIC)]
        w = max(s, 0.14)
        return Item("floor_lamp", parts, (w, w))
    else:
        w, h = rng.uniform(0.2, 0.35), rng.uniform(0.5, 1.2)
        parts = [part(-w / 2, w / 2, -w / 2, w / 2, 0.0, 0.3, RAW["box"], pick(rng, WOODS), PLAIN),
                 part(-w, w, -w, w, 0.3, h, RAW["box"], np.array([0.2, 0.5, 0.2]) + rng.normal(0, 0.05, 3), FABRIC)]
        return Item("plant", parts, (w, w))
    return Item(kind, parts, (w / 2, d / 2) if kind == "box" else (w / 2, w / 2))


def small_object(rng: np.random.Generator) -> tuple[list[Part], tuple[float, float]]:
    """A small object (objects) standing at local z = 0: books, a box, a bottle, a cup or a lamp.

    Returns:
        ``(parts, half)``: the parts and the half extents of its footprint (m).
    """
    kind = rng.choice(["books", "box", "bottle", "cup", "lamp"])
    color = pick(rng, BRIGHT, 0.1)
    if kind == "books":
        w, d, h = rng.uniform(0.15, 0.3), rng.uniform(0.12, 0.22), rng.uniform(0.03, 0.15)
        return [part(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, RAW["books"], color, STRIPES)], (w / 2, d / 2)
    if kind == "box":
        w, d, h = rng.uniform(0.08, 0.3), rng.uniform(0.08, 0.25), rng.uniform(0.05, 0.25)
        return [part(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, RAW["box"], color, PLAIN)], (w / 2, d / 2)
    if kind == "bottle":
        w, h = rng.uniform(0.05, 0.09), rng.uniform(0.18, 0.32)
        return [part(-w / 2, w / 2, -w / 2, w / 2, 0.0, h, RAW["bottle"], color, GLASS if rng.random() < 0.3 else PLAIN)], (w / 2, w / 2)
    if kind == "cup":
        w, h = rng.uniform(0.07, 0.1), rng.uniform(0.08, 0.12)
        return [part(-w / 2, w / 2, -w / 2, w / 2, 0.0, h, RAW["bottle"], color, PLAIN)], (w / 2, w / 2)
    s, h = rng.uniform(0.1, 0.16), rng.uniform(0.35, 0.55)
    return [part(-0.07, 0.07, -0.07, 0.07, 0.0, 0.03, RAW["lamp"], color * 0.6, PLAIN),
            part(-0.012, 0.012, -0.012, 0.012, 0.03, h - 0.18, RAW["lamp"], color * 0.6, PLAIN),
            part(-s, s, -s, s, h - 0.18, h, RAW["lamp"], np.array([0.95, 0.9, 0.75]), FABRIC)], (s, s)
