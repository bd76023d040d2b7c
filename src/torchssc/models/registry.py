"""Model registry: ``@register_model(name, inputs=(...))``, ``get_model(name, **kwargs)``,
``list_models()``, ``model_inputs(name)``.

A builder is a keyword-only function returning an ``nn.Module``; a variant is a named set of
constructor arguments registered as its own builder. ``inputs`` declares the batch keys the
model reads (``tsdf``, ``mapping``, ``rgb``, ``prior``, ``depth``, ``pose``, ``tsdf_fine``, ...;
the vocabulary is :data:`torchssc.io.prepared.OPTIONAL_KEYS` plus the base keys): the engine
loads exactly those (docs/architecture.md, "Adding a model"). ``from_spec`` (optional) maps a
dataset spec (:mod:`torchssc.datasets`) to keyword arguments of the builder (e.g. a projection
grid from the spec's fine grid); ``num_classes`` comes from the spec without it.
"""

from __future__ import annotations

import importlib

import torch.nn as nn

from torchssc.registry import Registry


def _import_builtins() -> None:
    importlib.import_module("torchssc.models")  # its __init__ imports every model module


MODELS = Registry("model", loader=_import_builtins)
register_model = MODELS.register


def spec_classes(spec) -> dict:
    """``from_spec`` of a builder that takes ``**kwargs``: the dataset's class count (a builder
    naming ``num_classes`` among its parameters gets it without one)."""
    return {"num_classes": spec.num_classes}


def get_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments ``kwargs``."""
    return MODELS.build(name, **kwargs)


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    return MODELS.names()


def model_inputs(name: str, model: nn.Module | None = None) -> tuple[str, ...]:
    """The batch keys model ``name`` reads, as registered (``@register_model(name, inputs=...)``).

    A built ``model`` whose inputs depend on its keyword arguments says so with a
    ``required_keys()`` method, which then wins (e.g. ``sketch_aware_ssc`` built with
    ``semantic_input="prior"``, ``unet3d_prior`` with ``prior_classes=0``)."""
    required = getattr(model, "required_keys", None)
    return tuple(required()) if callable(required) else tuple(MODELS.info(name).get("inputs", ()))
