"""Benchmark: ``torchssc.viz`` renders and meshes on the real NYU sample frame.

Volumes: the sample's ground truth at 60x36x60 (prepared with ``prepare_depthbin``) and at
240x144x240 (the raw ``.bin``, 36 -> 11), each rendered in the three named views at ``--size``.

Baselines measured in the same run:
* the same vectorised traversal without empty-space skipping (every ray advances one voxel per
  iteration: a vectorised Amanatides & Woo traversal);
* a deliberately naive per-pixel Python loop over every occupied voxel (slab test, nearest entry),
  timed on ``--naive-rays`` rays of the 60-grid camera view and extrapolated to the whole image;
* for meshes, a naive per-voxel, per-neighbour Python loop over the 60-grid.

Times are CPU seconds of the one thread (``time.process_time``; the script pins BLAS/OpenMP to
one thread), so they stay meaningful on a shared, loaded machine; wall time is that or more.

Usage: ``python benchmarks/bench_viz.py [--size 480x360] [--repeat 3] [--naive-rays 200]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from torchssc.prepare.pipeline import prepare_depthbin
from torchssc.viz import rays, render
from torchssc.viz.mesh import voxel_mesh
from torchssc.viz.camera import content_bounds, make_camera
from torchssc.viz.rays import cast_rays
from torchssc.viz.volumes import load_volume

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyu_sample" / "NYU0001_0000.bin"


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def naive_rays(labels, camera, voxel, origin, n_rays: int) -> float:
    """Seconds per ray of the naive loop (slab test against every occupied voxel)."""
    origins, dirs = camera.rays()
    rng = np.random.default_rng(0)
    pick = rng.choice(len(origins), size=n_rays, replace=False)
    o_all = (origins[pick] - origin)[:, [0, 2, 1]] / voxel
    d_all = dirs[pick][:, [0, 2, 1]] / voxel
    occ = [tuple(v) for v in np.argwhere((labels >= 1) & (labels <= 11))]
    t = time.process_time()
    for o, d in zip(o_all, d_all):
        best_t = np.inf
        for g in occ:
            lo, hi = -np.inf, np.inf
            for k in range(3):
                if d[k] == 0:
                    if not g[k] <= o[k] <= g[k] + 1:
                        lo = np.inf
                    continue
                a, b = (g[k] - o[k]) / d[k], (g[k] + 1 - o[k]) / d[k]
                lo, hi = max(lo, min(a, b)), min(hi, max(a, b))
            if lo <= hi and hi >= 0:
                best_t = min(best_t, max(lo, 0.0))
    return (time.process_time() - t) / n_rays


def naive_mesh_faces(labels) -> int:
    solid = (labels >= 1) & (labels <= 11)
    count = 0
    for idx in itertools.product(*[range(n) for n in labels.shape]):
        if not solid[idx]:
            continue
        for axis in range(3):
            for sign in (-1, 1):
                nb = list(idx)
                nb[axis] += sign
                if not (0 <= nb[axis] < labels.shape[axis]) or not solid[tuple(nb)]:
                    count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="480x360")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-rays", type=int, default=200)
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.lower().split("x"))

    fine = load_volume(SAMPLE)
    frame = prepare_depthbin(SAMPLE)
    volumes = {"60x36x60": (np.asarray(frame.label, np.uint8), 0.08), "240x144x240": (fine.labels, 0.02)}
    origin, pose = fine.origin, fine.pose
    exact_skip = rays.skip_distance

    print(f"renders at {size[0]}x{size[1]}, CPU seconds, best of {args.repeat}; sample frame NYU0001")
    print(f"{'grid':12s} {'view':8s} {'skipping s':>11s} {'1-voxel steps s':>16s} {'speed-up':>9s}")
    for name, (labels, voxel) in volumes.items():
        bounds = content_bounds(labels, voxel, origin)
        for view in ("camera", "oblique", "top"):
            cam = make_camera(view, bounds, pose=pose, size=size)
            rays.skip_distance = exact_skip
            fast = best(lambda: cast_rays(labels, cam, voxel=voxel, origin=origin), args.repeat)
            rays.skip_distance = lambda occ, **kw: np.where(occ, 0, 1).astype(np.int32)
            slow = best(lambda: cast_rays(labels, cam, voxel=voxel, origin=origin), args.repeat)
            rays.skip_distance = exact_skip
            print(f"{name:12s} {view:8s} {fast:11.3f} {slow:16.3f} {slow / fast:8.1f}x")
        full = best(lambda: render.render_views(labels, size=size, pose=pose, origin=origin, voxel=voxel), 1)
        print(f"{name:12s} all three views with shading: {full:.3f} s")

    labels, voxel = volumes["60x36x60"]
    cam = make_camera("camera", content_bounds(labels, voxel, origin), pose=pose, size=size)
    per_ray = naive_rays(labels, cam, voxel, origin, args.naive_rays)
    fast = best(lambda: cast_rays(labels, cam, voxel=voxel, origin=origin), args.repeat)
    est = per_ray * size[0] * size[1]
    print(f"naive per-pixel loop, 60-grid camera view: {per_ray * 1e3:.2f} ms/ray on {args.naive_rays} rays "
          f"-> {est:.0f} s per image (extrapolated); vectorised {fast:.3f} s: {est / fast:.0f}x")

    t = time.process_time()
    n_naive = naive_mesh_faces(labels)
    naive = time.process_time() - t
    fast = best(lambda: voxel_mesh(labels, voxel, origin), args.repeat)
    n_fast = len(voxel_mesh(labels, voxel, origin).faces)
    assert n_fast == n_naive, (n_fast, n_naive)
    print(f"mesh 60-grid: {n_fast} faces; vectorised {fast * 1e3:.1f} ms, naive loop {naive:.2f} s: {naive / fast:.0f}x")
    fine_mesh = best(lambda: voxel_mesh(fine.labels, 0.02, origin), 1)
    print(f"mesh 240-grid: {len(voxel_mesh(fine.labels, 0.02, origin).faces)} faces in {fine_mesh:.2f} s")


if __name__ == "__main__":
    main()
