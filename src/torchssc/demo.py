"""The out-of-the-box job: synthetic rooms → prepare → train → evaluate → renders.

Everything runs on the CPU with no download: ``torchssc demo`` generates procedural rooms in the
raw depthbin format (:mod:`torchssc.synth`), prepares them exactly as NYU
(:mod:`torchssc.prepare`), trains the small SketchAwareSSC recipe
(``configs/sketch_aware_ssc_synth_cpu.yaml``), evaluates the last checkpoint on the held-out
rooms under the ``torchssc``, ``sscnet`` and ``all`` protocols next to two trivial baselines scored by the
same code — *all empty* and *most frequent class* (every voxel gets the class that is most
frequent among the occupied, weighted training voxels) — and renders ground truth next to
prediction for a few test rooms. Every step is resumable: a second run reuses what exists.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from torchssc.io.atomic import write_bytes_atomic

logger = logging.getLogger(__name__)

PROTOCOLS = ("torchssc", "sscnet", "all")
RECIPE = "sketch_aware_ssc_synth_cpu"
"""The demo's shipped recipe (:func:`torchssc.config.find_recipe`)."""


def make_data(out: Path, *, frames: int, test_fraction: float, seed: int, workers: int) -> Path:
    """Generate the synthetic raw rooms (once) and prepare both splits into ``<out>/data``;
    returns the prepared root (:func:`torchssc.synth.generator.generate_and_prepare`)."""
    from torchssc.synth.generator import generate_and_prepare

    return generate_and_prepare(out, frames=frames, seed=seed, test_fraction=test_fraction,
                                workers=workers, prepared="data")


def most_frequent_class(root: Path, ids: Sequence[str]) -> int:
    """The most frequent class 1..11 among training voxels with label_weight > 0."""
    from torchssc.io.prepared import read_frame

    counts = np.zeros(256, dtype=np.int64)
    for frame_id in ids:
        frame = read_frame(root, frame_id, rgb=False)  # labels only: no image decoding
        counts += np.bincount(frame.label[frame.label_weight > 0].ravel(), minlength=256)
    return int(np.argmax(counts[1:12]) + 1)


def score_constant(dataset, value: int, protocols: Sequence[str]) -> dict[str, dict]:
    """Metrics of predicting ``value`` for every voxel of every frame."""
    from torchssc.metrics import SSCMetrics

    metrics = {p: SSCMetrics(p) for p in protocols}
    for i in range(len(dataset)):
        item = dataset[i]
        pred = torch.full_like(item["label"], value)[None]
        for m in metrics.values():
            m.update(pred, item["label"][None], label_weight=item["label_weight"][None],
                     mapping=item["mapping"][None],
                     visibility=item["visibility"][None] if "visibility" in item else None)
    return {p: m.compute() for p, m in metrics.items()}


def render_examples(root: Path, results: Path, out: Path, ids: Sequence[str]) -> list[Path]:
    """Ground truth | prediction renders (masked to label_weight) for a few test frames."""
    from torchssc.viz.export import export_scene
    from torchssc.viz.volumes import Volume, load_prepared

    written = []
    for frame_id in ids:
        gt = load_prepared(root, frame_id)
        pred = Volume(labels=np.load(results / f"{frame_id}.npy"), voxel=gt.voxel, origin=gt.origin,
                      pose=gt.pose, intrinsics=gt.intrinsics, label_weight=gt.label_weight,
                      name="prediction")
        written += export_scene(out, f"room_{frame_id}", gt=gt, pred=pred, formats=("png", "html"),
                                masks=("label_weight",))
    return written


def summary_markdown(rows: list[tuple[str, str, dict]]) -> str:
    """A table of (method, protocol, metrics) rows in percent."""
    lines = ["| method | protocol | SC precision | SC recall | SC IoU | SSC mIoU |", "|---|---|---|---|---|---|"]
    for method, protocol, m in rows:
        cells = [m["sc_precision"], m["sc_recall"], m["sc_iou"], m["ssc_miou"]]
        text = " | ".join("n/a" if c is None or np.isnan(c) else f"{100 * c:.1f}" for c in cells)
        lines.append(f"| {method} | {protocol} | {text} |")
    return "\n".join(lines) + "\n"


def run_demo(
    out: str | Path = "demo",
    *,
    frames: int = 60,
    test_fraction: float = 0.2,
    seed: int = 0,
    workers: int = 2,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    renders: int = 3,
) -> dict:
    """Run the whole job in ``out``; returns ``{"rows": [...], "renders": [...], "run_dir": ...}``."""
    from torchssc.config import load_config, save_config
    from torchssc.engine.builders import build_dataset
    from torchssc.engine.checkpoint import find_last_checkpoint, list_checkpoints
    from torchssc.engine.evaluate import evaluate_checkpoints
    from torchssc.engine.train import main as train_main

    out = Path(out)
    root = make_data(out, frames=frames, test_fraction=test_fraction, seed=seed, workers=workers)
    cfg = load_config(RECIPE if config is None else config, [f"data.root={root}", f"run.dir={out}", "run.name=run", *overrides])
    run_dir = out / "run"
    epochs = int(cfg["train"]["epochs"])
    done = list_checkpoints(run_dir)
    if not done or max(done) < epochs:
        train_main(cfg, resume=bool(done))
    last = find_last_checkpoint(run_dir)
    records = evaluate_checkpoints(cfg, [last], protocols=list(PROTOCOLS), split="test",
                                   out_dir=run_dir / "eval", save_dir=run_dir / "eval", progress=True)
    rows = [("SketchAwareSSC (lite)", r["protocol"], r["metrics"]) for r in records]
    test = build_dataset({**cfg, "data": {**cfg["data"], "visibility": "sscnet" in PROTOCOLS}}, "test")
    common = most_frequent_class(root, build_dataset(cfg, "train").ids)
    from torchssc.geometry import CLASS_NAMES

    for name, value in (("all empty", 0), (f"most frequent class ({CLASS_NAMES[common]})", common)):
        for protocol, m in score_constant(test, value, PROTOCOLS).items():
            rows.append((name, protocol, m))
    rows.sort(key=lambda r: PROTOCOLS.index(r[1]))
    table = summary_markdown(rows)
    ids = test.ids[:renders] if hasattr(test, "ids") else []
    pictures = render_examples(root, run_dir / "eval" / "results", out / "renders", ids)
    write_bytes_atomic(out / "summary.md", (f"Test rooms: {len(test)}; checkpoint {last}\n\n" + table).encode())
    write_bytes_atomic(out / "summary.json", json.dumps(
        [{"method": m, "protocol": p, "sc_iou": r["sc_iou"], "ssc_miou": r["ssc_miou"],
          "sc_precision": r["sc_precision"], "sc_recall": r["sc_recall"]} for m, p, r in rows], indent=2).encode())
    save_config(cfg, out / "demo_config.yaml")
    return {"rows": rows, "table": table, "renders": pictures, "run_dir": run_dir, "checkpoint": last}
