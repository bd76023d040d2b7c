"""``torchssc demo``: the whole toolkit on embedded synthetic rooms, on the CPU, no download."""

from __future__ import annotations

import argparse
import logging
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo", help="working folder (default: ./demo); reruns resume")
    parser.add_argument("--frames", type=int, default=60, help="synthetic rooms to generate (default 60)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of rooms held out for testing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated rooms")
    parser.add_argument("--workers", type=int, default=2, help="processes for generation and preparation")
    parser.add_argument("--config", help="training recipe: a file or a shipped recipe's name (default: sketch_aware_ssc_synth_cpu)")
    parser.add_argument("--renders", type=int, default=3, help="test rooms to render")
    parser.add_argument("overrides", nargs="*", help="recipe overrides key=value, e.g. train.epochs=2")


def run(args: argparse.Namespace) -> int:
    from torchssc.demo import run_demo

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    # a bad folder, recipe or override: cli.main prints one line (--debug: the traceback)
    result = run_demo(args.out, frames=args.frames, test_fraction=args.test_fraction, seed=args.seed,
                      workers=args.workers, config=args.config, overrides=args.overrides, renders=args.renders)
    print()
    print(result["table"])
    for path in result["renders"]:
        print(f"wrote {path}")
    print(f"done in {time.perf_counter() - start:.0f} s; summary in {args.out}/summary.md")
    return 0
