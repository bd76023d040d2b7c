"""Pictures and class statistics of synthetic frames (what ``docs/synthetic.md`` shows).

    .venv/bin/python benchmarks/synth_preview.py --out docs/images --frames 200 --workers 2

writes ``synth_frame_<id>.png`` (RGB | depth colour-mapped | label grid, oblique view) for a
few frames and prints the class histogram of the 60x36x60 label grids (after the 36 -> 11
mapping and docs/data.md downsampling) over ``--frames`` frames as a Markdown table.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from torchssc.geometry import CLASS_NAMES, FINE_SHAPE, FINE_VOXEL, LABEL_VOXEL, NUM_CLASSES
from torchssc.report import markdown_table
from torchssc.synth.generator import frame_geometry, frame_streams, generate_frame
from torchssc.synth.rooms import sample_scene
from torchssc.synth.voxelize import voxelize

_TURBO_ANCHORS = np.array([(48, 18, 59), (70, 107, 227), (40, 188, 235), (50, 241, 152), (164, 252, 60),
                           (238, 207, 58), (251, 128, 34), (208, 47, 5), (122, 4, 3)], np.float64)


def depth_colormap(depth: np.ndarray, max_depth: float = 6.0) -> np.ndarray:
    """Colour-map a depth image (near blue, far red; missing black).

    Args:
        depth: ``(H, W)`` metres, 0 = missing. max_depth: depth (m) of the last colour.
    Returns:
        ``(H, W, 3) uint8``.
    """
    depth = np.asarray(depth, np.float64)
    x = np.clip(depth / max_depth, 0.0, 1.0) * (len(_TURBO_ANCHORS) - 1)
    grid = np.arange(len(_TURBO_ANCHORS))
    rgb = np.stack([np.interp(x, grid, _TURBO_ANCHORS[:, k]) for k in range(3)], axis=-1)
    rgb[depth <= 0] = 0
    return np.round(rgb).astype(np.uint8)


def frame_labels(seed: int, frame_id: int) -> np.ndarray:
    """The ``(240, 144, 240)`` raw label grid of a frame, without rendering its images."""
    scene = sample_scene(frame_streams(seed, frame_id)[0])
    _, origin = frame_geometry(scene)
    return voxelize(scene.boxes, scene.size, origin, FINE_SHAPE, FINE_VOXEL)


def _label_counts(job: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    from torchssc.prepare.downsample import downsample_labels

    fine = frame_labels(*job)
    small = downsample_labels(fine, raw=True)
    fine11 = np.asarray(fine)
    from torchssc.geometry import map_36_to_11

    fine11 = map_36_to_11(fine11)
    count = lambda v: np.bincount(np.where(v == 255, NUM_CLASSES, v).ravel(), minlength=NUM_CLASSES + 1)
    return count(small), count(fine11)


def class_histogram(seed: int, frames: int, workers: int = 1) -> dict[str, np.ndarray]:
    """Voxel counts per label over frames ``1..frames`` of seed ``seed``.

    Returns:
        ``{"label60": (13,), "fine": (13,), "present60": (13,)}`` int64: voxels of each label
        0..11 and 255 (last) at 60x36x60 and at 240x144x240, and in how many frames each label
        occurs at 60x36x60.
    """
    jobs = [(seed, i) for i in range(1, frames + 1)]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_label_counts, jobs, chunksize=4))
    else:
        results = [_label_counts(j) for j in jobs]
    small = np.stack([r[0] for r in results])
    fine = np.stack([r[1] for r in results])
    return {"label60": small.sum(0), "fine": fine.sum(0), "present60": (small > 0).sum(0)}


def frame_picture(seed: int, frame_id: int, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """``(H, 3 W, 3) uint8``: the frame's RGB, its colour-mapped depth and an oblique render of
    its 60x36x60 labels (:func:`torchssc.viz.render.render_view`), each ``size`` = (W, H)."""
    from torchssc.prepare.downsample import downsample_labels
    from torchssc.viz.render import render_view

    frame = generate_frame(seed, frame_id, noise="kinect")
    rgb = np.array(Image.fromarray(frame.rgb).resize(size, Image.BILINEAR))
    depth = np.array(Image.fromarray(depth_colormap(frame.depth)).resize(size, Image.NEAREST))
    small = downsample_labels(frame.labels, raw=True)
    render = render_view(small, "oblique", size=size, pose=frame.pose.astype(np.float64),
                         origin=frame.origin.astype(np.float64), voxel=LABEL_VOXEL)
    return np.concatenate([rgb, depth, render], axis=1)


def histogram_table(hist: dict[str, np.ndarray], frames: int) -> str:
    """Markdown table of :func:`class_histogram`'s result."""
    names = list(CLASS_NAMES) + ["ignore (255)"]
    n60, nf = hist["label60"].sum(), hist["fine"].sum()
    occ60 = hist["label60"][1:NUM_CLASSES].sum()
    rows = []
    for k, name in enumerate(names):
        share_occ = f"{100 * hist['label60'][k] / occ60:.1f}%" if 1 <= k < NUM_CLASSES else ""
        rows.append([f"{k if k < NUM_CLASSES else 255} {name}", f"{100 * hist['label60'][k] / n60:.2f}%", share_occ,
                     f"{100 * hist['present60'][k] / frames:.0f}%", f"{100 * hist['fine'][k] / nf:.2f}%"])
    head = ["label", "60x36x60 voxels", "of occupied (1..11)", "frames with it", "240x144x240 voxels"]
    return markdown_table(head, rows, align="lrrrr")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="pictures and class histogram of synthetic frames")
    parser.add_argument("--out", default=None, help="folder for synth_frame_<id>.png (none: no pictures)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pictures", type=int, nargs="*", default=[1, 2, 3, 4])
    parser.add_argument("--frames", type=int, default=200, help="frames in the histogram (0: none)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for fid in args.pictures:
            path = out / f"synth_frame_{fid}.png"
            img = Image.fromarray(frame_picture(args.seed, fid))
            img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
            print(f"{path}: {path.stat().st_size // 1024} KB")
    if args.frames:
        hist = class_histogram(args.seed, args.frames, args.workers)
        print(f"class histogram over {args.frames} frames (seed {args.seed}):")
        print(histogram_table(hist, args.frames))


if __name__ == "__main__":
    main()
