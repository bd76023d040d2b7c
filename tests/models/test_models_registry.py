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

import pytest
import torch

from _registry import GRID_BOUND, builtin_models, model_part, small_config
from _toy import TOY_CLASSES, make_batch, write_toy_spec
from torchssc.config import load_config
from torchssc.engine.builders import build_loss, build_model, dataset_spec, run_inputs
from torchssc.label_grid_rule import to_label_grid

AMMNET = r"\.downsample[234]\.|^disc\."
NO_GRADIENT: dict[str, str] = {"ammnet_prior": AMMNET, "ammnet_segformer": AMMNET}
"""Parameters that legitimately get no gradient in a training step, by name pattern. AMMNet keeps
the authors' never-used ``downsample2/3/4`` resizing branches of its stride-1 DDR blocks (built
for their parameter count and checkpoint names, docs/ammnet.md); SketchAwareSSC does not build
them (docs/model.md). AMMNet's discriminator (``disc.``) is trained by its own step, the loss's
``training_step`` that the engine runs before the generator's (tests/engine/test_engine_ammnet.py),
not by the generator loss's backward checked here. Frozen parameters (the paper model's
ResNet-50, AMMNet's MiT-B2) have ``requires_grad=False`` and are not asked about."""


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


@pytest.mark.parametrize("name", builtin_models())
def test_model_on_the_toy_spec(name, toy_spec):
    if name in GRID_BOUND:  # refused on 32x16x32 with a clear error; run on a grid it allows
        with pytest.raises(ValueError, match="divisible by 12"):
            build_model(small_config(name, toy_spec))
    cfg = small_config(name)
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
