"""Which camera took the depth of a depthbin folder (docs/nyucad.md, "Which camera").

    python benchmarks/which_camera.py DATA/depthbin/NYUCADtest --frames 50

For every frame, the depth is back-projected with each candidate camera exactly as `torchssc
prepare` does, and the mean distance (fine voxels, capped at 5) from its points to the nearest
occupied ground-truth voxel is measured (:mod:`torchssc.prepare.camera_check`). The camera with
the smallest distance took the depth: rendered depth (NYUCAD) sits on the ground truth's surface,
distance near 0, with the right camera only. Measured on NYU's frame 0001 (Kinect depth): release
0.649, sscnet 0.723.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torchssc.geometry import INTRINSICS_PRESETS, Intrinsics
from torchssc.prepare.camera_check import compare_cameras
from torchssc.prepare.runner import find_frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", help="a depthbin folder (NYUCADtest/, NYUtest/, ...)")
    parser.add_argument("--frames", type=int, default=20, help="how many frames (evenly spread; default 20)")
    parser.add_argument("--camera", action="append", default=[], metavar="NAME=FX,FY,CX,CY",
                        help="another candidate besides the presets (release, sscnet)")
    args = parser.parse_args(argv)
    candidates = dict(INTRINSICS_PRESETS)
    for item in args.camera:
        name, _, values = item.partition("=")
        candidates[name] = Intrinsics.parse(values)
    frames = list(find_frames(Path(args.raw)).values())
    step = max(1, len(frames) // max(1, args.frames))
    chosen = frames[::step][: args.frames]
    fits = compare_cameras(chosen, candidates)
    print(f"{args.raw}: {len(chosen)} frames")
    print("| camera | mean distance (voxels) | points within 1 voxel |")
    print("|---|---|---|")
    for name, fit in sorted(fits.items(), key=lambda kv: kv[1].distance):
        print(f"| {name} | {fit.distance:.3f} | {100 * fit.on_surface:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
