"""Camera pose from a single depth image: gravity, floor height and room directions.

For a user's own frame there is no ``.bin`` with a pose. The SSC box (docs/data.md) needs a
gravity-aligned world with the floor at z = 0, so we estimate

1. **gravity** (the floor normal) by RANSAC over the points whose surface normal is within
   ``max_tilt`` of the "camera is roughly upright" prior (camera -y), keeping the *lowest*
   well-supported horizontal plane (the floor, not a table or the ceiling), refined by least
   squares on its inliers;
2. **floor height**: the camera's distance to that plane;
3. **room directions** (yaw): the dominant direction of vertical surface normals modulo 90°
   (Manhattan world), so that the box's axes follow the walls as in NYU; the world x axis is the
   room direction closest to the camera's right.

The result is a camera-to-world pose with translation ``(0, 0, height)``, like NYU's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torchssc.geometry import NYU_INTRINSICS, Intrinsics, backproject


@dataclass
class PoseEstimate:
    """Result of :func:`estimate_pose`.

    Attributes:
        pose: ``(4, 4) float64`` camera-to-world (world z up, floor at z = 0).
        up_cam: ``(3,)`` unit up vector (world +z) in camera coordinates.
        camera_height: camera centre above the floor plane (m).
        floor_inliers: number of sampled points on the floor plane.
        yaw_confidence: 0..1, concentration of the wall directions (1 = perfectly Manhattan).
    """

    pose: np.ndarray
    up_cam: np.ndarray
    camera_height: float
    floor_inliers: int
    yaw_confidence: float


def _normals(points: np.ndarray, reach: int = 3) -> np.ndarray:
    """Normals ``(h, w, 3)`` of an organised point grid by central differences over ``±reach``
    grid steps (NaN where undefined). A wide baseline keeps the Kinect's disparity quantisation,
    which turns far surfaces into small fronto-parallel steps, out of the normals."""
    r = reach
    dx = points[r:-r, 2 * r:] - points[r:-r, : -2 * r]
    dy = points[2 * r:, r:-r] - points[: -2 * r, r:-r]
    n = np.cross(dx, dy)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = n / norm
    out = np.full_like(points, np.nan)
    out[r:-r, r:-r] = n
    return out


def _fit_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane ``n . p + d = 0`` (unit ``n``) through ``(N, 3)`` points."""
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    n = vt[-1]
    return n, -float(n @ centre)


def _gravity_from_normals(normals: np.ndarray, max_tilt_deg: float) -> np.ndarray:
    """Up vector ``(3,)`` in camera coordinates: mean shift of the horizontal-surface normals.

    Starts from the "camera upright" prior (camera -y), keeps normals within ``max_tilt_deg``,
    then narrows the window to 10° around the running mean. Floors, table tops and beds all
    share this normal, so the estimate does not depend on which of them is the floor.
    """
    up = np.array([0.0, -1.0, 0.0])
    for angle in (max_tilt_deg, 25.0, 15.0, 10.0, 10.0, 10.0):
        sel = normals @ up > np.cos(np.radians(angle))
        if sel.sum() < 10:
            raise ValueError("no horizontal surfaces found in the depth image: cannot estimate gravity")
        mean = normals[sel].mean(axis=0)
        up = mean / np.linalg.norm(mean)
    return up


def _dominant_direction(theta: np.ndarray) -> tuple[float, float]:
    """Dominant wall direction modulo 90° of normal angles ``theta`` (radians).

    In the 4θ domain the four wall directions of a Manhattan room coincide. The mode of a
    smoothed histogram of 4θ is taken (furniture rotated at other angles does not bias it the
    way a plain mean would), then refined by the circular mean of the angles within ±20° of it.

    Returns:
        ``(yaw, confidence)``: yaw in (-45°, 45°] (radians) of the room axis nearest the
        reference direction, and the share of the normals that support it.
    """
    phase = np.exp(4j * theta)
    angles = np.angle(phase)  # in (-pi, pi]
    bins = 72
    hist = np.bincount(((angles + np.pi) / (2 * np.pi) * bins).astype(int) % bins, minlength=bins)
    smooth = hist + 0.5 * (np.roll(hist, 1) + np.roll(hist, -1))
    peak = (np.argmax(smooth) + 0.5) / bins * 2 * np.pi - np.pi
    for _ in range(3):
        near = np.abs(np.angle(phase * np.exp(-1j * peak))) < np.radians(20.0)
        peak = float(np.angle(np.mean(phase[near])))
    return peak / 4.0, float(np.mean(near))


def _floor_plane(points, normals, up, *, inlier_m, iterations, min_points, seed):
    """Lowest well-supported horizontal plane: ``(camera height, (K, 3) inlier points)``.

    Heights below the camera of horizontal-normal points are the RANSAC hypotheses (one point
    fixes a plane once the normal is known); a hypothesis's support is the number of points
    within ``inlier_m``; the floor is the lowest hypothesis with at least ``min_points`` and at
    least 15% of the best support.
    """
    horizontal = normals @ up > np.cos(np.radians(15.0))
    cand = points[horizontal]
    if len(cand) < min_points:
        raise ValueError("no floor plane found (is the floor visible in the depth image?)")
    heights = np.sort(-(cand @ up))
    rng = np.random.default_rng(seed)
    hyp = heights[rng.integers(0, len(heights), size=min(iterations, len(heights)))]
    support = np.searchsorted(heights, hyp + inlier_m) - np.searchsorted(heights, hyp - inlier_m)
    ok = support >= max(min_points, 0.15 * support.max())
    if not ok.any():
        raise ValueError("no floor plane found (is the floor visible in the depth image?)")
    lowest = float(np.max(hyp[ok]))
    # The lowest supported hypothesis sits at the far edge of the floor's cluster: re-centre.
    floor = float(np.median(heights[np.abs(heights - lowest) < 2 * inlier_m]))
    inliers = cand[np.abs(-(cand @ up) - floor) < inlier_m]
    return floor, inliers


def estimate_pose(
    depth: np.ndarray,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    *,
    step: int = 4,
    max_tilt_deg: float = 40.0,
    inlier_m: float = 0.03,
    iterations: int = 300,
    min_floor_fraction: float = 0.005,
    near_m: float = 3.0,
    seed: int = 0,
) -> PoseEstimate:
    """Estimate a gravity-aligned camera-to-world pose from one depth image.

    Args:
        depth: ``(H, W)`` metres, 0 = missing.
        step: pixel stride of the sampled point grid.
        max_tilt_deg: largest angle between the true up and the camera's -y axis considered.
        inlier_m: RANSAC inlier distance (m).
        iterations: RANSAC hypotheses.
        min_floor_fraction: a plane must hold this fraction of the sampled valid points to be
            taken as the floor.
        near_m: room directions come from wall normals closer than this (m) when there are
            enough of them (Kinect-like depth is noisier far away).
        seed: RANSAC random seed (the estimate is deterministic given it).
    Raises:
        ValueError: when no floor plane can be found (e.g. the floor is not visible).
    """
    depth = np.asarray(depth, dtype=np.float64)
    pts = backproject(depth, intrinsics)[::step, ::step]
    valid = pts[..., 2] > 0
    grid = np.where(valid[..., None], pts, np.nan)
    normals = _normals(grid, reach=1)  # gravity and floor: fine detail (small horizontal surfaces)
    wide = _normals(grid, reach=3)  # room directions: robust to depth quantisation
    ok = valid & np.isfinite(normals).all(axis=-1)
    ok_wide = valid & np.isfinite(wide).all(axis=-1)
    p = pts[ok]
    n = normals[ok]
    p_wide, n_wide = pts[ok_wide], wide[ok_wide]
    if len(p) < 100:
        raise ValueError(f"too few valid depth points ({len(p)}) to estimate a pose")
    n = np.where((np.sum(n * p, axis=1) > 0)[:, None], -n, n)  # orient towards the camera
    up = _gravity_from_normals(n, max_tilt_deg)
    height, inliers = _floor_plane(p, n, up, inlier_m=inlier_m, iterations=iterations,
                                   min_points=max(20, int(min_floor_fraction * len(p))), seed=seed)
    refined, d = _fit_plane(inliers)
    if refined @ up < 0:
        refined, d = -refined, -d
    if len(inliers) >= 50 and refined @ up > np.cos(np.radians(5.0)):
        up, height = refined, d

    # Room directions from vertical surfaces (normals nearly perpendicular to up).
    vert = np.abs(n_wide @ up) < np.sin(np.radians(15.0))
    near = vert & (p_wide[:, 2] < near_m)  # disparity quantisation grows with depth squared
    if near.sum() >= 50:
        vert = near
    right = np.array([1.0, 0.0, 0.0])
    right_h = right - (right @ up) * up
    right_h /= np.linalg.norm(right_h)
    fwd_h = np.cross(up, right_h)  # horizontal, completes (right, forward, up) right-handed
    yaw_conf = 0.0
    x_axis = right_h
    if vert.sum() >= 20:
        wn = n_wide[vert] - (n_wide[vert] @ up)[:, None] * up
        wn /= np.linalg.norm(wn, axis=1, keepdims=True)
        theta = np.arctan2(wn @ fwd_h, wn @ right_h)
        yaw, yaw_conf = _dominant_direction(theta)
        x_axis = np.cos(yaw) * right_h + np.sin(yaw) * fwd_h
    y_axis = np.cross(up, x_axis)
    rot_world_from_cam = np.stack([x_axis, y_axis, up], axis=0)  # rows: world axes in camera
    pose = np.eye(4)
    pose[:3, :3] = rot_world_from_cam
    pose[:3, 3] = (0.0, 0.0, height)
    return PoseEstimate(pose=pose, up_cam=up, camera_height=float(height),
                        floor_inliers=len(inliers), yaw_confidence=yaw_conf)
