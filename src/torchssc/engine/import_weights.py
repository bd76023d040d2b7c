"""Checkpoints of other code bases as torchssc checkpoints (``torchssc import-weights``; docs/zoo.md).

Formats (``--from``):

``torchssc-original``
    The original TorchSSC's ``epoch-N.pth``: ``{"model": state dict in its module names,
    "optimizer", "epoch", "iteration"}``; renamed by :mod:`torchssc.models.original_weights`,
    which skips the 216 tensors of its dead branches. Default recipe: ``sketch_aware_ssc_nyu``.
    ``eval`` and ``predict`` also read such a file directly (:func:`original_as_checkpoint`, called
    by :func:`torchssc.engine.checkpoint.load_checkpoint`).
``ssc-wlj``
    The DDRNet / AICNet authors' files, ``{"state_dict": ...}`` of an ``nn.DataParallel`` model;
    renamed by :mod:`torchssc.models.authors_weights`. Default recipe: ``aicnet_nyu`` when the file
    holds AIC blocks (a ``basic_aic`` key), else ``ddrnet_nyu``.

Every file is read with ``torch.load(..., weights_only=True)``. The result is a checkpoint in our
format (:mod:`torchssc.engine.checkpoint`): ``format_version``, ``model``, ``config`` (the recipe,
without ``model.kwargs.backbone_weights``: the checkpoint holds the backbone), ``epoch``,
``iteration`` (the file's, 0 when absent) and ``imported_from`` (``{"format", "file", "skipped"}``).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn as nn

from torchssc.config import load_config
from torchssc.engine.builders import build_model
from torchssc.models.authors_weights import load_authors_state_dict
from torchssc.models.original_weights import ORIGINAL_FORMAT, from_original_state_dict, is_original_checkpoint

logger = logging.getLogger("torchssc.import")

WLJ_FORMAT = "ssc-wlj"
FORMATS = (ORIGINAL_FORMAT, WLJ_FORMAT)
DEFAULT_RECIPE = "sketch_aware_ssc_nyu"
"""The recipe an original TorchSSC checkpoint is read with when none is given."""
WLJ_RECIPES = ("ddrnet_nyu", "aicnet_nyu")


def loading_recipe(cfg: dict) -> dict:
    """``cfg`` without ``model.kwargs.backbone_weights``: a model about to receive a whole
    checkpoint needs no ImageNet file (the checkpoint holds the backbone). A copy."""
    out = copy.deepcopy(cfg)
    out["model"]["kwargs"] = {k: v for k, v in out["model"]["kwargs"].items() if k != "backbone_weights"}
    return out


def read_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, errors naming the file.

    Raises:
        FileNotFoundError: no such file. ValueError: unreadable (truncated, not a torch file, or
            holding objects that ``weights_only`` refuses).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ValueError(f"{path}: unreadable ({type(exc).__name__}: {first})") from None


def _number(value: Any) -> int:
    """An epoch or iteration count as an int (0 when absent or not a number)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _checkpoint(weights: dict, cfg: dict, source: dict, fmt: str, path: str | os.PathLike, skipped: int) -> dict:
    from torchssc.engine.checkpoint import FORMAT_VERSION

    return {"format_version": FORMAT_VERSION, "model": weights, "config": cfg,
            "epoch": _number(source.get("epoch")), "iteration": _number(source.get("iteration")),
            "imported_from": {"format": fmt, "file": Path(path).name, "skipped": skipped}}


def _meta_model(cfg: dict) -> nn.Module:
    """The recipe's model on the ``meta`` device: names, shapes and strides, no memory."""
    with torch.device("meta"):
        return build_model(cfg)


def original_as_checkpoint(state: dict, path: str | os.PathLike, recipe: dict | None = None) -> dict:
    """An original TorchSSC checkpoint (:func:`~torchssc.models.original_weights.is_original_checkpoint`)
    as our checkpoint of ``recipe`` (``None``: :data:`DEFAULT_RECIPE`, said in a warning).

    Raises:
        ValueError: the weights do not fit the recipe's model (one line naming the tensors).
    """
    if recipe is None:
        logger.warning("%s: a checkpoint of the original TorchSSC, read with the default recipe %s",
                       path, DEFAULT_RECIPE)
        recipe = load_config(DEFAULT_RECIPE)
    else:
        logger.info("%s: a checkpoint of the original TorchSSC, read with model %s",
                    path, recipe["model"]["name"])
    cfg = loading_recipe(recipe)
    weights, skipped = from_original_state_dict(_meta_model(cfg), state["model"], source=str(path),
                                                name=cfg["model"]["name"])
    return _checkpoint(weights, cfg, state, ORIGINAL_FORMAT, path, skipped)


def wlj_state_dict(state: Any, path: str | os.PathLike) -> dict:
    """The state dict of an authors' DDRNet / AICNet file (its ``"state_dict"`` entry, or the
    file itself when it is a bare state dict)."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        return state["state_dict"]
    if isinstance(state, dict) and state and all(torch.is_tensor(v) for v in state.values()):
        return state
    raise ValueError(f"{path}: not a DDRNet/AICNet authors' checkpoint (expected a dict with 'state_dict')")


def wlj_default_recipe(state_dict: dict) -> str:
    """``aicnet_nyu`` when the state dict holds AIC blocks (``basic_aic``), else ``ddrnet_nyu``."""
    return "aicnet_nyu" if any(".basic_aic." in str(k) for k in state_dict) else "ddrnet_nyu"


def wlj_as_checkpoint(state: Any, path: str | os.PathLike, recipe: dict) -> dict:
    """An authors' DDRNet / AICNet file as our checkpoint of ``recipe`` (strict: anything missing,
    unexpected or of another shape is a ``ValueError`` naming the file)."""
    cfg = loading_recipe(recipe)
    model = build_model(cfg)
    try:
        load_authors_state_dict(model, wlj_state_dict(state, path))
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    source = state if isinstance(state, dict) else {}
    return _checkpoint(model.state_dict(), cfg, source, WLJ_FORMAT, path, 0)


def default_out(path: str | os.PathLike) -> Path:
    """``<folder>/<stem>_torchssc.pt`` beside the imported file."""
    path = Path(path)
    return path.with_name(f"{path.stem}_torchssc.pt")


def import_weights(path: str | os.PathLike, fmt: str, *, recipe: str | os.PathLike | None = None,
                   overrides: Iterable[str] = (), out: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """Convert the file ``path`` of format ``fmt`` (:data:`FORMATS`) and write our checkpoint.

    Args:
        recipe: a shipped recipe's name or a YAML recipe; ``None``: the format's default (module
            docstring). overrides: dotted ``key=value`` strings for the recipe.
        out: the checkpoint to write (atomically); ``None``: :func:`default_out`.
    Returns:
        ``(the written path, the checkpoint)``; ``checkpoint["imported_from"]["skipped"]`` counts
        the tensors skipped by rule (the original's dead branches).
    Raises:
        ValueError: an unknown format, a file of another format, weights that do not fit.
        FileNotFoundError: no such file or recipe.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--from {fmt!r}: expected one of {', '.join(FORMATS)}")
    state = read_file(path)
    if fmt == ORIGINAL_FORMAT:
        if not is_original_checkpoint(state):
            raise ValueError(f"{path}: not a checkpoint of the original TorchSSC (expected a dict whose 'model' "
                             f"holds its module names, e.g. 'stage1.oper1.0.weight', and no 'config')")
        cfg = load_config(recipe or DEFAULT_RECIPE, overrides)
        checkpoint = original_as_checkpoint(state, path, cfg)
    else:
        cfg = load_config(recipe or wlj_default_recipe(wlj_state_dict(state, path)), overrides)
        checkpoint = wlj_as_checkpoint(state, path, cfg)
    from torchssc.engine.checkpoint import save_checkpoint

    target = Path(out) if out is not None else default_out(path)
    if target.resolve() == Path(path).resolve():
        raise ValueError(f"--out {target}: the same file as the input")
    save_checkpoint(target, checkpoint)
    return target, checkpoint


__all__ = [
    "DEFAULT_RECIPE", "FORMATS", "WLJ_FORMAT", "WLJ_RECIPES", "default_out", "import_weights", "loading_recipe",
    "original_as_checkpoint", "read_file", "wlj_as_checkpoint", "wlj_default_recipe", "wlj_state_dict",
]
