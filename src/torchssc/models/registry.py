"""Model registry: ``@register_model(name)``, ``get_model(name, **kwargs)``, ``list_models()``.

A builder is a keyword-only function returning an ``nn.Module``; a variant is a named set of
constructor arguments registered as its own builder.
"""

from __future__ import annotations

import importlib

import torch.nn as nn

from torchssc.registry import Registry


def _import_builtins() -> None:
    importlib.import_module("torchssc.models")  # its __init__ imports every model module


MODELS = Registry("model", loader=_import_builtins)
register_model = MODELS.register


def get_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments ``kwargs``."""
    return MODELS.build(name, **kwargs)


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    return MODELS.names()
