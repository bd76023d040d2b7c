"""``train.compile`` and ``train.channels_last`` against eager on the CPU: seconds per training step
(forward, recipe loss, backward, recipe optimiser) of the paper model at the CPU width and of the
U-Net, full-size synthetic batch (:func:`torchssc.engine.plan.synthetic_batch`). docs/benchmarks.md
quotes the table.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/compile_cpu.py [--steps 3] [--batch 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from torchssc.config import load_config
from torchssc.engine.builders import build_loss, build_model, build_optimizer
from torchssc.engine.plan import synthetic_batch
from torchssc.engine.speed import to_channels_last

RECIPES = ("sketch_aware_ssc_prior_nyu_cpu", "unet3d_prior_nyu_cpu")
MODES = ("eager", "channels_last", "compile")


def run(recipe: str, mode: str, steps: int, batch_size: int) -> tuple[float, float, float]:
    """``(warm-up s, s per step, first loss)``."""
    cfg = load_config(recipe)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    loss_fn = build_loss(cfg)
    optimizer = build_optimizer(cfg, model)
    if mode == "channels_last":
        to_channels_last(model)
    call = torch.compile(model) if mode == "compile" else model
    batch = synthetic_batch(cfg, batch_size)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        terms = loss_fn(call(batch), batch)
        terms["total"].backward()
        optimizer.step()
        return terms["total"].item()

    t0 = time.perf_counter()
    torch.manual_seed(1)
    first = step()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return warm, (time.perf_counter() - t0) / steps, first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, {args.steps} timed steps")
    print("| recipe | mode | warm-up s | s/step | vs eager | first loss |")
    print("|---|---|---|---|---|---|")
    for recipe in RECIPES:
        base = None
        for mode in MODES:
            warm, per_step, loss = run(recipe, mode, args.steps, args.batch)
            base = base or per_step
            print(f"| {recipe} | {mode} | {warm:.1f} | {per_step:.2f} | {base / per_step:.2f}x | {loss:.6f} |",
                  flush=True)
            torch._dynamo.reset()


if __name__ == "__main__":
    main()
