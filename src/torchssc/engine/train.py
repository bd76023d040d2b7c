"""Training: ``main(cfg)`` runs the epoch loop of ``_train``, one screen read top to bottom:
``train_one_epoch``, validation, checkpoint, log row. The same code runs 1 process and N processes
or nodes under torchrun (see :mod:`torchssc.engine.distributed`).

Recipe semantics (docs/training.md, keys in :mod:`torchssc.config`):

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
* Validation (every ``train.eval_every`` epochs) is
  :func:`torchssc.engine.evaluate.validation_scores`: the scoring code of ``torchssc eval``, with
  its seeding and protocol rules, so both give the same numbers for the same weights.
* A non-finite loss term (checked on the values averaged over processes, so every rank stops
  together) raises :class:`NonFiniteLossError` naming the iteration and the term; nothing is
  written, so the last good checkpoint stays as it was. Before every checkpoint the weights,
  buffers and optimiser state are checked too (:class:`NonFiniteModelError`): a checkpoint
  holding NaN or inf is never written.
* Nothing is written before the run can start: with ``data.check`` the scenes the run will use
  are checked first (:func:`torchssc.data.check.check_scene`), and the run folder and its
  ``config.yaml`` appear only once the data, the model and the checkpoint to resume are in hand;
  then the temporaries of checkpoint writers that were killed are removed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from torchssc.config import run_dir, save_config
from torchssc.io.prepared import write_split
from torchssc.engine.builders import (
    build_dataset,
    build_loss,
    build_model,
    build_optimizer,
    build_scheduler,
    build_training_transform,
    resolve_iters_per_epoch,
    run_inputs,
    split_train_val,
)
from torchssc.engine.checkpoint import (
    NonFiniteError,
    checkpoint_dir,
    describe_non_finite,
    epoch_path,
    get_rng_state,
    last_path,
    load_checkpoint,
    non_finite_tensors,
    restore_training_state,
    resume_checkpoint,
    save_checkpoint,
    training_state,
    warn_changed_recipe,
)
from torchssc.engine.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_mean,
    broadcast_error,
    broadcast_object,
    cleanup_distributed,
    convert_sync_batchnorm,
    init_distributed,
    seed_everything,
)
from torchssc.engine.evaluate import scoring_dataset, validation_scores
from torchssc.engine.logs import RunLog
from torchssc.engine.sampler import GlobalBatchSampler, loader_generator, move_to_device
from torchssc.engine.speed import to_channels_last
from torchssc.io.atomic import remove_stale_temporaries

logger = logging.getLogger("torchssc.train")


class NonFiniteLossError(NonFiniteError):
    """A loss term became NaN or infinite; the run stopped without writing anything."""


class NonFiniteModelError(NonFiniteError):
    """The weights, buffers or optimiser state hold NaN or inf at a checkpoint; the run stopped
    without writing it."""


@dataclass
class EpochContext:
    """What :func:`train_one_epoch` needs besides the model and the optimiser."""

    device: torch.device
    amp: str = "none"
    global_batch: int = 1
    log_every: int = 10
    is_main: bool = True
    progress: bool = True
    log: RunLog | None = None  # TensorBoard scalars every log_every iterations (rank 0)
    epochs: int = 1
    last_good: Path | None = None  # named in the non-finite loss message
    step: Any = None  # a loss's own training step (``loss.training_step``: AMMNet's adversarial step), or None
    transform: Any = None  # train.flip / train.free_space_empty (data/augment.py): (batch, iteration) -> batch, or None


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


def check_finite(names: list[str], values: torch.Tensor, ctx: EpochContext, *, iteration: int, epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` when a process-averaged loss term is NaN/inf (every rank
    sees the same ``values``, so every rank stops at the same step, before its backward pass)."""
    if bool(torch.isfinite(values).all()):
        return
    bad = [n for n, v in zip(names, values.tolist()) if not math.isfinite(v)]
    term = next((n for n in bad if n != "total"), bad[0])
    where = f"{ctx.last_good}" if ctx.last_good is not None else "none written yet"
    raise NonFiniteLossError(
        f"non-finite loss at iteration {iteration + 1} (epoch {epoch + 1}): term {term!r} = "
        f"{values[names.index(term)].item()} (non-finite terms: {bad}); stopping. "
        f"The last good checkpoint is untouched: {where}"
    )


class StepMeter:
    """The epoch's bookkeeping: per-term sums, a TensorBoard window every ``ctx.log_every`` steps
    and the progress bar (rank 0)."""

    def __init__(self, ctx: EpochContext, *, epoch: int, num_iters: int) -> None:
        self.ctx, self.num_iters = ctx, num_iters
        self.names: list[str] | None = None
        self.sums: torch.Tensor | None = None
        self.window: torch.Tensor | None = None
        self.done = self.window_n = 0
        self.t0 = self.window_t0 = time.perf_counter()
        self.bar = tqdm(total=num_iters, desc=f"epoch {epoch + 1}/{ctx.epochs}",
                        disable=not (ctx.is_main and ctx.progress), dynamic_ncols=True, leave=False)

    def update(self, values: torch.Tensor, lr: float, iteration: int) -> None:
        """One finished step: ``values`` ``(T,)`` process-averaged terms (in ``self.names`` order)."""
        values = values.cpu()
        self.sums = values.clone() if self.sums is None else self.sums + values
        self.window = values.clone() if self.window is None else self.window + values
        self.done += 1
        self.window_n += 1
        self.bar.update(1)
        if self.ctx.is_main and self.ctx.progress:
            self.bar.set_postfix(loss=f"{values[0].item():.4f}", lr=f"{lr:.3g}", refresh=False)
        if self.window_n == self.ctx.log_every or self.done == self.num_iters:
            elapsed = time.perf_counter() - self.window_t0
            if self.ctx.log is not None:
                means = dict(zip(self.names, (self.window / self.window_n).tolist()))
                speed = self.ctx.global_batch * self.window_n / max(elapsed, 1e-9)
                self.ctx.log.scalars("train", {**means, "lr": lr, "samples_per_s": speed}, iteration)
            self.window, self.window_n, self.window_t0 = None, 0, time.perf_counter()

    def close(self, iteration: int, lr: float) -> dict:
        """The epoch's summary (see :func:`train_one_epoch`)."""
        self.bar.close()
        elapsed = time.perf_counter() - self.t0
        terms = {} if self.sums is None else {n: v / self.done for n, v in zip(self.names, self.sums.tolist())}
        return {"iteration": iteration, "terms": terms, "lr": lr, "time_s": elapsed,
                "samples_per_s": self.ctx.global_batch * self.done / max(elapsed, 1e-9), "iters": self.done}


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
    meter = StepMeter(ctx, epoch=epoch, num_iters=num_iters)
    lr = optimizer.param_groups[0]["lr"]
    for batch in loader:
        batch = move_to_device(batch, ctx.device)
        if ctx.transform is not None:  # flips, free space: training only (docs/training.md)
            batch = ctx.transform(batch, iteration)
        extra = ctx.step.discriminator_step(batch) if ctx.step is not None else {}  # AMMNet: its D update first
        with autocast(ctx.amp, ctx.device):
            outputs = model(batch)
            losses = {**extra, **loss_fn(outputs, batch)}
        meter.names = meter.names or _ordered_terms(losses)
        # process-averaged values: for logging, and so that every rank sees a bad term at once
        values = all_reduce_mean(torch.stack([losses[k].detach().float().reshape(()) for k in meter.names]))
        check_finite(meter.names, values, ctx, iteration=iteration, epoch=epoch)
        lr = optimizer.param_groups[0]["lr"]
        if ctx.step is not None:  # backward, clip, step, zero_grad(set_to_none=False): the loss's own rules
            ctx.step.generator_step(losses["total"])
        else:
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        iteration += 1
        meter.update(values, lr, iteration)
        if meter.done == num_iters:
            break  # before fetching another batch
    return meter.close(iteration, lr)


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
    out, ckpt_file, ckpt = _start_run(cfg, info, resume)
    train_split, val_split = split_train_val(cfg)
    if info.is_main and isinstance(val_split, list):  # the held-out scenes, for the record
        write_split(out, "val_ids", val_split)
    # What the model and its loss read, as registered: the data loads exactly that, and a missing
    # input stops the run here, before the model (and its weights files) are even built.
    inputs = run_inputs(cfg)
    train_set = build_dataset(cfg, train_split, inputs)
    model = build_model(cfg)
    if run_inputs(cfg, model) != inputs:  # this instance reads other keys (its kwargs chose them)
        inputs = run_inputs(cfg, model)
        train_set = build_dataset(cfg, train_split, inputs)
    transform = build_training_transform(cfg, inputs, rank=info.rank, world_size=info.world_size)
    iters_per_epoch = resolve_iters_per_epoch(cfg, len(train_set))
    total_iters = t["epochs"] * iters_per_epoch
    stop_at = min(total_iters, t["max_iters"] or total_iters)
    loader, sampler = _train_loader(cfg, train_set, iters_per_epoch, info)
    val_set = _validation_set(cfg, val_split, info, model)

    model = model.to(info.device)
    if t["channels_last"]:
        to_channels_last(model)
    if info.world_size > 1:
        model = convert_sync_batchnorm(model, info.device)
    loss_fn = build_loss(cfg)
    loss_fn = loss_fn.to(info.device) if isinstance(loss_fn, nn.Module) else loss_fn
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, total_iters, iters_per_epoch=iters_per_epoch)
    scaler = torch.amp.GradScaler(info.device.type, enabled=t["amp"] == "fp16")
    make_step = getattr(loss_fn, "training_step", None)  # a loss with its own step (AMMNet: docs/ammnet.md)
    step = make_step(model, optimizer, amp=t["amp"]) if make_step is not None else None
    iteration = 0
    if ckpt is not None:
        iteration = restore_training_state(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                           rank=info.rank, world_size=info.world_size,
                                           iters_per_epoch=iters_per_epoch, seed=t["seed"], path=ckpt_file,
                                           model_name=cfg["model"]["name"])
        if step is not None and "training_step" in ckpt:
            step.load_state_dict(ckpt["training_step"])
        if info.is_main:  # the weights fit: now the recipe's other differences are worth a word
            warn_changed_recipe(ckpt, cfg, ckpt_file)
    if cfg["data"]["check"]:
        _check_data(train_set, val_set, info)
    if info.is_main:  # the run can start: only now does its folder appear
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        for stale in remove_stale_temporaries(checkpoint_dir(out)):
            logger.info("removed %s (left by a killed writer)", stale)
    train_model = model  # what the loop calls; checkpoints and validation use the bare model
    if info.world_size > 1:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=device_ids)
    if t["compile"]:  # the training forward only; checkpoints and validation use the eager model
        train_model = torch.compile(train_model)
    log = RunLog(out, iteration=iteration, enabled=info.is_main)
    ctx = EpochContext(device=info.device, amp=t["amp"], global_batch=t["global_batch"], log_every=t["log_every"],
                       is_main=info.is_main, progress=t["progress"], log=log, epochs=t["epochs"], last_good=ckpt_file,
                       step=step, transform=transform)
    if info.is_main:
        logger.info("training %s: %d process(es), global batch %d, %d iterations/epoch, %d epochs, stop at "
                    "iteration %d%s -> %s", cfg["model"]["name"], info.world_size, t["global_batch"], iters_per_epoch,
                    t["epochs"], stop_at, f" (resumed at {iteration})" if iteration else "", out)

    try:
        while iteration < stop_at:
            epoch, start = divmod(iteration, iters_per_epoch)  # 0-based epoch, iterations done in it
            sampler.set_epoch(epoch, start)
            stats = train_one_epoch(train_model, loss_fn, optimizer, scheduler, scaler, loader, ctx, epoch=epoch,
                                    iteration=iteration, num_iters=min(iters_per_epoch - start, stop_at - iteration))
            iteration = stats["iteration"]
            finished = iteration % iters_per_epoch == 0
            row = {"epoch": epoch + 1, "iteration": iteration, "complete": finished, "lr": stats["lr"],
                   "time_s": round(stats["time_s"], 3), "samples_per_s": round(stats["samples_per_s"], 3),
                   "train": stats["terms"]}
            if finished and val_set is not None and (epoch + 1) % t["eval_every"] == 0:
                row["val"] = validation_scores(model, val_set, protocol=cfg["eval"]["protocol"], info=info,
                                               batch_size=cfg["eval"]["batch_size"],
                                               num_workers=cfg["data"]["num_workers"], seed=cfg["eval"]["seed"])
            target = _checkpoint_path(out, epoch, finished, iteration == stop_at, t["ckpt_every"])
            if target is not None:
                _check_finite_model(model, optimizer, ctx, iteration=iteration, epoch=epoch, target=target)
                rng = all_gather_object(get_rng_state())  # every rank's streams, for an exact resume
                state = training_state(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, rng=rng,
                                       cfg=cfg, iteration=iteration, iters_per_epoch=iters_per_epoch)
                if step is not None:
                    state["training_step"] = step.state_dict()
                save_checkpoint(target, state, also_last=True)
                row["checkpoint"] = str(target)
                ctx.last_good = target
            log.epoch(row)
    finally:
        log.close()
    return {"run_dir": out, "epoch": iteration // iters_per_epoch, "iteration": iteration, "checkpoint": ctx.last_good}


# ------------------------------------------------------------------------------------------
# The steps of _train, in order
def _start_run(cfg: dict, info: DistInfo, resume: bool | str | Path) -> tuple[Path, Path | None, dict | None]:
    """Check the batch split, seed this process and choose the checkpoint to resume (rank 0
    decides, every rank loads it). Writes nothing: ``config.yaml`` is written once the run can
    start (:func:`_train`).

    Returns:
        ``(run folder, checkpoint file or None, checkpoint dict or None)``.
    """
    t = cfg["train"]
    if t["global_batch"] % info.world_size != 0:
        raise ValueError(f"train.global_batch={t['global_batch']} is not divisible by the {info.world_size} processes")
    seed_everything(t["seed"] + info.rank)
    if t["deterministic"] and info.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    out = run_dir(cfg)
    message, ckpt_file = None, None
    if info.is_main:
        try:
            ckpt_file = resume_checkpoint(out, resume)
        except ValueError as exc:
            message = str(exc)
    broadcast_error(message)
    ckpt_file = broadcast_object(ckpt_file)
    ckpt = load_checkpoint(ckpt_file) if ckpt_file is not None else None
    return out, ckpt_file, ckpt


def _check_data(train_set: Dataset, val_set: Dataset | None, info: DistInfo) -> None:
    """``data.check``: the data doctor (:func:`torchssc.data.check.check_scene`) on every scene the
    run will use, on rank 0, before the first step; ``ValueError`` naming the bad scenes (every
    rank raises it)."""
    from torchssc.data.check import check_scene

    message = None
    if info.is_main:
        started = time.perf_counter()
        ids = list(dict.fromkeys([*train_set.ids, *(val_set.ids if val_set is not None else [])]))
        layout = getattr(train_set, "layout", None)  # another layout checks its own files (data/layouts.py)
        check = layout.check_scene if layout is not None else (lambda frame_id: check_scene(train_set.root, frame_id, train_set.spec))
        bad = {frame_id: problems for frame_id in ids if (problems := check(frame_id))}
        if bad:
            first_id, problems = next(iter(bad.items()))
            others = list(bad)[1:]
            more = f" (also bad: {', '.join(others[:5])}{', ...' if len(others) > 5 else ''})" if others else ""
            message = (f"data.check: {len(bad)} of {len(ids)} scenes are bad, first {first_id}: {problems[0]}{more}; "
                       f"torchssc check-data {train_set.root} lists every problem")
        else:
            logger.info("data.check: %d scenes clean (%.1f s)", len(ids), time.perf_counter() - started)
    broadcast_error(message)


def _check_finite_model(model: nn.Module, optimizer: torch.optim.Optimizer, ctx: EpochContext, *, iteration: int,
                        epoch: int, target: Path) -> None:
    """Refuse to checkpoint a model whose weights, buffers or optimiser state hold NaN or inf: raise
    :class:`NonFiniteModelError` on every rank (the count is averaged over processes), naming the
    iteration and the last good checkpoint."""
    bad = non_finite_tensors({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    total = all_reduce_mean(torch.tensor([float(len(bad))], device=ctx.device)).item()
    if total > 0:
        what = describe_non_finite(bad) if bad else "another process's model is not finite"
        where = f"{ctx.last_good}" if ctx.last_good is not None else "none written yet"
        raise NonFiniteModelError(
            f"non-finite model after iteration {iteration} (epoch {epoch + 1}): {what}; stopping without writing "
            f"{target.name}. The last good checkpoint is untouched: {where}"
        )


def _train_loader(cfg: dict, train_set: Dataset, iters_per_epoch: int, info: DistInfo
                  ) -> tuple[DataLoader, GlobalBatchSampler]:
    """The training loader: this rank's slice of every global batch (:class:`GlobalBatchSampler`)."""
    t, workers = cfg["train"], cfg["data"]["num_workers"]
    sampler = GlobalBatchSampler(len(train_set), t["global_batch"], iters_per_epoch, rank=info.rank,
                                 world_size=info.world_size, mode=t["sampler"], seed=t["seed"])
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=workers, pin_memory=info.device.type == "cuda",
                        persistent_workers=workers > 0, generator=loader_generator(t["seed"], info.rank))
    return loader, sampler


def _validation_set(cfg: dict, val_split: str | list[str] | None, info: DistInfo,
                    model: nn.Module) -> Dataset | None:
    """The validation frames (:func:`scoring_dataset` for ``eval.protocol``), or ``None`` when the
    recipe validates nothing."""
    if val_split is None:
        return None
    if cfg["train"]["eval_every"] == 0:
        if info.is_main:
            logger.warning("a validation set is configured but train.eval_every=0: it is never evaluated")
        return None
    return scoring_dataset(cfg, val_split, [cfg["eval"]["protocol"]], model)


def _checkpoint_path(out: Path, epoch: int, finished: bool, stopping: bool, ckpt_every: int) -> Path | None:
    """Where to checkpoint after 0-based ``epoch``: ``epoch_<N>.pt`` every ``ckpt_every`` epochs and
    at the last one, ``last.pt`` when the run stops between epochs (``train.max_iters``), else none."""
    if finished and ((epoch + 1) % ckpt_every == 0 or stopping):
        return epoch_path(out, epoch + 1)
    return last_path(out) if stopping else None
