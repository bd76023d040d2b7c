"""The every-model test's registry helpers (tests/models/test_models_registry.py): each library
model's recipe part, the smaller widths of the slow ones, the grids an architecture needs, and
the toy spec. A new model is covered with nothing written here."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import yaml

from _toy import write_toy_spec
from torchssc.config import load_config, recipes_dir
from torchssc.models import list_models
from torchssc.models.registry import MODELS

SKETCH_SMALL = ["model.kwargs.width=8", "model.kwargs.stem_channels=4", "model.kwargs.cvae_hidden=4",
                "model.kwargs.latent_channels=4", "model.kwargs.num_samples=1"]
AMMNET_SMALL = ["model.kwargs.feature=8", "model.kwargs.stem_channels=4", "model.kwargs.disc_plane=8"]
SMALL: dict[str, list[str]] = {
    "sketch_aware_ssc": [*SKETCH_SMALL, "model.kwargs.backbone=resnet18", "model.kwargs.backbone_weights=null"],
    "sketch_aware_ssc_prior": SKETCH_SMALL,
    "sketch_aware_ssc_tsdf": SKETCH_SMALL,
    "forknet": ["model.kwargs.grid_shape=[32, 16, 32]"],
    "ccpnet_style": ["model.kwargs.width=8"],
    "ammnet_prior": AMMNET_SMALL,
    "ammnet_segformer": [*AMMNET_SMALL, "model.kwargs.encoder_weights=null"],
}
"""Smaller widths (recipe overrides) for the models whose defaults take long on a CPU (same
architecture)."""

GRID_BOUND = {"ammnet_prior": (36, 12, 36), "ammnet_segformer": (36, 12, 36)}
"""Models whose architecture does not allow the 32x16x32 grid, with the toy grid they run on:
AMMNet's discriminator downsamples by 2, 2 and 3 and sizes its linear layer by the grid, so every
size must be a multiple of 12 (NYU's 60x36x60 is; docs/datasets.md)."""


def builtin_models() -> list[str]:
    """Every model the library registers (test modules register tiny models of their own)."""
    return [n for n in list_models() if MODELS.get(n).__module__.startswith("torchssc.")]


def model_part(name: str) -> Path:
    """The shipped recipe part ``configs/model/*.yaml`` that builds model ``name``."""
    for path in sorted((recipes_dir() / "model").glob("*.yaml")):
        if yaml.safe_load(path.read_text())["model"]["name"] == name:
            return path
    raise AssertionError(f"model {name!r} has no recipe part in configs/model/ (model + loss)")


@functools.lru_cache(maxsize=None)
def toy_spec(grid: tuple[int, int, int] = (32, 16, 32)) -> Path:
    """The toy spec YAML (on ``grid``), written once per process into a temporary folder."""
    path = write_toy_spec(Path(tempfile.mkdtemp(prefix="torchssc_toy_")))
    if grid != (32, 16, 32):
        path.write_text(path.read_text().replace("grid: [32, 16, 32]", f"grid: {list(grid)}"))
    return path


def small_config(name: str, spec: Path | None = None, grid: tuple[int, int, int] | None = None) -> dict:
    """The resolved recipe of model ``name``'s part on the toy spec (on ``grid``; default
    32x16x32, or the model's own when bound)."""
    spec = spec or toy_spec(grid or GRID_BOUND.get(name, (32, 16, 32)))
    return load_config(model_part(name), [f"data.dataset={spec}", *SMALL.get(name, [])])
