"""What a training run will cost before it starts (``torchssc plan``, docs/gpu.md).

One training step of the recipe's model at batch :data:`MEASURE_BATCH` (2), on the CPU, on a synthetic full-size batch
(:func:`synthetic_batch`: the dataset's keys and shapes, random values), measures:

* the trainable parameters, and the bytes of all weights and buffers;
* the FLOPs of forward + backward (``torch.utils.flop_counter.FlopCounterMode``: convolutions
  and matrix products; element-wise work is not counted);
* the activation memory saved for the backward pass (``torch.autograd.graph.saved_tensors_hooks``,
  each storage counted once, the weights left out), with and without the activation recompute
  when the model has it (``recompute_activations``);
* the optimiser state after one step of the recipe's optimiser;
* the peak of the step's tensor allocations (:func:`tensor_peak_bytes`, from the profiler's
  memory events), whose excess over the saved activations is the step's transient working set.

From those, :func:`estimate_bytes` gives the memory of a step at batch ``B`` (what
``torch.cuda.max_memory_allocated`` would report): weights + gradients + optimiser state +
``B`` x (inputs + saved activations + transient). bf16 is derived, not measured: floating-point
activations and the transient at half, plus a bf16 copy of the weights (autocast's cast cache).
The CUDA context (about 0.5 GB) and the caching allocator's slack are not in the estimate;
:func:`fits` keeps a margin for them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn

from torchssc.geometry import FINE_SHAPE, LABEL_SHAPE, NUM_CLASSES, NYU_INTRINSICS, voxel_origin_for_pose

IMAGE_HW = (480, 640)
FORKNET_SHAPE = (80, 48, 80)
MAPPED_FRACTION = 0.1
"""Share of voxels the synthetic ``mapping`` links to a pixel (the lifting's work scales with it)."""
CONTEXT_BYTES = 0.5 * 2**30
"""Memory outside the allocator's count (CUDA context, kernels): assumed, not measured."""
ALLOCATOR_SLACK = 0.10
"""Share of the card kept free for the caching allocator's fragmentation: assumed, not measured."""


@dataclass
class StepCost:
    """The measured cost of one training step (bytes unless said; per sample: over ``measure_batch``)."""

    model: str
    trainable_params: int
    weight_bytes: int  # parameters + buffers
    grad_bytes: int  # fp32 gradients of the trainable parameters
    optimizer_bytes: int  # the optimiser's state after one step
    flops_per_sample: int  # forward + backward (convolutions, matrix products)
    input_bytes_per_sample: int
    saved_bytes_per_sample: dict  # {"recompute": ..., "no_recompute": ...} (one key when the model has no recompute)
    transient_bytes_per_sample: dict  # same keys: measured peak - static - inputs - saved
    measured_peak_bytes: dict  # same keys: the step's tensor-allocation peak at measure_batch (CPU)
    measure_batch: int = 1
    recompute_default: bool = False
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------
def synthetic_batch(cfg: dict, batch_size: int = 1, seed: int = 0) -> dict:
    """A batch with the keys and full-size shapes of :class:`torchssc.data.SSCDataset` for what the
    recipe's model and loss declare (:func:`~torchssc.engine.builders.run_inputs`; random values;
    the mapping links :data:`MAPPED_FRACTION` of the voxels to a pixel; depth 1.5-3.5 m from a
    level camera)."""
    g = torch.Generator().manual_seed(seed)
    b, (h, w), grid = batch_size, IMAGE_HW, LABEL_SHAPE
    n = int(np.prod(grid))
    from torchssc.engine.builders import run_inputs

    keys = set(run_inputs(cfg))
    mapping = torch.randint(0, h * w, (b, n), generator=g)
    mapping[torch.rand(b, n, generator=g) >= MAPPED_FRACTION] = h * w
    label = torch.randint(0, NUM_CLASSES, (b, *grid), generator=g)
    label[torch.rand(b, *grid, generator=g) < 0.5] = 0
    pose = np.eye(4)
    pose[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]
    pose[:3, 3] = [0.0, 0.0, 1.4]
    k = NYU_INTRINSICS
    batch = {
        "tsdf": torch.rand(b, 1, *grid, generator=g) * 2 - 1,
        "mapping": mapping,
        "label": label,
        "label_weight": (torch.rand(b, *grid, generator=g) < 0.5).float(),
        "sketch_gt": torch.randint(0, 2, (b, *grid), generator=g),
        "rgb": torch.randn(b, 3, h, w, generator=g),
        "prior": torch.randint(0, 14, (b, h, w), generator=g),
        "depth": 1.5 + 2.0 * torch.rand(b, 1, h, w, generator=g),
        "pose": torch.tensor(pose, dtype=torch.float32).repeat(b, 1, 1),
        "origin": torch.tensor(voxel_origin_for_pose(pose), dtype=torch.float32).repeat(b, 1),
        "intrinsics": torch.tensor([[k.fx, k.fy, k.cx, k.cy, w, h]], dtype=torch.float32).repeat(b, 1),
    }
    if keys & {"tsdf_fine", "label_fine"}:
        batch["tsdf_fine"] = torch.where(torch.rand(b, 1, *FINE_SHAPE, generator=g) < 0.1, 1.0, -0.001)
    if "label_fine" in keys:
        batch["label_fine"] = torch.randint(0, NUM_CLASSES, (b, *FINE_SHAPE), generator=g).to(torch.uint8)
    if keys & {"forknet_tsdf", "forknet_label", "forknet_surface"}:
        batch["forknet_tsdf"] = torch.rand(b, 1, *FORKNET_SHAPE, generator=g) * 2 - 1
        batch["forknet_label"] = torch.randint(0, NUM_CLASSES, (b, *FORKNET_SHAPE), generator=g)
        batch["forknet_surface"] = (torch.rand(b, *FORKNET_SHAPE, generator=g) < 0.2).to(torch.uint8)
    return batch


def tensor_peak_bytes(fn) -> tuple[object, int]:
    """``(fn(), peak)``: the highest level, above the level at the call, of the bytes held by
    tensors allocated during ``fn()`` (CPU; the profiler's memory events in time order: an op's net
    allocation at its start when positive, at its end when negative)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    points = []
    for e in prof.events():
        net = e.self_cpu_memory_usage if e.name != "[memory]" else e.cpu_memory_usage
        if net:
            points.append((e.time_range.start if net > 0 else e.time_range.end, net))
    level = peak = 0
    for _, net in sorted(points):
        level += net
        peak = max(peak, level)
    return out, int(peak)


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _saved_bytes(step, exclude: set[int]) -> tuple[object, int]:
    """``(step(), bytes)``: the storages saved for backward during ``step()``, each once, leaving
    out those in ``exclude`` (the weights' storage pointers)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in exclude and ptr not in seen:
            seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = step()
    return out, sum(seen.values())


def _recompute_support(cfg: dict) -> tuple[bool, bool]:
    """``(has the option, on in this recipe)``: whether the recipe's model takes
    ``recompute_activations``, and whether the model the recipe builds recomputes (built on the
    meta device)."""
    from torchssc.engine.builders import build_model

    def build(kwargs: dict) -> nn.Module:
        with torch.device("meta"):
            return build_model(_without_weights_file({**cfg, "model": {**cfg["model"], "kwargs": kwargs}}))

    try:
        build({**cfg["model"]["kwargs"], "recompute_activations": False})
    except ValueError:
        return False, False
    model = build(dict(cfg["model"]["kwargs"]))
    return True, any(getattr(m, "recompute", False) is True for m in model.modules())


MEASURE_BATCH = 2
"""The batch :func:`measure_step` runs; per-sample figures are its figures over it. Not 1: the CPU
convolutions pick other algorithms for a single sample (a dilated 3D convolution's im2col buffer
made the U-Net's batch-1 peak 2.3x its batch-2 peak at small widths), and BatchNorm over one
sample is not how any recipe trains."""


def measure_step(cfg: dict, *, seed: int = 0, batch_size: int = MEASURE_BATCH) -> StepCost:
    """Measure one training step of the recipe at ``batch_size`` on the CPU (module docstring);
    the per-sample figures are the step's over ``batch_size``."""
    from torch.utils.flop_counter import FlopCounterMode

    from torchssc.engine.builders import build_loss, build_model, build_optimizer

    has_option, default = _recompute_support(cfg)
    variants = {"recompute": True, "no_recompute": False} if has_option else {"plain": None}
    saved, transient, peaks = {}, {}, {}
    result: dict = {}
    for key, recompute in variants.items():
        run = {**cfg, "model": {**cfg["model"], "kwargs": dict(cfg["model"]["kwargs"])}}
        if recompute is not None:
            run["model"]["kwargs"]["recompute_activations"] = recompute
        torch.manual_seed(seed)
        model = build_model(_without_weights_file(run)).train()
        loss_fn = build_loss(run)
        optimizer = build_optimizer(run, model)
        batch = synthetic_batch(run, batch_size, seed)
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        weights |= {b.untyped_storage().data_ptr() for b in model.buffers()}

        def forward_backward():
            terms = loss_fn(model(batch), batch)
            terms["total"].backward()
            return terms

        flops = FlopCounterMode(display=False)
        (_, saved[key]), peak = tensor_peak_bytes(lambda: _saved_bytes(forward_backward, weights))
        model.zero_grad(set_to_none=True)
        with flops:
            forward_backward()
        optimizer.step()
        opt_bytes = sum(_tensor_bytes(v) for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))
        trainable = [p for p in model.parameters() if p.requires_grad]
        input_bytes = sum(_tensor_bytes(v) for v in batch.values())
        peaks[key] = peak
        # the grads are allocated during the step (in the peak), the weights before it
        transient[key] = max(0, peak - saved[key] - sum(_tensor_bytes(p) for p in trainable)) // batch_size
        saved[key] //= batch_size
        result = dict(
            trainable_params=sum(p.numel() for p in trainable),
            weight_bytes=sum(_tensor_bytes(t) for t in [*model.parameters(), *model.buffers()]),
            grad_bytes=sum(_tensor_bytes(p) for p in trainable),
            optimizer_bytes=int(opt_bytes),
            flops_per_sample=int(flops.get_total_flops()) // batch_size,
            input_bytes_per_sample=int(input_bytes) // batch_size,
            measure_batch=batch_size,
        )
    notes = ["synthetic full-size batch (random values); FLOPs count convolutions and matrix products only"]
    return StepCost(model=cfg["model"]["name"], saved_bytes_per_sample=saved, transient_bytes_per_sample=transient,
                    measured_peak_bytes=peaks, recompute_default=default, notes=notes, **result)


def measured_step_bytes(cfg: dict, batch_size: int, *, seed: int = 0, variant: str | None = None) -> int:
    """The measured peak tensor memory of a training step at ``batch_size`` on the CPU, in the
    terms of :func:`estimate_bytes`: weights + optimiser state + inputs (all allocated before the
    step) + the peak of the second step's forward and backward (:func:`tensor_peak_bytes`; its
    gradients included). The first step creates the optimiser state. ``variant``:
    ``"recompute"`` / ``"no_recompute"`` sets ``recompute_activations``."""
    from torchssc.engine.builders import build_loss, build_model, build_optimizer

    run = {**cfg, "model": {**cfg["model"], "kwargs": dict(cfg["model"]["kwargs"])}}
    if variant in ("recompute", "no_recompute"):
        run["model"]["kwargs"]["recompute_activations"] = variant == "recompute"
    torch.manual_seed(seed)
    model = build_model(_without_weights_file(run)).train()
    loss_fn = build_loss(run)
    optimizer = build_optimizer(run, model)
    batch = synthetic_batch(run, batch_size, seed)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(batch), batch)["total"].backward()

    step()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _, peak = tensor_peak_bytes(step)
    static = sum(_tensor_bytes(t) for t in [*model.parameters(), *model.buffers()])
    state = sum(_tensor_bytes(v) for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))
    return int(static + state + sum(_tensor_bytes(v) for v in batch.values()) + peak)


def _without_weights_file(cfg: dict) -> dict:
    """The recipe without ``backbone_weights`` (the plan needs shapes, not the ImageNet weights)."""
    kwargs = {k: v for k, v in cfg["model"]["kwargs"].items() if k != "backbone_weights"}
    return {**cfg, "model": {**cfg["model"], "kwargs": kwargs}}


# ------------------------------------------------------------------------------------------
def recipe_variant(cost: StepCost) -> str:
    """The key of ``cost.saved_bytes_per_sample`` that the recipe itself runs."""
    if "plain" in cost.saved_bytes_per_sample:
        return "plain"
    return "recompute" if cost.recompute_default else "no_recompute"


def estimate_bytes(cost: StepCost, batch_size: int, *, dtype: str = "fp32", variant: str | None = None) -> int:
    """Estimated peak tensor memory of a training step at ``batch_size`` (module docstring).

    ``dtype``: ``"fp32"`` or ``"bf16"`` (autocast); ``variant``: a key of
    ``cost.saved_bytes_per_sample`` (default: the recipe's, :func:`recipe_variant`)."""
    if dtype not in ("fp32", "bf16"):
        raise ValueError(f"dtype must be fp32 or bf16, got {dtype!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    variant = variant or recipe_variant(cost)
    per_sample = cost.saved_bytes_per_sample[variant] + cost.transient_bytes_per_sample[variant]
    static = cost.weight_bytes + cost.grad_bytes + cost.optimizer_bytes
    if dtype == "bf16":
        per_sample, static = per_sample / 2, static + cost.weight_bytes / 2
    return int(static + batch_size * (per_sample + cost.input_bytes_per_sample))


def fits(cost: StepCost, batch_size: int, gpu_bytes: float, **kw) -> bool:
    """Whether the estimate, plus the CUDA context, stays within the card less the allocator's
    slack (:data:`CONTEXT_BYTES`, :data:`ALLOCATOR_SLACK`)."""
    return estimate_bytes(cost, batch_size, **kw) + CONTEXT_BYTES <= gpu_bytes * (1 - ALLOCATOR_SLACK)


def largest_batch(cost: StepCost, gpu_bytes: float, *, max_batch: int = 16, **kw) -> int:
    """The largest batch in 1..``max_batch`` that :func:`fits` (0 when none)."""
    return max((b for b in range(1, max_batch + 1) if fits(cost, b, gpu_bytes, **kw)), default=0)


def parse_bytes(text: str) -> float:
    """``"24GB"``, ``"24 GiB"``, ``"80g"``, ``"512MB"`` -> bytes (GB and GiB both read as 2**30: a
    card sold as "24 GB" reports about 24 GiB to CUDA)."""
    units = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
             "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}
    s = text.strip().lower().replace(" ", "")
    number = s.rstrip("kmgtib")
    unit = s[len(number):]
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"--gpu-mem {text!r}: expected a size such as 24GB or 80GiB") from None
    if unit not in units or not math.isfinite(value) or value <= 0:
        raise ValueError(f"--gpu-mem {text!r}: expected a size such as 24GB or 80GiB")
    return value * units[unit]


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f}"


def plan_report(cost: StepCost, *, gpu_bytes: float | None = None, max_batch: int = 16) -> str:
    """The text ``torchssc plan`` prints: the measured costs, then estimated GiB for batch
    1..``max_batch`` in fp32 and bf16 for each variant, then which batch fits ``gpu_bytes``."""
    variants = list(cost.saved_bytes_per_sample)
    mine = recipe_variant(cost)
    lines = [
        f"model {cost.model}: {cost.trainable_params:,} trainable parameters",
        f"  weights + buffers     {_gb(cost.weight_bytes)} GiB",
        f"  gradients             {_gb(cost.grad_bytes)} GiB",
        f"  optimizer state       {_gb(cost.optimizer_bytes)} GiB",
        f"  FLOPs per sample      {cost.flops_per_sample / 1e9:.1f} GFLOP (forward + backward, convs and matmuls)",
        f"  inputs per sample     {_gb(cost.input_bytes_per_sample)} GiB",
    ]
    for v in variants:
        lines.append(f"  saved for backward    {_gb(cost.saved_bytes_per_sample[v])} GiB per sample ({v}"
                     f"{', the recipe' if v == mine and len(variants) > 1 else ''}); "
                     f"transient {_gb(cost.transient_bytes_per_sample[v])} GiB")
    header = ["batch"] + [f"{d} {v}" if len(variants) > 1 else d for v in variants for d in ("fp32", "bf16")]
    lines += ["", "estimated GPU memory (GiB, as torch.cuda.max_memory_allocated; + ~0.5 GiB CUDA context):",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for b in range(1, max_batch + 1):
        cells = [_gb(estimate_bytes(cost, b, dtype=d, variant=v)) for v in variants for d in ("fp32", "bf16")]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    if gpu_bytes is not None:
        lines.append("")
        for v in variants:
            for d in ("fp32", "bf16"):
                n = largest_batch(cost, gpu_bytes, max_batch=max_batch, dtype=d, variant=v)
                what = f"batch {n}" if n else "no batch (not even 1)"
                lines.append(f"fits {_gb(gpu_bytes)} GiB: {what} in {d}{f' ({v})' if len(variants) > 1 else ''}")
        lines.append(f"(margin: {_gb(CONTEXT_BYTES)} GiB context + {ALLOCATOR_SLACK:.0%} of the card for the allocator)")
    lines += ["", f"Measured at batch {cost.measure_batch} on the CPU on a synthetic full-size batch; "
              "bf16 derived "
              "(docs/gpu.md). Not measured on a GPU."]
    return "\n".join(lines)


__all__ = ["StepCost", "recipe_variant", "synthetic_batch", "tensor_peak_bytes", "measure_step", "measured_step_bytes",
           "estimate_bytes", "fits",
           "largest_batch", "parse_bytes", "plan_report"]
