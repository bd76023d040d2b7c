"""Named weights in the commands: the recipe and checkpoint of ``--weights NAME`` (docs/zoo.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

from torchssc.zoo.registry import WeightsEntry, entry_config, find_entry
from torchssc.zoo.resolve import resolve_weights

logger = logging.getLogger("torchssc.zoo")


def weights_config(name: str, overrides: list[str] | tuple[str, ...] = (),
                   registry: Mapping[str, WeightsEntry] | None = None, *, progress: bool = True) -> tuple[dict, Path]:
    """``(recipe, checkpoint file)`` to evaluate the weights called ``name`` with.

    The recipe is the entry's (with its overrides, then ``overrides``, e.g. ``data.root=...``),
    except its ``model`` section, which is the checkpoint's own, so the weights always fit the
    model they are loaded into (a recipe that builds another model is warned about).
    """
    from torchssc.config import upgrade_saved
    from torchssc.engine.checkpoint import load_checkpoint

    entry = find_entry(name, registry)
    path = resolve_weights(name, registry, progress=progress)
    cfg = entry_config(entry, overrides)
    saved = load_checkpoint(path)["config"]
    if isinstance(saved, dict):
        model = upgrade_saved(saved)["model"]
        if model != cfg["model"]:
            logger.warning("weights %r: the checkpoint's model section %s differs from its recipe's %s: "
                           "the checkpoint's builds the model", name, model, cfg["model"])
        cfg["model"] = model
    return cfg, path
