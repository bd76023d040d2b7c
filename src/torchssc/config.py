"""Training/evaluation recipes: YAML files merged over a fixed schema, plus ``key=value`` overrides.

A recipe is a plain nested ``dict`` (no global config object; library code takes explicit
arguments, only the engine reads the dict). :data:`DEFAULTS` is the schema: every key a recipe
or an override may set is listed there, and anything else is a ``ValueError`` naming the key.
The two free-form mappings are ``model.kwargs`` and ``loss.kwargs``: they are passed through to
the registered builder, which validates them (``engine.builders.build_model`` builds the model).

Overrides use dotted keys and YAML-parsed values, e.g. ``optim.lr=0.01``,
``train.amp=bf16``, ``model.kwargs.width=16``, ``data.root=null``.

The shipped recipes are package data (``torchssc/configs/<name>.yaml``): :func:`find_recipe`
turns a name such as ``sketch_aware_ssc_nyu`` into its file, so ``torchssc train
sketch_aware_ssc_nyu`` works from any folder, installed or not. A run folder's resolved recipe is
``<run_dir>/config.yaml`` (see :func:`run_dir`); the same dict is stored inside every checkpoint.
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from torchssc.io.atomic import atomic_path
from torchssc.metrics import PROTOCOLS

logger = logging.getLogger(__name__)

class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2; PyYAML's 1.1 rules need
    ``1.0e-3`` and would give the string "1e-3")."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)


# Free-form sub-mappings (passed through to builders); every other key is fixed by the schema.
FREE_FORM = ("model.kwargs", "loss.kwargs")

DEFAULTS: dict[str, Any] = {
    "data": {
        "root": None,  # prepared TorchSSC layout (docs/data.md); relative paths are relative to the cwd
        "train_split": "train",  # split list <root>/<train_split>.txt
        "val_split": None,  # a separate split list for periodic validation, or None
        "val_fraction": 0.0,  # else hold out this fraction of train_split (seeded by train.seed)
        "dataset": "nyu",  # the dataset declaration: a built-in name (torchssc list) or a spec YAML (docs/datasets.md)
        "num_workers": 2,  # DataLoader worker processes per training process
        "check": False,  # before the first step, check every scene the run uses (the data doctor, docs/data.md)
    },
    "model": {"name": "sketch_aware_ssc", "kwargs": {}},
    "loss": {"name": "sketch_aware", "kwargs": {}},
    "optim": {
        "name": "sgd",  # sgd | adam | adamw (adam: ForkNet's recipe, L2 decay; adamw: decoupled decay)
        "betas": [0.9, 0.999],  # adam and adamw
        "lr": 0.05,  # lr0 at train.global_batch, under standard DDP gradient averaging
        "momentum": 0.9,  # sgd only
        "weight_decay": 1.0e-3,  # conv/linear weights only
        "nesterov": False,  # sgd only
        "schedule": "poly",  # poly | constant | step | cosine (per epoch, to lr_min)
        "poly_power": 0.9,  # lr = lr0 * (1 - it / total) ** poly_power, per iteration (1.0: linear decay)
        "step_epochs": [],  # schedule=step: multiply lr by step_gamma at each of these epochs
        "step_gamma": 0.1,
        "lr_min": 0.0,  # schedule=cosine: the lr the cosine ends at
    },
    "train": {
        "epochs": 250,
        "iters_per_epoch": 198,  # None: len(train set) // global_batch
        "global_batch": 4,  # summed over processes; must be divisible by the world size
        "amp": "none",  # none | bf16 | fp16 (autocast on the training device; fp16 uses GradScaler)
        "seed": 0,
        "device": "auto",  # auto (cuda when available) | cpu | cuda
        "deterministic": True,  # torch.use_deterministic_algorithms(True, warn_only=True) on CPU
        "log_every": 10,  # iterations between TensorBoard scalars
        "ckpt_every": 1,  # epochs between checkpoints (the last epoch is always saved)
        "eval_every": 0,  # epochs between validations (0 = never)
        "sampler": "with_replacement",  # with_replacement | shuffle
        "max_iters": None,  # stop after this many iterations in total (smoke runs); schedule unchanged
        "progress": True,  # tqdm bar on rank 0
        "compile": False,  # torch.compile the training forward (docs/gpu.md); checkpoints stay the eager model's
        "channels_last": False,  # 3D/2D conv weights in channels-last memory format (docs/gpu.md)
        "flip": False,  # random flips along the two horizontal axes, per training sample (docs/training.md)
        "free_space_empty": False,  # the observed free space supervised as empty (docs/training.md)
    },
    "eval": {
        "protocol": "torchssc",  # torchssc | sscnet | all (docs/evaluation.md)
        "batch_size": 1,
        "seed": 0,
    },
    "run": {
        "dir": "runs",  # parent folder of run folders
        "name": None,  # run folder name; None: the recipe file's stem
    },
}

CHOICES: dict[str, tuple[Any, ...]] = {
    "optim.name": ("sgd", "adam", "adamw"),
    "optim.schedule": ("poly", "constant", "step", "cosine"),
    "train.amp": ("none", "bf16", "fp16"),
    "train.sampler": ("with_replacement", "shuffle"),
    "train.device": ("auto", "cpu", "cuda"),
    "eval.protocol": PROTOCOLS,
}


# ------------------------------------------------------------------------------------------
def _is_free_form(dotted: str) -> bool:
    return any(dotted == f or dotted.startswith(f + ".") for f in FREE_FORM)


def _merge(base: dict, update: dict, prefix: str, source: str) -> None:
    """Merge ``update`` into ``base`` in place; keys absent from ``base`` are errors outside
    the free-form mappings."""
    if not isinstance(update, dict):
        raise ValueError(f"{source}: '{prefix or '<top level>'}' must be a mapping, got {type(update).__name__}")
    for key, value in update.items():
        if not isinstance(key, str):
            raise ValueError(f"{source}: key {key!r} under '{prefix or '<top level>'}' is not a string")
        dotted = f"{prefix}.{key}" if prefix else key
        if _is_free_form(dotted) or _is_free_form(prefix):
            if isinstance(value, dict) and isinstance(base.get(key), dict):  # layers merge key by key
                _merge_free(base[key], value)
            else:
                base[key] = copy.deepcopy(value)
            continue
        if key not in base:
            raise ValueError(f"{source}: unknown config key '{dotted}'{_suggest(key, base, prefix)}")
        if isinstance(base[key], dict):
            _merge(base[key], value, dotted, source)
        else:
            if isinstance(value, dict):
                raise ValueError(f"{source}: config key '{dotted}' takes a value, not a mapping")
            base[key] = value


def _merge_free(base: dict, update: dict) -> None:
    """Deep-merge a free-form mapping (``model.kwargs``) of a later recipe layer into ``base``."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_free(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _suggest(key: str, section: Any, prefix: str) -> str:
    """`` (did you mean 'x'?)`` for a mistyped key, else the keys known under ``prefix``."""
    known = sorted(section) if isinstance(section, dict) else []
    dotted = f"{prefix}.{key}" if prefix else key
    if dotted in LEGACY_KEYS:
        return f": {LEGACY_KEYS[dotted]}"
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if near:
        return f"; did you mean '{prefix + '.' if prefix else ''}{near[0]}'?"
    return f" (known under '{prefix or '<top level>'}': {', '.join(known)})"


LEGACY_KEYS = {f"data.{k}": "inputs are declared by the model, its loss and the protocol now (torchssc list); "
               "the recipe no longer sets them" for k in
               ("rgb", "fine", "depth", "visibility", "prior", "forknet", "fine_labels")}
"""Keys of recipes before declared inputs (docs/datasets.md): dropped, with a warning, from
recipe files and checkpoints (old run folders keep working), refused with this reason in
overrides."""


def apply_override(cfg: dict, override: str) -> None:
    """Apply one ``dotted.key=value`` override to ``cfg`` in place (value parsed as YAML).

    Raises ``ValueError`` for a malformed override or a key not in the schema.
    """
    if "=" not in override:
        raise ValueError(f"override {override!r}: expected key=value, e.g. optim.lr=0.01")
    dotted, raw = override.split("=", 1)
    dotted = dotted.strip()
    if not dotted or any(not part for part in dotted.split(".")):
        raise ValueError(f"override {override!r}: bad key {dotted!r}")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"override {override!r}: value is not valid YAML ({exc})") from None
    _set_dotted(cfg, dotted, value, f"override {override!r}")


def _set_dotted(cfg: dict, dotted: str, value: Any, source: str) -> None:
    """Set ``cfg[dotted]`` (an override replaces the value; sections merge key by key)."""
    parts = dotted.split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        here = ".".join(parts[: i + 1])
        if part not in node:
            if not _is_free_form(".".join(parts[:i])):
                raise ValueError(f"{source}: unknown config key '{here}'{_suggest(part, node, '.'.join(parts[:i]))}")
            node[part] = {}
        if not isinstance(node[part], dict):
            raise ValueError(f"{source}: '{here}' is a value, not a section")
        node = node[part]
    last = parts[-1]
    if _is_free_form(dotted) or _is_free_form(".".join(parts[:-1])):
        node[last] = copy.deepcopy(value)
    elif last not in node:
        raise ValueError(f"{source}: unknown config key '{dotted}'{_suggest(last, node, '.'.join(parts[:-1]))}")
    elif isinstance(node[last], dict):
        _merge(node[last], value, dotted, source)
    else:
        if isinstance(value, dict):
            raise ValueError(f"{source}: config key '{dotted}' takes a value, not a mapping")
        node[last] = value


BOOLEANS = ("data.check", "optim.nesterov", "train.deterministic", "train.progress", "train.compile",
            "train.channels_last", "train.flip", "train.free_space_empty")
"""Keys that take ``true`` or ``false`` (not 0/1, not a string)."""

POSITIVE_INTS = ("train.epochs", "train.global_batch", "train.ckpt_every", "train.log_every", "eval.batch_size")
POSITIVE_INTS_OR_NULL = ("train.iters_per_epoch", "train.max_iters")
NON_NEGATIVE_INTS = ("train.eval_every", "data.num_workers", "train.seed", "eval.seed")
POSITIVE_NUMBERS = ("optim.lr", "optim.step_gamma")
NON_NEGATIVE_NUMBERS = ("optim.weight_decay", "optim.poly_power")
STRINGS = ("model.name", "loss.name", "run.dir", "data.dataset")
STRINGS_OR_NULL = ("data.root",)
SPLITS = ("data.train_split", "data.val_split")
"""A split list's name, or an explicit non-empty list of scene ids (``[3, 4, 5]`` or ``["0003"]``)."""


def _get(cfg: dict, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


FLOAT32_MAX = 3.4028234663852886e38
"""Numbers beyond float32's range are inf to the optimiser (torch refuses them mid-run)."""


def _is_number(value: Any) -> bool:
    """A finite int or float within float32's range (not a bool, not nan, not inf)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and abs(value) <= FLOAT32_MAX)


def _refuse(dotted: str, value: Any, expected: str) -> None:
    raise ValueError(f"config key '{dotted}' = {value!r}: expected {expected}")


def _validate_types(cfg: dict) -> None:
    """Booleans, integers, finite numbers and strings where the schema says so."""
    for dotted in BOOLEANS:
        if not isinstance(_get(cfg, dotted), bool):
            _refuse(dotted, _get(cfg, dotted), "true or false")
    for dotted in POSITIVE_INTS:
        value = _get(cfg, dotted)
        if not _is_int(value) or value < 1:
            _refuse(dotted, value, "a positive integer")
    for dotted in POSITIVE_INTS_OR_NULL:
        value = _get(cfg, dotted)
        if value is not None and (not _is_int(value) or value < 1):
            _refuse(dotted, value, "a positive integer or null")
    for dotted in NON_NEGATIVE_INTS:
        value = _get(cfg, dotted)
        if not _is_int(value) or value < 0:
            _refuse(dotted, value, "a non-negative integer")
    for dotted in POSITIVE_NUMBERS:
        value = _get(cfg, dotted)
        if not _is_number(value) or value <= 0:
            _refuse(dotted, value, "a finite number > 0 (float32: at most 3.4e38)")
    for dotted in NON_NEGATIVE_NUMBERS:
        value = _get(cfg, dotted)
        if not _is_number(value) or value < 0:
            _refuse(dotted, value, "a finite number >= 0 (float32: at most 3.4e38)")
    momentum = _get(cfg, "optim.momentum")
    if not _is_number(momentum) or not 0 <= momentum < 1:
        _refuse("optim.momentum", momentum, "a number in [0, 1)")
    for dotted in STRINGS:
        if not isinstance(_get(cfg, dotted), str) or not _get(cfg, dotted):
            _refuse(dotted, _get(cfg, dotted), "a non-empty string")
    for dotted in STRINGS_OR_NULL:
        value = _get(cfg, dotted)
        if value is not None and (not isinstance(value, str) or not value):
            _refuse(dotted, value, "a non-empty string or null")
    for dotted in SPLITS:
        value = _get(cfg, dotted)
        ids = isinstance(value, list) and value and all(_is_int(i) or isinstance(i, str) and i for i in value)
        if not (isinstance(value, str) and value or ids or value is None and dotted == "data.val_split"):
            _refuse(dotted, value, "a split name or a non-empty list of scene ids")
    name = _get(cfg, "run.name")
    if name is not None and not (isinstance(name, str) and name or _is_int(name)):
        _refuse("run.name", name, "a folder name or null")


def validate_config(cfg: dict) -> None:
    """Check every value of the schema: its type (booleans are ``true``/``false``, numbers finite,
    never ``nan`` or ``inf``), its range (a learning rate > 0, a weight decay >= 0, counts >= 1, ...)
    and its choices. ``ValueError`` naming the key."""
    for dotted, allowed in CHOICES.items():
        value = _get(cfg, dotted)
        if not any(type(a) is type(value) and a == value for a in allowed):  # True is not 1
            raise ValueError(f"config key '{dotted}' = {value!r}: expected one of {list(allowed)}")
    _validate_types(cfg)
    fraction = _get(cfg, "data.val_fraction")
    if not _is_number(fraction) or not 0.0 <= fraction < 1.0:
        _refuse("data.val_fraction", fraction, "a number in [0, 1)")
    if fraction > 0 and _get(cfg, "data.val_split") is not None:
        raise ValueError("config keys 'data.val_split' and 'data.val_fraction' are exclusive; set one")
    betas = _get(cfg, "optim.betas")
    if not isinstance(betas, list) or len(betas) != 2 or not all(_is_number(b) and 0 <= b < 1 for b in betas):
        _refuse("optim.betas", betas, "two numbers in [0, 1)")
    steps = _get(cfg, "optim.step_epochs")
    if not isinstance(steps, list) or not all(_is_int(s) and s > 0 for s in steps):
        _refuse("optim.step_epochs", steps, "a list of positive integers")
    for dotted in FREE_FORM:
        if not isinstance(_get(cfg, dotted), dict):
            raise ValueError(f"config key '{dotted}' must be a mapping of keyword arguments")


def recipes_dir() -> Path:
    """The folder of the shipped recipes, ``torchssc/configs`` inside the installed package."""
    return Path(str(importlib.resources.files("torchssc") / "configs"))


def list_recipes() -> list[str]:
    """Names of the shipped recipes (file stems, sorted), e.g. ``sketch_aware_ssc_nyu``; their
    parts (``configs/<kind>/``) are listed by :func:`list_parts`."""
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def find_recipe(name_or_path: str | os.PathLike) -> Path:
    """The recipe file for a path (any YAML file) or a shipped recipe's name.

    ``"sketch_aware_ssc_nyu"`` and ``"sketch_aware_ssc_nyu.yaml"`` name
    ``torchssc/configs/sketch_aware_ssc_nyu.yaml``; an existing file is returned as given.

    Raises:
        FileNotFoundError: neither an existing file nor a shipped recipe (the nearest names are
            suggested).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.parent == Path("."):  # a bare name: look among the shipped recipes
        shipped = recipes_dir() / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
        if shipped.is_file():
            return shipped
    near = difflib.get_close_matches(path.stem, list_recipes(), n=3)
    hint = f"did you mean {', '.join(near)}? " if near else ""
    raise FileNotFoundError(
        f"{path}: no such config file, nor a shipped recipe ({hint}torchssc list recipes shows the "
        f"{len(list_recipes())} shipped ones)"
    )


def recipe_layers(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> list[tuple[str, dict]]:
    """The layers of a recipe file, in merge order: ``[(source, mapping), ...]``.

    A recipe may name parts to compose under ``compose:`` (a list): each is a path relative to
    the file's folder or to the shipped recipes' folder (``dataset/nyu``, ``model/unet3d_prior``,
    ``schedule/cpu_600``; ``.yaml`` optional), itself a recipe that may compose further. Its
    layers come first, in list order, then the file's own keys.

    Raises:
        FileNotFoundError: a part that exists nowhere (naming the recipe that asked for it).
        ValueError: unparsable YAML, a ``compose`` that is not a list of names, or a cycle.
    """
    path = Path(path)
    try:
        loaded = _yaml_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if loaded is None:
        return []
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of sections, got {type(loaded).__name__}")
    loaded = dict(loaded)
    parts = loaded.pop("compose", [])
    if not isinstance(parts, list) or not all(isinstance(p, str) and p for p in parts):
        raise ValueError(f"{path}: 'compose' must be a list of recipe parts, e.g. [dataset/nyu, model/unet3d_prior]")
    layers: list[tuple[str, dict]] = []
    for part in parts:
        found = _find_part(part, path)
        if found.resolve() in _seen or found.resolve() == path.resolve():
            raise ValueError(f"{path}: composing '{part}' makes a cycle")
        layers.extend(recipe_layers(found, _seen + (path.resolve(),)))
    layers.append((str(path), loaded))
    return layers


def _find_part(part: str, including: Path) -> Path:
    """A composed part's file: beside the including recipe, else among the shipped recipes."""
    name = part if part.endswith((".yaml", ".yml")) else f"{part}.yaml"
    for folder in (including.parent, recipes_dir()):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{including}: composes '{part}', found neither beside it nor among the shipped "
                            f"recipe parts ({', '.join(list_parts())})")


def list_parts() -> list[str]:
    """The shipped recipe parts, ``kind/name`` (``dataset/nyu``, ``model/sscnet``, ...)."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in recipes_dir().glob("*/*.yaml"))


def _drop_legacy(layer: dict, source: str) -> dict:
    """A saved recipe (a run folder's ``config.yaml``, a checkpoint's) from before declared inputs
    may carry ``data.rgb`` and its kind: they mean nothing now and are dropped."""
    data = layer.get("data")
    if not isinstance(data, dict):
        return layer
    old = [k for k in data if f"data.{k}" in LEGACY_KEYS]
    if not old:
        return layer
    logger.warning("%s: ignoring %s (inputs are declared by the model now)", source, ", ".join(f"data.{k}" for k in old))
    return {**layer, "data": {k: v for k, v in data.items() if k not in old}}


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> dict:
    """Read a YAML recipe with its composed parts, merge it over :data:`DEFAULTS`, then apply
    ``key.sub=value`` overrides.

    Args:
        path: a recipe file (e.g. a run folder's ``config.yaml``) or a shipped recipe's name
            (:func:`find_recipe`).
        overrides: dotted ``key=value`` strings, values parsed as YAML. Keys of older
            versions (:data:`LEGACY_KEYS`) are dropped from files with a warning (a run folder's
            ``config.yaml`` keeps working) and refused in overrides.

    Returns:
        The resolved recipe, a plain nested dict (YAML-serialisable), without ``compose``.
        ``run.name`` defaults to the recipe file's stem.

    Raises:
        FileNotFoundError: no such file, recipe or part.
        ValueError: unparsable YAML, an unknown key (named, with the nearest known one), or a
            value out of range.
    """
    path = find_recipe(path)
    cfg = copy.deepcopy(DEFAULTS)
    for source, layer in recipe_layers(path):
        _merge(cfg, _drop_legacy(layer, source), "", source)
    for override in overrides:
        apply_override(cfg, override)
    if cfg["run"]["name"] is None:
        cfg["run"]["name"] = path.stem
    validate_config(cfg)
    return cfg


def upgrade_saved(cfg: dict) -> dict:
    """A recipe stored by an older torchssc (inside a checkpoint) in today's schema: legacy
    keys dropped, new keys at their defaults. Returns a new dict; ``cfg`` is not changed."""
    out = copy.deepcopy(DEFAULTS)
    _merge(out, _drop_legacy(copy.deepcopy(cfg), "checkpoint"), "", "the checkpoint's recipe")
    return out


def save_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML to ``path`` atomically (key order kept)."""
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False))


def run_dir(cfg: dict) -> Path:
    """The run folder ``<run.dir>/<run.name>`` (relative paths are relative to the cwd)."""
    name = cfg["run"]["name"]
    if not name:
        raise ValueError("config key 'run.name' is empty; set run.name=<folder name>")
    return Path(cfg["run"]["dir"]) / str(name)


def diff_configs(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two recipes (for resume warnings)."""
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for key in keys:
        dotted = f"{prefix}.{key}" if prefix else key
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(diff_configs(va, vb, dotted))
        elif va != vb:
            out.append(dotted)
    return out
