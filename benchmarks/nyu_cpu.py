"""Real NYU on a CPU: train the 2D-prior models on the released files, choose each checkpoint on
the held-out validation scenes, and score them once on the 654 test scenes beside the baselines.

One command reproduces docs/nyu.md given the released folder (../shared/data/nyu_torchssc):

    .venv/bin/python benchmarks/nyu_cpu.py --data ../shared/data/nyu_torchssc --out runs/nyu_cpu

What it does, in order:

1. trains each run (default: ``prior`` = the recipe ``sketch_aware_ssc_prior_nyu_cpu`` and
   ``unet`` = ``unet3d_prior_nyu_cpu``), one process per run (``--parallel 2 --threads 1`` trains
   both at once, one core each); a run that already finished is not trained again, an
   interrupted one resumes;
2. picks each run's checkpoint with the highest validation mIoU (``log.jsonl``; the validation
   scenes are held out of the training split and listed in ``<run>/val_ids.txt``): the test
   scenes are never used to choose anything;
3. scores, on the test split, by the one scoring path of ``torchssc eval``
   (:func:`torchssc.engine.evaluate.score_model`), under ``torchssc`` and ``all``: each chosen
   checkpoint, "everything occupied" (the training split's most frequent class everywhere) and the
   2D prior alone (:class:`torchssc.models.constant.LiftedPrior`);
4. writes ``<out>/nyu_results.json`` and ``.md`` (SC precision / recall / IoU, SSC IoU per class
   and mIoU, in %) and renders ground truth | prediction for ``--render`` test scenes.

Options: ``--run NAME RECIPE [KEY=VALUE ...]`` (repeatable) replaces the default runs; ``--set
KEY=VALUE`` applies to every run (e.g. ``train.max_iters=2`` for a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

DEFAULT_RUNS = [["prior", "sketch_aware_ssc_prior_nyu_cpu"], ["unet", "unet3d_prior_nyu_cpu"]]
PROTOCOLS = ("torchssc", "all")
RENDER = "0001,0200"


def train_run(name: str, recipe: str, overrides: list[str], args: dict) -> dict:
    """Train one run in this (child) process; returns its folder and the time it took."""
    import torch

    from torchssc.config import load_config, run_dir
    from torchssc.engine.checkpoint import find_last_checkpoint
    from torchssc.engine.train import main as train_main

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    cfg = load_config(recipe, [f"data.root={args['data']}", f"run.dir={args['out']}/runs", f"run.name={name}",
                               "train.progress=false", *overrides, *args["common"]])
    wall, cpu = time.perf_counter(), time.process_time()
    result = train_main(cfg, resume=find_last_checkpoint(run_dir(cfg)) is not None)
    rows = [json.loads(line) for line in (Path(result["run_dir"]) / "log.jsonl").read_text().splitlines() if line]
    return {"name": name, "recipe": recipe, "overrides": overrides, "run_dir": str(result["run_dir"]),
            "iteration": result["iteration"], "threads": torch.get_num_threads(),
            # this invocation (0 when the run was already trained), and the run's own epochs
            "train_wall_s": round(time.perf_counter() - wall, 1), "train_cpu_s": round(time.process_time() - cpu, 1),
            "epochs_wall_s": round(sum(r["time_s"] for r in rows), 1)}


def percent(result: dict) -> dict:
    """The headline numbers of :meth:`SSCMetrics.compute`, in %."""
    out = {k: round(100 * float(result[k]), 2) for k in ("sc_precision", "sc_recall", "sc_iou", "ssc_miou")
           if result.get(k) is not None and result[k] == result[k]}
    out["ssc_iou"] = {c: round(100 * float(v), 2) for c, v in result["ssc_iou"].items()}
    return out


def score(models: dict, cfg: dict, save: dict[str, Path], split) -> dict:
    """``{method: {protocol: numbers}}`` on ``split``, every method through one scoring path."""
    from torchssc.engine.evaluate import score_model, scoring_dataset

    dataset = scoring_dataset(cfg, split, PROTOCOLS)
    table = {}
    for method, model in models.items():
        start = time.perf_counter()
        scores = score_model(model, dataset, protocols=PROTOCOLS, seed=cfg["eval"]["seed"], progress=False,
                             save_dir=save.get(method))
        table[method] = {p: percent(m.compute()) for p, m in scores.metrics.items()}
        table[method]["eval_s"] = round(time.perf_counter() - start, 1)
        table[method]["scenes"] = len(dataset)
        print(json.dumps({"method": method, **table[method]}), flush=True)
    return table


def markdown(table: dict, runs: list[dict]) -> str:
    """The results as markdown tables (torchssc.report), one per protocol, then the runs' training costs."""
    from torchssc.geometry import CLASS_NAMES
    from torchssc.report import markdown_table

    classes = CLASS_NAMES[1:]
    lines = []
    for protocol in PROTOCOLS:
        scenes = next(iter(table.values()))["scenes"]
        rows = []
        for method, by_protocol in table.items():
            r = by_protocol[protocol]
            cells = [f"{r.get(k, float('nan')):.1f}" for k in ("sc_precision", "sc_recall", "sc_iou")]
            rows.append([method, *cells, *(f"{r['ssc_iou'][c]:.1f}" for c in classes), f"**{r['ssc_miou']:.1f}**"])
        head = ["method", "SC precision", "SC recall", "SC IoU", *classes, "**mIoU**"]
        lines += [f"### `{protocol}` protocol, {scenes} test scenes", "",
                  markdown_table(head, rows, "l" + "r" * (len(head) - 1)), ""]
    rows = [[run["name"], f"`{run['recipe']}`", " ".join(run["overrides"]) or "-", str(run["iteration"]),
             f"{run['epochs_wall_s'] / 60:.1f} min"] for run in runs]
    lines.append(markdown_table(["run", "recipe", "overrides", "iterations", "training steps, wall (log.jsonl)"],
                                rows, "lllrr"))
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the released NYU folder (L/ T/ Mapping/ ...)")
    parser.add_argument("--out", type=Path, default=Path("runs/nyu_cpu"), help="runs, results and renders")
    parser.add_argument("--run", action="append", nargs="+", default=[], metavar="NAME RECIPE [KEY=VALUE]",
                        help="a run: its name, a recipe and overrides (repeatable; default: prior and unet)")
    parser.add_argument("--set", action="append", default=[], dest="common", metavar="KEY=VALUE",
                        help="an override for every run (repeatable)")
    parser.add_argument("--parallel", type=int, default=1, help="runs trained at once, one process each")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = torch default)")
    parser.add_argument("--render", default=RENDER, help="comma list of test scenes to render ('' for none)")
    parser.add_argument("--test", default="test", help="the split scored (default: test) or a comma list of ids")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = args.run or DEFAULT_RUNS
    args.out.mkdir(parents=True, exist_ok=True)
    shared = {"data": str(args.data), "out": str(args.out), "threads": args.threads, "common": list(args.common)}
    if args.threads:  # before the spawned children import torch
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    trained = []
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(train_run, name, recipe, overrides, shared) for name, recipe, *overrides in runs]
        for future in as_completed(futures):
            trained.append(future.result())
            print(json.dumps(trained[-1]), flush=True)
    trained.sort(key=lambda r: [n for n, *_ in runs].index(r["name"]))

    from torchssc.config import load_config
    from torchssc.demo import baselines, render_examples
    from torchssc.engine.checkpoint import list_checkpoints, load_model
    from torchssc.engine.evaluate import best_checkpoint
    from torchssc.io.atomic import write_bytes_atomic
    from torchssc.models.constant import LiftedPrior

    models, chosen, save = {}, {}, {}
    for run in trained:
        folder = Path(run["run_dir"])
        path = best_checkpoint(folder, list_checkpoints(folder))
        model, state = load_model(path)
        label = f"{run['name']} ({state['config']['model']['name']}, epoch {state['epoch']} chosen on validation)"
        models[label], chosen[run["name"]] = model, str(path)
        save[label] = args.out / "predictions" / run["name"]
    cfg = load_config(trained[0]["recipe"], [f"data.root={args.data}", *args.common])
    for name, model in baselines(cfg).items():
        if name != "all empty":
            models[f"everything occupied: {name}"] = model
    models["2D prior alone, lifted"] = LiftedPrior()
    from torchssc.commands.eval import parse_split

    table = score(models, cfg, save, parse_split(args.test))
    result = {"runs": trained, "chosen": chosen, "scores": table}
    write_bytes_atomic(args.out / "nyu_results.json", (json.dumps(result, indent=1) + "\n").encode())
    write_bytes_atomic(args.out / "nyu_results.md", markdown(table, trained).encode())
    ids = [i for i in args.render.split(",") if i]
    for run in trained:
        if ids:
            render_examples(args.data, args.out / "predictions" / run["name"] / "results",
                            args.out / "renders" / run["name"], ids)
    print(markdown(table, trained))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
