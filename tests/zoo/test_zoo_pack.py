"""``torchssc weights --pack``: a training checkpoint -> a zoo file (weights and recipe only,
optionally float16) that ``load_model`` reads like the checkpoint."""

from __future__ import annotations

import torch

from torchssc.cli import main
from torchssc.config import load_config
from torchssc.engine.builders import build_model
from torchssc.engine.checkpoint import FORMAT_VERSION, REQUIRED_KEYS, load_checkpoint, load_model, save_checkpoint
from torchssc.zoo import sha256_of

RECIPE = """\
model:
  name: unet3d_prior
  kwargs: {channels: [4, 4, 4], prior_classes: 0}
loss:
  name: class_weighted_ce
"""


def _training_checkpoint(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    cfg = load_config(recipe)
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters())
    model(_batch())["semantic"].sum().backward()
    optimizer.step()
    path = tmp_path / "epoch-3.pt"
    save_checkpoint(path, {"format_version": FORMAT_VERSION, "model": model.state_dict(), "config": cfg,
                           "epoch": 3, "iteration": 300, "optimizer": optimizer.state_dict()})
    return path


def _batch():
    g = torch.Generator().manual_seed(1)
    return {"tsdf": torch.rand(1, 1, 60, 36, 60, generator=g) * 2 - 1}


def test_pack_keeps_weights_and_recipe_only_bit_identical(tmp_path, capsys):
    ckpt = _training_checkpoint(tmp_path)
    out = tmp_path / "zoo.pt"
    assert main(["weights", "--pack", str(ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"size: {out.stat().st_size}" in printed and f"sha256: {sha256_of(out)}" in printed
    packed, original = load_checkpoint(out), load_checkpoint(ckpt)
    assert set(packed) == set(REQUIRED_KEYS) | {"packed_from"} and "optimizer" in original
    assert out.stat().st_size < ckpt.stat().st_size
    assert packed["model"].keys() == original["model"].keys()
    for key, value in original["model"].items():
        assert torch.equal(packed["model"][key], value), key


def test_half_pack_loads_as_float32_and_predicts_close(tmp_path):
    ckpt = _training_checkpoint(tmp_path)
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    assert main(["weights", "--pack", str(ckpt), "--out", str(full)]) == 0
    assert main(["weights", "--pack", str(ckpt), "--out", str(half), "--half"]) == 0
    state = load_checkpoint(half)["model"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert any(not v.is_floating_point() for v in state.values())          # BN counters stay integers
    nbytes = lambda sd: sum(v.numel() * v.element_size() for v in sd.values())  # noqa: E731
    assert nbytes(state) < 0.6 * nbytes(load_checkpoint(full)["model"])
    assert half.stat().st_size < full.stat().st_size
    model_full, _ = load_model(full)
    model_half, _ = load_model(half)
    assert all(p.dtype == torch.float32 for p in model_half.parameters())
    with torch.no_grad():
        a, b = model_full(_batch())["semantic"], model_half(_batch())["semantic"]
    torch.testing.assert_close(b, a, atol=2e-2, rtol=2e-2)
    assert not torch.equal(a, b)                                            # the rounding is real


def test_pack_needs_out(tmp_path, capsys):
    ckpt = _training_checkpoint(tmp_path)
    assert main(["weights", "--pack", str(ckpt)]) == 2
    assert "--out" in capsys.readouterr().err
