"""Speed and peak memory of SketchAwareSSC against its naive reference path, on CPU.

Measures, at full NYU size (RGB 480x640, grid 60x36x60), in the same run:

* ``infer``: eval-mode forward, batch 1 (``torch.no_grad``);
* ``train``: training step, batch 2: forward + ``sketch_aware`` loss + backward + SGD step;
* ``lift``: the stage-2 2D->3D lifting and zero-fill alone (reduced feature map -> filled voxels,
  forward + backward);
* ``cvae``: the CVAE alone in training mode (all samples decoded, forward + backward);

each for the fast path (the model itself: lifting sampled at the mapped pixels with the
zero-fill computed around them only, channel dropout fused into the 1x1x1 classifiers, the DDR
layers / stem fronts / full-size BatchNorm + ReLU recomputed in the backward pass instead of
kept, the CVAE condition term shared by the samples) and the naive path (the reference
functions of ``tests/models/_sketch_aware_reference.py``: the original's full-resolution x16
upsample + per-sample gather, dense 3x3x3 fill, dropout then classifier, every activation kept,
per-sample CVAE loop on the concatenated input). Same weights, same inputs (by default the real
NYU sample frame's TSDF, mapping and labels, random RGB).

Peak memory: every (measurement, path) runs in a **fresh process** (``multiprocessing`` spawn,
no shell), which reads its own ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (Linux: KiB, the
peak resident set of that process) once before the first call (warm-up included) and once at the end. ``peak`` is the process's lifetime peak RSS (interpreter, torch, weights, inputs included);
``step`` is the growth of that peak caused by the calls, i.e. the extra memory the
forward/backward needed at its worst moment. tracemalloc does not see torch's allocations, so
it is not used.

Usage::

    .venv/bin/python benchmarks/bench_model.py --model sketch_aware_ssc --iters 1 --warmup 0
    .venv/bin/python benchmarks/bench_model.py --model sketch_aware_ssc_lite --iters 3

Times are wall-clock seconds per call (mean over ``--iters`` after ``--warmup`` calls) and CPU
seconds of the process per call; on a shared machine the CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

GRID = (60, 36, 60)
IMAGE = (480, 640)


SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyu_sample" / "NYU0001_0000.bin"
REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "models"
"""Folder of ``_sketch_aware_reference.py``, the naive paths (kept with the tests, as PyTorch3D does)."""


def _batch(b: int, mapped: int, seed: int, frame: str | None = None):
    """A batch of ``b`` frames: the real NYU frame's TSDF, mapping, labels, label_weight and
    sketch when ``frame`` (a depthbin ``.bin``) is given, random RGB and 2D prior (NYU-13 ids,
    for the prior variants); else random everything with
    ``mapped`` random voxels per frame seeing a pixel (scattered over the whole grid, so their
    neighbourhoods cover most of it: a worst case for the sparse fill)."""
    import numpy as np
    import torch

    g = torch.Generator().manual_seed(seed)
    rgb = torch.randn(b, 3, *IMAGE, generator=g)
    prior = torch.randint(0, 14, (b, *IMAGE), generator=g)
    if frame:
        from torchssc.prepare.pipeline import prepare_depthbin

        f = prepare_depthbin(frame)

        def rep(a, dtype):
            return torch.as_tensor(np.asarray(a)).to(dtype).reshape(1, *GRID).repeat(b, 1, 1, 1)

        return {"rgb": rgb, "prior": prior, "tsdf": rep(f.tsdf, torch.float32).unsqueeze(1),
                "mapping": rep(f.mapping, torch.int64).reshape(b, -1),
                "sketch_gt": rep(f.sketch, torch.int64), "label": rep(f.label, torch.int64),
                "label_weight": rep(f.label_weight, torch.float32)}
    n = GRID[0] * GRID[1] * GRID[2]
    hw = IMAGE[0] * IMAGE[1]
    mapping = torch.full((b, n), hw, dtype=torch.int64)
    for i in range(b):  # `mapped` distinct voxels per frame, each seeing one pixel
        voxels = torch.randperm(n, generator=g)[:mapped]
        mapping[i, voxels] = torch.randint(0, hw, (mapped,), generator=g)
    return {
        "rgb": rgb,
        "prior": prior,
        "tsdf": torch.randn(b, 1, *GRID, generator=g).clamp_(-1, 1),
        "mapping": mapping,
        "sketch_gt": torch.randint(0, 2, (b, *GRID), generator=g),
        "label": torch.randint(0, 12, (b, *GRID), generator=g),
        "label_weight": (torch.rand(b, *GRID, generator=g) > 0.5).float(),
    }


def _measure(kind: str, naive: bool, args: argparse.Namespace, queue) -> None:
    """Child process: build, run ``kind`` warmup + iters times, report time and memory."""
    import torch

    from torchssc.losses import get_loss
    from torchssc.models import get_model
    from torchssc.models.lifting import lift_and_fill, lift_labels

    sys.path.insert(0, str(REFERENCE))
    import _sketch_aware_reference as ref

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = get_model(args.model)
    forward = (lambda b: ref.sketch_aware_naive(model, b)) if naive else model
    batch = _batch(1 if kind == "infer" else 2, args.mapped, seed=0, frame=args.frame or None)

    if kind == "infer":
        model.eval()

        def call():
            with torch.no_grad():
                forward(batch)
    elif kind == "train":
        model.train()
        loss_fn = get_loss("sketch_aware")
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                              momentum=0.9)

        def call():
            losses = loss_fn(forward(batch), batch)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
    elif kind == "lift" and model.semantic_input == "prior":  # the one-hot prior: no gradient
        def call():
            if naive:
                ref.lift_labels_naive(batch["prior"][:2], batch["mapping"], GRID, 14)
            else:
                lift_labels(batch["prior"][:2], batch["mapping"], GRID, 14)
    elif kind == "lift":
        width = model.stage2.reduce[0].out_channels
        h, w = IMAGE[0] // 16, IMAGE[1] // 16
        features = torch.randn(2, width, h, w, requires_grad=True)
        def lift(*a):
            return ref.fill_unmapped(ref.lift_features_naive(*a)) if naive else lift_and_fill(*a)

        def call():
            out = lift(features, batch["mapping"], GRID, IMAGE)
            out.sum().backward()
    elif kind == "cvae":
        cvae = model.cvae.train()
        sketch = batch["sketch_gt"].unsqueeze(1).float()

        def call():
            out = ref.cvae_naive(cvae, sketch, batch["sketch_gt"]) if naive else cvae(sketch, batch["sketch_gt"])
            (out["sketch_prior"].sum() + out["sketch_posterior"].sum()
             + out["latent_mean"].sum()).backward()
    else:
        raise ValueError(kind)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(args.warmup):
        call()
    wall = cpu = 0.0
    for _ in range(args.iters):
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"wall": wall / args.iters, "cpu": cpu / args.iters,
               "peak_mib": after / 1024, "step_mib": (after - before) / 1024,
               "threads": torch.get_num_threads()})


def run_one(kind: str, naive: bool, args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(kind, naive, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sketch_aware_ssc",
                        help="registered SketchAwareSSC variant (sketch_aware_ssc, sketch_aware_ssc_lite, "
                             "sketch_aware_ssc_prior, sketch_aware_ssc_prior_lite, ...); 'lift' needs "
                             "an RGB or prior variant")
    parser.add_argument("--kinds", default="lift,cvae,infer,train",
                        help="comma list of: lift, cvae, infer, train")
    parser.add_argument("--iters", type=int, default=2, help="measured calls per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured calls first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--frame", default=str(SAMPLE) if SAMPLE.is_file() else "",
                        help="real depthbin frame for TSDF/mapping/labels (default: the NYU sample "
                             "beside the checkout; '' = random inputs)")
    parser.add_argument("--mapped", type=int, default=8000,
                        help="with random inputs: voxels with a pixel per frame, scattered at random")
    args = parser.parse_args()
    print(f"model={args.model} iters={args.iters} warmup={args.warmup} threads={args.threads or 'default'} "
          f"inputs={args.frame or f'random, mapped={args.mapped}'}; RGB {IMAGE[0]}x{IMAGE[1]}, grid {'x'.join(map(str, GRID))}; CPU only")
    print(f"{'kind':6s} {'path':6s} {'wall s':>9s} {'cpu s':>9s} {'peak MiB':>9s} {'step MiB':>9s}")
    for kind in args.kinds.split(","):
        res = {}
        for naive in (True, False):
            r = run_one(kind, naive, args)
            res[naive] = r
            print(f"{kind:6s} {'naive' if naive else 'fast':6s} {r['wall']:9.3f} {r['cpu']:9.3f} "
                  f"{r['peak_mib']:9.0f} {r['step_mib']:9.0f}", flush=True)
        slow, fast = res[True], res[False]
        print(f"{kind:6s} ratio  wall x{slow['wall'] / fast['wall']:.2f}  cpu x{slow['cpu'] / fast['cpu']:.2f}  "
              f"peak -{100 * (1 - fast['peak_mib'] / slow['peak_mib']):.0f}%  "
              f"step -{100 * (1 - fast['step_mib'] / max(slow['step_mib'], 1e-9)):.0f}%", flush=True)


if __name__ == "__main__":
    main()
