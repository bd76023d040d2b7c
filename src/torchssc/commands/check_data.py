"""``torchssc check-data ROOT``: check every scene of a prepared folder (the data doctor).

Prints one line per problem, naming the file and what is wrong, then a summary; exits 1 when
anything is wrong, 2 when the folder or a split list is missing. A layer over
:func:`torchssc.data.check.check_root`.
"""

from __future__ import annotations

import argparse
import sys

from torchssc.io.prepared import SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", metavar="ROOT", help="data folder (torchssc layout, the NYU release, or another layout: --dataset)")
    parser.add_argument("--splits", default=",".join(SPLITS), metavar="NAMES",
                        help="comma-separated split lists to check (default: train,test)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1: reading is the cost)")
    parser.add_argument("--dataset", default=None, metavar="NAME|SPEC.yaml",
                        help="the dataset spec whose layout ROOT has (default: guessed; an EdgeNet-style "
                             "npz folder is checked as nyucad_edgenet, anything else as the torchssc layout)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from torchssc.data.check import check_root

    splits = tuple(s for s in args.splits.split(",") if s)
    try:
        report = check_root(args.root, splits, workers=args.workers, progress=not args.no_progress,
                            dataset=args.dataset)
    except (FileNotFoundError, ValueError) as exc:
        print(f"torchssc check-data: error: {exc}", file=sys.stderr)
        return 2
    for frame_id, problems in report.bad.items():
        for problem in problems:
            print(f"BAD {frame_id}: {problem}")
    print(report.summary())
    return 0 if report.ok else 1
