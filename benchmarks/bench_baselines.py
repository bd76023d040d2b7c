"""CPU cost of the classic baselines and of their inputs, in one run.

    .venv/bin/python benchmarks/bench_baselines.py [--iters 2] [--threads N] [--models sscnet,ddrnet,...]

1. Inference (``torch.no_grad``, eval mode, batch 1, FULL-size inputs) of each baseline in its own
   spawned process: median wall time over ``--iters`` forwards after one warm-up, and peak resident
   memory (``ru_maxrss`` of that process; "forward" = peak minus the RSS just before the first
   forward, i.e. the activations' working set). Inputs: the real NYU sample's depth/pose/origin
   (``../shared/data/nyu_sample`` beside the repository) and its fine flipped TSDF; random RGB.
2. The projection pieces against naive baselines measured in the same run: the torch
   pixel -> voxel index vs the numpy ``geometry.depth_to_grid_index``; the torch scatter-max of
   8 x 480 x 640 features into 240x144x240 vs ``np.maximum.at`` (unbuffered numpy scatter).
3. SSCNet's input: loading a float16 ``TSDFFine/<id>.npz`` (as ``prepare --fine`` writes it)
   vs recomputing the fine flipped TSDF from the depth PNG (``prepare.tsdf.compute_tsdf``).

Parts 2 and 3 report CPU seconds (``time.process_time``, best of a few runs); part 1 reports the
median wall time and the median CPU seconds of the model's process. On a shared machine the wall
time grows with the load; the script prints the load average so that a reader can judge.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyu_sample"
MODELS = ("sscnet", "ddrnet", "aicnet", "vvnet_r120")


def _sample_frame():
    from torchssc.io.depthbin import read_depthbin_frame

    frame, depth = read_depthbin_frame(SAMPLE / "NYU0001_0000.bin")
    return frame, depth


def _full_batch(with_fine: bool) -> dict:
    from torchssc.geometry import NYU_INTRINSICS
    from torchssc.prepare.tsdf import compute_tsdf

    frame, depth = _sample_frame()
    batch = {
        "rgb": torch.randn(1, 3, 480, 640, generator=torch.Generator().manual_seed(0)),
        "depth": torch.from_numpy(depth)[None, None],
        "pose": torch.from_numpy(np.asarray(frame.pose, np.float32))[None],
        "origin": torch.from_numpy(np.asarray(frame.origin, np.float32))[None],
        "intrinsics": torch.from_numpy(NYU_INTRINSICS.as_array().astype(np.float32))[None],
    }
    if with_fine:
        fine = compute_tsdf(depth, frame.pose, frame.origin).sscnet_input()
        batch["tsdf_fine"] = torch.from_numpy(fine)[None, None]
    return batch


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _model_child(name: str, iters: int, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    from torchssc.models import get_model

    torch.manual_seed(0)
    model = get_model(name).eval()
    batch = _full_batch(with_fine=(name == "sscnet"))
    before = _rss_mib()
    times, cpu = [], []
    with torch.no_grad():
        for i in range(iters + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            out = model(batch)["semantic"]
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    queue.put(
        {
            "model": name,
            "params": sum(p.numel() for p in model.parameters()),
            "shape": tuple(out.shape),
            "warmup_s": times[0],
            "median_s": statistics.median(times[1:]),
            "cpu_s": statistics.median(cpu[1:]),
            "peak_mib": peak,
            "forward_mib": peak - before,
        }
    )


def bench_models(models, iters: int, threads: int) -> list[dict]:
    ctx = mp.get_context("spawn")
    rows = []
    for name in models:
        queue = ctx.Queue()
        proc = ctx.Process(target=_model_child, args=(name, iters, threads, queue))
        proc.start()
        row = queue.get()
        proc.join()
        rows.append(row)
        print(
            f"{name:11s} params {row['params']:>9,d} out {row['shape']} forward median {row['median_s']:.2f} s wall, "
            f"{row['cpu_s']:.2f} s CPU (warm-up {row['warmup_s']:.2f} s wall) peak RSS {row['peak_mib']:.0f} MiB, forward working set "
            f"{row['forward_mib']:.0f} MiB",
            flush=True,
        )
    return rows


def _best(fn, repeat: int = 3) -> float:
    """Smallest CPU time (``time.process_time``, all threads of this process) over ``repeat`` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def bench_projection() -> None:
    from torchssc.geometry import FINE_SHAPE, NYU_INTRINSICS, depth_to_grid_index
    from torchssc.models.projection import pixel_to_voxel_index, scatter_max_to_grid

    frame, depth = _sample_frame()
    batch = _full_batch(with_fine=False)
    t_np = _best(lambda: depth_to_grid_index(depth, frame.pose, frame.origin, NYU_INTRINSICS))
    t_torch = _best(
        lambda: pixel_to_voxel_index(batch["depth"], batch["pose"], batch["origin"], batch["intrinsics"])
    )
    print(f"pixel->voxel index (480x640, CPU time): numpy geometry {t_np * 1e3:.0f} ms, torch {t_torch * 1e3:.0f} ms, ratio {t_np / t_torch:.2f}x")

    index = pixel_to_voxel_index(batch["depth"], batch["pose"], batch["origin"], batch["intrinsics"])
    feats = torch.rand(1, 8, 480, 640, generator=torch.Generator().manual_seed(0))
    numel = int(np.prod(FINE_SHAPE))
    idx_np, f_np = index[0].numpy(), feats[0].reshape(8, -1).numpy()

    def naive():
        out = np.zeros((8, numel + 1), np.float32)
        for c in range(8):
            np.maximum.at(out[c], idx_np, f_np[c])
        return out[:, :numel]

    t_naive = _best(naive, repeat=1)
    t_scatter = _best(lambda: scatter_max_to_grid(feats, index, FINE_SHAPE))
    ok = np.array_equal(naive(), scatter_max_to_grid(feats, index, FINE_SHAPE)[0].reshape(8, -1).numpy())
    print(
        f"scatter-max 8x480x640 -> 8x240x144x240 (CPU time): np.maximum.at {t_naive:.2f} s, torch scatter_reduce "
        f"{t_scatter:.2f} s, ratio {t_naive / t_scatter:.1f}x (identical: {ok})"
    )


def bench_fine_tsdf() -> None:
    from torchssc.io.depthbin import read_depth_png
    from torchssc.prepare.tsdf import compute_tsdf

    frame, depth = _sample_frame()
    fine = compute_tsdf(depth, frame.pose, frame.origin).sscnet_input()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "0001.npz"
        with open(path, "wb") as fh:
            np.savez_compressed(fh, arr_0=fine.astype(np.float16))  # as io.prepared.write_frame
        size = path.stat().st_size

        def load():
            with np.load(path) as data:
                return data["arr_0"].astype(np.float32)

        def recompute():
            d = read_depth_png(SAMPLE / "NYU0001_0000.png")
            return compute_tsdf(d, frame.pose, frame.origin).sscnet_input()

        t_load = _best(load)
        t_comp = _best(recompute, repeat=2)
        err = float(np.abs(load() - fine).max())
    print(
        f"fine flipped TSDF (CPU time): load float16 npz ({size / 2**20:.2f} MiB on disk) {t_load * 1e3:.0f} ms vs recompute "
        f"from depth {t_comp * 1e3:.0f} ms, ratio {t_comp / t_load:.1f}x; float16 max abs error {err:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2, help="timed forwards per model after one warm-up")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--models", default=",".join(MODELS), help="comma list of registered names")
    parser.add_argument("--skip-models", action="store_true", help="only the projection and TSDF parts")
    args = parser.parse_args()
    if not (SAMPLE / "NYU0001_0000.bin").is_file():
        raise FileNotFoundError(f"{SAMPLE}: the real NYU sample is needed beside the repository")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPU(s), load average {os.getloadavg()}")
    bench_projection()
    bench_fine_tsdf()
    if not args.skip_models:
        bench_models([m for m in args.models.split(",") if m], args.iters, args.threads)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
