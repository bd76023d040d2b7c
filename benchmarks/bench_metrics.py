"""Benchmark: SC/SSC metrics for the 654 NYU test scenes (60x36x60) under all three protocols.

Data are generated up front (not timed), in the dtypes the evaluator passes (``label`` int64,
``label_weight`` float32, ``mapping`` int64, ``visibility`` int64 as collated by SSCDataset;
``pred`` the uint8 argmax that ``torchssc eval`` produces on the device), or with ``--compact``
in the on-disk dtypes. Statistics: 20% of the voxels labelled 255, 55% of the rest empty, half
the grid with weight 1, ~5% of the voxels mapped to a pixel, predictions 80% right. A pool of
``--pool`` distinct scenes is cycled through 654 updates (batches of ``--batch``).

Baselines measured in the same run:
* a deliberately naive per-voxel Python loop over ``--naive-scenes`` scenes, extrapolated to 654;
* TorchSSC's own per-scene numpy code shape (boolean indexing + bincount), torchssc protocol.

Usage: ``python benchmarks/bench_metrics.py [--batch 1] [--pool 32] [--naive-scenes 2] [--threads 1] [--compact]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from torchssc.geometry import LABEL_NUMEL, LABEL_SHAPE, VIS_OCCLUDED, VIS_SURFACE
from torchssc.metrics import PROTOCOLS, SSCMetrics, update_all

SCENES = 654
CPU_SECONDS: list[float] = []  # process CPU time of each run_fast call (less sensitive to a busy machine)
NO_PIXEL = 307200


def make_pool(n: int, seed: int = 0, compact: bool = False) -> list[dict]:
    """``n`` random scenes shaped like an evaluator batch of 1 (tensors with a batch axis).

    ``compact``: the dtypes of the files on disk (uint8 labels / codes / weights, int32 mapping)
    instead of the collated int64 ones."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(n):
        label = rng.choice(12, size=LABEL_SHAPE, p=[0.55] + [0.45 / 11] * 11).astype(np.int64)
        label[rng.random(LABEL_SHAPE) < 0.2] = 255
        pred = np.where(rng.random(LABEL_SHAPE) < 0.8, np.minimum(label, 11), rng.integers(0, 12, LABEL_SHAPE))
        weight = (rng.random(LABEL_SHAPE) < 0.5).astype(np.float32)
        mapping = np.full(LABEL_NUMEL, NO_PIXEL, dtype=np.int64)
        mapped = rng.random(LABEL_NUMEL) < 0.05
        mapping[mapped] = rng.integers(0, NO_PIXEL, int(mapped.sum()))
        vis = rng.integers(0, 6, LABEL_SHAPE)
        if compact:
            label, vis, weight, mapping = label.astype(np.uint8), vis.astype(np.uint8), weight.astype(np.uint8), mapping.astype(np.int32)
        pool.append(
            {
                "pred": torch.from_numpy(pred.astype(np.uint8))[None],  # the evaluator's argmax, as uint8
                "label": torch.from_numpy(label)[None],
                "label_weight": torch.from_numpy(weight)[None],
                "mapping": torch.from_numpy(mapping)[None],
                "visibility": torch.from_numpy(vis)[None],
            }
        )
    return pool


def batches(pool: list[dict], batch: int):
    """654 scenes from the pool, ``batch`` at a time (the concatenation is done up front)."""
    out = []
    for start in range(0, SCENES, batch):
        idx = [(start + k) % len(pool) for k in range(min(batch, SCENES - start))]
        out.append({key: torch.cat([pool[i][key] for i in idx]) for key in pool[0]})
    return out


def run_fast(data: list[dict], together: bool = True) -> tuple[float, dict]:
    """All three protocols over the 654 scenes: one pass (update_all) or one object at a time."""
    t0 = time.perf_counter()
    c0 = time.process_time()
    metrics = {p: SSCMetrics(p) for p in PROTOCOLS}
    for b in data:
        kw = dict(label_weight=b["label_weight"], mapping=b["mapping"], visibility=b["visibility"])
        if together:
            update_all(metrics.values(), b["pred"], b["label"], **kw)
        else:
            for m in metrics.values():
                m.update(b["pred"], b["label"], **kw)
    results = {p: m.compute() for p, m in metrics.items()}
    CPU_SECONDS.append(time.process_time() - c0)
    return time.perf_counter() - t0, results


def naive_scene(protocol: str, s: dict) -> None:
    """Per-voxel Python loop over one scene (the reference's cost)."""
    pred = s["pred"].reshape(-1).tolist()
    label = s["label"].reshape(-1).tolist()
    weight = s["label_weight"].reshape(-1).tolist()
    mapping = s["mapping"].reshape(-1).tolist()
    vis = s["visibility"].reshape(-1).tolist()
    conf = [[0] * 12 for _ in range(12)]
    tp = fp = fn = 0
    for v in range(len(pred)):
        g, p = label[v], pred[v]
        if g == 255:
            continue
        if protocol == "torchssc":
            in_ssc = weight[v] > 0
            in_sc = in_ssc and mapping[v] == NO_PIXEL
        elif protocol == "sscnet":
            in_ssc = vis[v] in (VIS_SURFACE, VIS_OCCLUDED)
            in_sc = vis[v] == VIS_OCCLUDED
        else:
            in_ssc = in_sc = True
        if in_ssc:
            conf[g][p] += 1
        if in_sc:
            tp += g > 0 and p > 0
            fp += g == 0 and p > 0
            fn += g > 0 and p == 0


def torchssc_style(pool: list[dict]) -> float:
    """TorchSSC's per-scene numpy code shape (masks, boolean indexing, bincount), 654 scenes."""
    t0 = time.perf_counter()
    hist = np.zeros((12, 12))
    tp = fp = fn = 0
    for k in range(SCENES):
        s = pool[k % len(pool)]
        pred = s["pred"].numpy().ravel()
        label = s["label"].numpy().ravel()
        weight = s["label_weight"].numpy().ravel()
        mapping = s["mapping"].numpy().ravel()
        keep = np.where(weight > 0)
        p, g = pred[keep], label[keep]
        valid = (g >= 0) & (g < 12)
        hist += np.bincount(12 * g[valid] + p[valid], minlength=144).reshape(12, 12)
        occ = (mapping == NO_PIXEL) & (weight > 0) & (label != 255)
        op, og = pred[occ], label[occ]
        tp += ((og > 0) & (op > 0)).sum()
        fp += ((og == 0) & (op > 0)).sum()
        fn += ((og > 0) & (op == 0)).sum()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1, help="scenes per update (eval.batch_size)")
    parser.add_argument("--pool", type=int, default=32, help="distinct scenes generated up front")
    parser.add_argument("--naive-scenes", type=int, default=2, help="scenes timed with the naive loop")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timed runs")
    parser.add_argument("--compact", action="store_true", help="on-disk dtypes instead of collated int64")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pool = make_pool(args.pool, compact=args.compact)
    data = batches(pool, args.batch)
    run_fast(data[:2])  # warm-up
    times = []
    for _ in range(args.repeats):
        dt, results = run_fast(data)
        times.append(dt)
    fast = min(times)
    cpu = min(CPU_SECONDS[1:])
    print(f"update_all, 3 protocols, {SCENES} scenes of {LABEL_SHAPE}, batch {args.batch}, "
          f"{'compact' if args.compact else 'collated int64'} inputs, "
          f"{args.threads} thread(s): best {fast:.3f} s wall of {['%.3f' % t for t in times]}, {cpu:.3f} s CPU")
    separate = min(run_fast(data, together=False)[0] for _ in range(args.repeats))
    print(f"  (one SSCMetrics.update per protocol instead of update_all: {separate:.3f} s)")
    for p in PROTOCOLS:
        r = results[p]
        print(f"  {p:9s} SC IoU {100 * r['sc_iou']:.1f}  mIoU {100 * r['ssc_miou']:.1f}  ({r['scenes']} scenes)")

    t0 = time.perf_counter()
    for k in range(args.naive_scenes):
        for p in PROTOCOLS:
            naive_scene(p, pool[k % len(pool)])
    naive = (time.perf_counter() - t0) / args.naive_scenes * SCENES
    print(f"naive per-voxel loop: {naive:.1f} s for {SCENES} scenes (extrapolated from {args.naive_scenes})"
          f" -> speed-up x{naive / fast:.0f}")

    ref = min(torchssc_style(pool) for _ in range(args.repeats))
    one = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        m = SSCMetrics("torchssc")
        for b in data:
            m.update(b["pred"], b["label"], label_weight=b["label_weight"], mapping=b["mapping"])
        m.compute()
        one.append(time.perf_counter() - t0)
    print(f"torchssc protocol only: SSCMetrics {min(one):.3f} s vs TorchSSC-style numpy {ref:.3f} s"
          f" -> x{ref / min(one):.1f}")


if __name__ == "__main__":
    main()
