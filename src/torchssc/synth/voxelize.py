"""Voxelisation of a synthetic room into the raw label grid (NYU36 ids, 255 outside the room).

A voxel takes the label of a box when the (closed) voxel cube and the box, grown by
:data:`EPS`, overlap, so every voxel touching a surface is labelled: a depth pixel,
back-projected and floored into the grid, lands in a labelled voxel, also after the depth has
been rounded to millimetres. Boxes only rotate about z, so overlap is exact and cheap:
the z extents are intervals, and in the xy-plane the separating-axis test of the voxel's
square footprint against the box's rectangle needs the two box axes only (the grid axes are
covered by the bounding range). Voxels whose centre is inside the room interior start as 0
(empty), all others as 255 (outside the room); boxes are then painted in ``paint_order``,
later ones winning.
"""

from __future__ import annotations

import numpy as np

from torchssc.geometry import FINE_SHAPE, FINE_VOXEL, IGNORE_LABEL
from torchssc.synth.scene import Boxes

EPS = 6e-4
"""Tolerance (m) of the overlap tests: a voxel within 0.6 mm of a box counts as touching it.

Depth files store whole millimetres, which moves a surface point by up to 0.5 mm along its
ray; with this margin the point read back from the file still lands in a labelled voxel even
when the surface lies (almost) exactly on a voxel boundary."""


def _index_range(lo: float, hi: float, origin: float, voxel: float, n: int) -> tuple[int, int]:
    """Half-open range of voxel indices whose closed cells ``[o + i v, o + (i+1) v]`` meet ``[lo, hi]``."""
    i0 = int(np.ceil((lo - EPS - origin) / voxel - 1.0))
    i1 = int(np.floor((hi + EPS - origin) / voxel)) + 1
    return max(i0, 0), min(i1, n)


def voxelize(
    boxes: Boxes,
    room_size: np.ndarray,
    origin: np.ndarray,
    shape: tuple[int, int, int] = FINE_SHAPE,
    voxel: float = FINE_VOXEL,
) -> np.ndarray:
    """Raw label grid of a room.

    Args:
        boxes: the scene (world frame); each box paints its ``raw`` id.
        room_size: ``(3,)`` interior (W, D, H) in m; the interior is ``[0, W] x [0, D] x [0, H]``.
        origin: ``(3,)`` world (x, y, z) of the grid corner.
        shape, voxel: grid shape (axes [world X, world Z, world Y], see :mod:`torchssc.geometry`)
            and voxel edge (m).
    Returns:
        ``shape`` ``uint8`` array: box raw ids, 0 for empty voxels in the room, 255 outside.
    """
    origin = np.asarray(origin, np.float64).reshape(3)
    ox, oy, oz = origin
    na, nb, nc = shape
    labels = np.full(shape, IGNORE_LABEL, dtype=np.uint8)

    # Interior (voxel centre inside the room) -> 0.
    def centre_range(lo, hi, o, n):
        i0 = int(np.ceil((lo - o) / voxel - 0.5))
        i1 = int(np.floor((hi - o) / voxel - 0.5)) + 1
        return max(i0, 0), min(i1, n)

    w, d, h = np.asarray(room_size, np.float64)
    a0, a1 = centre_range(0.0, w, ox, na)
    b0, b1 = centre_range(0.0, h, oz, nb)
    c0, c1 = centre_range(0.0, d, oy, nc)
    if a0 < a1 and b0 < b1 and c0 < c1:
        labels[a0:a1, b0:b1, c0:c1] = 0

    for i in np.argsort(boxes.paint_order, kind="stable"):
        cx, cy, cz = boxes.center[i]
        hx, hy, hz = boxes.half[i]
        cos, sin = np.cos(boxes.yaw[i]), np.sin(boxes.yaw[i])
        ex = hx * abs(cos) + hy * abs(sin)  # half extents of the bounding rectangle
        ey = hx * abs(sin) + hy * abs(cos)
        a0, a1 = _index_range(cx - ex, cx + ex, ox, voxel, na)
        c0, c1 = _index_range(cy - ey, cy + ey, oy, voxel, nc)
        b0, b1 = _index_range(cz - hz, cz + hz, oz, voxel, nb)
        if a0 >= a1 or b0 >= b1 or c0 >= c1:
            continue
        # voxel-column centres (m) relative to the box centre
        qx = ox + voxel * (np.arange(a0, a1) + 0.5) - cx
        qy = oy + voxel * (np.arange(c0, c1) + 0.5) - cy
        du = cos * qx[:, None] + sin * qy[None, :]
        dv = -sin * qx[:, None] + cos * qy[None, :]
        r = voxel / 2 * (abs(cos) + abs(sin))  # the voxel square's radius along a box axis
        mask = (np.abs(du) <= hx + r + EPS) & (np.abs(dv) <= hy + r + EPS)  # (na', nc')
        block = labels[a0:a1, b0:b1, c0:c1]
        block[np.broadcast_to(mask[:, None, :], block.shape)] = boxes.raw[i]
    return labels
