"""Scoring under named protocols (docs/evaluation.md): ``torchssc eval`` in library form.

:func:`score_model` is the one scoring loop: ``torchssc eval`` (:func:`evaluate_checkpoints`),
validation during training (:func:`validation_scores`) and the trivial baselines
(:mod:`torchssc.models.constant`) all go through it, so they count the same voxels the same way.

One code path for 1 process and for N processes under ``torchrun``: rank ``r`` of ``W`` predicts
frames ``r, r+W, r+2W, ...`` of the split (no duplicates, no padding), and the metric counts are
summed with ``all_reduce`` (:meth:`torchssc.metrics.SSCMetrics.all_reduce`), so the result does
not depend on ``W``.

Determinism: before each batch the global torch RNG is seeded from ``(eval.seed, index of the
batch's first frame in the split)``, and a model with a ``seed`` attribute (SketchAwareSSC's
seeded CVAE prior samples) gets ``eval.seed``; with the default ``eval.batch_size: 1`` a frame's
prediction depends only on the frame, the weights and the seed. Inference runs in float32.

Outputs (rank 0, atomically): ``<out_dir>/<checkpoint stem>_<protocol>.json`` and ``.md`` with
SC precision / recall / IoU, per-class SSC IoU and mIoU, always labelled with the protocol's
name. With ``save_dir``, every rank writes its frames' ``results/<id>.npy`` (``(60, 36, 60) uint8``
semantic argmax) and ``results_sketch/<id>.npy`` (``uint8`` argmax of the sketch the paper
evaluates: ``sketch_prior``, the CVAE prior sketch the original returned at inference; else
``sketch_raw``), as TorchSSC's ``--save_path`` did.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from torchssc.label_grid_rule import to_label_grid
from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.engine.builders import build_dataset, run_inputs
from torchssc.engine.checkpoint import find_last_checkpoint, list_checkpoints, load_model
from torchssc.engine.distributed import DistInfo, all_reduce_sum, cleanup_distributed, init_distributed
from torchssc.engine.logs import json_ready
from torchssc.engine.sampler import loader_generator, move_to_device, shard_indices
from torchssc.geometry import IGNORE_LABEL
from torchssc.io.atomic import save_npy_atomic, write_bytes_atomic
from torchssc.metrics import PROTOCOLS, SSCMetrics, update_all
from torchssc.report import metrics_report

logger = logging.getLogger("torchssc.eval")

EVERY = "every"
"""``--protocol every``: all of :data:`torchssc.metrics.PROTOCOLS` (``all`` is itself a protocol)."""

_RANGE_RE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


# ------------------------------------------------------------------------------------------
# Argument parsing helpers
def parse_protocols(text: str) -> list[str]:
    """Protocol names from ``"torchssc"``, a comma list ``"torchssc,sscnet,all"`` or ``"every"``.

    ``all`` is the MonoScene protocol (every voxel with a label), not "every protocol".
    Returns the names in the order given, without repeats. ``ValueError`` on an unknown name.
    """
    names: list[str] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        chosen = list(PROTOCOLS) if part == EVERY else [part]
        for name in chosen:
            if name not in PROTOCOLS:
                raise ValueError(
                    f"unknown protocol {name!r}: choose from {', '.join(PROTOCOLS)}, a comma list of them, "
                    f"or '{EVERY}' for all three ('all' is the MonoScene protocol)"
                )
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError(f"no protocol given in {text!r}")
    return names


def select_checkpoints(
    spec: str, available: dict[int, Path], last: Path | None = None, best: Path | None = None
) -> list[Path]:
    """The checkpoint files a ``--checkpoints`` value names.

    Args:
        spec: comma-separated items, each one of
            ``A-B`` (every available epoch in ``A..B``, inclusive; at least one must exist),
            ``N`` (epoch ``N``, which must exist), ``last`` (``last``, see below), ``all`` (every
            epoch file), ``best`` (``best``, see below), or the path of a checkpoint file
            (anything containing ``/`` or ending in ``.pt``, which must exist).
        available: ``{epoch: path}`` of the run's epoch files
            (:func:`torchssc.engine.checkpoint.list_checkpoints`).
        last: the run's latest checkpoint (``last.pt``, else the highest epoch file;
            :func:`torchssc.engine.checkpoint.find_last_checkpoint`), or ``None``.
        best: the checkpoint chosen on validation (:func:`best_checkpoint`), or ``None``.
    Returns:
        Paths in the order named (ranges and ``all`` in epoch order), without repeats.
    Raises:
        ValueError: a malformed item, an empty or reversed range, or nothing to evaluate.
        FileNotFoundError: a named epoch, ``last`` or a path that does not exist.
    """
    out: list[Path] = []

    def add(path: Path) -> None:
        if path not in out:
            out.append(path)

    have = ", ".join(str(e) for e in sorted(available)) or "none"
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not items:
        raise ValueError(f"--checkpoints {spec!r}: nothing named")
    for item in items:
        match = _RANGE_RE.match(item)
        if item == "all":
            if not available:
                raise FileNotFoundError("--checkpoints all: the run has no epoch_<NNNN>.pt checkpoints")
            for epoch in sorted(available):
                add(available[epoch])
        elif item == "last":
            if last is None:
                raise FileNotFoundError("--checkpoints last: the run has no checkpoint")
            add(Path(last))
        elif item == "best":
            if best is None:
                raise FileNotFoundError("--checkpoints best: no checkpoint chosen on validation")
            add(Path(best))
        elif match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if lo > hi:
                raise ValueError(f"--checkpoints {item!r}: range start {lo} is after its end {hi}")
            epochs = [e for e in sorted(available) if lo <= e <= hi]
            if not epochs:
                raise FileNotFoundError(f"--checkpoints {item!r}: no epoch checkpoint in {lo}..{hi} (have: {have})")
            for epoch in epochs:
                add(available[epoch])
        elif item.isdigit():
            epoch = int(item)
            if epoch not in available:
                raise FileNotFoundError(f"--checkpoints {item!r}: no checkpoint for epoch {epoch} (have: {have})")
            add(available[epoch])
        elif "/" in item or item.endswith(".pt"):
            path = Path(item)
            if not path.is_file():
                raise FileNotFoundError(f"--checkpoints {item!r}: no such checkpoint file")
            add(path)
        else:
            raise ValueError(
                f"--checkpoints {item!r}: expected A-B, N, last, best, all or a checkpoint path (comma-separated)"
            )
    return out


def run_checkpoints(spec: str, run_dir: str | Path | None) -> list[Path]:
    """:func:`select_checkpoints` over the files of ``run_dir`` (``None``: paths only)."""
    if run_dir is None:
        return select_checkpoints(spec, {}, None)
    available = list_checkpoints(run_dir)
    best = best_checkpoint(run_dir, available) if "best" in str(spec).split(",") else None
    return select_checkpoints(spec, available, find_last_checkpoint(run_dir), best=best)


def best_checkpoint(run_dir: str | Path, available: dict[int, Path]) -> Path:
    """The epoch checkpoint with the highest validation SSC mIoU in ``<run_dir>/log.jsonl`` (the
    validation rows written during training; ties go to the earlier epoch).

    Raises:
        FileNotFoundError: no log, or no validated epoch that has a checkpoint.
    """
    log = Path(run_dir) / "log.jsonl"
    if not log.is_file():
        raise FileNotFoundError(f"--checkpoints best: {log} does not exist (no validation recorded)")
    scored = {}
    for line in log.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        miou = (row.get("val") or {}).get("ssc_miou")
        if miou is not None and row.get("epoch") in available:
            scored[int(row["epoch"])] = float(miou)  # a resumed epoch's later row wins
    if not scored:
        raise FileNotFoundError(f"--checkpoints best: {log} has no validated epoch with a checkpoint")
    epoch = max(sorted(scored), key=lambda e: scored[e])
    logger.info("best checkpoint on validation: epoch %d (SSC mIoU %.4f) of %s", epoch, scored[epoch],
                ", ".join(f"{e}: {scored[e]:.4f}" for e in sorted(scored)))
    return available[epoch]


def frame_seed(seed: int, index: int) -> int:
    """The torch seed for the batch starting at split position ``index`` (independent of ranks)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


# ------------------------------------------------------------------------------------------
# The scoring path (``torchssc eval``, validation during training, the baselines of the demo)
VAL_KEYS = ("protocol", "sc_precision", "sc_recall", "sc_iou", "ssc_miou", "ssc_iou")
"""What :func:`validation_scores` keeps of a protocol's metrics (besides ``semantic_ce``)."""


@dataclass
class Scores:
    """What :func:`score_model` measured, summed over every process.

    Attributes:
        metrics: ``{protocol: SSCMetrics}``; ``.compute()`` gives the numbers.
        semantic_ce: mean cross-entropy of the 12-class logits over the voxels with
            ``label_weight > 0`` and ``label != 255`` of every frame (``None`` unless asked for;
            ``nan`` when there is no such voxel).
        non_finite_frames: frames whose logits hold NaN or inf (a broken model; their argmax
            is meaningless), summed over processes.
    """

    metrics: dict[str, SSCMetrics]
    semantic_ce: float | None = None
    non_finite_frames: int = 0


def scoring_dataset(cfg: dict, split: str | Sequence[str], protocols: Iterable[str],
                    model: nn.Module | None = None) -> Dataset:
    """The recipe's dataset of ``split`` with what the model and the protocols read
    (:func:`~torchssc.engine.builders.run_inputs`: e.g. the visibility volumes for ``sscnet``).

    Raises:
        FileNotFoundError: a file is missing; for a declared input, one line naming who needs it
            (the model, or ``protocol 'sscnet'``) and what provides it.
    """
    return build_dataset(cfg, split, run_inputs(cfg, model, loss=False, protocols=protocols))


def _no_pixel(batch: dict, default: int) -> int:
    """``W * H`` from ``batch["intrinsics"]`` ``(B, 6)`` (fx, fy, cx, cy, W, H); the dataset's
    (``default``) otherwise."""
    intr = batch.get("intrinsics")
    if intr is None:
        return default
    sizes = {int(round(float(w))) * int(round(float(h))) for w, h in intr[:, 4:6].tolist()}
    if len(sizes) != 1:
        raise ValueError(f"frames of one batch have different image sizes ({sorted(sizes)} pixels)")
    return sizes.pop()


def _ce_sums(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """``(2,) float64`` on the CPU: summed cross-entropy of ``logits`` ``(B, 12, D, H, W)`` over the
    voxels with ``label_weight > 0`` and ``label != 255``, and their count (zeros for a model whose
    logits are on another grid than the labels: it has no label-grid cross-entropy)."""
    label = batch["label"]  # (B, D, H, W) int64
    if logits.shape[2:] != label.shape[1:]:
        return torch.zeros(2, dtype=torch.float64)
    mask = (batch["label_weight"] > 0) & (label != IGNORE_LABEL)
    per_voxel = F.cross_entropy(logits.float(), label, ignore_index=IGNORE_LABEL, reduction="none")
    return torch.stack([per_voxel[mask].sum().double().cpu(), mask.sum().double().cpu()])


def _save_predictions(save_dir: Path, batch: dict, pred: torch.Tensor, outputs: dict) -> None:
    """``results/<id>.npy`` (``pred``, ``(B, D, H, W) uint8``) and ``results_sketch/<id>.npy`` (the
    argmax of ``sketch_prior``, else ``sketch_raw``, when the model returns one)."""
    sketch = outputs.get("sketch_prior", outputs.get("sketch_raw"))
    pred_np = pred.cpu().numpy()
    sketch_np = None if sketch is None else sketch.argmax(1).to(torch.uint8).cpu().numpy()
    for i, frame_id in enumerate(batch["id"]):
        save_npy_atomic(save_dir / "results" / f"{frame_id}.npy", pred_np[i])
        if sketch_np is not None:
            save_npy_atomic(save_dir / "results_sketch" / f"{frame_id}.npy", sketch_np[i])


@torch.no_grad()
def score_model(
    model: nn.Module,
    dataset: Dataset,
    *,
    protocols: Iterable[str],
    info: DistInfo | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    seed: int = 0,
    save_dir: str | Path | None = None,
    progress: bool = True,
    cross_entropy: bool = False,
    name: str = "the model",
    spec: DatasetSpec | None = None,
) -> Scores:
    """Predict this rank's shard of ``dataset`` and score it under every protocol.

    The one scoring loop: ``torchssc eval``, validation during training and the trivial
    baselines all come through here. Frames are sharded over ranks (:func:`shard_indices`),
    each batch is predicted after seeding the torch RNG with :func:`frame_seed` (and
    ``model.seed``, when the model has one, with ``seed``), the prediction is the argmax over
    the classes, and the counts are summed over processes. The caller's RNG streams and the
    model's train/eval mode are restored afterwards. Frames whose logits are not finite are
    counted, and rank 0 warns in one line naming ``name`` (e.g. the checkpoint) and the count.

    Args:
        model: returns ``{"semantic": (B, 12, D, H, W) logits, ...}`` from a batch dict; logits
            on another grid than the labels (ForkNet, CCPNet-style) are brought to it by
            :func:`torchssc.label_grid_rule.to_label_grid`.
        dataset: items as :class:`torchssc.data.SSCDataset` (``visibility`` for ``sscnet``:
            :func:`scoring_dataset`).
        protocols: names from :data:`torchssc.metrics.PROTOCOLS`.
        info: this process's place (:func:`torchssc.engine.distributed.init_distributed`);
            ``None``: one process on the CPU.
        seed: ``eval.seed`` (see the module docstring).
        save_dir: write ``results/<id>.npy`` and ``results_sketch/<id>.npy`` there.
        cross_entropy: also measure :attr:`Scores.semantic_ce`.
        name: what the non-finite warning calls the model.
        spec: the dataset's declaration (classes, image size); default the dataset's own
            (``dataset.spec``), else NYU.
    Returns:
        :class:`Scores`, identical on every rank.
    """
    info = info or DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    spec = spec or getattr(dataset, "spec", None) or get_dataset_spec("nyu")
    metrics = {p: SSCMetrics(p, spec.num_classes, class_names=spec.classes, no_pixel=spec.no_pixel)
               for p in protocols}
    ce = torch.zeros(2, dtype=torch.float64)
    non_finite = torch.zeros(1, dtype=torch.float64, device=info.device)  # frames; no sync per batch
    indices = shard_indices(len(dataset), info.rank, info.world_size)
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        generator=loader_generator(seed, info.rank))
    if hasattr(model, "seed"):
        model.seed = int(seed)
    was_training = model.training
    model.eval()
    position = 0  # position in this rank's shard
    with torch.random.fork_rng(devices=[info.device] if info.device.type == "cuda" else []):
        for batch in tqdm(loader, desc=f"eval rank {info.rank}", disable=not (progress and info.is_main), leave=False):
            torch.manual_seed(frame_seed(seed, indices[position]))
            position += len(batch["id"])
            batch = move_to_device(batch, info.device)
            outputs = model(batch)
            if "semantic" not in outputs:
                raise ValueError(f"the model returned {sorted(outputs)}; evaluation needs 'semantic'")
            non_finite += (~torch.isfinite(outputs["semantic"]).flatten(1).all(1)).sum()
            # (B, D, H, W) class ids; uint8 on the device: 8x less to move and to scan than int64
            pred = outputs["semantic"].argmax(1).to(torch.uint8)
            # a native-resolution model (ForkNet, CCPNet-style): to the label grid by the GT's rule
            pred = to_label_grid(pred, tuple(batch["label"].shape[1:]), spec.fine_factor, spec.num_classes)
            update_all(  # one pass over the voxels for every protocol
                metrics.values(), pred, batch["label"], label_weight=batch.get("label_weight"),
                mapping=batch.get("mapping"), visibility=batch.get("visibility"), no_pixel=_no_pixel(batch, spec.no_pixel),
            )
            if cross_entropy:
                ce += _ce_sums(outputs["semantic"], batch)
            if save_dir is not None:
                _save_predictions(Path(save_dir), batch, pred, outputs)
    model.train(was_training)
    for m in metrics.values():
        m.all_reduce()
    bad = _warn_non_finite(non_finite, len(dataset), name, info)
    if not cross_entropy:
        return Scores(metrics, non_finite_frames=bad)
    ce = all_reduce_sum(ce.to(info.device) if info.device.type == "cuda" else ce).cpu()
    return Scores(metrics, (ce[0] / ce[1]).item() if ce[1] > 0 else math.nan, non_finite_frames=bad)


def _warn_non_finite(count: torch.Tensor, frames: int, name: str, info: DistInfo) -> int:
    """Sum this rank's count of frames with non-finite logits over processes; rank 0 warns in one
    line when there are any. Returns the total."""
    total = int(all_reduce_sum(count).item())
    if total and info.is_main:
        logger.warning("%s: non-finite logits (NaN/inf) for %d of %d frames: the model is broken and its "
                       "scores of those frames mean nothing", name, total, frames)
    return total


def validation_scores(
    model: nn.Module,
    dataset: Dataset,
    *,
    protocol: str,
    info: DistInfo | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    seed: int = 0,
) -> dict:
    """Validation during training: :func:`score_model` under one protocol, with the cross-entropy.

    Returns:
        ``{"semantic_ce", "protocol", "sc_precision", "sc_recall", "sc_iou", "ssc_miou",
        "ssc_iou"}`` as JSON values (fractions in [0, 1], ``None`` when undefined): the numbers
        ``torchssc eval`` gives for the same weights, frames, protocol, batch size and seed.
    """
    scores = score_model(model, dataset, protocols=[protocol], info=info, batch_size=batch_size,
                         num_workers=num_workers, seed=seed, progress=False, cross_entropy=True)
    computed = scores.metrics[protocol].compute()
    return json_ready({"semantic_ce": scores.semantic_ce, **{k: computed[k] for k in VAL_KEYS}})


# ------------------------------------------------------------------------------------------
def write_report(out_dir: str | Path, stem: str, record: dict) -> tuple[Path, Path]:
    """Write ``<out_dir>/<stem>_<protocol>.json`` and ``.md`` atomically; returns both paths.

    ``record`` holds ``protocol``, ``metrics`` (:meth:`SSCMetrics.compute`) and context
    (``checkpoint``, ``epoch``, ``iteration``, ``split``, ``frames``, ``seed``, ``world_size``).
    JSON stores fractions (``null`` = undefined); the markdown shows percentages.
    """
    out_dir = Path(out_dir)
    base = out_dir / f"{stem}_{record['protocol']}"
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    write_bytes_atomic(json_path, (json.dumps(json_ready(record), indent=2, allow_nan=False) + "\n").encode())
    text = metrics_report(record["metrics"], title=record_title(record))
    text += (f"\nCheckpoint `{record.get('checkpoint')}`, {record.get('frames')} frames, "
             f"eval seed {record.get('seed')}.\n")
    write_bytes_atomic(md_path, text.encode())
    return json_path, md_path


def record_title(record: dict) -> str:
    """``"epoch_0003 (epoch 3) on split 'test'"``: the heading of a record's report."""
    return f"{Path(record['checkpoint']).stem} (epoch {record.get('epoch')}) on split '{record.get('split')}'"


def evaluate_checkpoints(
    cfg: dict,
    checkpoints: list[Path],
    *,
    protocols: list[str],
    split: str = "test",
    out_dir: str | Path | None = None,
    save_dir: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Evaluate each checkpoint on ``split`` under each protocol; the engine of ``torchssc eval``.

    Args:
        cfg: resolved recipe (:func:`torchssc.config.load_config`); reads ``model``, ``data``,
            ``eval.batch_size``, ``eval.seed`` and ``train.device``.
        checkpoints: files from :func:`select_checkpoints`.
        protocols: from :func:`parse_protocols`; ``sscnet`` loads the visibility volumes.
        out_dir: where rank 0 writes the JSON / markdown reports (``None``: nothing written).
        save_dir: also save per-frame predictions (one checkpoint: ``save_dir/results``; several:
            ``save_dir/<checkpoint stem>/results``).
    Returns:
        One record per (checkpoint, protocol), in that order: ``{"protocol", "checkpoint",
        "epoch", "iteration", "split", "frames", "seed", "world_size", "non_finite_frames",
        "metrics"}`` (``non_finite_frames``: frames whose logits held NaN/inf, warned about).
    """
    if not checkpoints:
        raise ValueError("no checkpoint to evaluate")
    info = init_distributed(cfg["train"]["device"])
    records: list[dict] = []
    try:
        dataset = None
        seed = int(cfg["eval"]["seed"])
        for path in checkpoints:
            model, state = load_model(path, cfg, device=info.device)
            if dataset is None:  # the model's declared inputs decide what is loaded
                dataset = scoring_dataset(cfg, split, protocols, model)
            target = None
            if save_dir is not None:
                target = Path(save_dir) if len(checkpoints) == 1 else Path(save_dir) / Path(path).stem
            scores = score_model(model, dataset, protocols=protocols, info=info,
                                 batch_size=int(cfg["eval"]["batch_size"]), num_workers=int(cfg["data"]["num_workers"]),
                                 seed=seed, save_dir=target, progress=progress, name=str(path))
            for protocol in protocols:
                record = {"protocol": protocol, "checkpoint": str(path), "epoch": int(state["epoch"]),
                          "iteration": int(state["iteration"]), "split": split, "frames": len(dataset), "seed": seed,
                          "world_size": info.world_size, "non_finite_frames": scores.non_finite_frames,
                          "metrics": scores.metrics[protocol].compute()}
                records.append(record)
                if info.is_main and out_dir is not None:
                    json_path, _ = write_report(out_dir, Path(path).stem, record)
                    logger.info("wrote %s (+ .md)", json_path)
    finally:
        cleanup_distributed(info)
    return records
