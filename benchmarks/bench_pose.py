"""Accuracy of `torchssc predict`'s pose estimate on synthetic frames, where the truth is known.

For each generated frame (Kinect-like noise by default) the pose is estimated from the depth
alone and compared with the frame's true camera-to-world pose:

* gravity error: angle between the estimated and true up vectors (degrees);
* height error: estimated minus true camera height above the floor (cm);
* yaw error: angle between the estimated world x axis and the nearest true room axis (the
  synthetic rooms are axis-aligned in world, so room directions are known modulo 90 degrees);
* SSC box shift: distance between the box origins (SSCNet's rule, torchssc.geometry) once the yaw ambiguity is removed.

    .venv/bin/python benchmarks/bench_pose.py --frames 100 [--noise none]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from torchssc.predict.pose import estimate_pose
from torchssc.synth.generator import generate_frame


def errors(true_pose: np.ndarray, est) -> tuple[float, float, float]:
    up_true = true_pose[2, :3]
    gravity = np.degrees(np.arccos(np.clip(est.up_cam @ up_true, -1.0, 1.0)))
    floor_z = 0.0
    height = est.camera_height - (true_pose[2, 3] - floor_z)
    rel = true_pose[:3, :3] @ est.pose[:3, :3].T  # true world <- estimated world
    x_est_in_true = rel[:, 0]
    horizontal = x_est_in_true[:2] / max(np.linalg.norm(x_est_in_true[:2]), 1e-12)
    yaw = np.degrees(np.arccos(np.clip(np.max(np.abs(horizontal)), -1.0, 1.0)))
    return float(gravity), float(height), float(yaw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--noise", default="kinect", choices=("kinect", "none"))
    args = parser.parse_args()
    rows, failures, seconds = [], 0, []
    for frame_id in range(1, args.frames + 1):
        frame = generate_frame(args.seed, frame_id, noise=args.noise)
        start = time.process_time()
        try:
            est = estimate_pose(frame.depth)
        except ValueError:
            failures += 1
            continue
        seconds.append(time.process_time() - start)
        rows.append(errors(frame.pose.astype(np.float64), est))
    arr = np.array(rows)
    print(f"{args.frames} synthetic frames (seed {args.seed}, noise {args.noise}); no estimate for {failures}")
    for k, (name, unit) in enumerate((("gravity error", "deg"), ("height error", "m"), ("yaw error mod 90", "deg"))):
        a = np.abs(arr[:, k])
        print(f"{name:18s} median {np.median(a):.3f} {unit}, 90th pct {np.percentile(a, 90):.3f}, max {a.max():.3f}")
    print(f"frames with gravity < 2 deg, |height| < 5 cm and yaw < 3 deg: "
          f"{np.mean((arr[:, 0] < 2) & (np.abs(arr[:, 1]) < 0.05) & (arr[:, 2] < 3)) * 100:.1f}%")
    print(f"CPU seconds per estimate: median {np.median(seconds):.3f}")


if __name__ == "__main__":
    main()
