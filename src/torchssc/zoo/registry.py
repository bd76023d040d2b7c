"""The registry of named weights (docs/zoo.md): trained checkpoints a user names instead of a path.

Entries are YAML blocks, one per name. The package's own registry is ``torchssc/zoo/weights.yaml``
(package data); ``$TORCHSSC_WEIGHTS_REGISTRY`` may name further registry files (separated by
``os.pathsep``), whose entries are added to the package's (a name may not be given twice). A
registry file is a mapping ``name -> entry``::

    nyu_unet3d_prior:
      recipe: unet3d_prior_nyu_cpu          # the recipe it was trained with (a shipped name or a
      overrides: [optim.lr=0.002]           # path beside the registry file), and its overrides
      model: unet3d_prior                   # checked against the recipe
      dataset: nyu                          # checked against the recipe
      figures: {sc_iou: 72.5, ssc_miou: 49.3, protocol: torchssc,
                split: 654 NYU test scenes, chosen: validation mIoU, 80 held-out scenes}
      size: 7812345                         # bytes
      sha256: 0f3c...                       # 64 hex digits
      file: nyu_unet3d_prior.pt             # shipped: <registry folder>/weights/<file>
      # url: https://.../nyu_unet3d_prior.pt  # or downloaded into $TORCHSSC_HOME/weights/<file>

The inputs an entry needs are not written down: they are the declared inputs of its model as the
recipe builds it (:func:`entry_inputs`, :func:`torchssc.models.model_inputs`).
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


from torchssc.io.yaml_file import read_yaml_file

REGISTRY_ENV = "TORCHSSC_WEIGHTS_REGISTRY"
"""Environment variable: extra registry YAML files (``os.pathsep``-separated) added to the package's."""

REQUIRED = ("recipe", "model", "dataset", "figures", "size", "sha256")
OPTIONAL = ("overrides", "file", "url", "description")
FIGURES_REQUIRED = ("sc_iou", "ssc_miou", "protocol", "split", "chosen")
FIGURES_OPTIONAL = ("command", "precision")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class WeightsEntry:
    """One named checkpoint of a registry file.

    ``file`` is the file's name: for a shipped entry (no ``url``) it lies in ``<folder of the
    registry file>/weights/``, for a URL entry it is the name in the cache (default: the URL's
    last part). ``source`` is the registry file the entry comes from."""

    name: str
    recipe: str
    model: str
    dataset: str
    figures: dict
    size: int
    sha256: str
    file: str
    source: Path
    url: str | None = None
    overrides: tuple[str, ...] = ()
    description: str = ""

    @property
    def shipped(self) -> bool:
        """True for a file that ships with the registry (no URL)."""
        return self.url is None

    @property
    def shipped_path(self) -> Path:
        """``<registry folder>/weights/<file>`` (meaningful for shipped entries)."""
        return self.source.parent / "weights" / self.file


def package_registry() -> Path:
    """The package's registry file, ``torchssc/zoo/weights.yaml``."""
    return Path(str(importlib.resources.files("torchssc") / "zoo" / "weights.yaml"))


def registry_files() -> list[Path]:
    """The package's registry file, then those named by ``$TORCHSSC_WEIGHTS_REGISTRY``."""
    extra = [Path(p) for p in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if p.strip()]
    return [package_registry(), *extra]


def _problem(path: Path, name: str, what: str) -> ValueError:
    return ValueError(f"{path}: weights {name!r}: {what}")


def _figures(path: Path, name: str, figures: Any) -> dict:
    if not isinstance(figures, dict):
        raise _problem(path, name, f"'figures' must be a mapping of {', '.join(FIGURES_REQUIRED)}")
    missing = [k for k in FIGURES_REQUIRED if k not in figures]
    unknown = [k for k in figures if k not in FIGURES_REQUIRED + FIGURES_OPTIONAL]
    if missing:
        raise _problem(path, name, f"'figures' lacks {', '.join(missing)}")
    if unknown:
        raise _problem(path, name, f"'figures' has unknown keys {', '.join(map(str, unknown))} "
                       f"(known: {', '.join(FIGURES_REQUIRED + FIGURES_OPTIONAL)})")
    for key in ("sc_iou", "ssc_miou"):
        value = figures[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise _problem(path, name, f"figures.{key} = {value!r}: expected a percentage 0..100")
    return dict(figures)


def parse_entry(path: Path, name: str, raw: Any) -> WeightsEntry:
    """One entry of registry file ``path``, checked (``ValueError`` naming the file, the entry and the key)."""
    if not isinstance(raw, dict):
        raise _problem(path, name, f"an entry must be a mapping, got {type(raw).__name__}")
    missing = [k for k in REQUIRED if k not in raw]
    unknown = [k for k in raw if k not in REQUIRED + OPTIONAL]
    if missing:
        raise _problem(path, name, f"missing {', '.join(missing)}")
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), REQUIRED + OPTIONAL, n=1)
        raise _problem(path, name, f"unknown key {unknown[0]!r}{f' (did you mean {near[0]!r}?)' if near else ''}")
    size, sha = raw["size"], str(raw["sha256"]).lower()
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise _problem(path, name, f"size = {size!r}: expected the file's size in bytes")
    if not _SHA256.match(sha):
        raise _problem(path, name, f"sha256 = {raw['sha256']!r}: expected 64 hex digits")
    url = raw.get("url")
    if url is not None and (not isinstance(url, str) or "://" not in url):
        raise _problem(path, name, f"url = {url!r}: expected a URL such as https://... or file://...")
    file = raw.get("file") or (url.rstrip("/").rsplit("/", 1)[-1] if url else None)
    if not file:
        raise _problem(path, name, "give 'file' (a file shipped under weights/) or 'url'")
    if not isinstance(file, str) or "/" in file or "\\" in file or file in (".", ".."):
        raise _problem(path, name, f"file = {file!r}: expected a file name, not a path")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise _problem(path, name, "'overrides' must be a list of key=value strings")
    for key in ("recipe", "model", "dataset"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise _problem(path, name, f"{key} = {raw[key]!r}: expected a name")
    return WeightsEntry(name=str(name), recipe=raw["recipe"], model=raw["model"], dataset=raw["dataset"],
                        figures=_figures(path, name, raw["figures"]), size=size, sha256=sha, file=file,
                        source=Path(path), url=url, overrides=tuple(overrides),
                        description=str(raw.get("description") or ""))


def read_registry(path: str | os.PathLike) -> dict[str, WeightsEntry]:
    """The entries of one registry file, in file order (an empty or comment-only file has none)."""
    path = Path(path)
    loaded = read_yaml_file(path, "weights registry")
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a weights registry is a mapping name -> entry, got {type(loaded).__name__}")
    return {str(name): parse_entry(path, str(name), raw) for name, raw in loaded.items()}


def load_registry(paths: list[str | os.PathLike] | None = None) -> dict[str, WeightsEntry]:
    """The entries of ``paths`` (default: :func:`registry_files`), merged; a name given twice is a
    ``ValueError`` naming both files."""
    entries: dict[str, WeightsEntry] = {}
    for path in registry_files() if paths is None else paths:
        for name, entry in read_registry(path).items():
            if name in entries:
                raise ValueError(f"weights {name!r} is defined twice: in {entries[name].source} and in {path}")
            entries[name] = entry
    return entries


def find_entry(name: str, registry: Mapping[str, WeightsEntry] | None = None) -> WeightsEntry:
    """The entry called ``name``; ``ValueError`` with the nearest names when there is none."""
    registry = load_registry() if registry is None else registry
    if name in registry:
        return registry[name]
    if not registry:
        raise ValueError(f"unknown weights {name!r}: the registry has no entries (torchssc weights)")
    near = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(near)}? " if near else ""
    raise ValueError(f"unknown weights {name!r}: {hint}(torchssc weights lists the {len(registry)} entries)")


def entry_config(entry: WeightsEntry, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The entry's recipe with its own overrides, then ``overrides`` (e.g. ``data.root=...``),
    resolved (:func:`torchssc.config.load_config`). A recipe path is relative to the registry
    file's folder. ``ValueError`` when the recipe's model or dataset is not the entry's."""
    from torchssc.config import load_config

    recipe = entry.recipe
    beside = entry.source.parent / recipe
    if recipe.endswith((".yaml", ".yml")) and beside.is_file():
        recipe = str(beside)
    cfg = load_config(recipe, [*entry.overrides, *overrides])
    for key, have, want in (("model.name", cfg["model"]["name"], entry.model),
                            ("data.dataset", cfg["data"]["dataset"], entry.dataset)):
        if have != want and key not in {o.split("=", 1)[0].strip() for o in overrides}:
            raise ValueError(f"{entry.source}: weights {entry.name!r}: its recipe {entry.recipe!r} has "
                             f"{key} = {have!r}, the entry says {want!r}")
    return cfg


def entry_inputs(entry: WeightsEntry) -> tuple[str, ...]:
    """The batch keys the entry's model reads at inference: the declared inputs of the model its
    recipe builds, in eval mode (training-only targets such as SketchAwareSSC's ``sketch_gt`` are
    not asked of a user; built on the meta device: shapes only, no memory)."""
    import torch

    from torchssc.engine.builders import build_model
    from torchssc.models import model_inputs

    cfg = entry_config(entry)
    with torch.device("meta"):
        model = build_model(cfg).eval()
    return model_inputs(cfg["model"]["name"], model)
