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


def checkpoint_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """A checkpoint's own recipe (today's schema) with ``overrides`` applied, checked."""
    from torchssc.config import apply_override, upgrade_saved, validate_config
    from torchssc.engine.checkpoint import load_checkpoint

    saved = load_checkpoint(path)["config"]
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: the checkpoint holds no recipe to build its model from")
    cfg = upgrade_saved(saved)
    for override in overrides:
        apply_override(cfg, override)
    validate_config(cfg)
    return cfg


def model_source(checkpoint: str | None, weights: str | None, overrides: list[str] | tuple[str, ...] = (), *,
                 progress: bool = True) -> tuple[dict, Path]:
    """``(recipe, checkpoint file)`` of ``--checkpoint PATH`` (its own recipe) or ``--weights NAME``
    (:func:`weights_config`), with ``overrides`` applied; exactly one of the two is given."""
    if (checkpoint is None) == (weights is None):
        raise ValueError("give exactly one of --checkpoint PATH and --weights NAME (torchssc weights lists the names)")
    if weights is not None:
        return weights_config(weights, overrides, progress=progress)
    return checkpoint_config(checkpoint, overrides), Path(checkpoint)


def predict_prepared(cfg: dict, checkpoint: str | Path, frame_id: str) -> "np.ndarray":
    """The model's labels ``(D, H, W) uint8`` on frame ``frame_id`` of ``cfg["data"]["root"]``:
    what ``torchssc eval --split <frame_id> --save`` saves (the same scoring loop, seeds and
    label-grid rule, :func:`torchssc.engine.evaluate.score_model`), here with no report."""
    import tempfile

    import numpy as np

    from torchssc.engine.checkpoint import load_model
    from torchssc.engine.evaluate import score_model, scoring_dataset

    model, _ = load_model(checkpoint, cfg)
    dataset = scoring_dataset(cfg, [str(frame_id)], ["torchssc"], model)
    with tempfile.TemporaryDirectory(prefix="torchssc_viz_") as folder:
        score_model(model, dataset, protocols=["torchssc"], seed=int(cfg["eval"]["seed"]), save_dir=folder,
                    progress=False, name=str(checkpoint))
        return np.load(Path(folder) / "results" / f"{frame_id}.npy")
