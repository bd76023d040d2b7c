"""The out-of-the-box job: synthetic rooms → prepare → train → evaluate → renders.

Everything runs on the CPU with no download: ``torchssc demo`` generates procedural rooms in the
raw depthbin format (:mod:`torchssc.synth`), prepares them exactly as NYU
(:mod:`torchssc.prepare`), trains the small SketchAwareSSC recipe
(the shipped recipe ``sketch_aware_ssc_synth_cpu``), evaluates the last checkpoint on the held-out
rooms under the ``torchssc``, ``sscnet`` and ``all`` protocols next to two trivial baselines scored by the
same code — *all empty* and *most frequent class* (every voxel gets the class that is most
frequent among the occupied, weighted training voxels) — and renders ground truth next to
prediction for a few test rooms. The baselines are tiny models
(:mod:`torchssc.models.constant`) scored by :func:`torchssc.engine.evaluate.score_model`, the code
that scores the trained one. Every step is resumable: a second run reuses what exists.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch.nn as nn

from torchssc.geometry import CLASS_NAMES
from torchssc.io.atomic import write_bytes_atomic
from torchssc.metrics import PROTOCOLS
from torchssc.report import scores_table

logger = logging.getLogger(__name__)

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


def baselines(cfg: dict) -> dict[str, nn.Module]:
    """The trivial baselines, as models (:class:`~torchssc.models.constant.ConstantSSC`): *all empty*
    and *most frequent class* (of the recipe's training split), by name."""
    from torchssc.io.prepared import read_split
    from torchssc.models.constant import ConstantSSC

    root = Path(cfg["data"]["root"])
    common = most_frequent_class(root, read_split(root, cfg["data"]["train_split"]))
    return {"all empty": ConstantSSC(0), f"most frequent class ({CLASS_NAMES[common]})": ConstantSSC(common)}


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
    from torchssc.engine.checkpoint import find_last_checkpoint, list_checkpoints
    from torchssc.engine.evaluate import evaluate_checkpoints, score_model, scoring_dataset
    from torchssc.engine.train import main as train_main

    out = Path(out)
    root = make_data(out, frames=frames, test_fraction=test_fraction, seed=seed, workers=workers)
    settings = [f"data.root={root}", f"run.dir={out}", "run.name=run", *overrides]
    cfg = load_config(RECIPE if config is None else config, settings)
    run_dir = out / "run"
    epochs = int(cfg["train"]["epochs"])
    done = list_checkpoints(run_dir)
    if not done or max(done) < epochs:
        train_main(cfg, resume=bool(done))
    last = find_last_checkpoint(run_dir)
    records = evaluate_checkpoints(cfg, [last], protocols=list(PROTOCOLS), split="test",
                                   out_dir=run_dir / "eval", save_dir=run_dir / "eval", progress=True)
    rows = [("SketchAwareSSC (lite)", r["protocol"], r["metrics"]) for r in records]
    test = scoring_dataset(cfg, "test", PROTOCOLS)
    for name, model in baselines(cfg).items():  # scored by the same code as the trained model
        scores = score_model(model, test, protocols=PROTOCOLS, seed=cfg["eval"]["seed"], progress=False)
        rows += [(name, p, scores.metrics[p].compute()) for p in PROTOCOLS]
    rows.sort(key=lambda r: PROTOCOLS.index(r[1]))
    table = scores_table(["method", "protocol"], [([m, p], r) for m, p, r in rows]) + "\n"
    ids = test.ids[:renders] if hasattr(test, "ids") else []
    pictures = render_examples(root, run_dir / "eval" / "results", out / "renders", ids)
    write_bytes_atomic(out / "summary.md", (f"Test rooms: {len(test)}; checkpoint {last}\n\n" + table).encode())
    write_bytes_atomic(out / "summary.json", json.dumps(
        [{"method": m, "protocol": p, "sc_iou": r["sc_iou"], "ssc_miou": r["ssc_miou"],
          "sc_precision": r["sc_precision"], "sc_recall": r["sc_recall"]} for m, p, r in rows], indent=2).encode())
    save_config(cfg, out / "demo_config.yaml")
    return {"rows": rows, "table": table, "renders": pictures, "run_dir": run_dir, "checkpoint": last}
