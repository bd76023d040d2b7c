"""Builders, schedules, sampler sharding, checkpoint files and the CPU SyncBatchNorm."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import _engine_tiny as tiny
from torchssc.config import DEFAULTS, load_config
from torchssc.engine import checkpoint as ckpt_mod
from torchssc.engine.builders import (
    build_model,
    build_optimizer,
    build_scheduler,
    parameter_groups,
    split_train_val,
)
from torchssc.engine.checkpoint import (
    epoch_path,
    find_last_checkpoint,
    get_rng_state,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from torchssc.engine.distributed import CPUSyncBatchNorm, convert_sync_batchnorm
from torchssc.engine.sampler import GlobalBatchSampler, epoch_draws, shard_indices


def _cfg(**sections) -> dict:
    import copy

    cfg = copy.deepcopy(DEFAULTS)
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(1, 3, 3, bias=True), nn.BatchNorm3d(3), nn.ReLU())
        self.up = nn.ConvTranspose3d(3, 2, 2)
        self.norm = nn.GroupNorm(1, 2)
        self.fc = nn.Linear(2, 2)
        self.frozen = nn.Conv2d(1, 1, 1)
        self.scale = nn.Parameter(torch.ones(1))
        for p in self.frozen.parameters():
            p.requires_grad_(False)


def test_weight_decay_only_on_conv_and_linear_weights():
    net = _Net()
    groups = parameter_groups(net, 1e-3)
    decayed = {id(p) for p in groups[0]["params"]}
    plain = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 1e-3 and groups[1]["weight_decay"] == 0.0
    # naive reference: by parameter name
    for name, p in net.named_parameters():
        if name.startswith("frozen."):
            assert id(p) not in decayed | plain, name
        elif name in ("stem.0.weight", "up.weight", "fc.weight"):
            assert id(p) in decayed, name
        else:
            assert id(p) in plain, name
    assert len(decayed) + len(plain) == sum(p.requires_grad for p in net.parameters())
    opt = build_optimizer(_cfg(optim={"lr": 0.02, "nesterov": True}), net)
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["lr"] == 0.02 and g["momentum"] == 0.9 and g["nesterov"] for g in opt.param_groups)


def test_poly_schedule_per_iteration_matches_formula():
    cfg = _cfg(optim={"lr": 0.05, "schedule": "poly", "poly_power": 0.9})
    opt = build_optimizer(cfg, nn.Linear(1, 1))
    sched = build_scheduler(cfg, opt, total_iters=7)
    seen = []
    for _ in range(7):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.05 * (1 - it / 7) ** 0.9 for it in range(7)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    assert opt.param_groups[0]["lr"] == 0.0  # after the last iteration


def test_step_and_constant_schedules():
    cfg = _cfg(optim={"lr": 1.0, "schedule": "step", "step_epochs": [2, 3], "step_gamma": 0.5})
    opt = build_optimizer(cfg, nn.Linear(1, 1))
    sched = build_scheduler(cfg, opt, total_iters=10, iters_per_epoch=2)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25]
    cfg = _cfg(optim={"lr": 0.01, "schedule": "constant"})
    opt = build_optimizer(cfg, nn.Linear(1, 1))
    sched = build_scheduler(cfg, opt, total_iters=3)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("mode", ["with_replacement", "shuffle"])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_split_each_global_batch(mode, world):
    n, g, iters = 7, 6, 5
    draws = epoch_draws(n, g, iters, mode=mode, seed=11, epoch=2)
    assert draws.shape == (iters, g) and draws.min() >= 0 and draws.max() < n
    per_rank = []
    for rank in range(world):
        s = GlobalBatchSampler(n, g, iters, rank=rank, world_size=world, mode=mode, seed=11)
        s.set_epoch(2)
        per_rank.append(list(s))
        assert len(per_rank[-1]) == iters and all(len(b) == g // world for b in per_rank[-1])
    for it in range(iters):  # naive reference: concatenating the ranks' batches gives the global one
        assert sum((per_rank[r][it] for r in range(world)), []) == draws[it].tolist()
    if mode == "shuffle":  # each frame once per pass
        flat = draws.ravel()
        assert sorted(flat[:n].tolist()) == list(range(n))
    # resuming mid-epoch yields the remaining iterations
    s = GlobalBatchSampler(n, g, iters, rank=0, world_size=world, mode=mode, seed=11)
    s.set_epoch(2, start_iter=3)
    assert list(s) == per_rank[0][3:] and len(s) == iters - 3
    # epochs differ, seeds differ
    assert not np.array_equal(draws, epoch_draws(n, g, iters, mode=mode, seed=11, epoch=3))
    assert not np.array_equal(draws, epoch_draws(n, g, iters, mode=mode, seed=12, epoch=2))


def test_sampler_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="not divisible"):
        GlobalBatchSampler(10, 3, 4, rank=0, world_size=2)


def test_eval_shards_cover_without_duplicates():
    for n in (0, 1, 5, 8):
        for world in (1, 2, 3):
            shards = [shard_indices(n, r, world) for r in range(world)]
            flat = sorted(i for s in shards for i in s)
            assert flat == list(range(n))


def test_val_fraction_holds_out_a_seeded_subset(tmp_path):
    ids = tiny.make_frames(tmp_path, n=10, seed=1)
    cfg = _cfg(data={"root": str(tmp_path), "val_fraction": 0.25}, train={"seed": 5})
    train, val = split_train_val(cfg)
    assert len(val) == 2 and sorted(train + val) == ids and not set(train) & set(val)
    assert split_train_val(cfg) == (train, val)  # deterministic
    other = [split_train_val({**cfg, "train": {**cfg["train"], "seed": s}})[1] for s in range(6, 12)]
    assert any(o != val for o in other)  # the held-out frames depend on the seed
    assert split_train_val(_cfg(data={"root": str(tmp_path)})) == ("train", None)
    assert split_train_val(_cfg(data={"root": str(tmp_path), "val_split": "test"})) == ("train", "test")


def test_build_model_reports_bad_kwargs():
    cfg = _cfg(model={"name": tiny.MODEL, "kwargs": {"width": 3}})
    assert isinstance(build_model(cfg), tiny.TinySSC)
    cfg["model"]["kwargs"] = {"widht": 3}
    with pytest.raises(ValueError, match="widht"):
        build_model(cfg)
    cfg["model"]["name"] = "no_such_model"
    with pytest.raises(ValueError, match="no_such_model"):
        build_model(cfg)


def test_checkpoint_round_trip_and_listing(tmp_path):
    assert list_checkpoints(tmp_path) == {} and find_last_checkpoint(tmp_path) is None
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    rng = get_rng_state()
    expect = (random.random(), np.random.rand(), torch.rand(1))
    state = {
        "format_version": ckpt_mod.FORMAT_VERSION,
        "model": {"w": torch.arange(3.0)},
        "config": {"a": {"b": [1, 2]}, "c": None},
        "rng": [rng],
        "epoch": 3,
        "iteration": 30,
    }
    save_checkpoint(epoch_path(tmp_path, 3), state, also_last=True)
    save_checkpoint(epoch_path(tmp_path, 12), {**state, "epoch": 12})
    assert list(list_checkpoints(tmp_path)) == [3, 12]
    assert find_last_checkpoint(tmp_path).name == "last.pt"
    back = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert back["config"] == state["config"] and torch.equal(back["model"]["w"], state["model"]["w"])
    set_rng_state(back["rng"][0])  # restoring the stored streams replays the same numbers
    got = (random.random(), np.random.rand(), torch.rand(1))
    assert got[0] == expect[0] and got[1] == expect[1] and torch.equal(got[2], expect[2])


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch):
    path = epoch_path(tmp_path, 1)
    good = {"format_version": ckpt_mod.FORMAT_VERSION, "model": {}, "config": {}, "epoch": 1, "iteration": 5}
    save_checkpoint(path, good)
    before = path.read_bytes()

    def dying_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {**good, "iteration": 9})
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert load_checkpoint(path)["iteration"] == 5


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(junk)
    torch.save({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="format_version"):
        load_checkpoint(tmp_path / "partial.pt")
    torch.save({"format_version": 99, "model": {}, "config": {}, "epoch": 0, "iteration": 0}, tmp_path / "v99.pt")
    with pytest.raises(ValueError, match="99"):
        load_checkpoint(tmp_path / "v99.pt")


def test_cpu_sync_batchnorm_is_plain_batchnorm_in_one_process():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(2, 3, 1), nn.BatchNorm3d(3), nn.Conv3d(3, 1, 1))
    ref = nn.Sequential(nn.Conv3d(2, 3, 1), nn.BatchNorm3d(3), nn.Conv3d(3, 1, 1))
    ref.load_state_dict(net.state_dict())
    synced = convert_sync_batchnorm(net, torch.device("cpu"))
    assert isinstance(synced[1], CPUSyncBatchNorm)
    assert synced.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(3, 2, 5, 3, 7)
    torch.testing.assert_close(synced(x), ref(x))
    torch.testing.assert_close(synced[1].running_var, ref[1].running_var)


def test_recipe_through_builders(tmp_path):
    tiny.make_frames(tmp_path / "d", n=2)
    recipe = tiny.write_recipe(tmp_path / "t.yaml", tmp_path / "d", tmp_path / "runs")
    cfg = load_config(recipe)
    model = build_model(cfg)
    opt = build_optimizer(cfg, model)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
