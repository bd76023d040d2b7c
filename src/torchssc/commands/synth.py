"""``torchssc synth``: write seeded procedural rooms in the raw depthbin format plus RGB.

Example::

    torchssc synth --out data/synth --frames 200 --seed 0 --workers 2
    torchssc prepare --raw data/synth/NYUtrain --out data/synth_prepared
"""

from __future__ import annotations

import argparse
import logging
import sys

from torchssc.geometry import NYU_INTRINSICS, Intrinsics
from torchssc.synth.generator import generate_dataset
from torchssc.synth.render import NOISE_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset folder (NYUtrain/, NYUtest/, train.txt, test.txt)")
    parser.add_argument("--frames", type=int, required=True, help="number of frames N (ids 1..N)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of frames in NYUtest (default 0.2)")
    parser.add_argument("--noise", choices=NOISE_MODES, default="kinect", help="depth noise model (default kinect)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--intrinsics", default=None,
                        help="fx,fy,cx,cy[,width,height] (default NYU: 518.8579,518.8579,320,240,640,480)")
    parser.add_argument("--layout", choices=("depthbin", "scans"), default="depthbin",
                        help="depthbin: NYUtrain/ NYUtest/ as SSCNet's (default); scans: one folder of "
                             "frames in ScanNet's exporter layout (depth/ color/ pose/ intrinsic/) with a "
                             "label volume per frame (label/), docs/datasets.md")
    parser.add_argument("--no-labels", action="store_true", help="--layout scans: no label/ volumes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        intrinsics = Intrinsics.parse(args.intrinsics) if args.intrinsics else NYU_INTRINSICS
        if args.layout == "scans":
            from torchssc.synth.scans import generate_scan_folder

            split = generate_scan_folder(args.out, args.frames, seed=args.seed, test_fraction=args.test_fraction,
                                         noise=args.noise, intrinsics=intrinsics, labels=not args.no_labels,
                                         progress=not args.no_progress)
            print(f"{args.out}: {len(split['train'])} train, {len(split['test'])} test frames (scans layout)")
            return 0
        split = generate_dataset(args.out, args.frames, seed=args.seed, test_fraction=args.test_fraction,
                                 noise=args.noise, workers=args.workers, intrinsics=intrinsics,
                                 progress=not args.no_progress)
    except ValueError as exc:
        print(f"torchssc synth: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(split['train'])} train, {len(split['test'])} test frames")
    return 0
