"""The recipe's speed options: ``train.channels_last`` and ``train.compile`` (docs/gpu.md).

Both change how the step runs, never what it computes (tested: the same loss as eager within the
tolerances of docs/gpu.md):

* ``channels_last``: the model's 5-D weights (3D convolutions) in ``torch.channels_last_3d``
  and 4-D ones (2D convolutions) in ``torch.channels_last``; convolutions then produce
  channels-last activations, the layout the tensor cores of recent GPUs prefer.
* ``compile`` (in :func:`torchssc.engine.train._train`): the training loop calls
  ``torch.compile(model)`` (TorchInductor; the DDP wrapper when there is one); the bare model is
  what checkpoints, validation and evaluation use, so their weights and numbers are the eager
  model's. Data-dependent steps (the lifting's ``nonzero``) split the graph; inductor
  compiles the pieces. On the CPU it needs a C++ compiler.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def to_channels_last(model: nn.Module) -> nn.Module:
    """Parameters and buffers of ``model`` with 5 dims to ``channels_last_3d`` and with 4 dims to
    ``channels_last``, in place (others unchanged); returns the model."""

    def convert(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 5:
            return t.contiguous(memory_format=torch.channels_last_3d)
        if t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        return t

    return model._apply(convert)


__all__ = ["to_channels_last"]
