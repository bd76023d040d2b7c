"""``torchssc train CONFIG [key=value ...] [--resume | --resume-from CKPT]``.

The same command runs 1 process (``torchssc train ...``) or many (``torchrun --nproc_per_node N
-m torchssc.cli train ...``, or ``torchrun ... $(which torchssc) train ...``); see docs/training.md.
"""

from __future__ import annotations

import argparse
import logging

import yaml

from torchssc.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a shipped recipe's name (e.g. sketch_aware_ssc_nyu), a YAML recipe file or a run folder's config.yaml")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, YAML values, e.g. optim.lr=0.01 train.amp=bf16"
    )
    parser.add_argument("--print-config", action="store_true",
                        help="print the merged recipe (its composed parts, then the overrides) as YAML and exit")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run folder's latest checkpoint exactly")
    group.add_argument("--resume-from", metavar="CKPT", default=None, help="continue from this checkpoint file")


def run(args: argparse.Namespace) -> int:
    from torchssc.engine.logs import setup_logging
    from torchssc.engine.checkpoint import NonFiniteError
    from torchssc.engine.train import main

    setup_logging()
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False), end="")
        return 0
    resume = args.resume_from if args.resume_from else bool(args.resume)
    try:
        summary = main(cfg, resume=resume)
    except NonFiniteError as exc:  # the run went NaN/inf: one line, the last good checkpoint named
        logging.getLogger("torchssc.train").error("%s", exc)
        return 1
    logging.getLogger("torchssc.train").info(
        "done: epoch %d, iteration %d, last checkpoint %s", summary["epoch"], summary["iteration"], summary["checkpoint"]
    )
    return 0
