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

Only the keys of :data:`REQUIRED_KEYS` are needed to evaluate or predict; resuming needs all
(:data:`TRAINING_KEYS`).

Safety (docs/reliability.md): files are written atomically and fsynced (file, then folder, around
the rename); a checkpoint whose weights, buffers or optimiser state hold NaN or inf is never
written (:class:`NonFiniteError`); files are read with ``weights_only=True``; a resume takes the
newest checkpoint that loads, is complete and is finite (:func:`resume_checkpoint`).

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

from torchssc.config import diff_configs, upgrade_saved
from torchssc.engine.builders import build_model
from torchssc.engine.distributed import seed_everything
from torchssc.engine.import_weights import loading_recipe, original_as_checkpoint
from torchssc.models.original_weights import is_original_checkpoint
from torchssc.io.atomic import atomic_path

logger = logging.getLogger("torchssc.checkpoint")

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model", "config", "epoch", "iteration")
TRAINING_KEYS = REQUIRED_KEYS + ("optimizer", "scheduler", "scaler", "rng", "iters_per_epoch", "world_size")
"""What a checkpoint needs to resume training from (every key of :func:`training_state`)."""
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


class NonFiniteError(RuntimeError):
    """Training produced NaN or inf (in a loss term, or in the weights): the run stops and writes
    nothing more, so the last checkpoint written stays the last good one."""


def non_finite_tensors(obj: Any, name: str = "") -> list[tuple[str, int]]:
    """``(name, count of NaN/inf values)`` of every floating-point tensor in ``obj`` that holds
    any, in order; ``obj`` is a tensor or nested dicts / lists / tuples of them (a state dict, an
    optimiser state). Names are dotted paths, e.g. ``"model.head.weight"``."""
    if torch.is_tensor(obj):
        if obj.is_floating_point() or obj.is_complex():
            count = int((~torch.isfinite(obj)).sum())
            return [(name, count)] if count else []
        return []
    found: list[tuple[str, int]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += non_finite_tensors(value, f"{name}.{key}" if name else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found += non_finite_tensors(value, f"{name}.{i}" if name else str(i))
    return found


def describe_non_finite(found: list[tuple[str, int]]) -> str:
    """``"'model.head.weight' has 48 NaN/inf values (and 2 other tensors)"`` for the first of
    :func:`non_finite_tensors`' findings."""
    name, count = found[0]
    others = f" (and {len(found) - 1} other tensor{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
    return f"{name!r} has {count} NaN/inf value{'s' if count != 1 else ''}{others}"


def save_checkpoint(path: str | os.PathLike, state: dict, *, also_last: bool = False) -> None:
    """Write ``state`` to ``path`` atomically and durably (temporary file in the same folder,
    fsynced, renamed, folder fsynced: :func:`torchssc.io.atomic.atomic_path`).

    Only rank 0 writes when a process group is initialised (other ranks return at once).
    A failure at any point (a full disk, an interrupt) leaves any previous file at ``path``
    intact; a full disk is ``OSError("no space left on the device writing <path>")``, whatever
    ``torch.save`` raised (:func:`torchssc.io.atomic.is_disk_full`). With ``also_last`` the
    file is then copied, also atomically, to ``last.pt`` in the same folder.

    Raises:
        NonFiniteError: the state's ``model`` or ``optimizer`` holds NaN or inf (nothing is written).
        OSError: the file could not be written.
    """
    if not _is_rank0():
        return
    path = Path(path)
    bad = non_finite_tensors({"model": state.get("model"), "optimizer": state.get("optimizer")})
    if bad:
        raise NonFiniteError(f"{path}: not written: {describe_non_finite(bad)}")
    with atomic_path(path, durable=True) as tmp:
        torch.save(state, tmp)
    if also_last and path.name != "last.pt":
        with atomic_path(path.parent / "last.pt", durable=True) as tmp:
            shutil.copyfile(path, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *, recipe: dict | None = None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    A checkpoint of the original TorchSSC (its ``epoch-N.pth``) is converted to ours, for the
    model of ``recipe`` (``None``: the default recipe, said in a warning), by
    :func:`torchssc.engine.import_weights.original_as_checkpoint` (docs/zoo.md).

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
        raise ValueError(f"{path}: unreadable checkpoint, truncated or not a checkpoint "
                         f"({type(exc).__name__}: {_first_sentence(exc)})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a torchssc checkpoint (a {type(state).__name__}, expected a dict)")
    if is_original_checkpoint(state):
        return original_as_checkpoint(state, path, recipe)
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: not a torchssc checkpoint, missing keys {missing}")
    if state["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format_version {state['format_version']}, this torchssc reads {FORMAT_VERSION}")
    return state


def _first_sentence(exc: BaseException, limit: int = 160) -> str:
    """The first line (and sentence) of an exception's message, at most ``limit`` characters: the
    loaders' messages go on for paragraphs."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.split(". ")[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def check_resumable(path: str | os.PathLike) -> dict:
    """Load a checkpoint and check that training can restart from it: it loads, holds every key of
    :data:`TRAINING_KEYS`, and its weights and optimiser state are finite. Returns the state.

    Raises:
        FileNotFoundError, ValueError: naming ``path`` and what is wrong.
    """
    state = load_checkpoint(path)
    missing = [k for k in TRAINING_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: incomplete for training, missing {missing} (a checkpoint for evaluation only?)")
    bad = non_finite_tensors({"model": state["model"], "optimizer": state["optimizer"]})
    if bad:
        raise ValueError(f"{path}: not finite, {describe_non_finite(bad)}")
    return state


def newest_resumable(run_dir: str | os.PathLike) -> tuple[Path, int, list[str]]:
    """The newest checkpoint of a run folder that training can restart from.

    Candidates are ``last.pt`` and the newest ``epoch_<NNNN>.pt`` that passes
    :func:`check_resumable` (older epoch files are tried when a newer one fails). Of those, the
    one with more completed iterations wins, so a stale ``last.pt`` (e.g. its copy failed on a
    full disk) never wins over a newer epoch file; on a tie the epoch file is named.

    Returns:
        ``(path, its iteration, why each other file was passed over)``.
    Raises:
        ValueError: no checkpoint in the folder can be resumed (each reason listed).
    """
    skipped: list[str] = []
    found: list[tuple[int, bool, Path]] = []  # (iteration, is an epoch file, path)
    last = last_path(run_dir)
    if last.is_file():
        try:
            found.append((int(check_resumable(last)["iteration"]), False, last))
        except ValueError as exc:
            skipped.append(str(exc))
    for path in reversed(list(list_checkpoints(run_dir).values())):
        try:
            found.append((int(check_resumable(path)["iteration"]), True, path))
            break
        except ValueError as exc:
            skipped.append(str(exc))
    if not found:
        reasons = "; ".join(skipped) if skipped else "there are none"
        raise ValueError(f"resume: no usable checkpoint in {checkpoint_dir(run_dir)}: {reasons}")
    iteration, _, chosen = max(found)
    for other_iteration, _, other in found:
        if other != chosen and other_iteration < iteration:
            skipped.append(f"{other}: older (iteration {other_iteration}) than {chosen.name} (iteration {iteration})")
    return chosen, iteration, skipped


def resume_checkpoint(run_dir: str | os.PathLike, resume: bool | str | os.PathLike) -> Path | None:
    """The checkpoint a training run in ``run_dir`` starts from; ``None`` for a fresh start.

    Args:
        resume: ``False`` (a fresh run), ``True`` (the run folder's newest usable checkpoint,
            :func:`newest_resumable`; the choice and every file passed over are logged) or the
            path of a checkpoint file (checked by :func:`check_resumable`).
    Raises:
        ValueError: ``resume`` finds nothing usable, or a fresh run would overwrite checkpoints.
    """
    if resume is True:
        chosen, iteration, skipped = newest_resumable(run_dir)
        for reason in skipped:
            logger.warning("resume: passed over %s", reason)
        logger.info("resume: from %s (iteration %d), the newest complete and finite checkpoint", chosen, iteration)
        return chosen
    if resume:
        try:
            check_resumable(resume)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"resume: {exc}") from None
        return Path(resume)
    existing = find_last_checkpoint(run_dir)
    if existing is not None:
        raise ValueError(
            f"{run_dir} already holds checkpoints ({existing.name}); pass --resume to continue that run "
            f"or choose another run.name"
        )
    return None


def load_weights(model: nn.Module, weights: dict, path: str | os.PathLike, name: str) -> None:
    """``model.load_state_dict(weights)`` (strict), with a one-line ``ValueError`` naming ``path``
    and counting the keys that do not fit when the checkpoint is of another model."""
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: 'model' is a {type(weights).__name__}, not a state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    mismatched = [k for k in own if k in weights and torch.is_tensor(weights[k]) and weights[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = [f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                 for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("keys of another shape", mismatched)) if keys]
        raise ValueError(f"{path}: weights do not fit model {name!r}: {'; '.join(parts)}; "
                         f"is it a checkpoint of another model?")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit model {name!r}: {_first_sentence(exc)}") from None


def load_model(path: str | os.PathLike, cfg: dict | None = None, *, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict]:
    """The model of a checkpoint, built and loaded, in eval mode on ``device``: the one way to do it.

    Args:
        path: a checkpoint file (:func:`load_checkpoint` reads it; an original TorchSSC file too).
        cfg: the recipe whose ``model`` section builds the model; ``None``: the checkpoint's own.
            A model section that differs from the checkpoint's is warned about. The model is built
            without ``backbone_weights`` (the checkpoint holds the backbone: no ImageNet file).
    Returns:
        ``(model, state)``: the model, and the whole checkpoint dict (``epoch``, ``config``, ...).
    Raises:
        FileNotFoundError, ValueError: as :func:`load_checkpoint`; ``ValueError`` too when the
            weights do not fit the model.
    """
    state = load_checkpoint(path, map_location="cpu", recipe=cfg)
    saved = upgrade_saved(state["config"]) if isinstance(state["config"], dict) else None
    if cfg is None:
        if saved is None:
            raise ValueError(f"{path}: the checkpoint holds no recipe to build its model from")
        cfg = saved
    model = build_model(loading_recipe(cfg))
    load_weights(model, state["model"], path, cfg["model"]["name"])  # strict: every key must fit
    if saved is not None and loading_recipe(saved)["model"] != loading_recipe(cfg)["model"]:
        logger.warning("%s: trained with model %s, evaluating with %s", path, saved.get("model"), cfg["model"])
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
    path: str | os.PathLike = "checkpoint",
    model_name: str | None = None,
) -> int:
    """Put a :func:`training_state` back into the training objects; returns its iteration.

    The RNG streams of rank ``rank`` are restored when the checkpoint has one per process of
    this run; otherwise (another world size) every stream is reseeded from ``(seed, rank,
    iteration)`` with a warning: the run goes on, but not as an exact continuation. A checkpoint
    written with another number of iterations per epoch is warned about too (this run counts
    epochs and the schedule in its own). ``path`` and ``model_name`` name the file and the model
    in the ``ValueError`` raised when the weights are of another model (:func:`load_weights`).
    """
    load_weights(model, state["model"], path, model_name or type(model).__name__)
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
    changed = diff_configs(upgrade_saved(state["config"]), cfg)
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
