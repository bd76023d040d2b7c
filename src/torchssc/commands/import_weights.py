"""``torchssc import-weights FILE --from FORMAT [--recipe RECIPE] [--out OUT.pt] [key=value ...]``:
a checkpoint of another code base written as ours, for ``eval`` / ``predict`` / ``viz`` and for
resuming nothing (it holds no optimiser state). Formats (:mod:`torchssc.engine.import_weights`,
docs/zoo.md): ``torchssc-original`` (the original TorchSSC's ``epoch-N.pth``; default recipe
``sketch_aware_ssc_nyu``) and ``ssc-wlj`` (the DDRNet / AICNet authors' files; default recipe
``aicnet_nyu`` or ``ddrnet_nyu`` by the file's keys)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from torchssc.engine.import_weights import FORMATS

    parser.add_argument("file", metavar="FILE", help="the checkpoint to import (read with weights_only=True)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides of the recipe, e.g. data.root=DATA/NYU")
    parser.add_argument("--from", dest="source", required=True, choices=FORMATS,
                        help="the file's format: torchssc-original (the original TorchSSC's epoch-N.pth) or "
                             "ssc-wlj (the DDRNet/AICNet authors' files)")
    parser.add_argument("--recipe", default=None, metavar="RECIPE",
                        help="the recipe of the model (a shipped recipe's name or a YAML file); default: "
                             "sketch_aware_ssc_nyu for torchssc-original, aicnet_nyu or ddrnet_nyu by the file "
                             "for ssc-wlj")
    parser.add_argument("--out", default=None, metavar="OUT.pt",
                        help="the checkpoint to write (default: FILE's folder, <stem>_torchssc.pt)")


def run(args: argparse.Namespace) -> int:
    from torchssc.engine.import_weights import import_weights

    out, checkpoint = import_weights(args.file, args.source, recipe=args.recipe, overrides=args.overrides,
                                     out=args.out)
    skipped = checkpoint["imported_from"]["skipped"]
    cfg = checkpoint["config"]
    why = " by rule (the original's dead downsample2/3/4 branches of its stride-1 blocks)" if skipped else ""
    print(f"{args.file}: {len(checkpoint['model'])} tensors imported ({args.source}), {skipped} skipped{why}")
    print(f"model {cfg['model']['name']} (recipe {cfg['run']['name']}), epoch {checkpoint['epoch']}, "
          f"iteration {checkpoint['iteration']}")
    print(f"wrote {out}")
    return 0
