"""The 2D-prior recipes in configs/: they load, name relative data roots, ask the dataset for the
prior, build the right model, loss, optimiser and schedule, and train a step through the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchssc.config import load_config, recipes_dir
from torchssc.engine import builders
from torchssc.engine.builders import build_loss, build_model, build_optimizer, build_scheduler, lr_factor
from torchssc.engine.train import EpochContext, train_one_epoch

CONFIGS = recipes_dir()
RECIPES = ("sketch_aware_ssc_prior_nyu", "sketch_aware_ssc_prior_nyu_cpu", "unet3d_prior_nyu", "unet3d_prior_nyu_cpu")
TINY_MODEL = {
    "sketch_aware_ssc_prior_lite": "model.kwargs={width: 8, stem_channels: 4, latent_channels: 4}",
    "sketch_aware_ssc_prior": "model.kwargs={width: 8, stem_channels: 4, latent_channels: 4, cvae_hidden: 4}",
    "unet3d_prior": "model.kwargs={channels: [4, 8, 8]}",
}


def _batches(n, seed, b=2, grid=(8, 4, 8), image=(12, 16)):
    g = torch.Generator().manual_seed(seed)
    cells, hw = grid[0] * grid[1] * grid[2], image[0] * image[1]
    return [{
        "id": [f"{i:04d}" for i in range(b)],
        "prior": torch.randint(0, 14, (b, *image), generator=g),
        "tsdf": torch.rand(b, 1, *grid, generator=g) * 2 - 1,
        "mapping": torch.where(torch.rand(b, cells, generator=g) < 0.3,
                               torch.randint(0, hw, (b, cells), generator=g), hw),
        "label": torch.randint(0, 12, (b, *grid), generator=g),
        "label_weight": torch.ones(b, *grid),
        "sketch_gt": torch.randint(0, 2, (b, *grid), generator=g),
    } for _ in range(n)]


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_with_a_relative_root_and_the_prior(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg["data"]["root"] == "DATA/NYU" and not Path(cfg["data"]["root"]).is_absolute()
    with torch.device("meta"):
        inputs = builders.run_inputs(cfg, builders.build_model(cfg))
    assert "prior" in inputs and "rgb" not in inputs  # the model declares the prior, not RGB
    assert cfg["data"]["val_fraction"] == 0.1 and round(795 * 0.1) == 80
    assert cfg["train"]["global_batch"] == 4 and cfg["eval"]["protocol"] == "torchssc"
    assert cfg["train"]["device"] == ("cpu" if name.endswith("_cpu") else "auto")


def test_paper_prior_recipe_is_the_papers_step():
    cfg = load_config(CONFIGS / "sketch_aware_ssc_prior_nyu.yaml")
    with torch.device("meta"):
        model = build_model(cfg)
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.SGD)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 4_130_998
    decayed, plain = opt.param_groups
    assert (decayed["lr"], decayed["momentum"], decayed["weight_decay"], plain["weight_decay"]) == (0.05, 0.9, 1e-3, 0.0)
    assert cfg["optim"]["schedule"] == "poly" and cfg["optim"]["poly_power"] == 0.9
    assert cfg["train"]["epochs"] == 250 and cfg["train"]["sampler"] == "with_replacement"
    assert cfg["loss"] == {"name": "sketch_aware", "kwargs": {}}


@pytest.mark.parametrize("name", ["unet3d_prior_nyu", "unet3d_prior_nyu_cpu"])
def test_unet_recipe_is_adamw_decayed_linearly(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    with torch.device("meta"):
        model = build_model(cfg)
    opt = build_optimizer(cfg, model)
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["lr"] == 2e-3
    assert opt.param_groups[0]["weight_decay"] == 1e-2 and opt.param_groups[1]["weight_decay"] == 0.0
    assert all(p.dim() == 5 for p in opt.param_groups[0]["params"])          # conv weights only
    f = lr_factor(cfg, 1000, 100)
    assert [f(0), f(250), f(500), f(1000)] == [1.0, 0.75, 0.5, 0.0]
    assert cfg["loss"]["name"] == "class_weighted_ce"


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_a_step_through_the_engine(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    cfg = load_config(CONFIGS / f"{name}.yaml", [TINY_MODEL[cfg["model"]["name"]]])
    torch.manual_seed(0)
    model = build_model(cfg)
    loss_fn = build_loss(cfg)
    opt = build_optimizer(cfg, model)
    sched = build_scheduler(cfg, opt, total_iters=4, iters_per_epoch=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = EpochContext(device=torch.device("cpu"), global_batch=2, log_every=1, progress=False)
    stats = train_one_epoch(model, loss_fn, opt, sched, torch.amp.GradScaler("cpu", enabled=False),
                            _batches(2, 0), ctx, epoch=0, iteration=0, num_iters=2)
    assert stats["iteration"] == 2 and all(torch.isfinite(torch.tensor(v)) for v in stats["terms"].values())
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2


def test_declared_inputs_reach_the_dataset(monkeypatch):
    seen = {}

    class Recorder:
        def __init__(self, root, split, **kwargs):
            seen.update(kwargs)

    import torchssc.data

    monkeypatch.setattr(torchssc.data, "SSCDataset", Recorder)
    cfg = load_config(CONFIGS / "unet3d_prior_nyu.yaml")
    with torch.device("meta"):
        model = builders.build_model(cfg)
    builders.build_dataset(cfg, "train", builders.run_inputs(cfg, model))
    assert seen["keys"] == {"tsdf": "model 'unet3d_prior'", "mapping": "model 'unet3d_prior'",
                            "prior": "model 'unet3d_prior'", "label": "loss 'class_weighted_ce'",
                            "label_weight": "loss 'class_weighted_ce'"}
    assert seen["spec"].name == "nyu"
    with pytest.raises(ValueError, match="data.prior.*declared by the model"):
        load_config(CONFIGS / "unet3d_prior_nyu.yaml", ["data.prior=true"])
    with pytest.raises(ValueError, match="optim.name"):
        load_config(CONFIGS / "unet3d_prior_nyu.yaml", ["optim.name=rmsprop"])
