"""AMMNet through the training engine: the loss's training step is used (discriminator optimiser
state in the checkpoint), the cosine schedule per epoch, and a resumed run equals an
uninterrupted one."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from torchssc.config import load_config
from torchssc.engine.checkpoint import load_checkpoint
from torchssc.engine.train import main
from torchssc.geometry import LABEL_NUMEL, LABEL_SHAPE
from torchssc.io.prepared import PreparedFrame, write_frame, write_split


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    ids = [f"{i + 1:04d}" for i in range(4)]
    for fid in ids:
        write_frame(root, fid, PreparedFrame(
            tsdf=rng.uniform(-1, 1, size=LABEL_SHAPE).astype(np.float32),
            label_weight=(rng.random(LABEL_SHAPE) > 0.3).astype(np.uint8),
            mapping=np.where(rng.random(LABEL_NUMEL) < 0.05, rng.integers(0, 307200, size=LABEL_NUMEL), 307200),
            label=rng.integers(0, 12, size=LABEL_SHAPE).astype(np.uint8),
            sketch=np.zeros(LABEL_SHAPE, np.uint8),
        ))
        (root / "seg_result_label13").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 14, size=(480, 640)).astype(np.uint8)).save(
            root / "seg_result_label13" / f"{fid}.png")
    write_split(root, "train", ids)
    return root


def _cfg(tmp_path: Path, data_root: Path, name: str, **train) -> dict:
    recipe = {
        "data": {"root": str(data_root), "num_workers": 0, "prior": True, "rgb": False},
        "model": {"name": "ammnet_prior", "kwargs": {"feature": 8, "stem_channels": 4, "disc_plane": 8}},
        "loss": {"name": "ammnet", "kwargs": {}},
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05, "schedule": "cosine", "lr_min": 1e-7},
        "train": {"epochs": 2, "iters_per_epoch": 2, "global_batch": 2, "device": "cpu", "progress": False, **train},
        "run": {"dir": str(tmp_path / "runs"), "name": name},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return load_config(path, [])


@pytest.mark.slow
def test_ammnet_trains_and_resumes_exactly(tmp_path, data_root):
    full = main(_cfg(tmp_path, data_root, "full"))
    part = main(_cfg(tmp_path, data_root, "part", max_iters=3))
    assert part["iteration"] == 3
    resumed = main(_cfg(tmp_path, data_root, "part"), resume=True)
    a, b = load_checkpoint(full["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # the discriminator optimiser is checkpointed (and restored: the weights above depend on it)
    state = a["training_step"]["disc_optimizer"]
    assert state["param_groups"][0]["lr"] == 1e-3 and len(state["state"]) > 0
    # per-epoch cosine: the second epoch's lr
    want = 1e-7 + 0.5 * (1e-3 - 1e-7) * (1 + math.cos(math.pi / 2))
    rows = [yaml.safe_load(line) for line in (full["run_dir"] / "log.jsonl").read_text().splitlines()]
    assert rows[0]["lr"] == pytest.approx(1e-3) and rows[-1]["lr"] == pytest.approx(want)
    assert {"discriminator", "semantic", "adversarial", "total"} <= set(rows[-1]["train"])
