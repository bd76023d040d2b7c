"""Loss registry: ``@register_loss(name, targets=(...))``, ``get_loss(name, **kwargs)``,
``list_losses()``, ``loss_targets(name)`` (the batch keys a loss reads)."""

from __future__ import annotations

import importlib

import torch.nn as nn

from torchssc.registry import Registry


def _import_builtins() -> None:
    importlib.import_module("torchssc.losses")  # its __init__ imports every loss module


LOSSES = Registry("loss", loader=_import_builtins)
register_loss = LOSSES.register


def get_loss(name: str, **kwargs) -> nn.Module:
    """Build the loss registered as ``name``."""
    return LOSSES.build(name, **kwargs)


def list_losses() -> list[str]:
    return LOSSES.names()


def loss_targets(name: str) -> tuple[str, ...]:
    """The batch keys loss ``name`` reads, as registered (``@register_loss(name, targets=...)``)."""
    return tuple(LOSSES.info(name).get("targets", ()))
