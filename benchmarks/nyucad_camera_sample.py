"""Which camera NYUCAD's rendered depth uses, from the EdgeNet-style sample (docs/nyucad.md).

    python benchmarks/nyucad_camera_sample.py ../shared/data/nyucad_sample

The sample holds no depth, but its pixel -> fine-voxel list is the depth back-projected by its
preprocessor with some camera K_p and the frame's pose. Two steps:

1. **The preprocessor's camera and the pose.** A direct linear transform fits the 3x4 projection
   ``M = K_p [R | t]`` to the (pixel, voxel centre) pairs (hundreds of thousands per frame);
   an RQ decomposition gives ``K_p``, ``R``, ``t``, and each point's depth ``z`` along the axis.
2. **The renderer's camera.** Each pixel's point is re-made with a candidate camera K_c from the
   same ``(u, v, z)``: ``X = R^T (K_c^{-1} [u, v, 1] z - t)``. Rendered depth lies on the CAD
   surfaces the ground truth was voxelised from, so with the camera it was rendered with the
   points sit on the ground truth's occupied voxels (``lbl > 0``, 8 cm voxels, distances in 2 cm
   voxels, capped at 5), and with another they are shifted off them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from torchssc.geometry import RELEASE_INTRINSICS, SSCNET_INTRINSICS, Intrinsics

FINE = (240, 144, 240)
FACTOR = 4
WIDTH, HEIGHT = 640, 480


def fit_projection(pixels: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Direct linear transform with normalised points, then RQ: ``(K (3, 3), R (3, 3), t (3,))``.

    Args:
        pixels: ``(N, 2)`` (u, v). points: ``(N, 3)`` in any right- or left-handed frame.
    Returns:
        ``K`` with positive diagonal and ``K[2, 2] = 1``; ``R``, ``t`` with the points in front
        of the camera (``R @ X + t`` has positive z).
    """
    from scipy.linalg import rq

    u, v = pixels[:, 0].astype(np.float64), pixels[:, 1].astype(np.float64)
    mean, scale = points.mean(axis=0), points.std()
    xn = (points - mean) / scale
    a = np.zeros((2 * len(u), 12))
    a[0::2, 0:3], a[0::2, 3], a[0::2, 8:11], a[0::2, 11] = xn, 1.0, -u[:, None] * xn, -u
    a[1::2, 4:7], a[1::2, 7], a[1::2, 8:11], a[1::2, 11] = xn, 1.0, -v[:, None] * xn, -v
    m = np.linalg.svd(a, full_matrices=False)[2][-1].reshape(3, 4)
    denorm = np.eye(4)
    denorm[:3, :3] /= scale
    denorm[:3, 3] = -mean / scale
    m = m @ denorm
    k, r = rq(m[:, :3])
    signs = np.diag(np.sign(np.diag(k)))
    k, r = k @ signs, signs @ r
    t = np.linalg.solve(k, m[:, 3])
    k = k / k[2, 2]
    if np.median((points @ r.T + t)[:, 2]) < 0:
        r, t = -r, -t
    return k, r, t


def frame_pairs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pixels (N, 2), voxel centres (N, 3) in fine-voxel units, lbl (60, 36, 60))``."""
    with np.load(path, allow_pickle=False) as data:
        mapping = data["mapping"][: WIDTH * HEIGHT]
        lbl = data["lbl"]
    pix = np.flatnonzero(mapping >= 0)
    cells = np.stack(np.unravel_index(mapping[pix], FINE), axis=1).astype(np.float64) + 0.5
    v, u = np.divmod(pix, WIDTH)
    return np.stack([u, v], axis=1), cells, lbl


def camera_fit(pixels, depth_z, r, t, cam: Intrinsics, lbl) -> tuple[float, float]:
    """``(mean capped distance in fine voxels, share on an occupied coarse voxel)`` of the points
    re-made with ``cam``."""
    from scipy.ndimage import distance_transform_edt

    u, v = pixels[:, 0], pixels[:, 1]
    cam_points = np.stack([(u - cam.cx) / cam.fx * depth_z, (v - cam.cy) / cam.fy * depth_z, depth_z], axis=1)
    grid = (cam_points - t) @ r  # R^T (x - t)
    idx = np.floor(grid).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < FINE), axis=1)
    idx = idx[inside]
    occupied = lbl > 0
    fine_occupied = occupied.repeat(FACTOR, 0).repeat(FACTOR, 1).repeat(FACTOR, 2)
    distance = distance_transform_edt(~fine_occupied)[idx[:, 0], idx[:, 1], idx[:, 2]]
    on = occupied[idx[:, 0] // FACTOR, idx[:, 1] // FACTOR, idx[:, 2] // FACTOR]
    return float(np.minimum(distance, 5.0).mean()), float(on.mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the EdgeNet-style NYUCAD npz folder")
    args = parser.parse_args(argv)
    cams = {"sscnet": SSCNET_INTRINSICS, "release": RELEASE_INTRINSICS}
    print("| scene | preprocessor's camera (fx, fy, cx, cy) | reprojection median | "
          + " | ".join(f"{n}: distance, on occupied" for n in cams) + " |")
    print("|---|---|---|" + "---|" * len(cams))
    for path in sorted(Path(args.folder).glob("*.npz")):
        pixels, cells, lbl = frame_pairs(path)
        k, r, t = fit_projection(pixels, cells)
        cam_points = cells @ r.T + t
        proj = cam_points @ k.T
        err = np.hypot(proj[:, 0] / proj[:, 2] - pixels[:, 0], proj[:, 1] / proj[:, 2] - pixels[:, 1])
        fits = {n: camera_fit(pixels, cam_points[:, 2], r, t, c, lbl) for n, c in cams.items()}
        cells_text = " | ".join(f"{d:.3f}, {100 * on:.1f} %" for d, on in fits.values())
        print(f"| {path.stem} | {k[0, 0]:.1f}, {k[1, 1]:.1f}, {k[0, 2]:.1f}, {k[1, 2]:.1f} | "
              f"{np.median(err):.2f} px | {cells_text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
