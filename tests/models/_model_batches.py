"""One small example per registered model, driven by the registry: the model's small builder
arguments, a synthetic batch in the dataset's contract (:mod:`torchssc.data.dataset`) at a small
grid, and the loss of the model's shipped recipe.

``example_batch(name)`` is what the every-model tests use (device placement, bf16, compile,
plan); a model added to the registry without an entry in :data:`SMALL` makes them fail with a
message saying to add one here.

The per-family batch makers gather what the model tests used to build each on their own
(``tests/models/test_models_*``): the same keys, dtypes and value ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from torchssc.config import list_recipes, load_config
from torchssc.models import list_models

GRID = (8, 4, 8)  # the 60x36x60 grid's stand-in
IMAGE = (12, 16)  # the 480x640 image's stand-in
FINE = (48, 32, 48)  # the 240x144x240 flipped TSDF's stand-in (SSCNet, CCPNet-style)

SKETCH_SMALL = dict(width=8, stem_channels=4, latent_channels=4, cvae_hidden=4, num_samples=2)

# model name -> (small builder kwargs, batch family)
SMALL: dict[str, tuple[dict, str]] = {
    "sketch_aware_ssc": ({**SKETCH_SMALL, "backbone": "resnet18"}, "sketch_rgb"),
    "sketch_aware_ssc_lite": ({"width": 8}, "sketch_rgb"),
    "sketch_aware_ssc_prior": (dict(SKETCH_SMALL), "sketch_prior"),
    "sketch_aware_ssc_prior_lite": ({"width": 8}, "sketch_prior"),
    "sketch_aware_ssc_tsdf": (dict(SKETCH_SMALL), "sketch_tsdf"),
    "sketch_aware_ssc_tsdf_lite": ({"width": 8}, "sketch_tsdf"),
    "unet3d_prior": ({"channels": (4, 8, 8)}, "sketch_prior"),
    "unet3d": ({"channels": (4, 8, 8)}, "sketch_tsdf"),
    "sscnet": ({}, "sscnet"),
    "ddrnet": ({"grid_shape": (16, 8, 16), "voxel_size": 0.3}, "rgbd_4"),
    "aicnet": ({"grid_shape": (16, 8, 16), "voxel_size": 0.3}, "rgbd_4"),
    "vvnet_r120": ({"grid_shape": (16, 8, 16), "voxel_size": 0.3}, "rgbd_8"),
    "forknet": ({"grid_shape": (32, 16, 32)}, "forknet"),
    "ccpnet_style": ({"width": 8}, "ccpnet"),
}

# models without a shipped recipe of their own: the recipe whose loss they train with
RECIPE_OF = {
    "sketch_aware_ssc_lite": "sketch_aware_ssc_synth_cpu",
    "sketch_aware_ssc_tsdf": "sketch_aware_ssc_nyu",
    "sketch_aware_ssc_tsdf_lite": "sketch_aware_ssc_nyu",
    "sketch_aware_ssc_prior_lite": "sketch_aware_ssc_prior_nyu_cpu",
}


@dataclass
class Example:
    """What one model needs for a training step on small shapes."""

    model: str
    model_kwargs: dict
    batch: dict
    recipe: str  # the shipped recipe the loss (and its kwargs) come from
    loss: str
    loss_kwargs: dict = field(default_factory=dict)
    recipe_model_kwargs: dict = field(default_factory=dict)  # the recipe's model.kwargs (full size)

    def build(self, **extra) -> tuple[torch.nn.Module, object]:
        """``(model, loss_fn)`` at the small size (``extra`` over the small kwargs)."""
        from torchssc.losses import get_loss
        from torchssc.models import get_model

        loss_kwargs = dict(self.loss_kwargs)
        if loss_kwargs.get("class_weights") == "dataset":  # the recipe asks for its dataset's (NYU's)
            from torchssc.datasets import get_dataset_spec

            loss_kwargs["class_weights"] = list(get_dataset_spec("nyu").class_weights)
        return get_model(self.model, **{**self.model_kwargs, **extra}), get_loss(self.loss, **loss_kwargs)


def recipe_for(model_name: str) -> str:
    """The shipped recipe that trains ``model_name`` (the ``*_nyu`` one when there are several)."""
    if model_name in RECIPE_OF:
        return RECIPE_OF[model_name]
    names = [r for r in list_recipes() if load_config(r)["model"]["name"] == model_name]
    if not names:
        raise KeyError(f"no shipped recipe trains {model_name!r}: add it to RECIPE_OF in {__name__}")
    return next((r for r in names if r.endswith("_nyu")), names[0])


def _labels(g, b, shape):
    label = torch.randint(0, 12, (b, *shape), generator=g)
    label[torch.rand(b, *shape, generator=g) < 0.4] = 0
    label[torch.rand(b, *shape, generator=g) < 0.1] = 255
    return label


def _mapping(g, b, grid, image):
    n, hw = grid[0] * grid[1] * grid[2], image[0] * image[1]
    mapping = torch.randint(0, hw, (b, n), generator=g)
    mapping[torch.rand(b, n, generator=g) > 0.3] = hw  # most voxels see no pixel
    return mapping


def _sketch_batch(g, b, kind):
    image = (32, 48) if kind == "sketch_rgb" else IMAGE  # the ResNet trunks need a larger image
    batch = {
        "tsdf": torch.randn(b, 1, *GRID, generator=g).clamp(-1, 1),
        "mapping": _mapping(g, b, GRID, image),
        "sketch_gt": torch.randint(0, 2, (b, *GRID), generator=g),
        "label": _labels(g, b, GRID),
        "label_weight": (torch.rand(b, *GRID, generator=g) > 0.3).float(),
    }
    if kind == "sketch_rgb":
        batch["rgb"] = torch.randn(b, 3, *image, generator=g)
    if kind == "sketch_prior":
        batch["prior"] = torch.randint(0, 14, (b, *image), generator=g)
    return batch


def _rgbd_batch(g, b, out_spatial):
    """A 24x32 frame 2-3 m from a level camera, NYU-like intrinsics scaled by 1/20."""
    h, w = 24, 32
    pose = torch.eye(4)
    pose[:3, :3] = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    pose[:3, 3] = torch.tensor([0.0, 0.0, 1.4])
    return {
        "tsdf_fine": torch.where(torch.rand(b, 1, *FINE, generator=g) < 0.1, 1.0, -0.001),
        "rgb": torch.randn(b, 3, h, w, generator=g),
        "depth": 2.0 + torch.rand(b, 1, h, w, generator=g),
        "pose": pose.repeat(b, 1, 1),
        "origin": torch.tensor([[-2.4, 1.0, -0.05]]).repeat(b, 1),
        "intrinsics": torch.tensor([[26.0, 26.0, w / 2, h / 2, w, h]]).repeat(b, 1),
        "label": _labels(g, b, out_spatial),
        "tsdf": torch.rand(b, 1, *out_spatial, generator=g) * 2 - 1,
        "label_weight": (torch.rand(b, *out_spatial, generator=g) > 0.3).float(),
        "mapping": _mapping(g, b, out_spatial, (h, w)),
    }


def _forknet_batch(g, b, shape=(32, 16, 32)):
    """ForkNet's volumes, plus the label grid (3/4 of ForkNet's, as 60 is of 80) for scoring."""
    tsdf = torch.where(torch.rand(b, 1, *shape, generator=g) < 0.3, torch.rand(b, 1, *shape, generator=g) * 2 - 1, 0.0)
    coarse = tuple(s * 3 // 4 for s in shape)
    return {"forknet_tsdf": tsdf, "forknet_label": _labels(g, b, shape),
            "forknet_surface": (torch.rand(b, *shape, generator=g) < 0.2).to(torch.uint8),
            "label": _labels(g, b, coarse), "label_weight": (torch.rand(b, *coarse, generator=g) > 0.3).float(),
            "mapping": _mapping(g, b, coarse, IMAGE)}


def _ccpnet_batch(g, b):
    coarse = tuple(s // 4 for s in FINE)
    fine = _labels(g, b, FINE).to(torch.uint8)
    return {"tsdf_fine": torch.where(torch.rand(b, 1, *FINE, generator=g) < 0.1, 1.0, -0.001),
            "label_fine": fine, "label": _labels(g, b, coarse),
            "label_weight": (torch.rand(b, *coarse, generator=g) < 0.7).float(),
            "mapping": _mapping(g, b, coarse, IMAGE)}


def make_batch(family: str, batch_size: int = 1, seed: int = 0) -> dict:
    """A synthetic batch of ``family`` (see :data:`SMALL`), CPU tensors with a leading ``B``."""
    g = torch.Generator().manual_seed(seed)
    if family.startswith("sketch_"):
        return _sketch_batch(g, batch_size, family)
    if family == "sscnet":
        return _rgbd_batch(g, batch_size, (12, 8, 12))
    if family == "rgbd_4":
        return _rgbd_batch(g, batch_size, (4, 2, 4))
    if family == "rgbd_8":
        return _rgbd_batch(g, batch_size, (8, 4, 8))
    if family == "forknet":
        return _forknet_batch(g, batch_size)
    if family == "ccpnet":
        return _ccpnet_batch(g, batch_size)
    raise KeyError(f"unknown batch family {family!r}")


def example_batch(model_name: str, batch_size: int = 1, seed: int = 0) -> Example:
    """The small example of a registered model: builder kwargs, batch, and its recipe's loss.

    Raises ``KeyError`` naming this module for a model without an entry (so a new model makes
    the every-model tests fail until it has one).
    """
    if model_name not in list_models():
        raise KeyError(f"{model_name!r} is not a registered model")
    if model_name not in SMALL:
        raise KeyError(f"no small example for model {model_name!r}: add one to SMALL in {__name__}")
    kwargs, family = SMALL[model_name]
    recipe = recipe_for(model_name)
    cfg = load_config(recipe)
    model_kwargs = dict(kwargs)
    if cfg["model"]["name"] == model_name:  # the recipe's choices (e.g. ForkNet's discriminators)
        model_kwargs = {**{k: v for k, v in cfg["model"]["kwargs"].items() if k not in ("backbone_weights",)
                           and not (k == "backbone" and "backbone" in kwargs)}, **kwargs}
    return Example(model=model_name, model_kwargs=model_kwargs, batch=make_batch(family, batch_size, seed),
                   recipe=recipe, loss=cfg["loss"]["name"], loss_kwargs=dict(cfg["loss"]["kwargs"]),
                   recipe_model_kwargs=dict(cfg["model"]["kwargs"]))


NOT_COVERED = {
    "ammnet_prior": "its adversarial step runs through the loss's training_step, which these single-step checks do not drive",
    "ammnet_segformer": "as ammnet_prior",
}
"""Library models these examples leave out, with the reason (docs/gpu.md)."""


def all_models() -> list[str]:
    """Every model the library registers (the parametrisation of the every-model tests); the
    models that test modules register for themselves (``engine_test_tiny``, ...) are left out."""
    from torchssc.models.registry import MODELS

    return [n for n in list_models() if getattr(MODELS.get(n), "__module__", "").startswith("torchssc.")
            and n not in NOT_COVERED]
