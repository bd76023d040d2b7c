"""``torchssc eval RUN_OR_CONFIG --checkpoints SPEC [--protocol P] [--split S] [--save DIR] [key=value ...]``.

RUN_OR_CONFIG is a run folder (its ``config.yaml`` is read) or a YAML recipe (its run folder is
``<run.dir>/<run.name>``). ``--checkpoints``: ``200-250``, ``250``, ``last``, ``best`` (the epoch with the highest validation
mIoU recorded in ``log.jsonl``), ``all``, a checkpoint file, or a comma list of those. ``--protocol``: ``torchssc`` (default), ``sscnet``, ``all`` (the
MonoScene protocol), a comma list such as ``torchssc,all``, or ``every`` for the three.
Reports go to ``<run folder>/eval/<checkpoint stem>_<protocol>.json`` and ``.md`` (``--out``
to change). ``--weights NAME`` evaluates named weights (``torchssc weights``) instead: RUN_OR_CONFIG
is then optional (the entry's recipe and the checkpoint's model; overrides such as ``data.root=``
still apply) and reports go to ``./eval_<NAME>`` (docs/zoo.md).
Several processes: ``torchrun --nproc_per_node N -m torchssc.cli eval ...``.
See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from torchssc.config import load_config, run_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_or_config", metavar="RUN_OR_CONFIG", nargs="?", default=None,
                        help="a run folder, a YAML recipe or a recipe name (optional with --weights)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. data.root=DATA/NYU eval.seed=1"
    )
    parser.add_argument(
        "--checkpoints",
        default=None,
        metavar="SPEC",
        help="epochs A-B (inclusive), N, last, best (highest validation mIoU in log.jsonl), all, a checkpoint "
             "path, or a comma list (default: last)",
    )
    parser.add_argument("--weights", default=None, metavar="NAME",
                        help="named weights instead of --checkpoints (torchssc weights lists them; docs/zoo.md)")
    parser.add_argument(
        "--protocol",
        default=None,
        metavar="P",
        help="torchssc | sscnet | all (MonoScene) | a comma list | every (default: the recipe's eval.protocol)",
    )
    parser.add_argument("--split", default="test",
                        help="split list of data.root to evaluate, or a comma list of scene ids such as "
                             "0001,0002 (default: test)")
    parser.add_argument("--save", default=None, metavar="DIR", help="save DIR/results/<id>.npy and results_sketch/<id>.npy")
    parser.add_argument("--out", default=None, metavar="DIR", help="report folder (default: <run folder>/eval)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_run(run_or_config: str | os.PathLike, overrides: list[str]) -> tuple[dict, Path]:
    """``(cfg, run folder)`` from a run folder (``<dir>/config.yaml``), a YAML recipe or a shipped
    recipe's name (:func:`torchssc.config.find_recipe`)."""
    path = Path(run_or_config)
    if path.is_dir():
        config_path = path / "config.yaml"
        if not config_path.is_file():
            raise FileNotFoundError(f"{path}: a run folder must hold config.yaml")
        return load_config(config_path, overrides), path
    cfg = load_config(path, overrides)  # a recipe file or a shipped recipe's name
    return cfg, run_dir(cfg)


def parse_split(text: str) -> str | list[str]:
    """A split name (``"test"``), or a comma list of scene ids (``"0001,0002"``) as a list."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if len(parts) > 1 or (parts and parts[0].isdigit()):
        return parts
    return str(text)


def weights_run(args: argparse.Namespace) -> tuple[dict, list[Path], Path]:
    """``(cfg, [checkpoint], report folder)`` of ``--weights NAME``: the entry's recipe and file
    (:func:`torchssc.zoo.use.weights_config`), or RUN_OR_CONFIG's recipe when one is given."""
    from torchssc.zoo.use import weights_config

    if args.checkpoints is not None:
        raise ValueError("give --checkpoints or --weights, not both")
    overrides, source = list(args.overrides), args.run_or_config
    if source is not None and "=" in source and not Path(source).exists():  # an override, not a recipe
        overrides, source = [source, *overrides], None
    cfg, path = weights_config(args.weights, overrides, progress=not args.no_progress)
    if source is not None:
        cfg, _ = resolve_run(source, overrides)
    return cfg, [path], Path(args.out) if args.out else Path(f"eval_{args.weights}")


def run(args: argparse.Namespace) -> int:
    from torchssc.engine.evaluate import evaluate_checkpoints, parse_protocols, record_title, run_checkpoints
    from torchssc.engine.logs import setup_logging
    from torchssc.report import metrics_report, scores_table

    setup_logging()
    if args.weights is not None:
        cfg, checkpoints, out_dir = weights_run(args)
    else:
        if args.run_or_config is None:
            raise ValueError("give RUN_OR_CONFIG (a run folder, a recipe) or --weights NAME (torchssc weights)")
        cfg, folder = resolve_run(args.run_or_config, list(args.overrides))
        checkpoints = run_checkpoints(args.checkpoints or "last", folder)
        out_dir = Path(args.out) if args.out else folder / "eval"
    split = parse_split(args.split)
    protocols = parse_protocols(args.protocol if args.protocol is not None else cfg["eval"]["protocol"])
    records = evaluate_checkpoints(
        cfg,
        checkpoints,
        protocols=protocols,
        split=split,
        out_dir=out_dir,
        save_dir=args.save,
        progress=not args.no_progress,
    )
    if int(os.environ.get("RANK", "0") or 0) == 0:
        for record in records:
            print(metrics_report(record["metrics"], title=record_title(record)))
        rows = [([Path(r["checkpoint"]).name, str(r["epoch"]), r["protocol"]], r["metrics"]) for r in records]
        print(scores_table(["checkpoint", "epoch", "protocol"], rows))
        print(f"\nreports: {out_dir}")
    return 0
