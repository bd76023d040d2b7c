"""The ForkNet and CCPNet-style recipes train a few steps on synthetic rooms at reduced size and
their predictions are scored on the label grid by the evaluation path.

Synthetic rooms are generated and prepared (with ``--fine --forknet --fine-labels``) exactly as
NYU; each frame is then cut to its busiest block among blocks that the grids share: 32x16x32
ForkNet voxels = 96x48x96 fine voxels = 24x12x24 label voxels, and 48x32x48 fine voxels =
12x8x12 label voxels.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from torchssc.config import load_config, recipes_dir
from torchssc.data import SSCDataset
from torchssc.engine.builders import build_loss, build_model, build_optimizer, build_scheduler, run_inputs
from torchssc.engine.distributed import DistInfo
from torchssc.engine.evaluate import score_model
from torchssc.geometry import LABEL_SHAPE
from torchssc.prepare.runner import prepare_split
from torchssc.synth.generator import generate_dataset

CONFIGS = recipes_dir()
LABEL_KEYS = ("label", "label_weight", "visibility", "sketch_gt", "tsdf")


@pytest.fixture(scope="module")
def rooms(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("rooms")
    generate_dataset(tmp / "raw", 3, seed=11, test_fraction=0.34, noise="none", progress=False)
    for split in ("train", "test"):
        summary = prepare_split(tmp / "raw" / f"NYU{split}", tmp / "prepared", split=split, fine=True, forknet=True,
                                fine_labels=True, progress=False)
        assert summary.ok
    return tmp / "prepared"


def _label_crop(item: dict, start: tuple[int, int, int], size: tuple[int, int, int]) -> dict:
    """The label-grid fields of ``item`` cut to ``size`` voxels from ``start``."""
    box = tuple(slice(s, s + n) for s, n in zip(start, size))
    out = {"id": item["id"]}
    for key in LABEL_KEYS:
        value = item[key]
        out[key] = value[(slice(None),) + box] if value.dim() == 4 else value[box]
    out["mapping"] = item["mapping"].reshape(LABEL_SHAPE)[box].reshape(-1)
    return out


def _busiest(item: dict, starts: list[tuple[int, int, int]], size: tuple[int, int, int]) -> tuple[int, int, int]:
    """The label-grid start (among ``starts``) whose block holds most scored occupied voxels."""
    busy = (item["label_weight"] > 0) & (item["label"] > 0) & (item["label"] < 255)
    return max(starts, key=lambda s: int(busy[tuple(slice(a, a + n) for a, n in zip(s, size))].sum()))


def _forknet_item(item: dict, size=(32, 16, 32)) -> dict:
    """The busiest ForkNet block; its start is a multiple of 4 ForkNet voxels (= 3 label voxels)."""
    label_size = tuple(3 * n // 4 for n in size)
    starts = [(3 * a, 0, 3 * c) for a in range(0, 13, 2) for c in range(0, 13, 2)]  # ForkNet starts 4 * (a, 0, c)
    start = tuple(4 * s // 3 for s in _busiest(item, starts, label_size))
    box = tuple(slice(s, s + n) for s, n in zip(start, size))
    out = _label_crop(item, tuple(3 * s // 4 for s in start), tuple(3 * n // 4 for n in size))
    out["forknet_tsdf"] = item["forknet_tsdf"][(slice(None),) + box]
    out["forknet_label"] = item["forknet_label"][box]
    out["forknet_surface"] = item["forknet_surface"][box]
    return out


def _ccpnet_item(item: dict, size=(48, 32, 48)) -> dict:
    """The busiest block of ``size`` fine voxels starting on the label grid."""
    label_size = tuple(n // 4 for n in size)
    starts = [(a, 0, c) for a in range(0, 49, 6) for c in range(0, 49, 6)]
    start = tuple(4 * s for s in _busiest(item, starts, label_size))
    box = tuple(slice(s, s + n) for s, n in zip(start, size))
    out = _label_crop(item, tuple(s // 4 for s in start), tuple(n // 4 for n in size))
    out["tsdf_fine"] = item["tsdf_fine"][(slice(None),) + box]
    out["label_fine"] = item["label_fine"][box]
    return out


def _train_and_score(cfg: dict, train: list[dict], test: list[dict], watch: str, steps: int) -> dict:
    torch.manual_seed(0)
    model = build_model(cfg)
    loss_fn = build_loss(cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, total_iters=10, iters_per_epoch=5)
    batch = default_collate(train)
    before = [p.detach().clone() for p in model.parameters()]
    history = []
    model.train()
    for _ in range(steps):
        losses = loss_fn(model(batch), batch)
        assert all(torch.isfinite(v) for v in losses.values()), losses
        history.append(float(losses[watch].detach()))
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        scheduler.step()
    assert history[-1] < history[0], history  # the same batch: the watched term goes down
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed > len(before) // 2
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    scores = score_model(model, test, protocols=["torchssc", "sscnet"], info=info, progress=False)
    return {p: m.compute() for p, m in scores.metrics.items()}


def _check_scores(scores: dict) -> None:
    for protocol, m in scores.items():
        assert m["ssc_voxels"] > 100 and m["sc_voxels"] > 0, protocol
        assert 0.0 <= m["sc_iou"] <= 1.0 and 0.0 <= m["ssc_miou"] <= 1.0, protocol


def test_forknet_recipe_trains_on_synthetic_rooms_at_reduced_size(rooms):
    cfg = load_config(CONFIGS / "forknet_synth_cpu.yaml", ["model.kwargs.grid_shape=[32, 16, 32]"])
    assert cfg["optim"]["name"] == "adam" and cfg["model"]["kwargs"]["discriminators"]
    train = [_forknet_item(i) for i in SSCDataset(rooms, "train", keys=("forknet_tsdf", "visibility"))]
    test = [_forknet_item(i) for i in SSCDataset(rooms, "test", keys=("forknet_tsdf", "visibility"))]
    assert len(train) == 2 and train[0]["forknet_label"].gt(0).any() and train[0]["label"].shape == (24, 12, 24)
    _check_scores(_train_and_score(cfg, train[:1], test, watch="ssc", steps=2))  # 79 M parameters: 2 steps


def test_ccpnet_style_recipe_trains_on_synthetic_rooms_at_reduced_size(rooms):
    cfg = load_config(CONFIGS / "ccpnet_style_synth_cpu.yaml")
    train = [_ccpnet_item(i) for i in SSCDataset(rooms, "train", keys=("tsdf_fine", "label_fine", "visibility"))]
    test = [_ccpnet_item(i) for i in SSCDataset(rooms, "test", keys=("tsdf_fine", "label_fine", "visibility"))]
    assert train[0]["label_fine"].gt(0).any() and train[0]["label"].shape == (12, 8, 12)
    _check_scores(_train_and_score(cfg, train, test, watch="semantic", steps=3))


@pytest.mark.parametrize("name", ["forknet", "ccpnet_style"])
def test_nyu_recipes_follow_the_spec(name):
    nyu = load_config(CONFIGS / f"{name}_nyu.yaml")
    cpu = load_config(CONFIGS / f"{name}_synth_cpu.yaml")
    for key in ("model", "loss"):
        assert nyu[key]["name"] == cpu[key]["name"] == name
    assert nyu["model"]["kwargs"] == cpu["model"]["kwargs"]
    for key in ("name", "lr", "weight_decay", "schedule"):
        assert nyu["optim"][key] == cpu["optim"][key], key
    if name == "forknet":
        assert (nyu["optim"]["name"], nyu["optim"]["lr"], nyu["optim"]["betas"]) == ("adam", 1e-4, [0.5, 0.9])
        assert nyu["train"]["global_batch"] == 8 and nyu["loss"]["kwargs"]["gamma"] == 0.97
        assert {"forknet_tsdf", "forknet_label", "forknet_surface"} <= set(run_inputs(nyu))
        model = build_model(load_config(CONFIGS / f"{name}_nyu.yaml", ["model.kwargs.grid_shape=[16, 16, 16]"]))
        opt = build_optimizer(nyu, model)
        assert isinstance(opt, torch.optim.Adam) and opt.defaults["betas"] == (0.5, 0.9)
    else:
        assert nyu["train"]["epochs"] * nyu["train"]["iters_per_epoch"] == 39_600 and nyu["train"]["global_batch"] == 4
        assert {"tsdf_fine", "label_fine"} <= set(run_inputs(nyu)) and nyu["train"]["amp"] == "bf16"
    with pytest.raises(ValueError, match="optim.betas"):
        load_config(CONFIGS / f"{name}_nyu.yaml", ["optim.betas=[0.5]"])
    with pytest.raises(ValueError, match="optim.name"):
        load_config(CONFIGS / f"{name}_nyu.yaml", ["optim.name=rmsprop"])
