"""Complete, atomic training checkpoints: what they hold, how they are written, read and resumed.

A checkpoint is a ``dict`` saved with ``torch.save`` and read back with
``torch.load(..., weights_only=True)``, so it holds only tensors, numbers, strings, ``None`` and
lists/tuples/dicts of those (the recipe as a plain dict, RNG states as tensors).
:func:`training_state` makes one and :func:`restore_training_state` puts one back. Keys:

===================  ========================================================================
``format_version``   int, :data:`FORMAT_VERSION`
``model``            state dict of the bare model (no ``module.`` prefix)
``optimizer``        optimiser state dict
``scheduler``        LR scheduler state dict
``scaler``           GradScaler state dict (empty when fp16 is off)
``rng``              list over ranks of ``{"python", "numpy", "torch", "cuda"}`` states
                     (see :func:`get_rng_state`), index = rank
``config``           the resolved recipe (dict)
``epoch``            completed epochs (1-based number of the last finished epoch; 0 = none)
``iteration``        completed iterations in total
``iters_per_epoch``  iterations per epoch of the run that wrote it (``epoch`` is counted in them)
``world_size``       processes of the run that wrote it (one ``rng`` entry each)
===================  ========================================================================

Only the keys of :data:`REQUIRED_KEYS` are needed to evaluate or predict; resuming needs all.

Files: ``<run_dir>/checkpoints/epoch_<NNNN>.pt`` after epoch NNNN, and
``<run_dir>/checkpoints/last.pt``, a full copy of the most recent checkpoint (also written when a
run stops between epochs, e.g. at ``train.max_iters``). No symlinks.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from torchssc.config import diff_configs
from torchssc.engine.builders import build_model
from torchssc.engine.distributed import seed_everything
from torchssc.io.atomic import atomic_path

logger = logging.getLogger("torchssc.checkpoint")

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model", "config", "epoch", "iteration")
_EPOCH_RE = re.compile(r"^epoch_(\d+)\.pt$")


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/checkpoints``."""
    return Path(run_dir) / "checkpoints"


def epoch_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """``<run_dir>/checkpoints/epoch_<NNNN>.pt`` for a 1-based epoch number."""
    return checkpoint_dir(run_dir) / f"epoch_{epoch:04d}.pt"


def last_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/checkpoints/last.pt``."""
    return checkpoint_dir(run_dir) / "last.pt"


def _is_rank0() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def save_checkpoint(path: str | os.PathLike, state: dict, *, also_last: bool = False) -> None:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename).

    Only rank 0 writes when a process group is initialised (other ranks return at once).
    A failure at any point (e.g. disk full, an interrupt) leaves any previous file at ``path``
    intact. With ``also_last`` the file is then copied, also atomically, to ``last.pt`` in the
    same folder.
    """
    if not _is_rank0():
        return
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    if also_last and path.name != "last.pt":
        with atomic_path(path.parent / "last.pt") as tmp:
            shutil.copyfile(path, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, not a checkpoint dict, missing keys or an unknown format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        raise ValueError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a torchssc checkpoint (a {type(state).__name__}, expected a dict)")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: not a torchssc checkpoint, missing keys {missing}")
    if state["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format_version {state['format_version']}, this torchssc reads {FORMAT_VERSION}")
    return state


def list_checkpoints(run_dir: str | os.PathLike) -> dict[int, Path]:
    """``{epoch: path}`` of the ``epoch_<NNNN>.pt`` files in ``<run_dir>/checkpoints``, sorted by
    epoch (``last.pt`` is not listed; see :func:`last_path`). Empty when there are none."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return {}
    found = {}
    for entry in folder.iterdir():
        match = _EPOCH_RE.match(entry.name)
        if match and entry.is_file():
            found[int(match.group(1))] = entry
    return dict(sorted(found.items()))


def find_last_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """``last.pt`` when present, else the highest ``epoch_<NNNN>.pt``, else ``None``."""
    last = last_path(run_dir)
    if last.is_file():
        return last
    listed = list_checkpoints(run_dir)
    return listed[max(listed)] if listed else None


def resume_checkpoint(run_dir: str | os.PathLike, resume: bool | str | os.PathLike) -> Path | None:
    """The checkpoint a training run in ``run_dir`` starts from; ``None`` for a fresh start.

    Args:
        resume: ``False`` (a fresh run), ``True`` (the run folder's latest checkpoint,
            :func:`find_last_checkpoint`) or the path of a checkpoint file.
    Raises:
        ValueError: ``resume`` finds nothing, or a fresh run would overwrite checkpoints.
    """
    existing = find_last_checkpoint(run_dir)
    if resume is True:
        if existing is None:
            raise ValueError(f"resume: no checkpoint in {checkpoint_dir(run_dir)}")
        return existing
    if resume:
        if not Path(resume).is_file():
            raise ValueError(f"resume: {resume}: no such checkpoint")
        return Path(resume)
    if existing is not None:
        raise ValueError(
            f"{run_dir} already holds checkpoints ({existing.name}); pass --resume to continue that run "
            f"or choose another run.name"
        )
    return None


def load_model(path: str | os.PathLike, cfg: dict | None = None, *, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict]:
    """The model of a checkpoint, built and loaded, in eval mode on ``device``: the one way to do it.

    Args:
        path: a checkpoint file (:func:`load_checkpoint` reads it).
        cfg: the recipe whose ``model`` section builds the model; ``None``: the checkpoint's own.
            A model section that differs from the checkpoint's is warned about.
    Returns:
        ``(model, state)``: the model, and the whole checkpoint dict (``epoch``, ``config``, ...).
    Raises:
        FileNotFoundError, ValueError: as :func:`load_checkpoint`; ``ValueError`` too when the
            weights do not fit the model.
    """
    state = load_checkpoint(path, map_location="cpu")
    saved = state["config"] if isinstance(state["config"], dict) else None
    if cfg is None:
        if saved is None:
            raise ValueError(f"{path}: the checkpoint holds no recipe to build its model from")
        cfg = saved
    elif saved is not None and saved.get("model") != cfg["model"]:
        logger.warning("%s: trained with model %s, evaluating with %s", path, saved.get("model"), cfg["model"])
    model = build_model(cfg)
    try:
        model.load_state_dict(state["model"])  # strict: missing or unexpected keys are errors
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit model {cfg['model']['name']!r}: {exc}") from None
    return model.to(device).eval(), state


# ------------------------------------------------------------------------------------------
# Training state: make and restore (the keys of the table above)
def training_state(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    rng: list[dict],
    cfg: dict,
    iteration: int,
    iters_per_epoch: int,
) -> dict:
    """The checkpoint of a training run after ``iteration`` completed iterations.

    Args:
        model: the bare model (not DDP-wrapped).
        rng: every rank's :func:`get_rng_state`, index = rank (``all_gather_object``).
    """
    return {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng,
        "config": cfg,
        "epoch": iteration // iters_per_epoch,
        "iteration": iteration,
        "iters_per_epoch": iters_per_epoch,
        "world_size": len(rng),
    }


def restore_training_state(
    state: dict,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    rank: int,
    world_size: int,
    iters_per_epoch: int,
    seed: int,
) -> int:
    """Put a :func:`training_state` back into the training objects; returns its iteration.

    The RNG streams of rank ``rank`` are restored when the checkpoint has one per process of
    this run; otherwise (another world size) every stream is reseeded from ``(seed, rank,
    iteration)`` with a warning: the run goes on, but not as an exact continuation. A checkpoint
    written with another number of iterations per epoch is warned about too (this run counts
    epochs and the schedule in its own).
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    iteration = int(state["iteration"])
    if state.get("iters_per_epoch", iters_per_epoch) != iters_per_epoch and rank == 0:
        logger.warning(
            "the checkpoint was written with %d iterations per epoch, this run has %d: epochs and the "
            "schedule are counted in this run's iterations",
            state["iters_per_epoch"],
            iters_per_epoch,
        )
    rng = state.get("rng") or []
    if len(rng) == world_size:
        set_rng_state(rng[rank])
    else:
        logger.warning(
            "checkpoint has RNG states for %d processes, this run has %d: reseeding (not an exact continuation)",
            len(rng),
            world_size,
        )
        seed_everything(seed + rank + 7919 * iteration)
    return iteration


def warn_changed_recipe(state: dict, cfg: dict, path: str | os.PathLike) -> None:
    """Warn when a run resumes ``state`` with a recipe that differs from the one it was trained with."""
    changed = diff_configs(state["config"], cfg)
    if changed:
        logger.warning("resuming %s with a recipe that differs from the checkpoint's in: %s", path, ", ".join(changed))


# ------------------------------------------------------------------------------------------
# RNG states as tensors (so that weights_only loading accepts them)
def get_rng_state() -> dict:
    """This process's Python, NumPy, torch CPU and (when available) CUDA RNG states.

    Returns ``{"python": {"version": int, "state": int64 (625,), "gauss": float|None},
    "numpy": {"state": int64 (624,), "pos": int, "has_gauss": int, "gauss": float},
    "torch": uint8 tensor, "cuda": list of uint8 tensors (one per device) or []}``.
    """
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert kind == "MT19937"
    return {
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "state": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore states produced by :func:`get_rng_state` (CUDA ones only when CUDA is there)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["state"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
