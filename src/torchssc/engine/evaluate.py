"""Evaluation of checkpoints under named protocols (SPEC §7): ``torchssc eval`` in library form.

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

import copy
import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from torchssc.benchmark_grid import to_label_grid
from torchssc.engine.builders import build_dataset, build_model
from torchssc.engine.checkpoint import find_last_checkpoint, list_checkpoints, load_checkpoint
from torchssc.engine.distributed import DistInfo, cleanup_distributed, init_distributed
from torchssc.engine.sampler import loader_generator, shard_indices
from torchssc.io.atomic import save_npy_atomic, write_bytes_atomic
from torchssc.metrics import NO_PIXEL_NYU, PROTOCOLS, SSCMetrics, format_results, update_all

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


def select_checkpoints(spec: str, available: dict[int, Path], last: Path | None = None) -> list[Path]:
    """The checkpoint files a ``--checkpoints`` value names.

    Args:
        spec: comma-separated items, each one of
            ``A-B`` (every available epoch in ``A..B``, inclusive; at least one must exist),
            ``N`` (epoch ``N``, which must exist), ``last`` (``last``, see below), ``all`` (every
            epoch file), or the path of a checkpoint file (anything containing ``/`` or ending
            in ``.pt``, which must exist).
        available: ``{epoch: path}`` of the run's epoch files
            (:func:`torchssc.engine.checkpoint.list_checkpoints`).
        last: the run's latest checkpoint (``last.pt``, else the highest epoch file;
            :func:`torchssc.engine.checkpoint.find_last_checkpoint`), or ``None``.
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
                f"--checkpoints {item!r}: expected A-B, N, last, all or a checkpoint path (comma-separated)"
            )
    return out


def run_checkpoints(spec: str, run_dir: str | Path | None) -> list[Path]:
    """:func:`select_checkpoints` over the files of ``run_dir`` (``None``: paths only)."""
    if run_dir is None:
        return select_checkpoints(spec, {}, None)
    return select_checkpoints(spec, list_checkpoints(run_dir), find_last_checkpoint(run_dir))


def frame_seed(seed: int, index: int) -> int:
    """The torch seed for the batch starting at split position ``index`` (independent of ranks)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


# ------------------------------------------------------------------------------------------
def _move(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _no_pixel(batch: dict) -> int:
    """``W * H`` from ``batch["intrinsics"]`` ``(B, 6)`` (fx, fy, cx, cy, W, H); NYU's otherwise."""
    intr = batch.get("intrinsics")
    if intr is None:
        return NO_PIXEL_NYU
    sizes = {int(round(float(w))) * int(round(float(h))) for w, h in intr[:, 4:6].tolist()}
    if len(sizes) != 1:
        raise ValueError(f"frames of one batch have different image sizes ({sorted(sizes)} pixels)")
    return sizes.pop()


@torch.no_grad()
def score_model(
    model: nn.Module,
    dataset: Any,
    *,
    protocols: Iterable[str],
    info: DistInfo,
    batch_size: int = 1,
    num_workers: int = 0,
    seed: int = 0,
    save_dir: str | Path | None = None,
    progress: bool = True,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, SSCMetrics]:
    """Predict this rank's shard of ``dataset`` and accumulate the metrics of every protocol.

    Args:
        model: returns ``{"semantic": (B, 12, D, H, W) logits, ...}`` from a batch dict; logits
            on another grid than the labels (ForkNet, CCPNet-style) are brought to it by
            :func:`torchssc.benchmark_grid.to_label_grid`.
        dataset: items as :class:`torchssc.data.SSCDataset` (with ``visibility`` for ``sscnet``).
        protocols: names from :data:`torchssc.metrics.PROTOCOLS`.
        info: this process's place (:func:`torchssc.engine.distributed.init_distributed`).
        seed: ``eval.seed`` (see the module docstring).
        save_dir: write ``results/<id>.npy`` and ``results_sketch/<id>.npy`` there.
        decode: ``(B, C, D, H, W)`` semantic logits -> ``(B, D, H, W)`` class ids; ``None`` is the
            protocols' rule, the argmax (SPEC §7). Another rule is a diagnostic, not a protocol.
    Returns:
        ``{protocol: SSCMetrics}``, already summed over processes (identical on every rank).
    """
    metrics = {p: SSCMetrics(p) for p in protocols}
    indices = shard_indices(len(dataset), info.rank, info.world_size)
    loader = DataLoader(
        Subset(dataset, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        generator=loader_generator(seed, info.rank),
    )
    if hasattr(model, "seed"):
        model.seed = int(seed)
    model.eval()
    position = 0  # position in this rank's shard
    for batch in tqdm(loader, desc=f"eval rank {info.rank}", disable=not (progress and info.is_main), leave=False):
        torch.manual_seed(frame_seed(seed, indices[position]))
        position += len(batch["id"])
        batch = _move(batch, info.device)
        outputs = model(batch)
        if "semantic" not in outputs:
            raise ValueError(f"the model returned {sorted(outputs)}; evaluation needs 'semantic'")
        # (B, D, H, W) class ids; uint8 on the device: 8x less to move and to scan than int64
        semantic = outputs["semantic"]
        pred = (semantic.argmax(1) if decode is None else decode(semantic)).to(torch.uint8)
        # a native-resolution model (ForkNet, CCPNet-style): to the label grid by the GT's rule
        pred = to_label_grid(pred, tuple(batch["label"].shape[1:]))
        update_all(  # one pass over the voxels for every protocol
            metrics.values(),
            pred,
            batch["label"],
            label_weight=batch.get("label_weight"),
            mapping=batch.get("mapping"),
            visibility=batch.get("visibility"),
            no_pixel=_no_pixel(batch),
        )
        if save_dir is not None:
            sketch = outputs.get("sketch_prior", outputs.get("sketch_raw"))
            pred_np = pred.cpu().numpy()
            sketch_np = None if sketch is None else sketch.argmax(1).to(torch.uint8).cpu().numpy()
            for i, frame_id in enumerate(batch["id"]):
                save_npy_atomic(Path(save_dir) / "results" / f"{frame_id}.npy", pred_np[i])
                if sketch_np is not None:
                    save_npy_atomic(Path(save_dir) / "results_sketch" / f"{frame_id}.npy", sketch_np[i])
    for m in metrics.values():
        m.all_reduce()
    return metrics


# ------------------------------------------------------------------------------------------
def json_ready(value: Any) -> Any:
    """NaN / inf -> None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_report(out_dir: str | Path, stem: str, record: dict) -> tuple[Path, Path]:
    """Write ``<out_dir>/<stem>_<protocol>.json`` and ``.md`` atomically; returns both paths.

    ``record`` holds ``protocol``, ``metrics`` (:meth:`SSCMetrics.compute`) and context
    (``checkpoint``, ``epoch``, ``iteration``, ``split``, ``frames``, ``seed``, ``world_size``).
    JSON stores fractions (``null`` = undefined); the markdown shows percentages.
    """
    out_dir = Path(out_dir)
    protocol = record["protocol"]
    base = out_dir / f"{stem}_{protocol}"
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    write_bytes_atomic(json_path, (json.dumps(json_ready(record), indent=2, allow_nan=False) + "\n").encode())
    title = f"{stem} (epoch {record.get('epoch')}) on split '{record.get('split')}'"
    text = format_results(record["metrics"], title=title)
    text += f"\nCheckpoint `{record.get('checkpoint')}`, {record.get('frames')} frames, eval seed {record.get('seed')}.\n"
    write_bytes_atomic(md_path, text.encode())
    return json_path, md_path


def evaluate_checkpoints(
    cfg: dict,
    checkpoints: list[Path],
    *,
    protocols: list[str],
    split: str = "test",
    out_dir: str | Path | None = None,
    save_dir: str | Path | None = None,
    progress: bool = True,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
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
        decode: how logits become class ids (:func:`score_model`; ``None``: the argmax).
    Returns:
        One record per (checkpoint, protocol), in that order: ``{"protocol", "checkpoint",
        "epoch", "iteration", "split", "frames", "seed", "world_size", "metrics"}``.
    """
    if not checkpoints:
        raise ValueError("no checkpoint to evaluate")
    cfg = copy.deepcopy(cfg)
    if "sscnet" in protocols:
        cfg["data"]["visibility"] = True
    info = init_distributed(cfg["train"]["device"])
    records: list[dict] = []
    try:
        dataset = build_dataset(cfg, split)
        model = build_model(cfg).to(info.device)
        seed = int(cfg["eval"]["seed"])
        stems = [Path(p).stem for p in checkpoints]
        for path, stem in zip(checkpoints, stems):
            state = load_checkpoint(path, map_location="cpu")
            try:
                model.load_state_dict(state["model"])
            except RuntimeError as exc:
                raise ValueError(f"{path}: weights do not fit model {cfg['model']['name']!r}: {exc}") from None
            saved_model = state.get("config", {}).get("model") if isinstance(state.get("config"), dict) else None
            if saved_model is not None and saved_model != cfg["model"]:
                logger.warning("%s: trained with model %s, evaluating with %s", path, saved_model, cfg["model"])
            target = None
            if save_dir is not None:
                target = Path(save_dir) if len(checkpoints) == 1 else Path(save_dir) / stem
            metrics = score_model(
                model,
                dataset,
                protocols=protocols,
                info=info,
                batch_size=int(cfg["eval"]["batch_size"]),
                num_workers=int(cfg["data"]["num_workers"]),
                seed=seed,
                save_dir=target,
                progress=progress,
                decode=decode,
            )
            for protocol in protocols:
                record = {
                    "protocol": protocol,
                    "checkpoint": str(path),
                    "epoch": int(state["epoch"]),
                    "iteration": int(state["iteration"]),
                    "split": split,
                    "frames": len(dataset),
                    "seed": seed,
                    "world_size": info.world_size,
                    "metrics": metrics[protocol].compute(),
                }
                records.append(record)
                if info.is_main and out_dir is not None:
                    json_path, _ = write_report(out_dir, stem, record)
                    logger.info("wrote %s (+ .md)", json_path)
    finally:
        cleanup_distributed(info)
    return records


def summary_table(records: list[dict]) -> str:
    """A markdown table, one row per (checkpoint, protocol), in percent, naming the protocol."""

    def pct(v: float) -> str:
        return "n/a" if v is None or math.isnan(v) else f"{100.0 * v:.1f}"

    lines = [
        "| checkpoint | epoch | protocol | SC precision | SC recall | SC IoU | SSC mIoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        m = r["metrics"]
        lines.append(
            f"| {Path(r['checkpoint']).name} | {r['epoch']} | {r['protocol']} | {pct(m['sc_precision'])} | "
            f"{pct(m['sc_recall'])} | {pct(m['sc_iou'])} | {pct(m['ssc_miou'])} |"
        )
    return "\n".join(lines)
