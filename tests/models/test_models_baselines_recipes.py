"""The baseline recipes in configs/: they load, build, and train a step on small inputs."""

from __future__ import annotations


import pytest
import torch

from torchssc.config import load_config, recipes_dir
from torchssc.engine.builders import build_loss, build_model, build_optimizer, build_scheduler, lr_factor

CONFIGS = recipes_dir()
BASELINES = ("sscnet", "ddrnet", "aicnet", "vvnet")
SMALL_GRID = ["model.kwargs.grid_shape=[16, 8, 16]", "model.kwargs.voxel_size=0.3"]


def _small_batch(model_name: str, out_spatial: tuple[int, int, int], seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b, (h, w) = 2, (24, 32)
    pose = torch.eye(4)
    pose[:3, :3] = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    pose[:3, 3] = torch.tensor([0.0, 0.0, 1.4])
    label = torch.randint(0, 12, (b, *out_spatial), generator=g)
    label[torch.rand(b, *out_spatial, generator=g) < 0.5] = 0
    label[torch.rand(b, *out_spatial, generator=g) < 0.1] = 255
    depth = 2.0 + torch.rand(b, 1, h, w, generator=g)
    return {
        "tsdf_fine": torch.where(torch.rand(b, 1, 48, 32, 48, generator=g) < 0.1, 1.0, -0.001),
        "rgb": torch.randn(b, 3, h, w, generator=g),
        "depth": depth,
        "pose": pose.repeat(b, 1, 1),
        "origin": torch.tensor([[-2.4, 1.0, -0.05]]).repeat(b, 1),
        "intrinsics": torch.tensor([[26.0, 26.0, w / 2, h / 2, w, h]]).repeat(b, 1),
        "label": label,
        "tsdf": torch.rand(b, 1, *out_spatial, generator=g) * 2 - 1,
    }


@pytest.mark.parametrize("kind", ["nyu", "synth_cpu"])
@pytest.mark.parametrize("base", BASELINES)
def test_recipe_builds_and_trains_two_steps(base, kind):
    overrides = [] if base == "sscnet" else SMALL_GRID
    cfg = load_config(CONFIGS / f"{base}_{kind}.yaml", overrides)
    torch.manual_seed(0)
    model = build_model(cfg)
    loss_fn = build_loss(cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, total_iters=10, iters_per_epoch=5)
    spatial = {"sscnet": (12, 8, 12), "vvnet": (8, 4, 8)}.get(base, (4, 2, 4))
    batch = _small_batch(cfg["model"]["name"], spatial)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        losses = loss_fn(model(batch), batch)
        assert torch.isfinite(losses["total"])
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        scheduler.step()
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed > len(before) // 2


def test_nyu_recipes_reproduce_the_public_schedules():
    ssc = load_config(CONFIGS / "sscnet_nyu.yaml")
    ipe = ssc["train"]["iters_per_epoch"]
    total = ssc["train"]["epochs"] * ipe
    assert total == 400_000 and ssc["train"]["global_batch"] == 4
    f = lr_factor(ssc, total, ipe)
    assert f(199_999) == 1.0 and f(200_000) == pytest.approx(0.1)
    vv = load_config(CONFIGS / "vvnet_nyu.yaml")
    ipe = vv["train"]["iters_per_epoch"]
    f = lr_factor(vv, vv["train"]["epochs"] * ipe, ipe)
    assert vv["train"]["epochs"] * ipe == 150_000 and f(99_999) == 1.0 and f(100_000) == pytest.approx(0.1)
    for name in ("ddrnet", "aicnet"):
        cfg = load_config(CONFIGS / f"{name}_nyu.yaml")
        assert cfg["optim"]["schedule"] == "constant" and cfg["train"]["epochs"] == 50
        assert cfg["model"]["kwargs"]["index_rounding"] == "rint" and cfg["loss"]["name"] == "wlj"
        assert cfg["model"]["kwargs"]["trunk_layout"] == "yzx" and cfg["model"]["kwargs"]["index_precision"] == "float32"
    for cfg in (ssc, vv):
        assert (cfg["optim"]["lr"], cfg["optim"]["momentum"], cfg["optim"]["weight_decay"]) == (0.01, 0.9, 5.0e-4)
