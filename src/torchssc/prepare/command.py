"""``torchssc prepare``: a raw depthbin split -> the prepared TorchSSC layout.

Example::

    torchssc prepare --raw data/depthbin/NYUtrain --out data/NYU \\
        --rgb-mat nyu_depth_v2_labeled.mat --workers 8

A thin layer over :func:`torchssc.prepare.runner.prepare_split`.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from torchssc.geometry import Intrinsics
from torchssc.io.prepared import SPLITS
from torchssc.prepare.forknet import CLASS_MAPS
from torchssc.prepare.runner import TIE_RULES, prepare_split


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", required=True, metavar="DIR",
                        help="raw split folder holding NYU%%04d_0000.bin + .png (e.g. NYUtrain/)")
    parser.add_argument("--out", required=True, metavar="ROOT", help="prepared root (TorchSSC layout)")
    parser.add_argument("--split", choices=SPLITS, default=None,
                        help="split list to write (default: 'test' if the raw folder's name contains "
                             "'test', else 'train')")
    rgb = parser.add_mutually_exclusive_group()
    rgb.add_argument("--rgb-mat", metavar="FILE", default=None,
                     help="official nyu_depth_v2_labeled.mat; frame id = 1-based image index")
    rgb.add_argument("--rgb-dir", metavar="DIR", default=None,
                     help="folder of NYU%%04d_colors.png (default: use NYU%%04d_colors.png beside "
                          "the .bin when present; frames without RGB are prepared without it)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.add_argument("--fine", action="store_true",
                        help="also write the 240x144x240 flipped TSDF (TSDFFine/, SSCNet input)")
    parser.add_argument("--forknet", action="store_true",
                        help="also write ForkNet's 80x48x80 projective TSDF, labels and surface (ForkNet/)")
    parser.add_argument("--forknet-class-map", choices=CLASS_MAPS, default="standard",
                        help="36->11 map of ForkNet's labels: the standard map (default) or ForkNet's own "
                             "script's, which turns doors into furniture")
    parser.add_argument("--fine-labels", action="store_true",
                        help="also write the 240x144x240 labels (LabelFine/, the CCPNet-style target)")
    parser.add_argument("--tie-rule", choices=TIE_RULES, default="default",
                        help="label downsampling ties: smallest class id (default) or SSCNet's scan order")
    parser.add_argument("--intrinsics", default=None, metavar="PRESET|FX,FY,CX,CY[,W,H]",
                        help="camera intrinsics: 'release' (the NYU release: 518.8579,519.4696,325.58,"
                             "253.74), 'sscnet' (518.8579,518.8579,320,240) or values (default: "
                             "intrinsics.json beside the frames, else 'release')")
    parser.add_argument("--fine-intrinsics", default=None, metavar="PRESET|FX,FY,CX,CY[,W,H]",
                        help="intrinsics of the --fine TSDF (default: 'sscnet' for NYU release "
                             "intrinsics, as SSCNet's data layer; the dataset's own otherwise)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        kwargs = {}
        if args.intrinsics is not None:
            kwargs["intrinsics"] = Intrinsics.parse(args.intrinsics)
        if args.fine_intrinsics is not None:
            kwargs["fine_intrinsics"] = Intrinsics.parse(args.fine_intrinsics)
        summary = prepare_split(
            args.raw,
            args.out,
            split=args.split,
            rgb_dir=args.rgb_dir,
            rgb_mat=args.rgb_mat,
            workers=args.workers,
            fine=args.fine,
            tie_rule=args.tie_rule,
            forknet=args.forknet,
            forknet_class_map=args.forknet_class_map,
            fine_labels=args.fine_labels,
            progress=not args.no_progress,
            report=lambda line: tqdm.write(f"FAILED {line}", file=sys.stderr),
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        print(f"torchssc prepare: error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    if summary.interrupted:
        print("torchssc prepare: interrupted; the frames above are complete, rerun to prepare the rest",
              file=sys.stderr)
        return 130
    return 0 if summary.ok else 1
