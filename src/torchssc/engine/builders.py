"""Objects built from a resolved recipe (:mod:`torchssc.config`): model, loss, datasets,
optimiser, LR schedule. Library code never reads the recipe; only these builders do."""

from __future__ import annotations

import inspect
import math
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.io.prepared import read_split
from torchssc.losses.registry import LOSSES, get_loss, loss_targets
from torchssc.models.registry import MODELS, get_model, model_inputs

# Modules whose ``weight`` gets weight decay (docs/training.md: conv weights only — linear layers too).
DECAYED_MODULES = (nn.modules.conv._ConvNd, nn.Linear)


def dataset_spec(cfg: dict) -> DatasetSpec:
    """The recipe's dataset declaration, ``data.dataset`` (a built-in name or a spec YAML)."""
    return get_dataset_spec(cfg["data"]["dataset"])


def _with_spec(builder: Callable, kwargs: dict, spec: DatasetSpec) -> dict:
    """``kwargs`` plus ``num_classes`` from the dataset spec, when the builder names it among its
    parameters and the recipe does not set it (the recipe's value wins). A builder taking only
    ``**kwargs`` gets it through its registered ``from_spec``."""
    if "num_classes" in inspect.signature(builder).parameters:
        return {"num_classes": spec.num_classes, **kwargs}
    return kwargs


def build_model(cfg: dict) -> nn.Module:
    """``get_model(cfg.model.name, num_classes=<the dataset's>, **<the registered from_spec(spec)>,
    **cfg.model.kwargs)`` (the recipe's kwargs win); bad keyword arguments are a ValueError naming
    the model (the free-form kwargs are validated by building)."""
    name, kwargs = cfg["model"]["name"], dict(cfg["model"]["kwargs"])
    spec = dataset_spec(cfg)
    from_spec = MODELS.info(name).get("from_spec")  # e.g. a projection grid from the fine grid
    kwargs = _with_spec(MODELS.get(name), {**(from_spec(spec) if from_spec else {}), **kwargs}, spec)
    try:
        return get_model(name, **kwargs)
    except TypeError as exc:
        raise ValueError(f"model {name!r} rejected model.kwargs {sorted(kwargs)}: {exc}") from None


def build_loss(cfg: dict) -> Callable[[dict, dict], dict]:
    """``get_loss(cfg.loss.name, num_classes=<the dataset's>, **cfg.loss.kwargs)``: called as
    ``loss(outputs, batch)`` and returning a dict of scalar tensors with ``"total"``.
    ``class_weights: dataset`` in the kwargs takes the dataset spec's ``class_weights``."""
    name, kwargs = cfg["loss"]["name"], dict(cfg["loss"]["kwargs"])
    spec = dataset_spec(cfg)
    if kwargs.get("class_weights") == "dataset":  # the dataset's declared weights
        if spec.class_weights is None:
            raise ValueError(f"loss.kwargs.class_weights=dataset, but dataset {spec.name!r} declares no class_weights"
                             f"{f' ({spec.path})' if spec.path else ''}; add them to the spec or give a list")
        kwargs["class_weights"] = list(spec.class_weights)
    kwargs = _with_spec(LOSSES.get(name), kwargs, spec)
    try:
        return get_loss(name, **kwargs)
    except TypeError as exc:
        raise ValueError(f"loss {name!r} rejected loss.kwargs {sorted(kwargs)}: {exc}") from None


PROTOCOL_INPUTS = {"sscnet": ("visibility",)}
"""Batch keys an evaluation protocol reads beyond the base ones."""


def run_inputs(cfg: dict, model: nn.Module | None = None, *, loss: bool = True,
               protocols: Iterable[str] = ()) -> dict[str, str]:
    """The batch keys a run reads, each with who reads it: ``{key: "model 'ddrnet'", ...}``.

    The union of the model's declared inputs (:func:`~torchssc.models.registry.model_inputs`;
    the built ``model``'s own when given), the loss's targets (``loss=True``) and the protocols'
    needs (:data:`PROTOCOL_INPUTS`). The dataset loads exactly these."""
    keys: dict[str, str] = {}
    name = cfg["model"]["name"]
    for key in model_inputs(name, model):
        keys.setdefault(key, f"model '{name}'")
    if loss:
        for key in loss_targets(cfg["loss"]["name"]):
            keys.setdefault(key, f"loss '{cfg['loss']['name']}'")
    for protocol in protocols:
        for key in PROTOCOL_INPUTS.get(protocol, ()):
            keys.setdefault(key, f"protocol '{protocol}'")
    return keys


def _root(cfg: dict) -> str:
    root = cfg["data"]["root"]
    if not root:
        raise ValueError("config key 'data.root' is not set (the prepared dataset folder); e.g. data.root=DATA/NYU")
    return str(root)


def _split_ids(cfg: dict, split: str) -> list[str]:
    """The frame ids of a split name in the dataset's layout (``<root>/<split>.txt`` for torchssc's;
    another layout lists its own, e.g. the files of an EdgeNet folder: data/layouts.py)."""
    spec = dataset_spec(cfg)
    if spec.layout == "torchssc":
        return read_split(_root(cfg), split)
    from torchssc.data.layouts import open_layout

    return open_layout(spec, _root(cfg)).ids(split)


def split_train_val(cfg: dict) -> tuple[str | list[str], str | list[str] | None]:
    """The training and validation frame lists of a recipe.

    ``data.val_split`` set: ``(data.train_split, data.val_split)`` (split names).
    ``data.val_fraction > 0``: the ids of ``data.train_split`` are permuted with ``train.seed``
    and ``max(1, round(n * val_fraction))`` of them held out: ``(train_ids, val_ids)`` (lists, in
    file order). Otherwise ``(data.train_split, None)``.
    """
    data = cfg["data"]
    if data["val_split"] is not None:
        return data["train_split"], data["val_split"]
    if data["val_fraction"] <= 0:
        return data["train_split"], None
    ids = _split_ids(cfg, data["train_split"])
    n_val = max(1, int(round(len(ids) * data["val_fraction"])))
    if n_val >= len(ids):
        raise ValueError(f"data.val_fraction={data['val_fraction']} leaves no training frames out of {len(ids)}")
    perm = np.random.Generator(np.random.PCG64(cfg["train"]["seed"])).permutation(len(ids))
    held = set(perm[:n_val].tolist())
    return [i for k, i in enumerate(ids) if k not in held], [i for k, i in enumerate(ids) if k in held]


def build_dataset(cfg: dict, split: str | Sequence[str], keys: Iterable[str] | Mapping[str, str] = ()) -> Dataset:
    """``SSCDataset(cfg.data.root, split, keys=keys, spec=cfg.data.dataset)``.

    ``split``: a split name (``"train"``, ``"test"``) or a list of frame ids. ``keys``: the batch
    keys beyond the base ones, usually :func:`run_inputs` (which names who needs each, so a
    missing input is reported against the model or loss that reads it).
    """
    from torchssc.data import SSCDataset

    return SSCDataset(_root(cfg), split, keys=keys, spec=dataset_spec(cfg))


def build_training_transform(cfg: dict, inputs: Mapping[str, str], *, rank: int = 0,
                             world_size: int = 1) -> Callable[[dict, int], dict] | None:
    """The training batches' transform of ``train.flip`` / ``train.free_space_empty``
    (:class:`torchssc.data.augment.TrainingTransform`), or ``None`` when both are off.

    ``inputs``: the run's ``{key: who reads it}`` (:func:`run_inputs`). ``ValueError`` for flips
    when the model or loss reads the camera, and for the free space when the loss declares targets
    without ``label_weight`` (the option works through it)."""
    from torchssc.data.augment import TrainingTransform, check_flip_inputs

    t = cfg["train"]
    if not (t["flip"] or t["free_space_empty"]):
        return None
    if t["flip"]:
        check_flip_inputs(inputs)
    targets = loss_targets(cfg["loss"]["name"])  # none declared: the base keys, label_weight among them
    if t["free_space_empty"] and targets and "label_weight" not in targets:
        raise ValueError(f"train.free_space_empty: loss {cfg['loss']['name']!r} does not read label_weight "
                         f"(it reads {list(targets)}), through which the option supervises "
                         f"the observed free space")
    spec = dataset_spec(cfg)
    return TrainingTransform(grid=tuple(spec.grid), flip=t["flip"], free_space=t["free_space_empty"], seed=t["seed"],
                             ignore_id=spec.ignore_id, rank=rank, world_size=world_size)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into ``[{"params": decayed, "weight_decay": wd},
    {"params": rest, "weight_decay": 0}]`` (empty groups dropped).

    Decayed: the ``weight`` of conv (any dim, transposed included) and linear layers. Not
    decayed: biases, norm parameters, anything else. Frozen parameters (``requires_grad=False``)
    are left out; a parameter shared by several modules appears once.
    """
    decay, rest, seen = [], [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (decay if name == "weight" and isinstance(module, DECAYED_MODULES) else rest).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(cfg: dict, model: nn.Module) -> torch.optim.Optimizer:
    """``optim.name`` over :func:`parameter_groups`: SGD (``optim.lr``, ``momentum``,
    ``nesterov``), Adam (``optim.lr``, ``betas``; L2 ``weight_decay`` as SGD's) or AdamW
    (``optim.lr``, ``betas``; the groups' weight decay is AdamW's decoupled decay)."""
    opt = cfg["optim"]
    groups = parameter_groups(model, float(opt["weight_decay"]))
    if not groups:
        raise ValueError(f"model {cfg['model']['name']!r} has no trainable parameters")
    betas = tuple(float(b) for b in opt["betas"])
    if opt["name"] == "adamw":
        return torch.optim.AdamW(groups, lr=float(opt["lr"]), betas=betas)
    if opt["name"] == "adam":
        return torch.optim.Adam(groups, lr=float(opt["lr"]), betas=betas)
    return torch.optim.SGD(
        groups, lr=float(opt["lr"]), momentum=float(opt["momentum"]), nesterov=bool(opt["nesterov"])
    )


def lr_factor(cfg: dict, total_iters: int, iters_per_epoch: int) -> Callable[[int], float]:
    """``it -> lr / lr0`` for the recipe's schedule, ``it`` = completed iterations (0-based).

    poly: ``(1 - it / total_iters) ** poly_power`` (0 from ``total_iters`` on; no warm-up).
    cosine: per EPOCH, ``(lr_min + (lr0 - lr_min) (1 + cos(pi e / train.epochs)) / 2) / lr0``,
    ``e = it // iters_per_epoch`` (timm's CosineLRScheduler stepped after each epoch, as AMMNet).
    constant: 1. step: ``step_gamma ** k``, k = number of ``optim.step_epochs`` reached
    (epoch ``e`` begins at iteration ``e * iters_per_epoch``, ``e`` 1-based milestones: a
    milestone 30 lowers the lr from the first iteration of the 31st epoch).
    """
    opt = cfg["optim"]
    kind = opt["schedule"]
    if kind == "poly":
        if total_iters < 1:
            raise ValueError(f"poly schedule needs total_iters >= 1, got {total_iters}")
        power = float(opt["poly_power"])
        return lambda it: max(0.0, 1.0 - it / total_iters) ** power
    if kind == "constant":
        return lambda it: 1.0
    if kind == "cosine":
        lr0, lr_min, epochs = float(opt["lr"]), float(opt["lr_min"]), int(cfg["train"]["epochs"])
        cosine = lambda e: lr_min + 0.5 * (lr0 - lr_min) * (1 + math.cos(math.pi * e / epochs))  # noqa: E731
        return lambda it: cosine(it // iters_per_epoch) / lr0
    if kind == "step":
        gamma = float(opt["step_gamma"])
        milestones = sorted(int(e) * iters_per_epoch for e in opt["step_epochs"])
        return lambda it: gamma ** sum(it >= m for m in milestones)
    raise ValueError(f"optim.schedule {kind!r}: expected poly, constant, step or cosine")


def build_scheduler(
    cfg: dict, optimizer: torch.optim.Optimizer, total_iters: int, *, iters_per_epoch: int | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-ITERATION schedule (call ``scheduler.step()`` after every optimiser step).

    Args:
        total_iters: ``train.epochs * iters_per_epoch`` (the poly horizon).
        iters_per_epoch: needed by the step schedule; defaults to ``train.iters_per_epoch``.
    """
    ipe = iters_per_epoch if iters_per_epoch is not None else cfg["train"]["iters_per_epoch"]
    if cfg["optim"]["schedule"] in ("step", "cosine") and not ipe:
        raise ValueError(f"the {cfg['optim']['schedule']} schedule needs iters_per_epoch")
    factor = lr_factor(cfg, total_iters, int(ipe or 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


def resolve_iters_per_epoch(cfg: dict, num_frames: int) -> int:
    """``train.iters_per_epoch``, or ``num_frames // global_batch`` (at least 1) when unset."""
    ipe = cfg["train"]["iters_per_epoch"]
    if ipe is None:
        ipe = max(1, num_frames // cfg["train"]["global_batch"])
    return int(ipe)


__all__ = [
    "PROTOCOL_INPUTS",
    "dataset_spec",
    "run_inputs",
    "build_model",
    "build_loss",
    "build_dataset",
    "build_optimizer",
    "build_scheduler",
    "parameter_groups",
    "lr_factor",
    "split_train_val",
    "resolve_iters_per_epoch",
]
