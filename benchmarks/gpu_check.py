"""The one-shot GPU check (issue 25, docs/gpu.md): what the CPU could not settle, settled in one
run of under 8 minutes on a CUDA machine. Writes ``gpu_check.json`` and ``gpu_check.md`` into
``--out``.

Sections (each timed; a failure is recorded and the next section runs):

1. ``placement``: every registered model's training step (its recipe's loss, backward, SGD) and
   scoring step (the metrics) on the real device, small shapes (tests/models/_model_batches.py).
2. ``train_steps``: every model at its recipe's batch and full size (synthetic batch,
   :func:`torchssc.engine.plan.synthetic_batch`), fp32 and bf16: seconds per step,
   ``torch.cuda.max_memory_allocated``, and ``torchssc plan``'s estimate when a plan JSON of the
   recipe is in ``--plans`` (``torchssc plan RECIPE --json benchmarks/plans/RECIPE.json``).
3. ``compile``: the paper model (``sketch_aware_ssc_nyu``, full size) eager and under
   ``torch.compile``: compile time, seconds per step, memory, loss difference.
4. ``ddp``: DDP with one process on NCCL (SyncBatchNorm, the metrics' all_reduce).
5. ``release``: 50 steps of ``sketch_aware_ssc_prior_nyu`` on the release through the training
   engine: steps per second and the projected wall time of the full recipe (training only).
6. ``eval``: the scoring loop of ``torchssc eval`` on 20 release test scenes with that checkpoint.

Without CUDA it refuses in one line (exit 2). ``--device cpu --dry-run`` runs the same plumbing on
tiny shapes on the CPU (a smoke test, not a measurement; the compile section only with
``--compile-in-dry-run``).

    python benchmarks/gpu_check.py --out gpu_check [--data DATA/nyu_torchssc]
    PYTHONPATH=src python benchmarks/gpu_check.py --device cpu --dry-run --out /tmp/gc
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "models"))

BUDGET_S = 8 * 60


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _mib(n: int | float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.0f}"


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def run_section(report: dict, name: str, fn, *args, **kwargs) -> None:
    """``report[name] = {"status", "wall_s", "result" | "error"}``; never raises."""
    t0 = time.perf_counter()
    print(f"[gpu_check] {name} ...", flush=True)
    try:
        entry = {"status": "ok", "result": fn(*args, **kwargs)}
    except Exception as exc:  # noqa: BLE001 - every failure is a finding to record
        entry = {"status": "error", "error": _one_line(exc), "traceback": traceback.format_exc(limit=-6)}
    entry["wall_s"] = round(time.perf_counter() - t0, 2)
    report["sections"][name] = entry
    print(f"[gpu_check] {name}: {entry['status']} ({entry['wall_s']} s)", flush=True)


# ------------------------------------------------------------------------------------------
# 1. placement
def placement(device: torch.device, models: list[str]) -> dict:
    from _model_batches import example_batch

    from torchssc.engine.placement import eval_step, train_step

    out = {}
    for name in models:
        ex = example_batch(name, batch_size=2)
        torch.manual_seed(0)
        model, loss_fn = ex.build()
        try:
            stats = train_step(model, loss_fn, ex.batch, device)
            eval_step(model, ex.batch, device)
            out[name] = {"status": "ok", "loss": stats["terms"]["total"]}
        except Exception as exc:  # noqa: BLE001
            out[name] = {"status": "error", "error": _one_line(exc)}
    return out


# ------------------------------------------------------------------------------------------
# 2. train steps
def _recipe_cfg(name: str, dry_run: bool) -> tuple[str, dict]:
    """The recipe that trains ``name`` (its model set to ``name``); small shapes for a dry run."""
    from _model_batches import SMALL, recipe_for

    from torchssc.config import load_config

    recipe = recipe_for(name)
    cfg = load_config(recipe)
    if cfg["model"]["name"] != name:
        cfg["model"] = {"name": name, "kwargs": {}}
    cfg["model"]["kwargs"] = {k: v for k, v in cfg["model"]["kwargs"].items() if k != "backbone_weights"}
    if dry_run:
        cfg["model"]["kwargs"].update(SMALL[name][0])
    return recipe, cfg


def _batch(cfg: dict, name: str, batch_size: int, dry_run: bool) -> dict:
    if dry_run:
        from _model_batches import example_batch

        return example_batch(name, batch_size=batch_size).batch
    from torchssc.engine.plan import synthetic_batch

    return synthetic_batch(cfg, batch_size)


def timed_steps(cfg: dict, batch: dict, device: torch.device, amp: str, steps: int, *, compile: bool = False) -> dict:
    """One warm-up step, then ``steps`` timed steps of the engine's loop with the recipe's optimiser."""
    from torchssc.engine.builders import build_loss, build_model, build_optimizer
    from torchssc.engine.train import EpochContext, train_one_epoch

    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    loss_fn = build_loss(cfg)
    loss_fn = loss_fn.to(device) if isinstance(loss_fn, torch.nn.Module) else loss_fn
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    call = torch.compile(model) if compile else model
    ctx = EpochContext(device=device, amp=amp, progress=False)
    _reset_peak(device)
    t0 = time.perf_counter()
    first = train_one_epoch(call, loss_fn, optimizer, scheduler, scaler, [batch], ctx, epoch=0, iteration=0,
                            num_iters=1)
    _sync(device)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats = train_one_epoch(call, loss_fn, optimizer, scheduler, scaler, [batch] * steps, ctx, epoch=0, iteration=1,
                            num_iters=steps)
    _sync(device)
    return {"s_per_step": (time.perf_counter() - t0) / steps, "warmup_s": warmup_s, "peak_bytes": _peak(device),
            "first_loss": first["terms"]["total"], "loss": stats["terms"]["total"]}


def _plan_estimate(plans: Path, recipe: str, name: str, batch: int, amp: str) -> int | None:
    from torchssc.engine.plan import StepCost, estimate_bytes

    path = plans / f"{recipe}.json"
    if not path.is_file():
        return None
    cost = StepCost(**json.loads(path.read_text()))
    if cost.model != name:
        return None
    return estimate_bytes(cost, batch, dtype="bf16" if amp == "bf16" else "fp32")


def train_steps(device: torch.device, models: list[str], plans: Path, steps: int, dry_run: bool) -> dict:
    out = {}
    for name in models:
        recipe, cfg = _recipe_cfg(name, dry_run)
        b = 1 if dry_run else cfg["train"]["global_batch"]
        batch = _batch(cfg, name, b, dry_run)
        for amp in ("none", "bf16"):
            key = f"{name}/{'fp32' if amp == 'none' else amp}"
            try:
                row = timed_steps(cfg, batch, device, amp, steps)
                row.update(recipe=recipe, batch=b, plan_bytes=_plan_estimate(plans, recipe, name, b, amp))
                out[key] = {"status": "ok", **row}
            except Exception as exc:  # noqa: BLE001
                out[key] = {"status": "error", "recipe": recipe, "batch": b, "error": _one_line(exc)}
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return out


# ------------------------------------------------------------------------------------------
# 3. compile
def compile_check(device: torch.device, steps: int, dry_run: bool) -> dict:
    name = "sketch_aware_ssc"
    recipe, cfg = _recipe_cfg(name, dry_run)
    b = 1 if dry_run else cfg["train"]["global_batch"]
    batch = _batch(cfg, name, b, dry_run)
    eager = timed_steps(cfg, batch, device, "none", steps)
    torch._dynamo.reset()
    compiled = timed_steps(cfg, batch, device, "none", steps, compile=True)
    torch._dynamo.reset()
    return {"recipe": recipe, "batch": b, "eager": eager, "compiled": compiled,
            "speedup": eager["s_per_step"] / compiled["s_per_step"],
            "first_loss_rel_diff": abs(compiled["first_loss"] - eager["first_loss"]) / abs(eager["first_loss"])}


# ------------------------------------------------------------------------------------------
# 4. DDP with one process
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_check(device: torch.device) -> dict:
    import torch.distributed as dist
    from _model_batches import example_batch
    from torch.nn.parallel import DistributedDataParallel

    from torchssc.engine.distributed import convert_sync_batchnorm
    from torchssc.engine.placement import eval_step, train_step

    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1, **kwargs)
    try:
        ex = example_batch("sketch_aware_ssc_prior_lite", batch_size=2)
        torch.manual_seed(0)
        plain, loss_fn = ex.build()
        want = train_step(plain, loss_fn, ex.batch, device)["terms"]["total"]
        torch.manual_seed(0)
        model, loss_fn = ex.build()
        model = convert_sync_batchnorm(model.to(device), device)
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        got = train_step(wrapped, loss_fn, ex.batch, device)["terms"]["total"]
        scores = eval_step(model, ex.batch, device)  # the metrics' all_reduce goes through the backend
        probe = torch.ones(3, device=device)
        dist.all_reduce(probe)
        return {"backend": backend, "loss_ddp": got, "loss_plain": want, "rel_diff": abs(got - want) / abs(want),
                "all_reduce_ok": bool(torch.equal(probe.cpu(), torch.ones(3))), "scored": scores is not None}
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------
# 5-6. the release
def find_release(given: str | None) -> Path | None:
    candidates = [Path(given)] if given else []
    if os.environ.get("TORCHSSC_DATA"):
        candidates.append(Path(os.environ["TORCHSSC_DATA"]) / "nyu_torchssc")
    candidates += [REPO / "DATA" / "NYU", REPO.parent / "shared" / "data" / "nyu_torchssc"]
    return next((p for p in candidates if (p / "train.txt").is_file()), None)


def release_check(device: torch.device, root: Path, steps: int, workers: int, dry_run: bool, workdir: Path) -> dict:
    from torchssc.config import load_config
    from torchssc.engine.builders import build_dataset, resolve_iters_per_epoch, split_train_val
    from torchssc.engine.train import main

    small = ["model.kwargs.width=8", "model.kwargs.stem_channels=4", "model.kwargs.latent_channels=4",
             "model.kwargs.cvae_hidden=4", "model.kwargs.num_samples=1"] if dry_run else []
    cfg = load_config("sketch_aware_ssc_prior_nyu", [
        f"data.root={root}", f"train.max_iters={steps}", f"run.dir={workdir}", "run.name=release",
        f"train.device={device.type}", "train.progress=false", f"data.num_workers={workers}",
        f"train.log_every={steps}", *small])
    t0 = time.perf_counter()
    summary = main(cfg)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (summary["run_dir"] / "log.jsonl").read_text().splitlines()]
    train_s = sum(r["time_s"] for r in rows)
    train_split, _ = split_train_val(cfg)
    ipe = resolve_iters_per_epoch(cfg, len(build_dataset(cfg, train_split)))
    total = cfg["train"]["epochs"] * ipe
    rate = summary["iteration"] / train_s
    return {"steps": summary["iteration"], "wall_s": wall, "train_s": train_s, "steps_per_s": rate,
            "total_iters": total, "projected_train_h": total / rate / 3600,
            "checkpoint": str(summary["checkpoint"]), "last_loss": rows[-1]["train"].get("total")}


def eval_check(device: torch.device, checkpoint: str, scenes: int, workers: int) -> dict:
    from torchssc.engine.checkpoint import load_model
    from torchssc.engine.distributed import DistInfo
    from torchssc.engine.evaluate import score_model, scoring_dataset
    from torchssc.io.prepared import read_split

    model, state = load_model(checkpoint, device=device)
    cfg = state["config"]
    ids = read_split(cfg["data"]["root"], "test")[:scenes]
    dataset = scoring_dataset(cfg, ids, [cfg["eval"]["protocol"]])
    info = DistInfo(rank=0, local_rank=0, world_size=1, device=device)
    _sync(device)
    t0 = time.perf_counter()
    scores = score_model(model, dataset, protocols=[cfg["eval"]["protocol"]], info=info, num_workers=workers,
                         progress=False)
    _sync(device)
    wall = time.perf_counter() - t0
    numbers = scores.metrics[cfg["eval"]["protocol"]].compute()
    return {"scenes": len(ids), "wall_s": wall, "scenes_per_s": len(ids) / wall,
            "ssc_miou": numbers.get("ssc_miou"), "sc_iou": numbers.get("sc_iou")}


# ------------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    s = report["sections"]
    lines = [f"# gpu_check ({report['device_name']}, torch {report['torch']}, {report['wall_s']:.0f} s"
             f"{', DRY RUN: plumbing only, not measurements' if report['dry_run'] else ''})", ""]
    for name, entry in s.items():
        if entry["status"] != "ok":
            lines += [f"## {name}: ERROR", "", f"`{entry['error']}`", ""]
    if s.get("placement", {}).get("status") == "ok":
        lines += ["## placement (train + eval step on the device)", "", "| model | status |", "|---|---|"]
        lines += [f"| {m} | {r['status']}{': ' + r['error'] if r['status'] != 'ok' else ''} |"
                  for m, r in s["placement"]["result"].items()] + [""]
    if s.get("train_steps", {}).get("status") == "ok":
        lines += ["## training step at the recipe's batch", "",
                  "| model / precision | recipe | batch | s/step | max_memory_allocated (MiB) | plan (MiB) |",
                  "|---|---|---|---|---|---|"]
        for key, r in s["train_steps"]["result"].items():
            if r["status"] == "ok":
                lines.append(f"| {key} | {r['recipe']} | {r['batch']} | {r['s_per_step']:.3f} | "
                             f"{_mib(r['peak_bytes'])} | {_mib(r['plan_bytes'])} |")
            else:
                lines.append(f"| {key} | {r['recipe']} | {r['batch']} | error: {r['error']} | | |")
        lines.append("")
    if s.get("compile", {}).get("status") == "ok":
        r = s["compile"]["result"]
        lines += ["## torch.compile (paper model)", "", "| | s/step | warm-up s | MiB |", "|---|---|---|---|",
                  f"| eager | {r['eager']['s_per_step']:.3f} | {r['eager']['warmup_s']:.1f} | "
                  f"{_mib(r['eager']['peak_bytes'])} |",
                  f"| compiled | {r['compiled']['s_per_step']:.3f} | {r['compiled']['warmup_s']:.1f} | "
                  f"{_mib(r['compiled']['peak_bytes'])} |",
                  "", f"speed-up {r['speedup']:.2f}x; first-step loss rel. diff {r['first_loss_rel_diff']:.1e}", ""]
    for name in ("ddp", "release", "eval"):
        if s.get(name, {}).get("status") == "ok":
            lines += [f"## {name}", "", "| key | value |", "|---|---|"]
            lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                      for k, v in s[name]["result"].items()] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes, the CPU allowed: a smoke test")
    parser.add_argument("--data", default=None, help="the release's prepared folder (default: $TORCHSSC_DATA/...)")
    parser.add_argument("--plans", default=str(REPO / "benchmarks" / "plans"), help="folder of plan JSON files")
    parser.add_argument("--models", nargs="*", default=None, help="default: every registered model")
    parser.add_argument("--skip", nargs="*", default=[], choices=["placement", "train_steps", "compile", "ddp",
                                                                  "release", "eval"])
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 3; dry run 1)")
    parser.add_argument("--release-steps", type=int, default=None, help="default 50 (dry run 2)")
    parser.add_argument("--eval-scenes", type=int, default=None, help="default 20 (dry run 2)")
    parser.add_argument("--compile-in-dry-run", action="store_true", help="run the compile section in a dry run too")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default 8; dry run 0)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False): nothing measured; "
              "for a CPU smoke test of the plumbing: --device cpu --dry-run", file=sys.stderr)
        return 2
    if args.device == "cpu" and not args.dry_run:
        print("gpu_check: --device cpu only with --dry-run (full-size steps on a CPU take hours)", file=sys.stderr)
        return 2
    from torchssc.models import list_models

    dry = args.dry_run
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    models = args.models or list_models()
    steps = args.steps or (1 if dry else 3)
    workers = args.workers if args.workers is not None else (0 if dry else 8)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else "CPU", "torch": torch.__version__, "dry_run": dry, "budget_s": BUDGET_S, "sections": {}}
    t0 = time.perf_counter()
    skip = set(args.skip)
    if "placement" not in skip:
        run_section(report, "placement", placement, device, models)
    if "train_steps" not in skip:
        run_section(report, "train_steps", train_steps, device, models, Path(args.plans), steps, dry)
    if dry and not args.compile_in_dry_run:
        skip.add("compile")  # minutes of C++ compilation on a CPU: only when asked
    if "compile" not in skip:
        run_section(report, "compile", compile_check, device, steps, dry)
    if "ddp" not in skip:
        run_section(report, "ddp", ddp_check, device)
    root = find_release(args.data)
    with tempfile.TemporaryDirectory() as workdir:
        if "release" not in skip:
            if root is None:
                report["sections"]["release"] = {"status": "error", "error": "no release data (--data)", "wall_s": 0}
            else:
                run_section(report, "release", release_check, device, root, args.release_steps or (2 if dry else 50),
                            workers, dry, Path(workdir))
        rel = report["sections"].get("release", {})
        if "eval" not in skip and rel.get("status") == "ok":
            run_section(report, "eval", eval_check, device, rel["result"]["checkpoint"],
                        args.eval_scenes or (2 if dry else 20), workers)
    report["wall_s"] = time.perf_counter() - t0
    report["within_budget"] = report["wall_s"] <= BUDGET_S
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
    print(f"[gpu_check] {report['wall_s']:.0f} s -> {out / 'gpu_check.json'}, {out / 'gpu_check.md'}")
    return 0 if all(e["status"] == "ok" for e in report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
