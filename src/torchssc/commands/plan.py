"""``torchssc plan RECIPE [key=value ...] [--gpu-mem 24GB] [--max-batch 16] [--json FILE]``: what a
training run will cost before it starts (:mod:`torchssc.engine.plan`, docs/gpu.md)."""

from __future__ import annotations

import argparse
import json

from torchssc.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a shipped recipe's name (e.g. sketch_aware_ssc_nyu) or a YAML recipe file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, e.g. model.kwargs.width=64")
    parser.add_argument("--gpu-mem", metavar="SIZE", default=None, help="say which batch fits this memory, e.g. 24GB")
    parser.add_argument("--max-batch", type=int, default=16, help="the largest batch in the table (default 16)")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the measured costs as JSON")
    parser.add_argument("--measure-batch", type=int, default=2, help="the batch of the measured CPU step (default 2)")


def run(args: argparse.Namespace) -> int:
    from torchssc.engine.plan import measure_step, parse_bytes, plan_report
    from torchssc.io.atomic import atomic_path

    cfg = load_config(args.config, args.overrides)
    gpu = parse_bytes(args.gpu_mem) if args.gpu_mem else None
    if args.max_batch < 1:
        raise ValueError(f"--max-batch {args.max_batch}: expected a positive integer")
    if args.measure_batch < 1:
        raise ValueError(f"--measure-batch {args.measure_batch}: expected a positive integer")
    print(f"measuring one training step of {cfg['model']['name']} at batch {args.measure_batch} on the CPU ...",
          flush=True)
    cost = measure_step(cfg, batch_size=args.measure_batch)
    print(plan_report(cost, gpu_bytes=gpu, max_batch=args.max_batch))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(cost.to_dict(), indent=2))
    return 0
