"""How robust is the demo's result? The demo recipe trained under several seeds (and variants).

``torchssc demo`` trains one model and compares it with the trivial baselines. Whether its SC
IoU beats "everything occupied" under the ``torchssc`` protocol depends on the run (README,
docs/demo.md). This script measures that: it trains the recipe once per (variant, seed), each
in a fresh spawn process (several at once with ``--parallel``: one GPU holds many of these small
runs), and scores the last checkpoint on the test rooms under ``torchssc`` and ``sscnet`` with
two decodings of the same 12-class probabilities:

* ``argmax`` — the protocols' rule (docs/evaluation.md): the most probable of the 12 classes;
* ``occupancy`` — a diagnostic, not a protocol: empty where P(empty) >= 0.5, else the most
  probable of classes 1..11. It separates "the model does not know the hidden free space" from
  "the occupied probability is split over several classes, so empty wins the argmax".

Each row is printed as a JSON line when its run ends and appended to ``<out>/seeds.jsonl``; the
summary table (per variant: SC IoU per seed, how many beat the all-occupied baseline) goes to
``<out>/seeds.md``. The baseline is scored as ``torchssc demo`` scores it.

Usage (data from ``torchssc demo`` or :func:`torchssc.synth.generator.generate_and_prepare`)::

    .venv/bin/python benchmarks/demo_seeds.py --root demo/data --out out/seeds --seeds 0,1,2 \\
        --variant base --variant valid loss.kwargs.semantic_reduction=valid
    # on a GPU machine: --device cuda --parallel 8 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch
import torch.nn.functional as F

SCORED = ("torchssc", "sscnet")
"""The protocols this benchmark scores (of :data:`torchssc.metrics.PROTOCOLS`)."""
KEYS = ("sc_precision", "sc_recall", "sc_iou", "ssc_miou")


def occupancy_first(logits: torch.Tensor) -> torch.Tensor:
    """``(B, 12, D, H, W)`` logits -> ``(B, D, H, W)``: empty where P(empty) >= 0.5, else the most
    probable of classes 1..11 (the ``occupancy`` diagnostic)."""
    prob = logits.float().softmax(1)
    return torch.where(prob[:, 0] >= 0.5, 0, prob[:, 1:].argmax(1) + 1)


class Decoded(torch.nn.Module):
    """``model`` with its ``"semantic"`` logits ``(B, C, D, H, W)`` replaced by the one-hot logits of
    ``decode(logits)`` ``(B, D, H, W)``: scoring it (argmax, as every protocol does) scores that
    decoding."""

    def __init__(self, model: torch.nn.Module, decode) -> None:
        super().__init__()
        self.model, self.decode = model, decode

    def forward(self, batch: dict) -> dict:
        outputs = dict(self.model(batch))
        semantic = outputs["semantic"]
        labels = self.decode(semantic).long()
        outputs["semantic"] = F.one_hot(labels, semantic.shape[1]).movedim(-1, 1).to(semantic.dtype)
        return outputs


DECODINGS = {"argmax": None, "occupancy": occupancy_first}  # None: the protocols' argmax


def score(cfg: dict, checkpoint: Path) -> dict:
    """``{"<decoding>_<protocol>": [SC precision, recall, IoU, mIoU] in %}`` on the test split,
    by the code of ``torchssc eval`` (one inference pass per decoding: 12 frames, seconds)."""
    from torchssc.engine.checkpoint import load_model
    from torchssc.engine.evaluate import score_model, scoring_dataset

    test = scoring_dataset(cfg, "test", SCORED)
    model, _ = load_model(checkpoint, cfg, device=cfg["train"]["device"])
    if hasattr(model, "seed"):  # as score_model sets it, also for the wrapped model
        model.seed = int(cfg["eval"]["seed"])
    out = {}
    for name, decode in DECODINGS.items():
        scores = score_model(model if decode is None else Decoded(model, decode), test, protocols=SCORED,
                             batch_size=cfg["eval"]["batch_size"], seed=cfg["eval"]["seed"], progress=False)
        for protocol, metrics in scores.metrics.items():
            out[f"{name}_{protocol}"] = percent(metrics.compute())
    return out


def percent(result: dict) -> list[float]:
    """SC precision, recall, IoU and mIoU of :meth:`SSCMetrics.compute`, in %."""
    return [round(100 * result[k], 2) for k in KEYS]


def run_one(variant: str, overrides: list[str], seed: int, args: dict) -> dict:
    """Train one (variant, seed) and score it; runs in its own process."""
    import time

    import torch

    from torchssc.config import load_config
    from torchssc.engine.checkpoint import find_last_checkpoint
    from torchssc.engine.train import main as train_main

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    name = f"{variant}_s{seed}"
    cfg = load_config(args["recipe"], [f"data.root={args['root']}", f"run.dir={args['out']}/runs", f"run.name={name}",
                                       f"train.seed={seed}", f"train.device={args['device']}", "train.progress=false",
                                       *overrides, *args["common"]])
    t0 = time.perf_counter()
    last = find_last_checkpoint(Path(args["out"]) / "runs" / name)
    if last is None:  # a rerun scores what an earlier one trained
        train_main(cfg)
        last = find_last_checkpoint(Path(args["out"]) / "runs" / name)
    row = {"variant": variant, "seed": seed, "overrides": overrides, "train_s": round(time.perf_counter() - t0, 1)}
    row.update(score(cfg, last))
    return row


def summary(rows: list[dict], baseline: dict) -> str:
    """Per variant and protocol: SC IoU of each seed (argmax | occupancy), wins over the baseline."""
    from torchssc.report import markdown_table

    body = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = sorted((r for r in rows if r["variant"] == variant and "error" not in r), key=lambda r: r["seed"])
        for p in SCORED:
            base = baseline[p][2]
            am = [r[f"argmax_{p}"][2] for r in mine]
            oc = [r[f"occupancy_{p}"][2] for r in mine]
            miou = [r[f"argmax_{p}"][3] for r in mine]
            body.append([variant, p, f"{base:.1f}", " ".join(f"{v:.1f}" for v in am), f"{sum(v > base for v in am)}/{len(am)}",
                         " ".join(f"{v:.1f}" for v in oc),
                         f"{min(miou, default=float('nan')):.1f}-{max(miou, default=float('nan')):.1f}"])
    head = ["variant", "protocol", "all occupied", "SC IoU, argmax (per seed)", "beats it",
            "SC IoU, occupancy decoding", "mIoU, argmax"]
    return markdown_table(head, body) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="prepared synthetic rooms (train and test splits)")
    parser.add_argument("--out", type=Path, required=True, help="runs, seeds.jsonl and seeds.md go here")
    parser.add_argument("--recipe", help="a recipe file or name (default: the demo's, torchssc.demo.RECIPE)")
    parser.add_argument("--seeds", default="0,1,2", help="comma list of training seeds")
    parser.add_argument("--variant", action="append", nargs="+", default=[], metavar="NAME [KEY=VALUE ...]",
                        help="a named set of recipe overrides (repeatable; default: 'base', the recipe as it is)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (one process each)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = torch default)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="a recipe override for every run (repeatable), e.g. train.max_iters=2")
    return parser.parse_args(argv)


def parse_variants(items: list[list[str]]) -> dict[str, list[str]]:
    """``[[name, "key=value", ...], ...]`` -> ``{name: ["key=value", ...]}``."""
    variants = {}
    for name, *overrides in items or [["base"]]:
        if "=" in name or name in variants:
            raise SystemExit(f"--variant {name!r}: expected a new NAME first, then KEY=VALUE overrides")
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise SystemExit(f"--variant {name}: not KEY=VALUE: {bad}")
        variants[name] = overrides
    return variants


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants = parse_variants(args.variant)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    args.out.mkdir(parents=True, exist_ok=True)
    from torchssc.config import load_config
    from torchssc.config import find_recipe
    from torchssc.demo import RECIPE, baselines
    from torchssc.engine.evaluate import score_model, scoring_dataset
    from torchssc.io.atomic import write_bytes_atomic

    args.recipe = find_recipe(args.recipe or RECIPE)
    shared = {"root": str(args.root), "out": str(args.out), "recipe": str(args.recipe), "device": args.device,
              "threads": args.threads, "common": list(args.overrides)}
    cfg = load_config(args.recipe, [f"data.root={args.root}", *args.overrides])
    name, common = list(baselines(cfg).items())[-1]  # the most frequent class everywhere
    scores = score_model(common, scoring_dataset(cfg, "test", SCORED), protocols=SCORED, seed=cfg["eval"]["seed"],
                         progress=False)
    baseline = {p: percent(m.compute()) for p, m in scores.metrics.items()}
    print(json.dumps({"baseline": name, **baseline}), flush=True)
    if args.threads:  # before the spawn children start: their OpenMP pool is sized at import
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    rows = []
    log = args.out / "seeds.jsonl"
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_one, v, o, s, shared): (v, s) for s in seeds for v, o in variants.items()}
        for future in as_completed(futures):
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 - one failed run is reported; the others go on
                row = {"variant": futures[future][0], "seed": futures[future][1], "error": repr(exc)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            with open(log, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    table = summary(rows, baseline)
    write_bytes_atomic(args.out / "seeds.md", table.encode())
    print(table)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
