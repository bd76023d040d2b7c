"""Loss registry: ``@register_loss(name)``, ``get_loss(name, **kwargs)``, ``list_losses()``."""

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
