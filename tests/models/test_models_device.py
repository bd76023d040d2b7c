"""Device placement over the whole registry (issue 25): every model's training step (its recipe's
loss, backward, optimiser) and its scoring step (the metrics' accelerator branch) run on the shadow
device of :mod:`torchssc.engine.placement`; planted bugs show the check fails where a GPU would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from _model_batches import all_models, example_batch
from torchssc.engine import placement
from torchssc.engine.placement import (
    SHADOW,
    DevicePlacementError,
    ShadowTensor,
    check_placement,
    plain_tensor_attributes,
    run_on_shadow,
    train_step,
)

SLOW = {"forknet"}  # 79 M parameters even on a small grid: ~20 s


def _models():
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in all_models()]


@pytest.mark.parametrize("name", _models())
def test_every_model_trains_and_scores_on_the_shadow_device(name, monkeypatch):
    """Forward, the recipe's loss, backward, SGD, then the scoring loop with the metrics: no CPU
    tensor meets the model's tensors. The step's loss equals the plain CPU step's (the check
    computes on the CPU, it only watches devices)."""
    ex = example_batch(name, batch_size=2)
    torch.manual_seed(0)
    model, loss_fn = ex.build()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    reached = []
    real_keys = placement_metrics_keys()
    monkeypatch.setattr("torchssc.metrics._keys_torch", lambda *a, **k: reached.append(1) or real_keys(*a, **k))
    stats = check_placement(model, loss_fn, ex.batch)
    assert reached, "the metrics' accelerator branch did not run"
    assert all(isinstance(p, ShadowTensor) and p.device == SHADOW for p in model.parameters())

    torch.manual_seed(0)
    plain, plain_loss = ex.build()
    plain.load_state_dict(state)
    want = train_step(plain, plain_loss, ex.batch, torch.device("cpu"))
    assert stats["terms"].keys() == want["terms"].keys()
    for term, value in want["terms"].items():
        assert stats["terms"][term] == pytest.approx(value, rel=1e-5, abs=1e-6), term


def placement_metrics_keys():
    import torchssc.metrics

    return torchssc.metrics._keys_torch


# ------------------------------------------------------------------------------------------
# Planted bugs: each one a GPU would reject (or silently sync on), each one the check rejects.
class Toy(nn.Module):
    """``semantic (B, 3, D, H, W)`` from ``batch["tsdf"]``; ``bug`` plants one placement mistake."""

    def __init__(self, bug: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 3, 1)
        self.bug = bug
        if bug == "attribute":
            self.offset = torch.zeros(3)  # a plain attribute: .to(device) leaves it on the CPU
        else:
            self.register_buffer("offset", torch.zeros(3))

    def forward(self, batch: dict) -> dict:
        x = self.conv(batch["tsdf"])
        b = x.shape[0]
        if self.bug == "zeros":
            noise = torch.zeros(b, 3, 1, 1, 1)  # the bug: no device=
        elif self.bug == "numpy":
            noise = torch.from_numpy(np.zeros((b, 3, 1, 1, 1), dtype=np.float32))
        elif self.bug == "explicit_cpu":
            noise = torch.zeros(b, 3, 1, 1, 1, device="cpu")
        elif self.bug == "arange_index":
            noise = x[torch.arange(b)].mean() * 0  # an index tensor made on the CPU
        else:
            noise = torch.zeros(b, 3, 1, 1, 1, device=x.device)  # the right way
        return {"semantic": x + noise + self.offset.view(1, 3, 1, 1, 1)}


def toy_loss(outputs: dict, batch: dict) -> dict:
    ce = nn.functional.cross_entropy(outputs["semantic"], batch["label"], ignore_index=255)
    return {"total": ce}


def buggy_loss(outputs: dict, batch: dict) -> dict:
    weight = torch.ones(outputs["semantic"].shape[1])  # the bug: class weights made on the CPU
    return {"total": nn.functional.cross_entropy(outputs["semantic"], batch["label"], weight=weight)}


def _toy_batch(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    grid = (4, 2, 4)
    return {"tsdf": torch.randn(b, 1, *grid, generator=g), "label": torch.randint(0, 3, (b, *grid), generator=g),
            "mapping": torch.zeros(b, 32, dtype=torch.int64), "label_weight": torch.ones(b, *grid)}


def test_the_correct_toy_passes():
    stats = check_placement(Toy(), toy_loss, _toy_batch(), evaluate=False)
    assert np.isfinite(stats["terms"]["total"])


@pytest.mark.parametrize("bug", ["zeros", "numpy", "explicit_cpu", "arange_index"])
def test_a_planted_cpu_tensor_in_forward_fails_naming_the_line(bug):
    with pytest.raises(DevicePlacementError, match=r"CPU tensor.*test_models_device\.py:\d+ \(forward\)"):
        check_placement(Toy(bug), toy_loss, _toy_batch(), evaluate=False)


def test_a_planted_cpu_tensor_in_the_loss_fails():
    with pytest.raises(DevicePlacementError, match=r"buggy_loss"):
        check_placement(Toy(), buggy_loss, _toy_batch(), evaluate=False)


def test_a_tensor_attribute_that_to_device_would_not_move_fails():
    model = Toy("attribute")
    assert plain_tensor_attributes(model) == ["offset"]
    with pytest.raises(DevicePlacementError, match="offset.*register_buffer"):
        check_placement(model, toy_loss, _toy_batch(), evaluate=False)
    # and without the module scan the step itself trips on it
    with pytest.raises(DevicePlacementError, match=r"\(forward\)"):
        run_on_shadow(lambda device: train_step(model, toy_loss, _toy_batch(), device))


def test_a_planted_cpu_tensor_in_the_metric_update_fails(monkeypatch):
    """The scoring step reaches the metrics' accelerator branch; a CPU tensor planted there fails."""
    import torchssc.metrics as metrics

    real = metrics._keys_torch

    def planted(prd, *args, **kwargs):
        key = real(prd, *args, **kwargs)
        return key + torch.zeros(key.shape, dtype=key.dtype)  # the bug: no device=

    monkeypatch.setattr(metrics, "_keys_torch", planted)
    with pytest.raises(DevicePlacementError, match="planted"):
        check_placement(Toy(), toy_loss, _toy_batch())


def test_shadow_tensors_compute_like_cpu_tensors_and_leave_no_trace():
    x = torch.randn(5, 3)
    with placement.shadow_device() as device:
        s = x.to(device)
        assert isinstance(s, ShadowTensor) and s.device == SHADOW
        nz = (s > 0).nonzero()  # data-dependent: the bare meta device cannot
        z = torch.tensor([1.0, 2.0, 3.0], device=device)
        g = torch.Generator(device=device).manual_seed(1)
        r = torch.randn(3, generator=g, device=s.device)
        back = (s * z).sum(0).cpu()
    assert torch.equal(nz.inner, (x > 0).nonzero()) and not isinstance(back, ShadowTensor)
    torch.testing.assert_close(back, (x * torch.tensor([1.0, 2.0, 3.0])).sum(0))
    torch.testing.assert_close(r.inner, torch.randn(3, generator=torch.Generator().manual_seed(1)))
    assert torch.Generator is placement._Generator  # put back
    assert torch.zeros(2).device.type == "cpu" and not isinstance(torch.zeros(2), ShadowTensor)


def test_the_cuda_only_batched_cvae_path_is_checked_too():
    """SketchAwareSSC decodes all CVAE samples in one call on CUDA (``batched=None`` means "on
    CUDA"); the shadow device is not CUDA, so that path is forced here."""
    ex = example_batch("sketch_aware_ssc_prior_lite", batch_size=2)
    torch.manual_seed(0)
    model, loss_fn = ex.build()
    model.cvae.batched = True
    stats = check_placement(model, loss_fn, ex.batch)
    assert np.isfinite(stats["terms"]["total"])
