"""Training-step time of the 2D-prior models on the CPU, for sizing the CPU recipes.

Times one optimisation step (forward + loss + backward + optimiser step) of a registered model
and loss at full NYU size, on real frames of the released NYU files when they are found
(``--data``, default ``../shared/data/nyu_torchssc`` beside the checkout: TSDF, label_weight,
mapping, labels, the ``seg_result_label13`` prior; the sketch computed from the labels), else on
random tensors with ``--mapped`` mapped voxels per frame. Reports wall and process CPU seconds per
step after ``--warmup`` steps. Data loading is not included.

Usage::

    python benchmarks/bench_prior_step.py --model unet3d_prior --loss class_weighted_ce --batch 4 --threads 2
    python benchmarks/bench_prior_step.py --model sketch_aware_ssc_prior_lite --loss sketch_aware --batch 4
    python benchmarks/bench_prior_step.py --model ammnet_prior --loss ammnet --kwargs "{feature: 32, stem_channels: 8}"

A loss with its own training step (``ammnet``: discriminator step + generator step) is timed
through it, with AdamW over the engine's parameter groups, as the engine runs it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

GRID = (60, 36, 60)
IMAGE = (480, 640)
RELEASE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyu_torchssc"


def real_batch(root: Path, ids: list[str]) -> dict:
    """Release frames ``ids`` as a batch (the data contract of docs/model.md)."""
    from PIL import Image

    from torchssc.prepare.sketch import sketch_from_labels

    items = []
    for i in ids:
        label = np.load(root / "L" / f"{i}.npz")["arr_0"].astype(np.int64).reshape(GRID)
        t = np.load(root / "T" / f"{i}.npz")
        items.append({
            "tsdf": torch.from_numpy(t["arr_0"].astype(np.float32).reshape(1, *GRID)),
            "label_weight": torch.from_numpy(t["arr_1"].astype(np.float32).reshape(GRID)),
            "mapping": torch.from_numpy(np.load(root / "Mapping" / f"{i}.npz")["arr_0"].astype(np.int64)),
            "label": torch.from_numpy(label),
            "sketch_gt": torch.from_numpy(sketch_from_labels(label).astype(np.int64)),
            "prior": torch.from_numpy(np.asarray(Image.open(root / "seg_result_label13" / f"{i}.png")).astype(np.int64)),
        })
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def random_batch(b: int, mapped: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, hw = GRID[0] * GRID[1] * GRID[2], IMAGE[0] * IMAGE[1]
    mapping = torch.full((b, n), hw, dtype=torch.int64)
    for i in range(b):
        mapping[i, torch.randperm(n, generator=g)[:mapped]] = torch.randint(0, hw, (mapped,), generator=g)
    return {
        "tsdf": torch.randn(b, 1, *GRID, generator=g).clamp_(-1, 1), "mapping": mapping,
        "prior": torch.randint(0, 14, (b, *IMAGE), generator=g),
        "label": torch.randint(0, 12, (b, *GRID), generator=g),
        "label_weight": (torch.rand(b, *GRID, generator=g) > 0.6).float(),
        "sketch_gt": torch.randint(0, 2, (b, *GRID), generator=g),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet3d_prior")
    parser.add_argument("--loss", default="class_weighted_ce")
    parser.add_argument("--optim", default="adamw", choices=("adamw", "sgd"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--amp", default="none", choices=("none", "bf16"))
    parser.add_argument("--data", default=str(RELEASE) if RELEASE.is_dir() else "")
    parser.add_argument("--mapped", type=int, default=2800, help="random inputs: mapped voxels per frame")
    parser.add_argument("--kwargs", default="{}", help="model keyword arguments, a YAML mapping")
    args = parser.parse_args()

    from torchssc.losses import get_loss
    from torchssc.models import get_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.data:
        ids = (Path(args.data) / "train.txt").read_text().split()[: args.batch]
        batch, source = real_batch(Path(args.data), ids), f"release frames {ids}"
    else:
        batch, source = random_batch(args.batch, args.mapped), f"random, {args.mapped} mapped voxels"
    import yaml

    from torchssc.engine.builders import parameter_groups

    kwargs = yaml.safe_load(args.kwargs) or {}
    model = get_model(args.model, **kwargs).train()
    loss_fn = get_loss(args.loss)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3) if args.optim == "adamw" else torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    own = getattr(loss_fn, "training_step", None)
    if own is not None:
        opt = torch.optim.AdamW(parameter_groups(model, 0.05), lr=1e-3)
        own = own(model, opt, amp=args.amp)
    print(f"{args.model} {kwargs} + {args.loss}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"amp {args.amp}; {sum(p.numel() for p in params):,} trainable parameters; {source}")
    for step in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        extra = own.discriminator_step(batch) if own is not None else {}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16"):
            losses = {**extra, **loss_fn(model(batch), batch)}
        if own is not None:
            own.generator_step(losses["total"])
        else:
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
        kind = "warmup" if step < args.warmup else "step"
        print(f"{kind} {step}: wall {time.perf_counter() - t0:.2f} s, cpu {time.process_time() - c0:.2f} s, "
              f"loss {float(losses['total'].detach()):.4f}", flush=True)


if __name__ == "__main__":
    main()
