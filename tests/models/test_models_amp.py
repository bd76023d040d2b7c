"""``train.amp`` on the CPU (issue 25): every model's training step under bf16 autocast gives a
finite loss; for the paper model and the U-Net the bf16 loss is within a stated tolerance of
fp32 on a fixed batch; the fp16 path goes through the GradScaler (scaled backward, unscaled
step)."""

from __future__ import annotations

import math

import pytest
import torch

from _model_batches import all_models, example_batch
from torchssc.engine.placement import train_step
from torchssc.engine.train import EpochContext, train_one_epoch

BF16_RTOL = 2e-2
"""bf16 vs fp32 loss, relative: 5x bf16's unit roundoff (2**-8). Measured on these batches:
docs/gpu.md (benchmarks/amp_cpu.py)."""

SLOW = {"forknet", "sscnet", "ccpnet_style"}  # CPU bf16 3D convolutions at their grids: 8-20 s each
CPU = torch.device("cpu")


def _models():
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in all_models()]


def _step(name: str, amp: str, batch_size: int = 1) -> dict:
    ex = example_batch(name, batch_size=batch_size)
    torch.manual_seed(0)
    model, loss_fn = ex.build()
    torch.manual_seed(1)  # the same draws (dropout, CVAE samples) in every precision
    return train_step(model, loss_fn, ex.batch, CPU, amp=amp)["terms"]


@pytest.mark.parametrize("name", _models())
def test_every_model_trains_a_step_in_bf16_with_a_finite_loss(name):
    terms = _step(name, "bf16")
    assert terms and all(math.isfinite(v) for v in terms.values()), terms


@pytest.mark.parametrize("name", ["sketch_aware_ssc", "unet3d_prior"])
def test_bf16_loss_is_close_to_fp32_on_a_fixed_batch(name):
    fp32, bf16 = _step(name, "none", batch_size=2), _step(name, "bf16", batch_size=2)
    assert fp32.keys() == bf16.keys()
    assert bf16["total"] == pytest.approx(fp32["total"], rel=BF16_RTOL)
    assert bf16["total"] != fp32["total"]  # autocast did run in bf16


@pytest.mark.filterwarnings("ignore:Full backward hook")
def test_fp16_goes_through_the_grad_scaler():
    """The backward pass sees the loss times the scale, the optimiser the unscaled gradient: the
    first SGD step moves the weights as the fp32 step does (to fp16 rounding), not 2**10 times
    further."""
    ex = example_batch("unet3d_prior", batch_size=2)
    moves = {}
    for amp in ("none", "fp16"):
        torch.manual_seed(0)
        model, loss_fn = ex.build()
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, enabled=amp == "fp16")
        seen = []
        hook = model.enc1.register_full_backward_hook(lambda m, gi, go: seen.append(go[0].abs().max().item()))
        stats = train_one_epoch(model, loss_fn, optimizer, scheduler, scaler, [ex.batch],
                                EpochContext(device=CPU, amp=amp, progress=False), epoch=0, iteration=0, num_iters=1)
        hook.remove()
        assert math.isfinite(stats["terms"]["total"])
        moves[amp] = (torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]), seen[0])
        if amp == "fp16":
            assert scaler.is_enabled() and scaler.get_scale() == 2.0**10  # finite gradients: the scale is kept
    delta32, grad32 = moves["none"]
    delta16, grad16 = moves["fp16"]
    assert grad16 == pytest.approx(grad32 * 2**10, rel=0.05)  # the backward pass ran on the scaled loss
    assert torch.linalg.vector_norm(delta16 - delta32) <= 0.05 * torch.linalg.vector_norm(delta32)
