"""The engine with the real SketchAwareSSC: paper recipe -> optimiser (meta device), and the lite
variant through ``train_one_epoch`` / ``validation_scores`` on a tiny in-memory grid."""

from __future__ import annotations


import torch

from torchssc.config import load_config, recipes_dir
from torchssc.engine.builders import build_loss, build_model, build_optimizer, build_scheduler
from torchssc.engine.evaluate import validation_scores
from torchssc.engine.train import EpochContext, train_one_epoch

CONFIGS = recipes_dir()


def test_paper_recipe_optimises_exactly_the_trainable_heads():
    cfg = load_config(CONFIGS / "sketch_aware_ssc_nyu.yaml", ["model.kwargs.backbone_weights=null"])
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = build_model(cfg)
    opt = build_optimizer(cfg, model)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    # docs/model.md: 4,391,350 trainable parameters; the frozen backbone is not in the optimiser
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 4_391_350
    assert all(not p.requires_grad for p in model.parameters() if id(p) not in in_opt)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 1e-3 and plain["weight_decay"] == 0.0
    assert all(p.dim() > 1 for p in decayed["params"]) and all(p.dim() == 1 for p in plain["params"])


def _tiny_batches(n: int, seed: int, b: int = 2) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    d, h, w, ih, iw = 16, 8, 16, 48, 64
    return [
        {
            "id": [f"{i:04d}" for i in range(b)],
            "tsdf": torch.rand(b, 1, d, h, w, generator=g) * 2 - 1,
            "mapping": torch.randint(0, ih * iw + 1, (b, d * h * w), generator=g),
            "rgb": torch.randn(b, 3, ih, iw, generator=g),
            "label": torch.randint(0, 12, (b, d, h, w), generator=g),
            "label_weight": torch.ones(b, d, h, w),
            "sketch_gt": torch.randint(0, 2, (b, d, h, w), generator=g),
        }
        for _ in range(n)
    ]


def test_lite_model_trains_and_validates(tmp_path):
    cfg = load_config(
        CONFIGS / "sketch_aware_ssc_synth_cpu.yaml",
        ["model.kwargs={width: 8, stem_channels: 4, latent_channels: 4}", "optim.lr=0.01"],
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    loss_fn = build_loss(cfg)
    opt = build_optimizer(cfg, model)
    sched = build_scheduler(cfg, opt, total_iters=2, iters_per_epoch=2)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = EpochContext(device=torch.device("cpu"), global_batch=2, log_every=1, progress=False)
    stats = train_one_epoch(model, loss_fn, opt, sched, scaler, _tiny_batches(1, 0), ctx, epoch=0, iteration=0, num_iters=1)
    assert stats["iteration"] == 1 and stats["iters"] == 1
    assert {"total", "semantic", "sketch_raw", "sketch_posterior", "sketch_prior", "kl"} <= set(stats["terms"])
    assert all(torch.isfinite(torch.tensor(v)) for v in stats["terms"].values())
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone") for k in changed)  # the lite backbone is trained
    assert abs(opt.param_groups[0]["lr"] - 0.01 * (1 - 1 / 2) ** 0.9) < 1e-12
    val = [{k: v[0] for k, v in batch.items()} for batch in _tiny_batches(1, 1, b=1)]  # a list of frames
    first = validation_scores(model, val, seed=3, protocol="all")
    again = validation_scores(model, val, seed=3, protocol="all")
    assert model.training  # left in training mode
    assert first == again  # seeded, repeatable
    assert first["protocol"] == "all" and 0 <= first["sc_iou"] <= 1 and first["semantic_ce"] > 0
