"""Training: ``main(cfg)`` -> ``train_one_epoch`` / ``evaluate``; the same code for 1 process and
for N processes or nodes under torchrun (see :mod:`torchssc.engine.distributed`).

Recipe semantics (SPEC §6, keys in :mod:`torchssc.config`):

* ``train.global_batch`` frames per iteration IN TOTAL, split evenly over the processes (an error
  when not divisible). Gradients are averaged over processes by DDP (the standard way; the loss is
  never summed across processes), so the step is that of one process on the global batch when the
  loss is a mean over equally-sized per-process parts.
* Frames are drawn per global batch and sliced by rank (:class:`~torchssc.engine.sampler.
  GlobalBatchSampler`): with replacement (the paper) or shuffled passes.
* SGD with a per-iteration schedule (poly by default), BatchNorm synchronised across processes.
* Checkpoints by rank 0, atomically, every ``train.ckpt_every`` epochs and at the end; ``last.pt``
  always mirrors the latest. ``resume`` continues exactly: weights, optimiser, schedule, GradScaler,
  every rank's RNG streams and the sampler position (draws are a function of (seed, epoch)).
* A non-finite loss term (checked on the values averaged over processes, so every rank stops
  together) raises :class:`NonFiniteLossError` naming the iteration and the term; nothing is
  written, so the last good checkpoint stays as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from torchssc.benchmark_grid import to_label_grid
from torchssc.config import diff_configs, run_dir, save_config
from torchssc.engine.builders import (
    build_dataset,
    build_loss,
    build_model,
    build_optimizer,
    build_scheduler,
    resolve_iters_per_epoch,
    split_train_val,
)
from torchssc.engine.checkpoint import (
    FORMAT_VERSION,
    epoch_path,
    find_last_checkpoint,
    get_rng_state,
    last_path,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from torchssc.engine.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_mean,
    all_reduce_sum,
    broadcast_error,
    broadcast_object,
    cleanup_distributed,
    convert_sync_batchnorm,
    init_distributed,
    seed_everything,
)
from torchssc.engine.sampler import GlobalBatchSampler, loader_generator, shard_indices
from torchssc.geometry import IGNORE_LABEL
from torchssc.io.atomic import atomic_path

logger = logging.getLogger("torchssc.train")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the run stopped without writing anything."""


@dataclass
class EpochContext:
    """What :func:`train_one_epoch` needs besides the model and the optimiser."""

    device: torch.device
    amp: str = "none"
    global_batch: int = 1
    log_every: int = 10
    is_main: bool = True
    progress: bool = True
    writer: Any = None  # a SummaryWriter on rank 0, else None
    epochs: int = 1
    last_good: Path | None = None  # named in the non-finite loss message


def move_to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of ``batch`` moved to ``device`` (non-blocking); other values unchanged."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def autocast(amp: str, device: torch.device):
    """``torch.autocast`` for ``amp`` in ``{"bf16", "fp16"}`` on ``device``; a no-op for ``"none"``."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


def _ordered_terms(losses: dict) -> list[str]:
    if "total" not in losses:
        raise ValueError(f"the loss returned {sorted(losses)}; it must include 'total'")
    return ["total"] + sorted(k for k in losses if k != "total")


def train_one_epoch(
    model: nn.Module,
    loss_fn: Callable[[dict, dict], dict],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    loader: DataLoader,
    ctx: EpochContext,
    *,
    epoch: int,
    iteration: int,
    num_iters: int,
) -> dict:
    """Run ``num_iters`` optimisation steps from ``loader`` (the sampler already positioned).

    Args:
        model: the (possibly DDP-wrapped) model, in training mode.
        epoch: 0-based epoch (for messages); iteration: completed iterations before this call.

    Returns:
        ``{"iteration": completed iterations after, "terms": {name: mean over the steps of the
        process-averaged value}, "lr": lr of the last step, "time_s", "samples_per_s", "iters"}``.

    Raises:
        NonFiniteLossError: a term is NaN/inf (on any process), before its backward pass.
    """
    model.train()
    names: list[str] | None = None
    sums: torch.Tensor | None = None
    window: torch.Tensor | None = None
    window_n, window_t0 = 0, time.perf_counter()
    t0 = time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    done = 0
    bar = tqdm(
        total=num_iters,
        desc=f"epoch {epoch + 1}/{ctx.epochs}",
        disable=not (ctx.is_main and ctx.progress),
        dynamic_ncols=True,
        leave=False,
    )
    for batch in loader:
        batch = move_to_device(batch, ctx.device)
        with autocast(ctx.amp, ctx.device):
            outputs = model(batch)
            losses = loss_fn(outputs, batch)
        if names is None:
            names = _ordered_terms(losses)
        # process-averaged values: for logging, and so that every rank sees a bad term at once
        values = all_reduce_mean(torch.stack([losses[k].detach().float().reshape(()) for k in names]))
        if not bool(torch.isfinite(values).all()):
            bad = [n for n, v in zip(names, values.tolist()) if not math.isfinite(v)]
            term = next((n for n in bad if n != "total"), bad[0])
            where = f"{ctx.last_good}" if ctx.last_good is not None else "none written yet"
            raise NonFiniteLossError(
                f"non-finite loss at iteration {iteration + 1} (epoch {epoch + 1}): term {term!r} = "
                f"{values[names.index(term)].item()} (non-finite terms: {bad}); stopping. "
                f"The last good checkpoint is untouched: {where}"
            )
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        iteration += 1
        done += 1
        values = values.cpu()
        sums = values.clone() if sums is None else sums + values
        window = values.clone() if window is None else window + values
        window_n += 1
        bar.update(1)
        if ctx.is_main and ctx.progress:
            bar.set_postfix(loss=f"{values[0].item():.4f}", lr=f"{lr:.3g}", refresh=False)
        if window_n == ctx.log_every or done == num_iters:
            elapsed = time.perf_counter() - window_t0
            if ctx.writer is not None:
                for name, v in zip(names, (window / window_n).tolist()):
                    ctx.writer.add_scalar(f"train/{name}", v, iteration)
                ctx.writer.add_scalar("train/lr", lr, iteration)
                ctx.writer.add_scalar("train/samples_per_s", ctx.global_batch * window_n / max(elapsed, 1e-9), iteration)
            window, window_n, window_t0 = None, 0, time.perf_counter()
        if done == num_iters:
            break  # before fetching another batch
    bar.close()
    elapsed = time.perf_counter() - t0
    terms = {} if sums is None else {n: v / done for n, v in zip(names, sums.tolist())}
    return {
        "iteration": iteration,
        "terms": terms,
        "lr": lr,
        "time_s": elapsed,
        "samples_per_s": ctx.global_batch * done / max(elapsed, 1e-9),
        "iters": done,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    amp: str = "none",
    seed: int = 0,
    protocol: str = "torchssc",
) -> dict:
    """Validation on this process's shard, reduced over processes.

    Reports ``semantic_ce``: cross-entropy of ``outputs["semantic"]`` (12-class logits) over
    voxels with ``label_weight > 0`` and ``label != 255``, summed over every frame and divided by
    their count; and, from :class:`torchssc.metrics.SSCMetrics` under ``protocol`` (confusion
    counts summed over processes), ``sc_precision``, ``sc_recall``, ``sc_iou``, ``ssc_iou`` (per
    class) and ``ssc_miou`` — fractions in [0, 1], ``None`` when undefined. The global RNG is forked and seeded with ``seed`` (repeatable; the
    training streams are not disturbed). The model is left in training mode.
    """
    metrics = None
    model.eval()
    ce = torch.zeros(2, dtype=torch.float64)
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        for batch in loader:
            batch = move_to_device(batch, device)
            if metrics is None:
                metrics = _make_metrics(protocol, "visibility" in batch)
            with autocast(amp, device):
                outputs = model(batch)
            logits = outputs["semantic"].float()  # (B, 12, D, H, W)
            label = batch["label"]  # (B, D, H, W) int64
            if logits.shape[2:] == label.shape[1:]:  # a native-resolution model has no label-grid CE
                mask = (batch["label_weight"] > 0) & (label != IGNORE_LABEL)
                per_voxel = F.cross_entropy(logits, label, ignore_index=IGNORE_LABEL, reduction="none")
                ce += torch.stack([per_voxel[mask].sum().double().cpu(), mask.sum().double().cpu()])
            if metrics is not None:
                metrics.update(
                    to_label_grid(logits.argmax(1), tuple(label.shape[1:])),
                    label,
                    label_weight=batch["label_weight"],
                    mapping=batch.get("mapping"),
                    visibility=batch.get("visibility"),
                )
    model.train()
    ce = all_reduce_sum(ce.to(device) if device.type == "cuda" else ce).cpu()
    result: dict[str, Any] = {"semantic_ce": (ce[0] / ce[1]).item() if ce[1] > 0 else float("nan")}
    if metrics is None:  # this rank had no frames: reduce with an empty accumulator
        metrics = _make_metrics(protocol, have_visibility=protocol == "sscnet")
    if metrics is not None:
        metrics.all_reduce()
        scores = metrics.compute()
        result.update({k: _plain(scores[k]) for k in VAL_KEYS if k in scores})
    return result


def _make_metrics(protocol: str, have_visibility: bool):
    try:
        from torchssc.metrics import SSCMetrics
    except ImportError:  # pragma: no cover - the metrics module ships with the package
        return None
    if protocol == "sscnet" and not have_visibility:
        logger.warning("validation: the sscnet protocol needs data.visibility=true; using torchssc")
        protocol = "torchssc"
    return SSCMetrics(protocol=protocol)


VAL_KEYS = ("protocol", "sc_precision", "sc_recall", "sc_iou", "ssc_miou", "ssc_iou")


def _plain(value: Any) -> Any:
    """JSON-friendly copy (tensors and numpy scalars to Python numbers, NaN/inf to None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if torch.is_tensor(value):
        return _plain(value.item() if value.numel() == 1 else value.tolist())
    if hasattr(value, "item") and callable(value.item):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN
    return value


# ------------------------------------------------------------------------------------------
def main(cfg: dict, *, resume: bool | str | Path = False) -> dict:
    """Train from a resolved recipe; the entry point of ``torchssc train`` (any number of processes).

    Args:
        cfg: from :func:`torchssc.config.load_config`.
        resume: ``False`` (a fresh run; an error if the run folder already has checkpoints),
            ``True`` (continue from the run folder's ``last.pt``/latest epoch) or a checkpoint path.

    Returns:
        ``{"run_dir", "epoch", "iteration", "checkpoint"}`` (the last checkpoint written or resumed).
    """
    info = init_distributed(cfg["train"]["device"])
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        return _train(cfg, info, resume)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        cleanup_distributed(info)


def _train(cfg: dict, info: DistInfo, resume: bool | str | Path) -> dict:
    t = cfg["train"]
    global_batch, world = t["global_batch"], info.world_size
    if global_batch % world != 0:
        raise ValueError(f"train.global_batch={global_batch} is not divisible by the {world} processes")
    seed_everything(t["seed"] + info.rank)
    if t["deterministic"] and info.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    out = run_dir(cfg)

    # --- what to resume (decided on rank 0, shared) -----------------------------------------
    message, ckpt_file = None, None
    if info.is_main:
        existing = find_last_checkpoint(out)
        if resume is True:
            ckpt_file = existing
            if ckpt_file is None:
                message = f"resume: no checkpoint in {out / 'checkpoints'}"
        elif resume:
            ckpt_file = Path(resume)
            if not ckpt_file.is_file():
                message = f"resume: {ckpt_file}: no such checkpoint"
        elif existing is not None:
            message = (
                f"{out} already holds checkpoints ({existing.name}); pass --resume to continue that run "
                f"or choose another run.name"
            )
    broadcast_error(message)
    ckpt_file = broadcast_object(str(ckpt_file) if ckpt_file is not None else None)
    ckpt = load_checkpoint(ckpt_file) if ckpt_file is not None else None
    if ckpt is not None and info.is_main:
        changed = diff_configs(ckpt["config"], cfg)
        if changed:
            logger.warning("resuming %s with a recipe that differs from the checkpoint's in: %s", ckpt_file, ", ".join(changed))

    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")

    # --- data ------------------------------------------------------------------------------
    train_split, val_split = split_train_val(cfg)
    train_set = build_dataset(cfg, train_split)
    iters_per_epoch = resolve_iters_per_epoch(cfg, len(train_set))
    total_iters = t["epochs"] * iters_per_epoch
    stop_at = min(total_iters, t["max_iters"] or total_iters)
    workers = cfg["data"]["num_workers"]
    sampler = GlobalBatchSampler(
        len(train_set), global_batch, iters_per_epoch, rank=info.rank, world_size=world, mode=t["sampler"], seed=t["seed"]
    )
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=info.device.type == "cuda",
        persistent_workers=workers > 0,
        generator=loader_generator(t["seed"], info.rank),
    )
    val_loader = None
    if val_split is not None and t["eval_every"] == 0 and info.is_main:
        logger.warning("a validation set is configured but train.eval_every=0: it is never evaluated")
    if val_split is not None and t["eval_every"] > 0:
        val_set = build_dataset(cfg, val_split)
        val_loader = DataLoader(
            Subset(val_set, shard_indices(len(val_set), info.rank, world)),
            batch_size=cfg["eval"]["batch_size"],
            shuffle=False,
            num_workers=workers,
            pin_memory=info.device.type == "cuda",
            generator=loader_generator(t["seed"] + 1, info.rank),
        )

    # --- model, loss, optimiser ------------------------------------------------------------
    model = build_model(cfg).to(info.device)
    if world > 1:
        model = convert_sync_batchnorm(model, info.device)
    loss_fn = build_loss(cfg)
    if isinstance(loss_fn, nn.Module):
        loss_fn = loss_fn.to(info.device)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, total_iters, iters_per_epoch=iters_per_epoch)
    scaler = torch.amp.GradScaler(info.device.type, enabled=t["amp"] == "fp16")
    iteration = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        iteration = int(ckpt["iteration"])
        if ckpt.get("iters_per_epoch", iters_per_epoch) != iters_per_epoch and info.is_main:
            logger.warning(
                "the checkpoint was written with %d iterations per epoch, this run has %d: epochs and the "
                "schedule are counted in this run's iterations",
                ckpt["iters_per_epoch"],
                iters_per_epoch,
            )
        rng = ckpt.get("rng") or []
        if len(rng) == world:
            set_rng_state(rng[info.rank])
        else:
            logger.warning(
                "checkpoint has RNG states for %d processes, this run has %d: reseeding (not an exact continuation)",
                len(rng),
                world,
            )
            seed_everything(t["seed"] + info.rank + 7919 * iteration)
    if info.is_main:
        _truncate_log(out / "log.jsonl", iteration)
    train_model: nn.Module = model
    if world > 1:
        train_model = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)

    writer = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=iteration + 1 if iteration else None)
    ctx = EpochContext(
        device=info.device,
        amp=t["amp"],
        global_batch=global_batch,
        log_every=t["log_every"],
        is_main=info.is_main,
        progress=t["progress"],
        writer=writer,
        epochs=t["epochs"],
        last_good=Path(ckpt_file) if ckpt_file else None,
    )
    if info.is_main:
        logger.info(
            "training %s: %d process(es), global batch %d, %d iterations/epoch, %d epochs, stop at iteration %d%s -> %s",
            cfg["model"]["name"],
            world,
            global_batch,
            iters_per_epoch,
            t["epochs"],
            stop_at,
            f" (resumed at {iteration})" if iteration else "",
            out,
        )

    # --- loop ------------------------------------------------------------------------------
    try:
        while iteration < stop_at:
            epoch = iteration // iters_per_epoch  # 0-based
            start = iteration - epoch * iters_per_epoch
            sampler.set_epoch(epoch, start)
            stats = train_one_epoch(
                train_model,
                loss_fn,
                optimizer,
                scheduler,
                scaler,
                loader,
                ctx,
                epoch=epoch,
                iteration=iteration,
                num_iters=min(iters_per_epoch - start, stop_at - iteration),
            )
            iteration = stats["iteration"]
            finished = iteration == (epoch + 1) * iters_per_epoch
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "iteration": iteration,
                "complete": finished,
                "lr": stats["lr"],
                "time_s": round(stats["time_s"], 3),
                "samples_per_s": round(stats["samples_per_s"], 3),
                "train": stats["terms"],
            }
            if finished and val_loader is not None and (epoch + 1) % t["eval_every"] == 0:
                row["val"] = evaluate(
                    model, val_loader, device=info.device, amp=t["amp"], seed=cfg["eval"]["seed"], protocol=cfg["eval"]["protocol"]
                )
                if writer is not None:
                    _write_scalars(writer, "val", row["val"], iteration)
            target = None
            if finished and ((epoch + 1) % t["ckpt_every"] == 0 or iteration == stop_at):
                target = epoch_path(out, epoch + 1)
            elif iteration == stop_at:
                target = last_path(out)  # stopped between epochs (train.max_iters)
            if target is not None:
                state_rng = all_gather_object(get_rng_state())
                if info.is_main:
                    state = {
                        "format_version": FORMAT_VERSION,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "rng": state_rng,
                        "config": cfg,
                        "epoch": iteration // iters_per_epoch,
                        "iteration": iteration,
                        "iters_per_epoch": iters_per_epoch,
                        "world_size": world,
                    }
                    save_checkpoint(target, state, also_last=True)
                    row["checkpoint"] = str(target)
                ctx.last_good = target
            if info.is_main:
                _append_log(out / "log.jsonl", row)
                if writer is not None:
                    writer.add_scalar("epoch/lr", stats["lr"], iteration)
                    _write_scalars(writer, "epoch", stats["terms"], iteration)
                    writer.flush()
                logger.info(
                    "epoch %d it %d: %s lr %.4g %.2f samples/s%s",
                    epoch + 1,
                    iteration,
                    " ".join(f"{k} {v:.4f}" for k, v in stats["terms"].items()),
                    stats["lr"],
                    stats["samples_per_s"],
                    f" val {json.dumps(row['val'])}" if "val" in row else "",
                )
    finally:
        if writer is not None:
            writer.close()
    return {
        "run_dir": out,
        "epoch": iteration // iters_per_epoch,
        "iteration": iteration,
        "checkpoint": ctx.last_good,
    }


def _write_scalars(writer, prefix: str, values: dict, step: int) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            _write_scalars(writer, f"{prefix}/{key}", value, step)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(f"{prefix}/{key}", value, step)


def _append_log(path: Path, row: dict) -> None:
    """Append one JSON line (a single write, flushed)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_plain(row)) + "\n")
        fh.flush()


def _truncate_log(path: Path, iteration: int) -> None:
    """Drop rows written after ``iteration`` (epochs a resumed run will redo); atomic rewrite."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("iteration", 0) <= iteration:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a crash
    if iteration == 0:
        kept = []
    if len(kept) != len(lines):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
