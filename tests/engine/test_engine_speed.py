"""The recipe's GPU-facing options through the whole training engine on the CPU (issue 25):
``train.amp`` (bf16; fp16 with the GradScaler, its state in the checkpoint), ``train.channels_last``
and ``train.compile``; their validation."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import _engine_tiny as tiny
from torchssc.config import load_config
from torchssc.engine.checkpoint import load_checkpoint
from torchssc.engine.speed import to_channels_last
from torchssc.engine.train import main


@pytest.fixture()
def compiler() -> None:
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("torch.compile on the CPU needs a C++ compiler (g++, c++ or clang++); none is on PATH")


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    tiny.make_frames(root, n=4, seed=5)
    return root


def _run(tmp_path: Path, data_root: Path, name: str, *overrides: str) -> tuple[list[dict], dict]:
    recipe = tiny.write_recipe(tmp_path / f"{name}.yaml", data_root, tmp_path / "runs", epochs=1, iters_per_epoch=2)
    cfg = load_config(recipe, [f"run.name={name}", "train.deterministic=false", *overrides])
    summary = main(cfg)
    rows = [json.loads(line) for line in (summary["run_dir"] / "log.jsonl").read_text().splitlines()]
    return rows, load_checkpoint(summary["checkpoint"])


@pytest.mark.parametrize("key", ["train.compile", "train.channels_last"])
def test_options_are_in_the_schema_and_validated(key, tmp_path):
    recipe = tiny.write_recipe(tmp_path / "r.yaml", tmp_path, tmp_path / "runs")
    assert load_config(recipe)["train"][key.split(".")[1]] is False
    assert load_config(recipe, [f"{key}=true"])["train"][key.split(".")[1]] is True
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + ".*true or false"):
        load_config(recipe, [f"{key}=1"])


def test_fp16_run_keeps_its_grad_scaler_in_the_checkpoint_and_bf16_runs(tmp_path, data_root):
    eager, _ = _run(tmp_path, data_root, "fp32")
    half, ckpt = _run(tmp_path, data_root, "fp16", "train.amp=fp16")
    assert ckpt["scaler"] and ckpt["scaler"]["scale"] > 1  # the GradScaler was on, its state saved
    bf16, ckpt_bf16 = _run(tmp_path, data_root, "bf16", "train.amp=bf16")
    assert not ckpt_bf16["scaler"]  # bf16 needs no scaler
    for rows in (half, bf16):
        assert math.isfinite(rows[-1]["train"]["total"])
        assert rows[-1]["train"]["total"] == pytest.approx(eager[-1]["train"]["total"], rel=2e-2)


def test_channels_last_run_equals_the_eager_run(tmp_path, data_root):
    eager, a = _run(tmp_path, data_root, "plain")
    last, b = _run(tmp_path, data_root, "cl", "train.channels_last=true")
    assert last[-1]["train"]["total"] == pytest.approx(eager[-1]["train"]["total"], rel=1e-5)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-5, atol=1e-6)


def test_to_channels_last_converts_conv_weights_only():
    model = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3), torch.nn.BatchNorm3d(4), torch.nn.Conv2d(1, 2, 3))
    to_channels_last(model)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not model[0].weight.is_contiguous()
    assert model[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert model[1].weight.is_contiguous()


@pytest.mark.slow
def test_compiled_run_equals_the_eager_run(tmp_path, data_root, compiler):
    eager, a = _run(tmp_path, data_root, "plain")
    compiled, b = _run(tmp_path, data_root, "compiled", "train.compile=true")
    assert compiled[-1]["train"]["total"] == pytest.approx(eager[-1]["train"]["total"], rel=1e-4)
    assert set(b["model"]) == set(a["model"])  # the bare model's keys: no "_orig_mod." prefix
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5)
