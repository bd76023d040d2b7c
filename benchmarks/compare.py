"""Equal-budget comparison of registered models: train, score and measure each in one run.

The engine of ``benchmarks/compare_models.py`` (import it with ``benchmarks/`` on ``sys.path``,
as that script and ``tests/benchmarks`` do). Every model is trained with **its own recipe**
(the shipped ``<recipe>_synth_cpu``: its loss, model kwargs and data flags) but with the same
budget keys overridden identically (:meth:`Budget.overrides`: iterations x batch, constant LR,
seed, sampler, data split, device), then scored on the ``test`` split under each protocol. In the
same run, per model:

* a **training process** (fresh ``multiprocessing`` spawn process): ``torchssc.engine.train.main``
  on the train split, timed with ``time.process_time`` (CPU seconds of every thread of that
  process; ``data.num_workers`` is forced to 0 so data loading is counted too); its peak RSS is
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` read right after training (the process's peak
  resident set: interpreter, torch, data, model, optimiser). The same process then evaluates the
  last checkpoint with :func:`torchssc.engine.evaluate.evaluate_checkpoints` (after the
  measurements, so they do not include it);
* an **inference process** (another fresh spawn process): builds the model, loads the checkpoint,
  counts the trainable parameters, runs one warm-up forward then ``infer_frames`` timed forwards
  (batch 1, ``eval()``, ``torch.no_grad``) on the first test frames — only ``model(batch)`` is
  timed, not loading — and reports CPU seconds per frame and its peak RSS.

A model whose training or inference raises is reported in its row (exception type and message);
the other models still run. With ``spawn=False`` both steps run in the calling process (tests):
the times are still the calls', but the peak RSS is then the caller's, not the model's.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import queue as queue_module
import resource
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from torchssc.metrics import PROTOCOLS
from torchssc.report import markdown_table, percent

logger = logging.getLogger("torchssc.compare")

DEFAULT_MODELS = (
    "sketch_aware_ssc_lite",
    "sscnet",
    "ddrnet",
    "aicnet",
    "vvnet_r120",
    "forknet",
    "ccpnet_style",
)
"""The models compared by default, in table order (one registered name a line: add yours)."""
REQUIRED_DIRS = ("TSDFFine", "Depth", "Visibility", "RGB", "ForkNet", "LabelFine")
"""Prepared folders the default models need between them (SSCNet, CCPNet-style: TSDFFine; VVNet,
DDRNet, AICNet: Depth; the ``sscnet`` protocol: Visibility; SketchAwareSSC, DDRNet, AICNet: RGB;
ForkNet: ForkNet; CCPNet-style: LabelFine)."""

METRIC_KEYS = ("sc_precision", "sc_recall", "sc_iou", "ssc_miou", "ssc_iou", "scenes")
"""What each protocol's record keeps of :meth:`torchssc.metrics.SSCMetrics.compute`."""


# ------------------------------------------------------------------------------------------
# Budget, recipes, data
@dataclass(frozen=True)
class Budget:
    """What every model gets identically.

    Attributes:
        iters: training iterations (one epoch of ``iters``). batch: global batch per iteration.
        lr: constant learning rate. seed: training seed, also the evaluation seed.
        sampler: ``train.sampler`` (``shuffle``: every model sees the same frames in the same order).
        device: ``cpu`` or ``cuda``. threads: torch intra-op threads per process (0: torch default).
    """

    iters: int
    batch: int
    lr: float
    seed: int = 0
    sampler: str = "shuffle"
    device: str = "cpu"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.iters < 1 or self.batch < 1:
            raise ValueError(f"iters and batch must be >= 1, got iters={self.iters} batch={self.batch}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")

    def overrides(self, root: str | os.PathLike, runs: str | os.PathLike, name: str) -> list[str]:
        """The ``key=value`` overrides applied to every recipe (the run goes to ``<runs>/<name>``)."""
        return [
            f"data.root={json.dumps(str(Path(root)))}",  # quoted: any path is a YAML string
            "data.train_split=train",
            "data.val_split=null",
            "data.val_fraction=0.0",
            "data.num_workers=0",
            "train.epochs=1",
            f"train.iters_per_epoch={self.iters}",
            f"train.global_batch={self.batch}",
            "train.max_iters=null",
            f"train.seed={self.seed}",
            f"train.sampler={self.sampler}",
            f"train.device={self.device}",
            "train.eval_every=0",
            "train.progress=false",
            f"optim.lr={self.lr!r}",
            "optim.schedule=constant",
            f"eval.seed={self.seed}",
            "eval.batch_size=1",
            f"run.dir={json.dumps(str(Path(runs)))}",
            f"run.name={json.dumps(name)}",
        ]


@dataclass(frozen=True)
class ModelSpec:
    """One row of the comparison: a ``label``, its recipe file and extra overrides (applied
    before the budget's)."""

    label: str
    recipe: Path
    extra: tuple[str, ...] = ()


def add_overrides(specs: Sequence[ModelSpec], items: Sequence[str]) -> list[ModelSpec]:
    """Per-model recipe overrides ``LABEL:key=value`` (e.g.
    ``sketch_aware_ssc:model.kwargs.backbone_weights=resnet50.pth``) appended to that spec's extras.

    Raises:
        ValueError: malformed item, unknown label, or a key the budget sets for every model
            (it would be overridden again by the budget; change the budget instead).
    """
    fixed = {o.split("=", 1)[0] for o in Budget(iters=1, batch=1, lr=1.0).overrides(".", ".", "x")}
    extra: dict[str, list[str]] = {s.label: list(s.extra) for s in specs}
    for item in items:
        label, sep, override = item.partition(":")
        if not sep or "=" not in override:
            raise ValueError(f"override {item!r}: expected LABEL:key=value, e.g. sscnet:model.kwargs.width=8")
        if label not in extra:
            raise ValueError(f"override {item!r}: no model labelled {label!r} (models: {', '.join(extra)})")
        key = override.split("=", 1)[0].strip()
        if key in fixed:
            raise ValueError(f"override {item!r}: {key} is part of the equal budget, the same for every model")
        extra[label].append(override)
    return [replace(s, extra=tuple(extra[s.label])) for s in specs]


def recipe_for_model(model: str, configs: str | os.PathLike | None = None) -> ModelSpec:
    """The CPU synthetic recipe of a registered model name, or a recipe given by its path.

    ``model`` ending in ``.yaml``/``.yml`` is a recipe file (label: its stem). Otherwise the
    recipe is the shipped ``*_synth_cpu.yaml`` (or one in ``configs``) whose ``model.name`` is ``model``
    (``vvnet_r120`` -> ``vvnet_synth_cpu.yaml``, ``sketch_aware_ssc_lite`` ->
    ``sketch_aware_ssc_synth_cpu.yaml``); ``sketch_aware_ssc`` (the paper build) has none and
    uses the lite recipe with ``model.name=sketch_aware_ssc model.kwargs={}``.

    Raises:
        FileNotFoundError: no such recipe file, or no recipe for that model name.
    """
    from torchssc.config import load_config

    if model.endswith((".yaml", ".yml")):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such recipe")
        return ModelSpec(path.stem, path)
    from torchssc.config import recipes_dir

    folder = Path(configs) if configs is not None else recipes_dir()
    recipes = sorted(folder.glob("*_synth_cpu.yaml"))
    for path in recipes:
        if load_config(path)["model"]["name"] == model:
            return ModelSpec(model, path)
    if model == "sketch_aware_ssc" and (folder / "sketch_aware_ssc_synth_cpu.yaml").is_file():
        return ModelSpec(model, folder / "sketch_aware_ssc_synth_cpu.yaml",
                         ("model.name=sketch_aware_ssc", "model.kwargs={}"))
    raise FileNotFoundError(f"no {folder}/*_synth_cpu.yaml recipe has model.name {model!r} "
                            f"(recipes: {', '.join(p.name for p in recipes)}); pass a recipe path instead")


def check_root(root: str | os.PathLike, required: Sequence[str] = REQUIRED_DIRS) -> dict[str, int]:
    """Check a prepared root for the comparison; returns ``{"train": n, "test": n}`` frame counts.

    Raises:
        FileNotFoundError: ``root`` is not a folder, a split list is missing or empty, or a
            folder of ``required`` is missing (prepare with ``fine=True`` and RGB).
    """
    from torchssc.io.prepared import read_split

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: prepared data folder does not exist")
    missing = [name for name in required if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: missing {', '.join(missing)}/ (prepare both splits with fine TSDF, "
                                f"depth, visibility and RGB, or use --make-data)")
    counts = {}
    for split in ("train", "test"):
        if not (root / f"{split}.txt").is_file():
            raise FileNotFoundError(f"{root / f'{split}.txt'}: split list missing")
        counts[split] = len(read_split(root, split))
        if counts[split] == 0:
            raise FileNotFoundError(f"{root / f'{split}.txt'}: no frames listed")
    return counts


def prepare_rooms(out: str | os.PathLike, *, frames: int, seed: int = 0, test_fraction: float = 0.2,
                  workers: int = 1) -> Path:
    """Generate ``frames`` synthetic rooms in ``<out>/raw`` (once) and prepare both splits into
    ``<out>/prepared`` with the fine TSDF, ForkNet's volumes and the fine labels (plus depth,
    visibility and RGB, which preparation always writes for synthetic rooms); resumable. Returns the prepared root.

    An existing ``<out>/raw`` is reused as is (its seed and test fraction are not checked) when
    it lists ``frames`` rooms.

    Raises:
        ValueError: ``<out>/raw`` already lists another number of rooms.
        RuntimeError: a frame failed to prepare (the reason was logged).
    """
    from torchssc.synth.generator import generate_and_prepare

    return generate_and_prepare(out, frames=frames, seed=seed, test_fraction=test_fraction,
                                workers=workers, fine=True, prepared="prepared", progress=False,
                                forknet=True, fine_labels=True)


# ------------------------------------------------------------------------------------------
# The two measured steps (run in a child process, or in this one with spawn=False)
def _peak_rss_mib() -> float:
    """This process's lifetime peak resident set (Linux ``ru_maxrss`` is in KiB), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _set_threads(threads: int) -> int:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _metrics_record(metrics: dict) -> dict:
    return {k: metrics[k] for k in METRIC_KEYS if k in metrics}


def train_and_score(recipe: str, overrides: Sequence[str], protocols: Sequence[str], threads: int) -> dict:
    """Train one recipe, measure that, then score the last checkpoint on ``test``.

    Returns:
        ``{"train_cpu_s", "train_wall_s", "train_peak_mib", "train_gpu_peak_mib" (cuda only),
        "threads", "checkpoint", "iteration", "loss", "model", "frames_test", "score_wall_s",
        "metrics": {protocol: {sc_iou, ssc_miou, ...}}}`` (fractions in [0, 1], NaN = undefined).
    """
    import torch

    from torchssc.config import load_config
    from torchssc.engine.evaluate import evaluate_checkpoints
    from torchssc.engine.train import main as train_main

    threads = _set_threads(threads)
    cfg = load_config(recipe, overrides)
    cuda = cfg["train"]["device"] == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = train_main(cfg)
    train_cpu, train_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    out = {"train_cpu_s": train_cpu, "train_wall_s": train_wall, "train_peak_mib": _peak_rss_mib(),
           "threads": threads, "checkpoint": str(result["checkpoint"]), "iteration": int(result["iteration"]),
           "model": cfg["model"]["name"], "loss": cfg["loss"]["name"]}
    if cuda:
        out["train_gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    run = Path(result["run_dir"])
    wall0 = time.perf_counter()
    records = evaluate_checkpoints(cfg, [Path(result["checkpoint"])], protocols=list(protocols), split="test",
                                   out_dir=run / "eval", progress=False)
    out["score_wall_s"] = time.perf_counter() - wall0
    out["metrics"] = {r["protocol"]: _metrics_record(r["metrics"]) for r in records}
    out["frames_test"] = records[0]["frames"] if records else 0
    return out


def measure_inference(recipe: str, overrides: Sequence[str], checkpoint: str, frames: int, threads: int) -> dict:
    """Parameter count and per-frame inference cost of a trained checkpoint.

    One warm-up forward on the first test frame, then one forward per frame on the first
    ``frames`` test frames (cycling when the split is shorter), batch 1, ``eval()``,
    ``torch.no_grad``; only the forward is timed (CUDA: synchronised).

    Returns:
        ``{"params" (trainable), "params_total", "infer_cpu_s" and "infer_wall_s" (per frame),
        "infer_frames", "infer_peak_mib", "infer_gpu_peak_mib" (cuda only), "threads"}``.
    """
    import torch
    from torch.utils.data import default_collate

    from torchssc.config import load_config
    from torchssc.engine.builders import build_dataset
    from torchssc.engine.checkpoint import load_model
    from torchssc.engine.sampler import move_to_device

    if frames < 1:
        raise ValueError(f"infer frames must be >= 1, got {frames}")
    threads = _set_threads(threads)
    cfg = load_config(recipe, overrides)
    device = torch.device(cfg["train"]["device"])
    cuda = device.type == "cuda"
    model, _ = load_model(checkpoint, cfg, device=device)
    if hasattr(model, "seed"):
        model.seed = int(cfg["eval"]["seed"])
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    params_total = sum(p.numel() for p in model.parameters())
    dataset = build_dataset(cfg, "test")
    if len(dataset) == 0:
        raise ValueError("the test split is empty")

    def forward(index: int) -> tuple[float, float]:
        batch = move_to_device(default_collate([dataset[index % len(dataset)]]), device)
        torch.manual_seed(int(cfg["eval"]["seed"]))
        if cuda:
            torch.cuda.synchronize()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with torch.no_grad():
            outputs = model(batch)
        if cuda:
            torch.cuda.synchronize()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if "semantic" not in outputs:
            raise ValueError(f"the model returned {sorted(outputs)}; expected 'semantic'")
        return cpu, wall

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    forward(0)  # warm-up
    times = [forward(i) for i in range(frames)]
    out = {"params": int(params), "params_total": int(params_total),
           "infer_cpu_s": sum(t[0] for t in times) / frames, "infer_wall_s": sum(t[1] for t in times) / frames,
           "infer_frames": frames, "infer_peak_mib": _peak_rss_mib(), "threads": threads}
    if cuda:
        out["infer_gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# ------------------------------------------------------------------------------------------
# Isolation and failure reporting
def _error(exc: BaseException) -> dict:
    return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def _child(fn: Callable[..., dict], args: tuple, results) -> None:
    """Spawned process body: run ``fn(*args)`` and put ``{"ok": result}`` or ``{"error", ...}``."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        results.put({"ok": fn(*args)})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which carries on
        results.put(_error(exc))


def run_step(fn: Callable[..., dict], args: tuple, *, spawn: bool = True) -> dict:
    """``{"ok": fn(*args)}`` or ``{"error": "Type: message", "traceback": ...}``; never raises for
    an exception of ``fn``. With ``spawn`` it runs in a fresh spawn process (``fn`` must be a
    module-level function and ``args`` picklable); a process that dies without an answer (killed,
    out of memory) is an error naming its exit code."""
    if not spawn:
        try:
            return {"ok": fn(*args)}
        except Exception as exc:  # noqa: BLE001 - one failing model must not stop the others
            return _error(exc)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, results))
    proc.start()
    try:
        while True:
            try:
                answer = results.get(timeout=1.0)
                break
            except queue_module.Empty:
                if not proc.is_alive():
                    try:
                        answer = results.get(timeout=1.0)
                    except queue_module.Empty:
                        answer = {"error": f"the process exited with code {proc.exitcode} without a result "
                                           "(killed? out of memory?)", "traceback": ""}
                    break
    finally:
        proc.join()
    return answer


# ------------------------------------------------------------------------------------------
# One model, all models
def compare_one(spec: ModelSpec, *, root: str | os.PathLike, out: str | os.PathLike, budget: Budget,
                protocols: Sequence[str] = PROTOCOLS, infer_frames: int = 3, spawn: bool = True) -> dict:
    """Train + score + measure one model; returns its row (``"errors"`` lists what failed).

    The run goes to ``<out>/runs/<label>`` (its recipe, checkpoint, TensorBoard log and the
    per-protocol eval reports). Row keys: ``label``, ``recipe``, ``overrides``, ``model``,
    ``loss``, then those of :func:`train_and_score` and :func:`measure_inference`, and
    ``errors`` (``{"setup" | "train" | "infer": "Type: message"}``).
    """
    row: dict[str, Any] = {"label": spec.label, "recipe": str(spec.recipe), "errors": {}}
    try:
        from torchssc.config import load_config

        overrides = [*spec.extra, *budget.overrides(root, Path(out) / "runs", spec.label)]
        cfg = load_config(spec.recipe, overrides)
        row.update(model=cfg["model"]["name"], loss=cfg["loss"]["name"], overrides=overrides)
    except Exception as exc:  # noqa: BLE001 - a bad recipe is this row's failure only
        row["errors"]["setup"] = f"{type(exc).__name__}: {exc}"
        return row
    started = time.perf_counter()
    trained = run_step(train_and_score, (str(spec.recipe), overrides, tuple(protocols), budget.threads), spawn=spawn)
    if "error" in trained:
        row["errors"]["train"] = trained["error"]
        logger.error("%s: training failed: %s\n%s", spec.label, trained["error"], trained.get("traceback", ""))
    else:
        row.update(trained["ok"])
        inferred = run_step(measure_inference, (str(spec.recipe), overrides, row["checkpoint"], infer_frames,
                                                budget.threads), spawn=spawn)
        if "error" in inferred:
            row["errors"]["infer"] = inferred["error"]
            logger.error("%s: inference failed: %s\n%s", spec.label, inferred["error"], inferred.get("traceback", ""))
        else:
            row.update(inferred["ok"])
    row["wall_s"] = time.perf_counter() - started
    return row


def compare_models(specs: Sequence[ModelSpec], *, root: str | os.PathLike, out: str | os.PathLike,
                   budget: Budget, protocols: Sequence[str] = PROTOCOLS, infer_frames: int = 3,
                   spawn: bool = True, on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """:func:`compare_one` for every spec, in order; ``on_row`` is called after each.

    Raises:
        ValueError: duplicate labels.
        FileExistsError: ``<out>/runs/<label>`` already holds a run (choose another ``out``).
    """
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate model labels in {labels}")
    for label in labels:
        run = Path(out) / "runs" / label
        if (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()):
            raise FileExistsError(f"{run} already holds a run: use another --out (results are not reused, "
                                  "so that every figure comes from this run)")
    rows = []
    for spec in specs:
        logger.info("%s: training %d x %d with %s", spec.label, budget.iters, budget.batch, spec.recipe)
        rows.append(compare_one(spec, root=root, out=out, budget=budget, protocols=protocols,
                                infer_frames=infer_frames, spawn=spawn))
        if on_row is not None:
            on_row(rows[-1])
    return rows


# ------------------------------------------------------------------------------------------
# Reporting
def run_context(*, budget: Budget, root: str | os.PathLike, protocols: Sequence[str], infer_frames: int,
                command: str, spawn: bool = True) -> dict:
    """What the table was measured with: versions, threads, device, date, command, budget, data."""
    import torch

    counts = {}
    for split in ("train", "test"):
        path = Path(root) / f"{split}.txt"
        counts[split] = len(path.read_text().split()) if path.is_file() else 0
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "device": budget.device,
        "threads": budget.threads if budget.threads > 0 else torch.get_num_threads(),
        "budget": asdict(budget),
        "data_root": str(root),
        "frames": counts,
        "protocols": list(protocols),
        "infer_frames": infer_frames,
        "isolated_processes": spawn,
    }


def _num(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return "—" if value is None else format(value, fmt)


def table_markdown(rows: Sequence[dict], protocols: Sequence[str] = PROTOCOLS) -> str:
    """One markdown row per model: label, loss, trainable parameters, train CPU s, train peak MiB,
    inference CPU s/frame, inference peak MiB, then SC IoU and SSC mIoU (%) per protocol.

    A failed step leaves its cells ``—`` and adds ``(failed)`` to the label; the messages follow
    the table as a list.
    """
    head = ["model", "loss", "trainable params", "train CPU s", "train peak MiB", "infer CPU s/frame", "infer peak MiB"]
    for p in protocols:
        head += [f"`{p}` SC IoU", f"`{p}` mIoU"]
    body, notes = [], []
    for row in rows:
        label = f"`{row['label']}`" + (" (failed)" if row.get("errors") else "")
        cells = [label, f"`{row['loss']}`" if row.get("loss") else "—",
                 "—" if row.get("params") is None else f"{row['params']:,}",
                 _num(row, "train_cpu_s", ".0f"), _num(row, "train_peak_mib", ".0f"),
                 _num(row, "infer_cpu_s", ".2f"), _num(row, "infer_peak_mib", ".0f")]
        metrics = row.get("metrics")
        for p in protocols:
            m = None if metrics is None else metrics.get(p)
            cells += ["—", "—"] if m is None else [percent(m.get("sc_iou")), percent(m.get("ssc_miou"))]
        body.append(cells)
        for step, message in row.get("errors", {}).items():
            notes.append(f"- `{row['label']}` {step} failed: {message.splitlines()[0] if message else ''}")
    lines = [markdown_table(head, body, align="ll" + "r" * (len(head) - 2))]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def report_markdown(rows: Sequence[dict], context: dict) -> str:
    """The table with a header stating how it was measured."""
    b = context["budget"]
    frames = context["frames"]
    text = [
        f"Equal budget: {b['iters']} iterations x batch {b['batch']}, SGD constant lr {b['lr']:g}, seed {b['seed']}, "
        f"sampler {b['sampler']}; trained on {frames['train']} `train` frames, scored on {frames['test']} `test` "
        f"frames (eval seed {b['seed']}) of `{context['data_root']}`.",
        f"Device {context['device']}, {context['threads']} torch thread(s) per process, torch {context['torch']}, "
        f"Python {context['python']}, {context['machine']}; {context['date']}.",
        f"Train CPU s: `time.process_time` of the training process (data loading included); peak MiB: its "
        f"`ru_maxrss`. Inference: batch 1, mean CPU s of {context['infer_frames']} forward(s) after one warm-up; "
        f"peak MiB of an inference-only process. SC IoU / mIoU in % per protocol. "
        + ("Each step ran in a fresh spawn process." if context.get("isolated_processes", True)
           else "Steps ran in one process: peak MiB is not per model."),
        "",
        f"Command: `{context['command']}`",
        "",
    ]
    return "\n".join(text) + "\n" + table_markdown(rows, context["protocols"])


def write_outputs(out: str | os.PathLike, rows: Sequence[dict], context: dict) -> tuple[Path, Path]:
    """Write ``<out>/compare.json`` (context + rows, NaN as null) and ``<out>/compare.md``
    atomically; returns both paths."""
    from torchssc.engine.logs import json_ready
    from torchssc.io.atomic import write_bytes_atomic

    out = Path(out)
    json_path, md_path = out / "compare.json", out / "compare.md"
    payload = {"context": context, "rows": list(rows)}
    write_bytes_atomic(json_path, (json.dumps(json_ready(payload), indent=2, allow_nan=False) + "\n").encode())
    write_bytes_atomic(md_path, report_markdown(rows, context).encode())
    return json_path, md_path
