"""Shared helpers for the engine tests: tiny prepared frames, a tiny model and a tiny loss.

Not a test module (no ``test_`` prefix). Registration is idempotent so that spawned worker
processes, which re-import this module, can call :func:`register` again.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from torchssc.geometry import LABEL_NUMEL, LABEL_SHAPE
from torchssc.io.prepared import PreparedFrame, write_frame, write_split
from torchssc.losses.registry import LOSSES
from torchssc.models.registry import MODELS

MODEL = "engine_test_tiny"
LOSS = "engine_test_ce"


class TinySSC(nn.Module):
    """tsdf (B,1,D,H,W) -> semantic (B,12,D,H,W): 1x1x1 conv -> BN -> ReLU [-> Dropout3d] -> 1x1x1 conv
    (pointwise, so that tests stay fast on 2 CPU cores).

    Deterministic unless ``dropout > 0`` (then training draws from the global torch RNG) or
    ``noise > 0``: then inference adds ``noise`` times Gaussian noise drawn from a generator seeded
    with ``self.seed`` (as SketchAwareSSC's prior samples) plus noise from the global torch RNG, so
    that its scores depend on both seeds the evaluator sets."""

    def __init__(self, width: int = 4, dropout: float = 0.0, noise: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, width, 1, bias=False)
        self.bn = nn.BatchNorm3d(width)
        self.drop = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv3d(width, 12, 1)
        self.noise = noise
        self.seed = 0

    def forward(self, batch: dict) -> dict:
        x = self.drop(F.relu(self.bn(self.conv(batch["tsdf"]))))
        semantic = self.head(x)
        if self.noise and not self.training:
            seeded = torch.randn(semantic.shape, generator=torch.Generator().manual_seed(self.seed))
            semantic = semantic + self.noise * (seeded + torch.randn(semantic.shape))
        return {"semantic": semantic}


def _build_model(*, width: int = 4, dropout: float = 0.0, noise: float = 0.0) -> nn.Module:
    return TinySSC(width=width, dropout=dropout, noise=noise)


class TinyLoss(nn.Module):
    """CE over every voxel with label_weight > 0 (mean), plus a small logit penalty.

    ``nan_at`` (1-based call number): from that call on, the "semantic" term is NaN."""

    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        self.nan_at = nan_at
        self.calls = 0

    def forward(self, outputs: dict, batch: dict) -> dict:
        self.calls += 1
        logits = outputs["semantic"]
        ce = F.cross_entropy(logits, batch["label"], ignore_index=255, reduction="none")
        w = batch["label_weight"]
        semantic = (ce * w).sum() / w.sum()
        if self.nan_at is not None and self.calls >= self.nan_at:
            semantic = semantic * float("nan")
        penalty = 1e-3 * logits.float().pow(2).mean()
        return {"semantic": semantic, "penalty": penalty, "total": semantic + penalty}


def _build_loss(*, nan_at: int | None = None) -> nn.Module:
    return TinyLoss(nan_at=nan_at)


def register() -> None:
    for table, name, builder in ((MODELS, MODEL, _build_model), (LOSSES, LOSS, _build_loss)):
        if name not in table.names():
            table.register(name)(builder)


register()


def make_frames(root: Path, n: int = 4, seed: int = 0, split: str = "train", rgb: bool = False) -> list[str]:
    """``n`` random but valid prepared frames (no 255 labels, label_weight all 1, so every frame
    has the same number of loss voxels; a 480x640 RGB image with ``rgb``) and
    ``<root>/<split>.txt``."""
    rng = np.random.default_rng(seed)
    ids = [f"{i + 1:04d}" for i in range(n)]
    for fid in ids:
        label = rng.integers(0, 12, size=LABEL_SHAPE).astype(np.uint8)
        frame = PreparedFrame(
            tsdf=rng.uniform(-1, 1, size=LABEL_SHAPE).astype(np.float32),
            label_weight=np.ones(LABEL_SHAPE, np.uint8),
            mapping=rng.integers(0, 307201, size=LABEL_NUMEL),
            label=label,
            sketch=rng.integers(0, 2, size=LABEL_SHAPE).astype(np.uint8),
            rgb=rng.integers(0, 256, size=(480, 640, 3)).astype(np.uint8) if rgb else None,
        )
        write_frame(root, fid, frame)
    write_split(root, split, ids)
    return ids


def write_recipe(path: Path, data_root: Path, run_root: Path, **train) -> Path:
    """A tiny recipe YAML for the test model (overridable ``train`` keys)."""
    recipe = {
        "data": {"root": str(data_root), "num_workers": 0},
        "model": {"name": MODEL, "kwargs": {"width": 4}},
        "loss": {"name": LOSS, "kwargs": {}},
        "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
        "train": {
            "epochs": 2,
            "iters_per_epoch": 3,
            "global_batch": 2,
            "log_every": 2,
            "device": "cpu",
            "progress": False,
            **train,
        },
        "run": {"dir": str(run_root), "name": "tiny"},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank: int, world: int, port: int, cfg: dict) -> None:
    """Entry point of a process spawned by ``torch.multiprocessing.spawn``: the torchrun
    environment by hand (127.0.0.1, a free port), then the ordinary training ``main``."""
    import os

    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    register()
    from torchssc.engine.train import main

    main(cfg)
