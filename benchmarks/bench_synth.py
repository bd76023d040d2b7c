"""Speed of the synthetic rooms generator: seconds per 640x480 frame on one core, by stage.

Baseline measured in the same run: a naive per-pixel Python ray cast (loop over pixels, then
over boxes, slab test per box) on a crop of the same frames, extrapolated to the full image.

    .venv/bin/python benchmarks/bench_synth.py --frames 5
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core

import argparse  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from torchssc.geometry import NYU_INTRINSICS as K  # noqa: E402
from torchssc.synth.generator import frame_streams, generate_frame, write_synth_frame  # noqa: E402
from torchssc.synth.raycast import raycast  # noqa: E402
from torchssc.synth.rooms import sample_scene  # noqa: E402


def naive_raycast(boxes, pose, v0, v1, u0, u1):
    """Per-pixel, per-box slab test in plain Python (the baseline)."""
    rot, origin = pose[:3, :3], pose[:3, 3]
    depth = np.zeros((v1 - v0, u1 - u0))
    for v in range(v0, v1):
        for u in range(u0, u1):
            d = rot @ np.array([(u - K.cx) / K.fx, (v - K.cy) / K.fy, 1.0])
            best = math.inf
            for i in range(len(boxes)):
                c, s = math.cos(boxes.yaw[i]), math.sin(boxes.yaw[i])
                rel = origin - boxes.center[i]
                o = (c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2])
                dl = (c * d[0] + s * d[1], -s * d[0] + c * d[1], d[2])
                t0, t1 = -math.inf, math.inf
                for k in range(3):
                    if dl[k] == 0.0:
                        if abs(o[k]) > boxes.half[i][k]:
                            t0 = math.inf
                        continue
                    a = (-boxes.half[i][k] - o[k]) / dl[k]
                    b = (boxes.half[i][k] - o[k]) / dl[k]
                    t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
                if t0 <= t1 and 1e-3 < t0 < best:
                    best = t0
            depth[v - v0, u - u0] = best if best < math.inf else 0.0
    return depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop", type=int, default=32, help="side of the naive baseline's pixel crop")
    args = parser.parse_args()

    generate_frame(args.seed, 1000)  # warm-up (imports, caches)
    cpu = time.process_time  # CPU seconds of this (single-threaded) process: robust to a busy machine
    stages: dict[str, float] = {}
    totals, walls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for fid in range(1, args.frames + 1):
            w0, t0 = time.perf_counter(), cpu()
            frame = generate_frame(args.seed, fid, noise="kinect", timings=stages, clock=cpu)
            t1 = cpu()
            write_synth_frame(tmp, fid, frame)
            t2 = cpu()
            stages["write"] = stages.get("write", 0.0) + t2 - t1
            totals.append(t2 - t0)
            walls.append(time.perf_counter() - w0)
    n = args.frames
    print(f"synthetic frame 640x480, one core, {n} frames (kinect noise, 3 files written); CPU seconds")
    for name, sec in stages.items():
        print(f"  {name:10s} {sec / n:7.3f} s/frame")
    print(f"  {'total':10s} {np.mean(totals):7.3f} s/frame CPU (min {min(totals):.3f}, max {max(totals):.3f}); "
          f"wall {np.mean(walls):.3f} s/frame (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

    # Ray casting alone vs the naive loop, same scenes, per pixel.
    fast, slow, pixels = 0.0, 0.0, 0
    c = args.crop
    for fid in range(1, n + 1):
        scene = sample_scene(frame_streams(args.seed, fid)[0])
        pose = scene.pose
        t0 = cpu()
        hits = raycast(scene.boxes, pose)
        fast += cpu() - t0
        v0, u0 = K.height // 2 - c // 2, K.width // 2 - c // 2
        t0 = cpu()
        ref = naive_raycast(scene.boxes, pose, v0, v0 + c, u0, u0 + c)
        slow += (cpu() - t0) * (K.width * K.height) / (c * c)
        pixels += c * c
        assert np.allclose(ref, hits.depth[v0:v0 + c, u0:u0 + c], atol=1e-9)
    print(f"ray cast 640x480 (CPU seconds): vectorised {fast / n:.3f} s/frame; naive per-pixel loop "
          f"{slow / n:.1f} s/frame (extrapolated from {pixels} pixels); speed-up x{slow / fast:.0f}")


if __name__ == "__main__":
    main()
