"""Seconds per frame of the raw -> prepared step (docs/data.md), single-threaded.

Runs :func:`torchssc.prepare.prepare_depthbin` on the real NYU sample several times (release
intrinsics: the exact path that reproduces the released files) and prints the median per stage,
then times in the same run:

* a deliberately naive per-voxel Python TSDF (the definition, loop by loop, in the release's
  float32 arithmetic) on a cropped grid around the measured surface, against the vectorised one
  on the same crop (checked equal) and per voxel against the full-frame vectorised TSDF;
* the observation step: float64 alone (not exact), the library's float64 + exact recompute near
  thresholds, and the exact float32 kernel evaluated on every voxel (checked equal);
* ``scipy.ndimage.distance_transform_edt`` on the full fine grid against the truncated exact
  squared distance used by the TSDF (checked equal up to the truncation).

Usage::

    .venv/bin/python benchmarks/bench_prepare.py [--repeat 5] [--crop 16] [--bin PATH]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from torchssc import geometry as g  # noqa: E402
from torchssc.io.depthbin import read_bin, read_depth_png  # noqa: E402
from torchssc.prepare import prepare_depthbin  # noqa: E402
from torchssc.prepare.float32 import fma32, roundf  # noqa: E402
from torchssc.prepare.tsdf import (  # noqa: E402
    _observe_exact,
    _observe_fast,
    _observe_grid,
    compute_tsdf,
    surface_voxels,
    truncated_squared_distance,
)

DEFAULT_BIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyu_sample" / "NYU0001_0000.bin"


def _dot(r, p):
    """The kernel's fused dot product ``fma(r2, p2, fma(r1, p1, r0 * p0))`` of scalars."""
    return fma32(r[2], p[2], fma32(r[1], p[1], np.float32(r[0] * p[0])))[()]


def naive_surface(depth, pose, origin, shape, intr=g.RELEASE_INTRINSICS, voxel=g.FINE_VOXEL):
    """Step 1 of the definition, one pixel at a time, in the kernel's float32 arithmetic."""
    f32 = np.float32
    rot, t, org, unit = pose[:3, :3].astype(f32), pose[:3, 3].astype(f32), origin.astype(f32), f32(voxel)
    surface = np.zeros(shape, dtype=bool)
    for v in range(intr.height):
        for u in range(intr.width):
            d = f32(depth[v, u])
            if d == 0:
                continue
            cam = ((f32(u) - f32(intr.cx)) * d / f32(intr.fx), (f32(v) - f32(intr.cy)) * d / f32(intr.fy), d)
            x, y, z = (int(np.floor((f32(_dot(rot[k], cam) + t[k]) - org[k]) / unit)) for k in range(3))
            if 0 <= x < shape[0] and 0 <= z < shape[1] and 0 <= y < shape[2]:
                surface[x, z, y] = True
    return surface


def naive_tsdf(depth, pose, origin, surface, intr=g.RELEASE_INTRINSICS, voxel=g.FINE_VOXEL, trunc=12):
    """Steps 2-4 of the definition, one voxel at a time, in float32. Returns (distance, observed)."""
    f32 = np.float32
    rot, t, org, unit = pose[:3, :3].astype(f32), pose[:3, 3].astype(f32), origin.astype(f32), f32(voxel)
    shape = surface.shape
    surf = np.argwhere(surface)
    distance = np.zeros(shape, dtype=np.float32)
    observed = surface.copy()
    for a, b, c in np.ndindex(*shape):
        if surface[a, b, c]:
            continue
        rel = [f32(fma32(i, unit, org[k])[()] - t[k]) for k, i in enumerate((a, c, b))]
        cam = [_dot(rot[:, k], rel) for k in range(3)]
        if cam[2] <= 0:
            continue
        u = int(roundf(fma32(intr.fx, f32(cam[0] / cam[2]), intr.cx))[()])
        v = int(roundf(fma32(intr.fy, f32(cam[1] / cam[2]), intr.cy))[()])
        if not (0 <= u < intr.width and 0 <= v < intr.height):
            continue
        d = f32(depth[v, u])
        if not 0.5 <= d <= 8.0:
            continue
        observed[a, b, c] = True
        diff = float(f32(d - cam[2]))
        sign = f32(1.0) if abs(diff) < 1e-4 else f32(np.sign(diff))
        d2 = ((surf - (a, b, c)) ** 2).sum(axis=1).min() if len(surf) else 10**6
        distance[a, b, c] = sign * min(f32(1.0), np.sqrt(f32(d2)) / f32(trunc))
    return distance, observed


def _median_time(fn, repeat, clock=time.process_time):
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=DEFAULT_BIN, help="a depthbin .bin (its .png beside it)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--crop", type=int, default=16, help="edge of the cropped grid for the naive TSDF")
    args = parser.parse_args(argv)

    # Per-stage CPU time (the pipeline's timings are CPU seconds): the box may be shared, and
    # CPU time is what one core would spend.
    prepare_depthbin(args.bin)  # warm-up (imports, page cache)
    per_stage: dict[str, list[float]] = {}
    totals, cpu = [], []
    for _ in range(args.repeat):
        timings: dict = {}
        start, start_cpu = time.perf_counter(), time.process_time()
        prepare_depthbin(args.bin, timings=timings)
        totals.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        for k, v in timings.items():
            per_stage.setdefault(k, []).append(v)
    print(f"raw -> prepared, {args.bin.name}, {args.repeat} runs, 1 thread (min / median)")
    print(
        f"  whole frame: {min(cpu):.3f} / {statistics.median(cpu):.3f} s CPU "
        f"({min(totals):.3f} / {statistics.median(totals):.3f} s wall)"
    )
    for k, v in per_stage.items():
        print(f"    {k:<13s} {min(v) * 1000:7.1f} / {statistics.median(v) * 1000:7.1f} ms CPU")
    fine_time = _median_time(lambda: prepare_depthbin(args.bin, fine=True), max(1, args.repeat // 2), time.process_time)
    print(f"  whole frame with the fine flipped TSDF (fine=True): {fine_time:.3f} s CPU")

    # naive vs vectorised TSDF on a crop around the surface
    raw = read_bin(args.bin)
    depth = read_depth_png(args.bin.with_suffix(".png"))
    pose, origin = raw.pose.astype(np.float64), raw.origin.astype(np.float64)
    surface = surface_voxels(depth, pose, origin, intrinsics=g.RELEASE_INTRINSICS)
    center = np.median(np.argwhere(surface), axis=0).astype(int)
    corner = center - args.crop // 2
    crop_origin = g.grid_to_world(corner, origin)
    crop = (args.crop,) * 3
    start = time.process_time()
    ref_surface = naive_surface(depth, pose, crop_origin, crop)
    naive_pixels_s = time.process_time() - start
    start = time.process_time()
    ref_dist, ref_obs = naive_tsdf(depth, pose, crop_origin, ref_surface)
    naive_s = time.process_time() - start
    intr = g.RELEASE_INTRINSICS
    fast = compute_tsdf(depth, pose, crop_origin, intrinsics=intr, shape=crop)
    assert np.array_equal(fast.distance, ref_dist) and np.array_equal(fast.observed, ref_obs), "naive != fast"
    fast_crop_s = _median_time(lambda: compute_tsdf(depth, pose, crop_origin, intrinsics=intr, shape=crop), args.repeat)
    full_s = statistics.median(per_stage["tsdf"]) + statistics.median(per_stage["hits"])
    n_crop, n_full = np.prod(crop), np.prod(g.FINE_SHAPE)
    print(
        f"TSDF on a {crop} crop: naive loops {naive_pixels_s:.2f} s (pixels) + {naive_s:.2f} s (voxels), "
        f"vectorised {fast_crop_s * 1000:.1f} ms, results identical"
    )
    print(
        f"  per voxel: naive voxel loop {naive_s / n_crop * 1e6:.1f} us, vectorised full frame (all steps) "
        f"{full_s / n_full * 1e9:.1f} ns -> ratio {naive_s / n_crop / (full_s / n_full):,.0f}x"
    )

    # exactness: float64 decisions alone, float64 + exact recompute near thresholds (the library),
    # and the exact float32 kernel evaluated on every voxel
    args_obs = (depth, pose, origin, intr, g.FINE_VOXEL, g.FINE_SHAPE)
    every = np.indices(g.FINE_SHAPE).reshape(3, -1).T
    f64_s = _median_time(lambda: _observe_fast(*args_obs), args.repeat)
    lib_s = _median_time(lambda: _observe_grid(*args_obs), args.repeat)
    all_s = _median_time(lambda: _observe_exact(every, depth, pose, origin, intr, g.FINE_VOXEL), 1)
    state, _ = _observe_grid(*args_obs)
    assert np.array_equal(state.ravel(), _observe_exact(every, depth, pose, origin, intr, g.FINE_VOXEL)), "exact"
    unsure = len(_observe_fast(*args_obs)[1])
    print(
        f"observation (steps 2-3), full grid: float64 only {f64_s * 1000:.0f} ms, exact (float64 + "
        f"{unsure:,} voxels recomputed) {lib_s * 1000:.0f} ms, exact float32 kernel on every voxel "
        f"{all_s * 1000:.0f} ms -> {all_s / lib_s:.1f}x (states identical)"
    )

    # full-grid scipy EDT vs the truncated exact squared distance
    full_surface = surface_voxels(depth, pose, origin, intrinsics=intr)
    scipy_s = _median_time(lambda: ndimage.distance_transform_edt(~full_surface), 1)
    ours_s = _median_time(lambda: truncated_squared_distance(full_surface), args.repeat)
    edt = ndimage.distance_transform_edt(~full_surface)
    ours = truncated_squared_distance(full_surface)
    assert np.array_equal(np.minimum(np.rint(edt**2), 145).astype(np.uint8), ours), "EDT mismatch"
    print(
        f"distance: scipy EDT full grid {scipy_s:.3f} s, truncated exact {ours_s * 1000:.1f} ms "
        f"-> {scipy_s / ours_s:.1f}x (CPU, identical up to the truncation)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
