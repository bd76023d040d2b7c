"""RGB shading and Kinect-like depth noise for the synthetic rooms.

RGB: each box has a base colour (per class, varied per instance) and a material giving a
procedural texture in the face's own coordinates (value noise, wood grain, fabric weave, floor
tiles, stripes, wallpaper); Lambertian shading from a point light plus ambient light; windows glow;
a small per-frame exposure change.

Depth noise (``kinect``): axial noise growing with the square of the distance
(Nguyen, Izadi & Lovell, "Modeling Kinect sensor noise for improved 3D reconstruction and
tracking", 3DIMPVT 2012: sigma = 1.2 mm + 1.9 mm * (z - 0.4 m)^2), disparity quantisation
(1/8 pixel at a 7.5 cm baseline), dropouts at grazing angles and at depth edges, a few
random holes, invalid columns at the image border, and the sensor's 0.4..8 m range.
"""

from __future__ import annotations

import numpy as np

from torchssc.geometry import NYU_INTRINSICS, Intrinsics
from torchssc.synth.scene import FABRIC, GLASS, SCREEN, STRIPES, TILES, WALLPAPER, WOOD, Scene

NOISE_MODES = ("kinect", "none")
KINECT_FOCAL_PX = 518.8579
"""Focal length (pixels) of the sensor whose disparity is quantised (NYU's, at 640x480)."""
KINECT_BASELINE_M = 0.075
"""Projector-camera baseline (m)."""


# ------------------------------------------------------------------------------------------
# Procedural textures
_LATTICE = np.random.default_rng(20200614).random(256 * 256).astype(np.float32)
"""Fixed random lattice values behind :func:`value_noise` (part of the generator's definition)."""


def _hash(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random floats in [0, 1) from integer lattice coordinates and a seed."""
    seed = np.asarray(seed, np.int64) & 0xFFFF
    return _LATTICE[(((ix + seed * 31) & 255) << 8) | ((iy + (seed >> 8) * 17) & 255)]


def value_noise(x: np.ndarray, y: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Smooth 2-D value noise in [0, 1) (period 256); ``x, y`` in lattice units, ``seed`` per sample.

    Returns ``float32`` of the broadcast shape of the inputs.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    fx, fy = np.floor(x), np.floor(y)
    tx, ty = x - fx, y - fy
    tx *= tx * (3 - 2 * tx)
    ty *= ty * (3 - 2 * ty)
    seed = (np.asarray(seed, np.int64) & 0xFFFF).astype(np.int32)  # only the low 16 bits matter
    ix = fx.astype(np.int32)
    ix += seed * 31
    ix &= 255
    iy = fy.astype(np.int32)
    iy += (seed >> 8) * 17
    iy &= 255
    ix0 = ix << 8
    ix1 = ((ix + 1) & 255) << 8
    iy1 = (iy + 1) & 255
    top = _LATTICE[ix0 | iy]
    top += (_LATTICE[ix1 | iy] - top) * tx
    bottom = _LATTICE[ix0 | iy1]
    bottom += (_LATTICE[ix1 | iy1] - bottom) * tx
    top += (bottom - top) * ty
    return top


def texture(material: np.ndarray, u: np.ndarray, v: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Per-pixel RGB multipliers of a material's texture.

    Args:
        material: ``(P,)`` material codes; u, v: ``(P,)`` face coordinates (m); seed: ``(P,)`` int.
    Returns:
        ``(P, 3) float64`` factors around 1.
    """
    p = len(u)
    out = np.ones((p, 3), np.float32)
    base = 1.0 + 0.08 * (value_noise(u * 6, v * 6, seed) - 0.5) + 0.04 * (value_noise(u * 40, v * 40, seed + 1) - 0.5)
    out *= base[:, None]
    jitter = _hash(seed, seed + 7, seed)  # per-instance parameter in [0, 1)

    m = material == WOOD
    if m.any():
        warp = value_noise(u[m] * 1.5, v[m] * 8, seed[m] + 3)
        grain = np.sin(2 * np.pi * (v[m] * (12 + 20 * jitter[m]) + 3.0 * warp))
        out[m] *= (0.88 + 0.12 * grain)[:, None]
    m = material == FABRIC
    if m.any():
        weave = np.sin(2 * np.pi * 90 * u[m]) * np.sin(2 * np.pi * 90 * v[m])
        blotch = value_noise(u[m] * 10, v[m] * 10, seed[m] + 5)
        out[m] *= (0.9 + 0.06 * weave + 0.12 * (blotch - 0.5))[:, None]
    m = material == TILES
    if m.any():
        size = 0.3 + 0.3 * jitter[m]
        fu, fv = u[m] / size, v[m] / size
        grout = (np.abs(fu - np.round(fu)) < 0.03) | (np.abs(fv - np.round(fv)) < 0.03)
        checker = (np.floor(fu) + np.floor(fv)) % 2
        out[m] *= np.where(grout, 0.55, 0.94 + 0.1 * checker)[:, None]
    m = material == STRIPES
    if m.any():
        width = 0.02 + 0.06 * jitter[m]
        strip = np.floor(u[m] / width).astype(np.int64)
        tint = np.stack([_hash(strip, seed[m] + k, seed[m]) for k in range(3)], axis=1)
        out[m] *= 0.75 + 0.5 * tint
    m = material == WALLPAPER
    if m.any():
        width = 0.04 + 0.12 * jitter[m]
        two_tone = (np.floor(u[m] / width) % 2).astype(np.float32)
        out[m] *= (0.93 + 0.1 * two_tone)[:, None]
    m = material == SCREEN
    if m.any():
        out[m] *= (1.0 + 0.8 * value_noise(u[m] * 2, v[m] * 2, seed[m]))[:, None]
    return out


# ------------------------------------------------------------------------------------------
def shade(scene: Scene, surf: dict[str, np.ndarray], rng: np.random.Generator,
          intrinsics: Intrinsics = NYU_INTRINSICS) -> np.ndarray:
    """RGB image of the hit surfaces.

    Args:
        scene: the room (boxes and light). surf: :func:`~torchssc.synth.raycast.surface_frames`.
        rng: the frame's texture/exposure generator.
    Returns:
        ``(H, W, 3) uint8`` (pixels without a hit are black).
    """
    boxes = scene.boxes
    box = surf["box"]
    local, axis = surf["local"], surf["axis"]
    # face coordinates: the two local axes other than the face normal
    shift = (boxes.center[:, :2] * (0.37, 0.53)).astype(np.float32)[box]  # per-instance offsets
    u = np.where(axis == 0, local[:, 1], local[:, 0]) + shift[:, 0]
    v = np.where(axis == 2, local[:, 1], local[:, 2]) + shift[:, 1]
    material = boxes.material[box]
    seed = boxes.tex_seed[box]
    color = boxes.color[box] * texture(material, u, v, seed)

    to_light = scene.light.astype(np.float32) - surf["world"]
    dist2 = np.einsum("ij,ij->i", to_light, to_light)
    lambert = np.clip(np.einsum("ij,ij->i", surf["normal"], to_light) / np.sqrt(dist2), 0.0, 1.0)
    lit = 0.38 + 0.85 * lambert / (1.0 + 0.06 * dist2)
    glow = material == GLASS
    gradient = 0.9 + 0.1 * np.clip(surf["world"][:, 2] / np.float32(scene.size[2]), 0, 1)
    lit = np.where(glow, 1.05 * gradient, lit)
    rgb = color * (lit[:, None] * np.float32(rng.uniform(0.85, 1.15)))
    image = np.zeros((intrinsics.height * intrinsics.width, 3), dtype=np.uint8)
    image[surf["pixels"]] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return image.reshape(intrinsics.height, intrinsics.width, 3)


# ------------------------------------------------------------------------------------------
def kinect_noise(depth: np.ndarray, surf: dict[str, np.ndarray], rng: np.random.Generator,
                 intrinsics: Intrinsics = NYU_INTRINSICS) -> np.ndarray:
    """Kinect-like corruption of an exact depth image.

    Args:
        depth: ``(H, W)`` exact depth (m), 0 = no hit.
        surf: :func:`~torchssc.synth.raycast.surface_frames` of the same image (for the angles).
        rng: the frame's noise generator.
    Returns:
        ``(H, W) float64`` noisy depth (m), 0 = missing.
    """
    h, w = depth.shape
    z = depth.astype(np.float64).copy()
    valid = z > 0
    sigma = 0.0012 + 0.0019 * (z - 0.4) ** 2
    z = np.where(valid, z + rng.normal(0.0, 1.0, z.shape) * sigma, 0.0)
    # disparity quantisation: d = f b / z in 1/8 pixel steps of the sensor (whatever the image size)
    fb = KINECT_FOCAL_PX * KINECT_BASELINE_M
    with np.errstate(divide="ignore"):
        disparity = np.round(np.where(valid, fb / np.maximum(z, 1e-6), 0.0) * 8.0) / 8.0
        z = np.where(valid & (disparity > 0), fb / np.maximum(disparity, 1e-9), 0.0)

    drop = np.zeros((h, w), dtype=bool)
    # grazing angles: |cos(incidence)| below ~0.25 gets dropped more and more often
    ray = surf["ray"]
    cos = np.abs(np.einsum("ij,ij->i", surf["normal"], ray)) / np.linalg.norm(ray, axis=1)
    p_graze = np.clip((0.25 - cos) / 0.2, 0.0, 1.0) * 0.9
    drop.ravel()[surf["pixels"]] |= rng.random(len(cos)) < p_graze
    # depth edges (the projector's shadow): a pixel or two right of a jump towards the camera
    jump = np.zeros((h, w), dtype=bool)
    jump[:, 1:] = (depth[:, :-1] - depth[:, 1:]) < -0.05 * np.maximum(depth[:, 1:], 0.5)
    jump &= rng.random((h, w)) < 0.6
    drop |= jump
    drop[:, 1:] |= jump[:, :-1] & (rng.random((h, w - 1)) < 0.5)
    # a few random holes (ellipses)
    scale = w / 640.0
    for _ in range(int(rng.integers(0, 5))):
        cu, cv = rng.uniform(0, w), rng.uniform(0, h)
        ru, rv = rng.uniform(3, 25, 2) * scale + 1
        u0, u1 = max(int(cu - ru), 0), min(int(cu + ru) + 1, w)
        v0, v1 = max(int(cv - rv), 0), min(int(cv + rv) + 1, h)
        uu = (np.arange(u0, u1) - cu) / ru
        vv = (np.arange(v0, v1) - cv) / rv
        drop[v0:v1, u0:u1] |= vv[:, None] ** 2 + uu[None, :] ** 2 <= 1.0
    # invalid border columns (left wide, right narrow)
    left, right = int(rng.integers(6, 15) * scale), int(rng.integers(0, 6) * scale)
    drop[:, :left] = True
    if right:
        drop[:, w - right:] = True
    z[drop | (z < 0.4) | (z > 8.0)] = 0.0
    return z
