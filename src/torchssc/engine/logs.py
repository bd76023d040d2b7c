"""What runs and commands write besides checkpoints: console logging, ``log.jsonl``, TensorBoard.

* :func:`setup_logging` — the console logging of ``torchssc train`` and ``torchssc eval``: rank 0
  talks, the other ranks keep their warnings and errors.
* :func:`json_ready` — any result (tensors, numpy scalars, NaN) as strict JSON values.
* :class:`RunLog` — a run folder's ``log.jsonl`` (one JSON row per epoch, or part of an epoch)
  and ``tensorboard/`` events, written by rank 0 only.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch

from torchssc.io.atomic import atomic_path, naming_full_disk

logger = logging.getLogger("torchssc.train")


def setup_logging() -> None:
    """INFO messages of ``torchssc.*`` on rank 0 (``$RANK``), warnings and errors elsewhere."""
    rank = int(os.environ.get("RANK", "0") or 0)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("torchssc").setLevel(logging.INFO if rank == 0 else logging.WARNING)


def json_ready(value: Any) -> Any:
    """A copy that strict JSON can hold: tensors and numpy scalars become Python numbers (or
    lists), NaN and infinities become ``None``, recursively through dicts, lists and tuples."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if torch.is_tensor(value):
        return json_ready(value.item() if value.numel() == 1 else value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLog:
    """The logs of one run folder: ``log.jsonl`` and ``tensorboard/``.

    A resumed run first drops the rows of the epochs it will redo (those after ``iteration``) and
    purges the TensorBoard events after it. With ``enabled=False`` (ranks other than 0) nothing
    is written.

    Args:
        run_dir: the run folder.
        iteration: completed iterations the run starts from (0: a fresh run).
    """

    def __init__(self, run_dir: str | os.PathLike, *, iteration: int = 0, enabled: bool = True) -> None:
        self.path = Path(run_dir) / "log.jsonl"
        self.writer = None
        if not enabled:
            return
        truncate_rows(self.path, iteration)
        from torch.utils.tensorboard import SummaryWriter

        purge = iteration + 1 if iteration else None  # events after the resumed iteration are redone
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=purge)

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        """TensorBoard scalars ``<prefix>/<key>`` (nested dicts give nested names; non-numbers are
        skipped)."""
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, dict):
                self.scalars(f"{prefix}/{key}", value, step)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def epoch(self, row: dict) -> None:
        """Record the end of an epoch (or of the part of one a run stopped in).

        ``row``: ``{"epoch", "iteration", "complete", "lr", "time_s", "samples_per_s", "train":
        {term: mean}, ["val": validation scores], ["checkpoint": path]}``.
        """
        if self.writer is None:
            return
        append_row(self.path, row)
        step = row["iteration"]
        if "val" in row:
            self.scalars("val", row["val"], step)
        self.writer.add_scalar("epoch/lr", row["lr"], step)
        self.scalars("epoch", row["train"], step)
        self.writer.flush()
        logger.info(
            "epoch %d it %d: %s lr %.4g %.2f samples/s%s",
            row["epoch"],
            step,
            " ".join(f"{k} {v:.4f}" for k, v in row["train"].items()),
            row["lr"],
            row["samples_per_s"],
            f" val {json.dumps(row['val'])}" if "val" in row else "",
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def append_row(path: Path, row: dict) -> None:
    """Append one JSON line (a single write, flushed); a full disk is one error naming ``path``."""
    with naming_full_disk(path), open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(json_ready(row)) + "\n")
        fh.flush()


def truncate_rows(path: Path, iteration: int) -> None:
    """Drop rows written after ``iteration`` (epochs a resumed run will redo); atomic rewrite."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("iteration", 0) <= iteration:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a crash
    if iteration == 0:
        kept = []
    if len(kept) != len(lines):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
