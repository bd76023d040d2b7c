"""Equal-budget comparison of the models on synthetic rooms, measured in one run.

Every model is trained with its own recipe (the shipped ``<model>_synth_cpu``: loss, model
kwargs, data flags) for the same budget (iterations x batch, constant LR, seed, sampler, split),
scored on the ``test`` split under each protocol, and measured — trainable parameters, training
CPU seconds and peak RSS, inference CPU seconds per frame and peak RSS — each step in a fresh
spawn process (``benchmarks/compare.py``). A model that fails is reported in its row; the
others still run. Writes ``<out>/compare.md`` and ``<out>/compare.json`` and prints the table.

Usage (a small check; see docs/baselines.md for the real budget)::

    .venv/bin/python benchmarks/compare_models.py --make-data out/compare/data --frames 12 \\
        --out out/compare/small --iters 2 --batch 1 --infer-frames 1 --threads 1

    .venv/bin/python benchmarks/compare_models.py --make-data out/compare/rooms60 --frames 60 \\
        --out out/compare/big --iters <N> --batch <B> --lr 0.01 --infer-frames 3 --threads 1
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from compare import (  # benchmarks/compare.py, beside this script
    DEFAULT_MODELS,
    Budget,
    add_overrides,
    check_root,
    compare_models,
    prepare_rooms,
    recipe_for_model,
    run_context,
    table_markdown,
    write_outputs,
)

from torchssc.engine.evaluate import parse_protocols
from torchssc.metrics import PROTOCOLS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = parser.add_argument_group("data (one of)")
    data.add_argument("--root", type=Path,
                      help="prepared synthetic data with TSDFFine/, Depth/, Visibility/, RGB/, ForkNet/, LabelFine/")
    data.add_argument("--make-data", type=Path, metavar="DIR",
                      help="generate --frames synthetic rooms in DIR/raw and prepare them into DIR/prepared "
                           "(resumable; used when --root is not given)")
    data.add_argument("--frames", type=int, default=60, help="rooms to generate with --make-data")
    data.add_argument("--test-fraction", type=float, default=0.2, help="share of generated rooms in the test split")
    data.add_argument("--workers", type=int, default=1, help="processes for generating/preparing data")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma list of registered model names (sketch_aware_ssc allowed) or recipe paths")
    parser.add_argument("--override", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="extra recipe override for one model (repeatable), e.g. "
                             "sketch_aware_ssc:model.kwargs.backbone_weights=resnet50-imagenet.pth; "
                             "budget keys are refused")
    parser.add_argument("--iters", type=int, default=100, help="training iterations per model")
    parser.add_argument("--batch", type=int, default=1, help="global batch per iteration")
    parser.add_argument("--lr", type=float, default=0.01, help="constant SGD learning rate for every model")
    parser.add_argument("--seed", type=int, default=0, help="training seed (also data generation and eval seed)")
    parser.add_argument("--sampler", default="shuffle", choices=("shuffle", "with_replacement"),
                        help="train.sampler for every model (shuffle: the same frames in the same order)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (0: torch default)")
    parser.add_argument("--infer-frames", type=int, default=3, help="timed test frames per model (after 1 warm-up)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma list of evaluation protocols")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for runs/<model>/, compare.json and compare.md (must not hold these runs yet)")
    args = parser.parse_args(argv)
    if args.root is None and args.make_data is None:
        parser.error("give --root (prepared data) or --make-data DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    command = shlex.join(sys.orig_argv if argv is None else [sys.executable, __file__, *argv])
    root = args.root
    try:  # bad arguments fail here, before any model trains
        if root is None or (not root.is_dir() and args.make_data is not None):
            root = prepare_rooms(args.make_data, frames=args.frames, seed=args.seed, test_fraction=args.test_fraction,
                             workers=args.workers)
        counts = check_root(root)
        budget = Budget(iters=args.iters, batch=args.batch, lr=args.lr, seed=args.seed, sampler=args.sampler,
                        device=args.device, threads=args.threads)
        protocols = parse_protocols(args.protocols)
        specs = add_overrides([recipe_for_model(m) for m in args.models.split(",") if m], args.override)
    except (FileNotFoundError, ValueError) as exc:
        print(f"compare_models.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(specs)} models, {args.iters} x batch {args.batch}, lr {args.lr:g}, seed {args.seed}; "
          f"{counts['train']} train / {counts['test']} test frames in {root}; device {args.device}, "
          f"{args.threads or 'default'} thread(s)", flush=True)

    def progress(row: dict) -> None:
        state = "; ".join(f"{k} failed: {v}" for k, v in row["errors"].items()) or "ok"
        print(f"{row['label']}: {state} (train CPU {row.get('train_cpu_s', float('nan')):.1f} s, "
              f"infer CPU {row.get('infer_cpu_s', float('nan')):.2f} s/frame, {row.get('wall_s', 0):.0f} s wall)",
              flush=True)

    rows = compare_models(specs, root=root, out=args.out, budget=budget, protocols=protocols,
                          infer_frames=args.infer_frames, on_row=progress)
    context = run_context(budget=budget, root=root, protocols=protocols, infer_frames=args.infer_frames,
                          command=command)
    json_path, md_path = write_outputs(args.out, rows, context)
    print()
    print(table_markdown(rows, protocols))
    print(f"wrote {md_path} and {json_path}")
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
