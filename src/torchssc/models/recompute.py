"""Activation recomputation that keeps the maths of BatchNorm: less memory, same results.

``recompute(fn, owner, *inputs)`` runs ``fn(*inputs)`` under ``torch.utils.checkpoint`` (non
reentrant): the forward pass keeps only ``inputs`` for the backward pass and runs ``fn`` again
when the gradient is needed. Two things would otherwise change the results, and both are handled:

* **BatchNorm running statistics** would be updated twice (once per forward run). The
  recomputation runs every BatchNorm of ``owner`` as the first run (batch statistics) but with
  momentum 0, so the running mean and variance keep their values, and puts the counter back.
* **Dropout masks** are redrawn from the same generator state (``preserve_rng_state``, the
  checkpoint default), so the recomputed activations equal the first run's.

Used by the SketchAwareSSC fast path on the parts that are cheap to recompute but expensive to
keep (docs/model.md): the DDR layers, the BatchNorm + ReLU at the end of the full-resolution
stems and decoders, the CVAE decoder tail. It is skipped (plain call) outside training, without
autograd, under ``torch.compile`` (which cannot trace it; its own partitioner recomputes what it
chooses), and for modules with synchronised BatchNorm (a recomputation would repeat their
collective calls inside the backward pass).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


def _norms(owner: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in owner.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _is_synchronised(norm: nn.Module) -> bool:
    return isinstance(norm, nn.SyncBatchNorm) or "Sync" in type(norm).__name__


@contextmanager
def frozen_running_stats(owner: nn.Module) -> Iterator[None]:
    """Within the block, the BatchNorms of ``owner`` run as usual (same arguments, same saved
    tensors, batch statistics in training) but with momentum 0, so their running mean and
    variance keep their values (``r = 1 * r + 0 * batch``, exact for finite statistics), and
    ``num_batches_tracked`` is put back on exit: the block leaves no trace in them."""
    norms = _norms(owner)
    momenta = [m.momentum for m in norms]
    counters = [(m.num_batches_tracked, m.num_batches_tracked.clone()) for m in norms
                if m.num_batches_tracked is not None]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        with torch.no_grad():
            for counter, value in counters:
                counter.copy_(value)


def recompute(fn: Callable[..., torch.Tensor], owner: nn.Module, *inputs: torch.Tensor,
              enabled: bool = True) -> torch.Tensor:
    """``fn(*inputs)``, keeping only ``inputs`` for the backward pass (see the module docstring).

    Args:
        fn: the computation (a module or a function of modules inside ``owner``).
        owner: the module whose BatchNorms ``fn`` uses (their running statistics are protected).
        inputs: tensors.
        enabled: ``False`` = a plain call (for models small enough to keep everything).
    Returns:
        ``fn(*inputs)``, bit-identical to a plain call, with identical gradients.
    """
    if not (enabled and owner.training and torch.is_grad_enabled()) or any(map(_is_synchronised, _norms(owner))):
        return fn(*inputs)
    if torch.compiler.is_compiling():  # dynamo cannot trace a checkpoint with a context_fn; the compiled
        return fn(*inputs)  # graph's partitioner chooses what to keep and what to recompute (docs/gpu.md)
    return checkpoint(fn, *inputs, use_reentrant=False,
                      context_fn=lambda: (nullcontext(), frozen_running_stats(owner)))


__all__ = ["frozen_running_stats", "recompute"]
