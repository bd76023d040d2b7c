"""Every registered model, driven by the registry: a new model is covered with nothing written.

For each name of :func:`torchssc.models.list_models`, built through the engine from its recipe
part (``configs/model/<part>.yaml``: model + loss) on the toy dataset of tests/datasets/_toy.py
(5 classes on a 32x16x32 grid, declared by one YAML), with a batch of exactly the keys the
model and its loss declare:

* the output: ``semantic`` logits with the spec's 5 classes, on the spec's grid once brought to
  the label grid (the native-resolution models: ForkNet, CCPNet-style);
* a finite loss;
* a gradient reaching every trainable parameter, except :data:`NO_GRADIENT` (documented);
* the same output twice from the same seed (eval mode).

No model is tied to NYU's grid by its architecture (docs/architecture.md): the projection grids
of DDRNet/AICNet/VVNet come from the spec's fine grid (``from_spec``); ForkNet's 80x48x80 volumes
are tied to NYU by their preparation (3 fine voxels a voxel, ``prepare --forknet``), not by the
network, which runs here on a 32x16x32 grid.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from _toy import TOY_CLASSES, make_batch, write_toy_spec
from torchssc.label_grid_rule import to_label_grid
from torchssc.config import load_config, recipes_dir
from torchssc.engine.builders import build_loss, build_model, dataset_spec, run_inputs
from torchssc.models import list_models
from torchssc.models.registry import MODELS


def builtin_models() -> list[str]:
    """Every model the library registers (tests register tiny models of their own)."""
    return [n for n in list_models() if MODELS.get(n).__module__.startswith("torchssc.")]

SMALL = {
    "ammnet_prior": ["model.kwargs.feature=8", "model.kwargs.stem_channels=4", "model.kwargs.disc_plane=8"],
    "ammnet_segformer": ["model.kwargs.feature=8", "model.kwargs.stem_channels=4", "model.kwargs.disc_plane=8",
                         "model.kwargs.encoder_weights=null"],
    "sketch_aware_ssc": ["model.kwargs.width=8", "model.kwargs.stem_channels=4", "model.kwargs.cvae_hidden=4",
                         "model.kwargs.latent_channels=4", "model.kwargs.num_samples=1",
                         "model.kwargs.backbone=resnet18", "model.kwargs.backbone_weights=null"],
    "sketch_aware_ssc_prior": ["model.kwargs.width=8", "model.kwargs.stem_channels=4", "model.kwargs.cvae_hidden=4",
                               "model.kwargs.latent_channels=4", "model.kwargs.num_samples=1"],
    "sketch_aware_ssc_tsdf": ["model.kwargs.width=8", "model.kwargs.stem_channels=4", "model.kwargs.cvae_hidden=4",
                              "model.kwargs.latent_channels=4", "model.kwargs.num_samples=1"],
    "forknet": ["model.kwargs.grid_shape=[32, 16, 32]"],
    "ccpnet_style": ["model.kwargs.width=8"],
}
"""Smaller widths for the models whose defaults take long on a CPU (same architecture)."""

AMMNET = r"\.downsample[234]\.|^disc\."
NO_GRADIENT: dict[str, str] = {"ammnet_prior": AMMNET, "ammnet_segformer": AMMNET}
"""Parameters that legitimately get no gradient in a training step, by name pattern. AMMNet keeps
the authors' never-used ``downsample2/3/4`` resizing branches of its stride-1 DDR blocks (built
for their parameter count and checkpoint names, docs/ammnet.md); SketchAwareSSC does not build
them (docs/model.md). AMMNet's discriminator (``disc.``) is trained by its own step, the loss's
``training_step`` that the engine runs before the generator's (tests/engine/test_engine_ammnet.py),
not by the generator loss's backward checked here. Frozen parameters (the paper model's ResNet-50, AMMNet's MiT-B2) have
``requires_grad=False`` and are not asked about."""


def model_part(name: str) -> Path:
    """The shipped recipe part ``configs/model/*.yaml`` that builds model ``name``."""
    for path in sorted((recipes_dir() / "model").glob("*.yaml")):
        if yaml.safe_load(path.read_text())["model"]["name"] == name:
            return path
    raise AssertionError(f"model {name!r} has no recipe part in configs/model/ (model + loss)")


@pytest.fixture(scope="module")
def toy_spec(tmp_path_factory):
    return write_toy_spec(tmp_path_factory.mktemp("spec"))


def test_every_registered_model_has_a_part_with_its_loss():
    for name in builtin_models():
        cfg = load_config(model_part(name))
        assert cfg["model"]["name"] == name and cfg["loss"]["name"]


def check_model(cfg: dict) -> None:
    """The every-model battery on a resolved recipe (model, loss, dataset spec); see the module
    docstring. Also used by the "Adding a model" checklist test."""
    name = cfg["model"]["name"]
    torch.manual_seed(0)
    model = build_model(cfg)
    spec = dataset_spec(cfg)
    batch = make_batch(run_inputs(cfg, model), spec, forknet_grid=cfg["model"]["kwargs"].get("grid_shape"))
    # output: the spec's classes, on the spec's grid (native-resolution models brought to it)
    model.train()
    torch.manual_seed(1)
    out = model(batch)
    logits = out["semantic"]
    assert logits.shape[:2] == (2, spec.num_classes), logits.shape
    assert to_label_grid(logits.argmax(1), spec.grid).shape == (2, *spec.grid)
    # a finite loss, and a gradient reaching every trainable parameter
    terms = build_loss(cfg)(out, batch)
    assert torch.isfinite(terms["total"]), terms
    terms["total"].backward()
    dead = NO_GRADIENT.get(name)
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None and not (dead and re.search(dead, n))]
    assert not missing, f"{name}: no gradient for {missing[:5]} ({len(missing)} in all)"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # the same output twice from the same seed
    model.eval()
    with torch.no_grad():
        torch.manual_seed(2)
        first = model(batch)["semantic"]
        torch.manual_seed(2)
        second = model(batch)["semantic"]
    assert torch.equal(first, second)


GRID_BOUND = {
    "ammnet_prior": (36, 12, 36),
    "ammnet_segformer": (36, 12, 36),
}
"""Models whose architecture does not allow the 32x16x32 grid, with the toy grid they run on:
AMMNet's discriminator downsamples by 2, 2 and 3 and sizes its linear layer by the grid, so every
size must be a multiple of 12 (NYU's 60x36x60 is; docs/datasets.md)."""


@pytest.mark.parametrize("name", builtin_models())
def test_model_on_the_toy_spec(name, toy_spec, tmp_path):
    spec_path = toy_spec
    if name in GRID_BOUND:  # the same toy, on a grid the architecture allows
        spec_path = tmp_path / "toy_grid.yaml"
        spec_path.write_text(toy_spec.read_text().replace("grid: [32, 16, 32]", f"grid: {list(GRID_BOUND[name])}"))
        with pytest.raises(ValueError, match="divisible by 12"):
            build_model(load_config(model_part(name), [f"data.dataset={toy_spec}", *SMALL.get(name, [])]))
    cfg = load_config(model_part(name), [f"data.dataset={spec_path}", *SMALL.get(name, [])])
    assert dataset_spec(cfg).classes == TOY_CLASSES
    assert dataset_spec(cfg).grid == GRID_BOUND.get(name, (32, 16, 32))
    check_model(cfg)


def test_a_model_without_its_input_is_named_in_one_line(toy_spec, tmp_path):
    """The pairing check: a recipe whose dataset lacks a declared input stops before any step."""
    from _toy import write_toy_dataset
    from torchssc.engine.builders import build_dataset

    root = write_toy_dataset(tmp_path / "data", str(toy_spec), train=2, test=1)
    for frame_id in ("0001", "0002"):
        (root / "seg_result_label13" / f"{frame_id}.png").unlink()
    cfg = load_config(model_part("unet3d_prior"), [f"data.dataset={toy_spec}", f"data.root={root}"])
    with pytest.raises(FileNotFoundError, match=r"^model 'unet3d_prior' needs input 'prior', which .* lacks for 2 of "
                                                r"the 2 frame\(s\) of split 'train'.*2D semantic prior"):
        build_dataset(cfg, "train", run_inputs(cfg, build_model(cfg)))
