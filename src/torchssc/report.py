"""Every table torchssc prints or writes, rendered in one place with one number format.

Scores are fractions in [0, 1] (:meth:`torchssc.metrics.SSCMetrics.compute`); tables show them in
percent with one decimal, and ``n/a`` where a score is undefined (``None`` or ``nan``). Every table
names the protocol its numbers were scored under.

* :func:`metrics_report` — one protocol's result in full (SC, mIoU, per-class IoU): ``torchssc
  eval`` prints and writes it per checkpoint;
* :func:`scores_table` — one row per scored thing (a checkpoint, a method) and protocol: the
  summaries of ``torchssc eval`` and ``torchssc demo``;
* :func:`markdown_table` and :func:`percent` — the two pieces the others (and the benchmarks'
  tables) are made of.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

SCORE_KEYS = ("sc_precision", "sc_recall", "sc_iou", "ssc_miou")
"""The headline scores of a protocol, in table order."""
SCORE_HEADS = ("SC precision", "SC recall", "SC IoU", "SSC mIoU")
"""Column titles of :data:`SCORE_KEYS`."""


def percent(value: float | None) -> str:
    """``0.6667 -> "66.7"``; ``None`` or ``nan`` (an undefined score) -> ``"n/a"``."""
    return "n/a" if value is None or math.isnan(value) else f"{100.0 * value:.1f}"


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[str]], align: str | None = None) -> str:
    """A markdown table (no trailing newline).

    Args:
        head: column titles.
        rows: cells, already formatted, one sequence per row (``len(head)`` cells).
        align: one letter per column, ``l`` (default) or ``r`` (right-aligned numbers).
    """
    align = align or "l" * len(head)
    if len(align) != len(head):
        raise ValueError(f"align {align!r} has {len(align)} letters for {len(head)} columns")
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(head) + " |", rule]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def scores_table(labels: Sequence[str], rows: Iterable[tuple[Sequence[str], dict[str, Any]]]) -> str:
    """One row per ``(label cells, metrics)``: the label columns, then :data:`SCORE_HEADS` in percent.

    Args:
        labels: titles of the leading columns, e.g. ``("method", "protocol")``.
        rows: ``(cells for those columns, SSCMetrics.compute() result)``.
    """
    body = [[*cells, *(percent(metrics[k]) for k in SCORE_KEYS)] for cells, metrics in rows]
    return markdown_table([*labels, *SCORE_HEADS], body)


def metrics_report(results: dict[str, Any], title: str = "") -> str:
    """One protocol's result in full: its scope, the headline scores, and the per-class IoU.

    Args:
        results: :meth:`torchssc.metrics.SSCMetrics.compute`.
        title: optional heading text (e.g. the checkpoint's name).
    """
    proto = results["protocol"]
    lines = [f"## {title} — protocol `{proto}`", ""] if title else []
    lines += [
        f"Protocol: `{proto}` — {results['scenes']} scenes, {results['ssc_voxels']} SSC voxels, "
        f"{results['sc_voxels']} SC voxels; SC {results['sc_aggregation']}.",
        "",
        scores_table(["protocol"], [([proto], results)]),
        "",
    ]
    names = list(results["ssc_iou"])
    per_class = [percent(results["ssc_iou"][n]) for n in names] + [percent(results["ssc_miou"])]
    lines += [markdown_table([f"SSC IoU ({proto})", *names, "mIoU"], [["IoU", *per_class]]), ""]
    if results["ssc_miou_classes"] != len(names):
        lines += [f"mIoU averages the {results['ssc_miou_classes']} classes present (others n/a).", ""]
    return "\n".join(lines)
