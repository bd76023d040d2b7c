"""Speed and memory of ForkNet and CCPNet-style at full size, and of the partitioned convolution.

    .venv/bin/python benchmarks/bench_forknet_ccpnet.py [--iters 1] [--threads 1] [--device cpu]
        [--parts forknet,forknet_gan,ccpnet,ccpnet_train,partition]

Inputs come from the real NYU frame (``../shared/data/nyu_sample`` beside the repository):
ForkNet's projective TSDF and labels at 80x48x80 and SSCNet's flipped TSDF at 240x144x240.

1. ``forknet`` / ``forknet_gan``: ForkNet without / with its discriminators, batch 1, training
   mode: one forward of the whole graph + the summed loss + backward (the work of one training
   iteration before the optimiser step), then an eval-mode forward (``torch.no_grad``).
2. ``ccpnet``: CCPNet-style (width 64) forward at full resolution, eval mode, ``torch.no_grad``,
   batch 1 -> 12x240x144x240 logits. ``ccpnet_train`` (not in the default set: several GiB):
   one training forward + loss + backward at full resolution.
3. ``partition``: the pyramid's partitioned 3³ convs at their real shape (1, 64, 60, 36, 60):
   2³ sub-volumes at dilation 3 and 4³ at dilation 1, as the library computes them (sub-volumes
   folded into the batch, one conv) vs a loop over the blocks (one conv per block, written back),
   checked equal in the same run; the unpartitioned conv for scale. Forward (``no_grad``) and
   forward + backward, best of ``--repeat``, CPU seconds (wall seconds on CUDA).

Each model part runs in its own spawned process: one warm-up, then the median of ``--iters``
timed runs, wall and CPU seconds (``time.process_time`` of that process). Memory on the CPU: the
process's peak resident set (``ru_maxrss``) and the working set (peak minus the resident size
just before the first run: activations, gradients and temporaries, not Python/torch/inputs);
with ``--device cuda``: ``torch.cuda.max_memory_allocated`` and the same difference.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyu_sample"
PARTS = ("forknet", "forknet_gan", "ccpnet", "partition")


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _memory(device: torch.device) -> float:
    """Peak memory so far, MiB: CUDA allocator peak, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _current(device: torch.device) -> float:
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else _rss_mib()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _frame_batch(part: str, device: torch.device) -> dict:
    from torchssc.io.depthbin import read_bin, read_depth_png
    from torchssc.prepare.forknet import forknet_volumes
    from torchssc.prepare.projective_tsdf import forknet_input
    from torchssc.prepare.pipeline import prepare_depthbin

    raw = read_bin(SAMPLE / "NYU0001_0000.bin")
    depth = read_depth_png(SAMPLE / "NYU0001_0000.png")
    if part.startswith("forknet"):
        vol = forknet_volumes(depth, raw.pose, raw.origin, raw.labels, fine_voxel=0.02)
        batch = {
            "forknet_tsdf": torch.from_numpy(forknet_input(vol.tsdf))[None, None],
            "forknet_label": torch.from_numpy(vol.label.astype(np.int64))[None],
            "forknet_surface": torch.from_numpy(vol.surface)[None],
        }
    else:
        frame = prepare_depthbin(SAMPLE / "NYU0001_0000.bin", fine=True, fine_labels=True)
        batch = {
            "tsdf_fine": torch.from_numpy(frame.tsdf_fine)[None, None],
            "label_fine": torch.from_numpy(frame.label_fine)[None],
            "label": torch.from_numpy(frame.label.astype(np.int64))[None],
            "label_weight": torch.from_numpy(frame.label_weight.astype(np.float32))[None],
        }
    return {k: v.to(device) for k, v in batch.items()}


def _timed(fn, iters: int, device: torch.device) -> dict:
    walls, cpus = [], []
    for _ in range(iters + 1):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"warmup_s": walls[0], "wall_s": statistics.median(walls[1:]), "cpu_s": statistics.median(cpus[1:])}


def _model_child(part: str, iters: int, threads: int, device: str, queue) -> None:
    torch.set_num_threads(threads)
    from torchssc.losses import get_loss
    from torchssc.models import get_model

    device = torch.device(device)
    torch.manual_seed(0)
    if part.startswith("forknet"):
        model = get_model("forknet", discriminators=(part == "forknet_gan")).to(device)
        loss_fn = get_loss("forknet")
    else:
        model = get_model("ccpnet_style").to(device)
        loss_fn = get_loss("ccpnet_style")
    batch = _frame_batch(part, device)
    before = _current(device)
    row = {"part": part, "params": sum(p.numel() for p in model.parameters()), "device": str(device)}

    if part == "ccpnet":
        model.eval()

        def run():
            with torch.no_grad():
                row["shape"] = tuple(model(batch)["semantic"].shape)
    else:
        model.train()

        def run():
            model.zero_grad(set_to_none=True)
            out = model(batch)
            row["shape"] = tuple(out["semantic"].shape)
            loss_fn(out, batch)["total"].backward()

    row.update(_timed(run, iters, device))
    row["peak_mib"] = _memory(device)
    row["working_mib"] = row["peak_mib"] - before
    if part.startswith("forknet"):  # inference (s2) after the training measurement
        model.eval()

        def infer():
            with torch.no_grad():
                model(batch)

        inference = _timed(infer, iters, device)
        row.update({f"eval_{k}": v for k, v in inference.items()})
    queue.put(row)


def bench_models(parts, iters: int, threads: int, device: str) -> None:
    ctx = mp.get_context("spawn")
    for part in parts:
        queue = ctx.Queue()
        proc = ctx.Process(target=_model_child, args=(part, iters, threads, device, queue))
        proc.start()
        row = queue.get()
        proc.join()
        what = "forward" if part == "ccpnet" else "forward+loss+backward"
        line = (f"{part:12s} params {row['params']:>10,d} out {row['shape']} {what}: median {row['wall_s']:.2f} s wall, "
                f"{row['cpu_s']:.2f} s CPU (warm-up {row['warmup_s']:.2f} s) peak {row['peak_mib']:.0f} MiB, "
                f"working set {row['working_mib']:.0f} MiB")
        if "eval_wall_s" in row:
            line += f"; eval forward {row['eval_wall_s']:.2f} s wall, {row['eval_cpu_s']:.2f} s CPU"
        print(line, flush=True)


def _block_loop(conv: torch.nn.Conv3d, x: torch.Tensor, n: int) -> torch.Tensor:
    """The naive form: one conv per sub-volume, written into the output."""
    import torch.nn.functional as F

    out = x.new_empty(x.shape[0], conv.out_channels, *x.shape[2:])
    size = [s // n for s in x.shape[2:]]
    for i in range(n):
        for j in range(n):
            for k in range(n):
                box = (slice(None), slice(None), slice(i * size[0], (i + 1) * size[0]),
                       slice(j * size[1], (j + 1) * size[1]), slice(k * size[2], (k + 1) * size[2]))
                out[box] = F.conv3d(x[box], conv.weight, conv.bias, padding=conv.padding, dilation=conv.dilation)
    return out


def _best_time(fn, repeat: int, device: torch.device) -> float:
    """Smallest CPU seconds (CUDA: wall seconds) of ``repeat`` calls."""
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        t0 = clock()
        fn()
        _sync(device)
        best = min(best, clock() - t0)
    return best


def bench_partition(repeat: int, device: str) -> None:
    from torchssc.models.ccpnet import PartitionedConv3d

    device = torch.device(device)
    torch.manual_seed(0)
    x = torch.randn(1, 64, 60, 36, 60, device=device)
    xg = x.clone().requires_grad_(True)
    for dilation, n in ((3, 2), (1, 4)):
        conv = PartitionedConv3d(64, 64, 3, dilation=dilation, parts=n).to(device)
        plain = torch.nn.Conv3d(64, 64, 3, padding=dilation, dilation=dilation, bias=False).to(device)
        forms = {"fold": lambda t: conv(t), "loop": lambda t: _block_loop(conv, t, n), "plain": lambda t: plain(t)}
        with torch.no_grad():
            diff = float((forms["fold"](x) - forms["loop"](x)).abs().max())
            fwd = {name: _best_time(lambda f=f: f(x), repeat, device) for name, f in forms.items()}
        both = {name: _best_time(lambda f=f: f(xg).sum().backward(), repeat, device) for name, f in forms.items()}
        print(f"partitioned conv 64->64 3^3 on (1,64,60,36,60), {n}^3 sub-volumes, dilation {dilation} "
              f"(max |fold - loop| {diff:.1e}):\n"
              f"  forward: folded {fwd['fold']:.3f} s, block loop {fwd['loop']:.3f} s -> loop/fold "
              f"{fwd['loop'] / fwd['fold']:.2f}x; unpartitioned conv {fwd['plain']:.3f} s\n"
              f"  forward+backward: folded {both['fold']:.3f} s, block loop {both['loop']:.3f} s -> loop/fold "
              f"{both['loop'] / both['fold']:.2f}x; unpartitioned conv {both['plain']:.3f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1, help="timed runs per model part after one warm-up")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma list of {', '.join(PARTS)}, ccpnet_train")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many for the partitioned conv")
    args = parser.parse_args()
    if not SAMPLE.is_dir():
        raise SystemExit(f"{SAMPLE}: the real NYU sample frame is needed")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}, "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    models = [p for p in parts if p != "partition"]
    bench_models(models, args.iters, args.threads, args.device)
    if "partition" in parts:
        bench_partition(args.repeat, args.device)
    print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)


if __name__ == "__main__":
    main()
