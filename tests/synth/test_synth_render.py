"""Textures, shading and Kinect noise of the synthetic rooms."""

import math

import numpy as np

from torchssc.geometry import Intrinsics
from torchssc.synth.raycast import raycast, surface_frames
from torchssc.synth.render import _LATTICE, kinect_noise, shade, value_noise
from torchssc.synth.scene import PLAIN, BoxList, Scene


def test_value_noise_matches_naive_bilinear_smoothstep():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-300, 300, 57), rng.uniform(-300, 300, 57)
    seed = rng.integers(0, 2**31, 57)
    got = value_noise(x, y, seed)
    for k in range(len(x)):
        s = int(seed[k]) & 0xFFFF
        fx, fy = math.floor(np.float32(x[k])), math.floor(np.float32(y[k]))
        tx, ty = float(np.float32(x[k])) - fx, float(np.float32(y[k])) - fy
        tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)

        def lattice(i, j):
            return _LATTICE[(((i + s * 31) % 256) << 8) | ((j + (s >> 8) * 17) % 256)]

        top = lattice(fx, fy) * (1 - tx) + lattice(fx + 1, fy) * tx
        bottom = lattice(fx, fy + 1) * (1 - tx) + lattice(fx + 1, fy + 1) * tx
        assert abs(got[k] - (top * (1 - ty) + bottom * ty)) < 1e-5
    assert got.min() >= 0 and got.max() < 1
    # continuous: tiny steps change it a little only
    assert np.abs(value_noise(x + 1e-3, y, seed) - got).max() < 0.01


def _wall_scene(light):
    """A camera at the origin looking along +y at a large white wall 2 m away."""
    boxes = BoxList()
    boxes.add((0.0, 2.05, 0.0), (5.0, 0.05, 5.0), 0.0, 3, (0.8, 0.8, 0.8), PLAIN, 1, 0)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = (1, 0, 0), (0, 0, -1), (0, 1, 0)
    return Scene(size=np.array([10.0, 10.0, 10.0]), boxes=boxes.finish(), pose=pose, light=np.asarray(light, float))


def test_lambert_shading_follows_the_light():
    intr = Intrinsics(fx=40.0, fy=40.0, cx=15.0, cy=10.0, width=31, height=21)
    front, behind = _wall_scene((0.0, 0.5, 0.0)), _wall_scene((0.0, 3.0, 0.0))
    images = []
    for scene in (front, behind):
        hits = raycast(scene.boxes, scene.pose, intr)
        surf = surface_frames(scene.boxes, hits, scene.pose)
        images.append(shade(scene, surf, np.random.default_rng(0), intr).astype(float))
    lit, unlit = images
    assert lit.mean() > 1.5 * unlit.mean()
    # lit from the front: brightest in the middle, where the light is closest and head-on
    assert lit[10, 15].sum() > lit[0, 0].sum()
    # lit from behind the wall: ambient only, uniform up to the texture
    assert unlit.std() < 0.1 * unlit.mean()


def test_kinect_noise_grows_with_depth():
    intr = Intrinsics(fx=60.0, fy=60.0, cx=40.0, cy=30.0, width=81, height=61)
    rng = np.random.default_rng(1)
    errs = {}
    for z in (1.0, 4.0):
        scene = _wall_scene((0.0, 0.5, 0.0))
        scene.boxes.center[0, 1] = z + 0.05
        hits = raycast(scene.boxes, scene.pose, intr)
        surf = surface_frames(scene.boxes, hits, scene.pose)
        noisy = kinect_noise(hits.depth, surf, rng, intr)
        ok = noisy > 0
        assert 0.7 < ok.mean() < 1.0 and (noisy[:, 0] == 0).all()
        errs[z] = np.sqrt(np.mean((noisy[ok] - hits.depth[ok]) ** 2))
    # sigma 1.2 mm + 1.9 mm (z - 0.4)^2 plus the disparity steps: ~2 mm at 1 m, ~3 cm at 4 m
    assert errs[1.0] < 0.006 and 0.01 < errs[4.0] < 0.08
    assert errs[4.0] > 5 * errs[1.0]
