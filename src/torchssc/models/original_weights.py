"""Checkpoints of the original TorchSSC (the SketchAwareSSC authors' code), with one documented key map.

The original's training script saves ``epoch-N.pth`` as ``{"model": state_dict, "optimizer": ...,
"epoch": N, "iteration": I}``; the state dict has no ``module.`` prefix and uses the original's
module names. Our :class:`~torchssc.models.sketch_aware.SketchAwareSSC` holds the same tensors,
of the same shapes, in the same grid order, under other prefixes (docs/zoo.md):

==========================================  =================================================
ours                                        the original's
==========================================  =================================================
``backbone.``                               ``backbone.`` (the same deep-stem ResNet-50 keys)
``stage1.stem.``                            ``stage1.oper1.``
``stage1.net.layer1.`` / ``layer2.``        ``stage1.completion_layer1.`` / ``2.``
``stage1.net.up1.`` / ``up2.``              ``stage1.classify_sketch.0.`` / ``.1.``
``stage1.net.classifier.``                  ``stage1.classify_sketch.2.``
``cvae.encoder.`` / ``mean.`` / ``decoder.``  ``stage1.cvae.encoder.`` / ``mean.`` / ``decoder.``
``cvae.logvar.``                            ``stage1.cvae.log_var.``
``cvae.condition.``                         ``stage1.cvae.decoder_x.``
``stage2.reduce.``                          ``stage2.downsample.`` (the 2048 -> 128 reduction)
``stage2.embed_raw.``                       ``stage2.oper_sketch.``
``stage2.embed_prior.``                     ``stage2.oper_sketch_cvae.``
``stage2.net.layer1.`` / ``layer2.``        ``stage2.semantic_layer1.`` / ``2.``
``stage2.net.up1.`` / ``up2.``              ``stage2.classify_semantic.0.`` / ``.1.``
``stage2.net.classifier.``                  ``stage2.classify_semantic.2.``
``stage2.seg_embed.`` (``_prior`` models)   none: the original has no 2D-prior input
==========================================  =================================================

Everything after the prefix is the same: the DDR blocks' ``conv1..5``, ``bn1..5``,
``downsample.1/.2`` (the residual) and ``downsample2/3/4.1/.2``, the Sequential indices of the
stems, the CVAE bodies and decoders (``0``, ``1``, ``3``, ``4``, ...), each BatchNorm's
``weight``, ``bias``, ``running_mean``, ``running_var`` and ``num_batches_tracked``. No tensor is
reshaped. The map applies by name to every variant (``_lite``, ``_tsdf``); only the paper's
``sketch_aware_ssc`` has the original's shapes.

**Dead branches.** The original's ``Bottleneck3D`` builds its resizing branches ``downsample2``,
``downsample3`` and ``downsample4`` (AvgPool + 1x1x1 conv + BN) in every block, but uses them only
when the block's stride is not 1. Ours builds them only where they are used. Each EncoderDecoder
has 6 stride-1 blocks (``layer1.1-3``, ``layer2.1-3``), 12 in the model; each has 3 branches of 6
state tensors (the conv weight, 5 BatchNorm tensors): 216 tensors, 95,616 parameters at width
128. So a checkpoint of the original holds 1,294 state tensors and ``sketch_aware_ssc`` 1,078.
:func:`from_original_state_dict` skips exactly those branches, by that rule (a stride-1 block's
``downsample2/3/4``), and counts them; anything else missing, unexpected or of another shape is
a ``ValueError`` naming it.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from torchssc.models.ddr import Bottleneck3D, _resize_branch

ORIGINAL_FORMAT = "torchssc-original"
DATA_PARALLEL_PREFIX = "module."
DEAD_BRANCHES = ("downsample2", "downsample3", "downsample4")
"""The original's resizing branches of a ``Bottleneck3D``: dead in its stride-1 blocks."""

PREFIXES: tuple[tuple[str, str], ...] = (  # (ours, the original's): the module docstring's table
    ("backbone.", "backbone."),
    ("stage1.stem.", "stage1.oper1."),
    ("stage1.net.layer1.", "stage1.completion_layer1."),
    ("stage1.net.layer2.", "stage1.completion_layer2."),
    ("stage1.net.up1.", "stage1.classify_sketch.0."),
    ("stage1.net.up2.", "stage1.classify_sketch.1."),
    ("stage1.net.classifier.", "stage1.classify_sketch.2."),
    ("cvae.encoder.", "stage1.cvae.encoder."),
    ("cvae.mean.", "stage1.cvae.mean."),
    ("cvae.logvar.", "stage1.cvae.log_var."),
    ("cvae.condition.", "stage1.cvae.decoder_x."),
    ("cvae.decoder.", "stage1.cvae.decoder."),
    ("stage2.reduce.", "stage2.downsample."),
    ("stage2.embed_raw.", "stage2.oper_sketch."),
    ("stage2.embed_prior.", "stage2.oper_sketch_cvae."),
    ("stage2.net.layer1.", "stage2.semantic_layer1."),
    ("stage2.net.layer2.", "stage2.semantic_layer2."),
    ("stage2.net.up1.", "stage2.classify_semantic.0."),
    ("stage2.net.up2.", "stage2.classify_semantic.1."),
    ("stage2.net.classifier.", "stage2.classify_semantic.2."),
)
_ORIGINAL_ONLY = tuple(theirs for ours, theirs in PREFIXES if ours != theirs)
"""Prefixes that only the original's names have: their presence identifies its state dict."""


def _swap_prefix(key: str, pairs: tuple[tuple[str, str], ...]) -> str | None:
    """``key`` with its longest matching ``pairs`` prefix replaced; None when none matches."""
    best = max((p for p in pairs if key.startswith(p[0])), key=lambda p: len(p[0]), default=None)
    return None if best is None else best[1] + key[len(best[0]):]


def original_key(key: str) -> str:
    """The original's name of our state-dict ``key`` (the module docstring's table).

    Raises:
        ValueError: ``key`` has no counterpart in the original (e.g. ``stage2.seg_embed.*``).
    """
    theirs = _swap_prefix(key, PREFIXES)
    if theirs is None:
        raise ValueError(f"{key!r} has no counterpart in the original TorchSSC (it has no 2D-prior input)"
                         if key.startswith("stage2.seg_embed.") else
                         f"{key!r} has no counterpart in the original TorchSSC")
    return theirs


def our_key(key: str) -> str | None:
    """Our name of the original's state-dict ``key``; None when no prefix of the table matches."""
    return _swap_prefix(key, tuple((theirs, ours) for ours, theirs in PREFIXES))


def original_key_map(model: nn.Module) -> dict[str, str]:
    """``{the original's key: our key}`` for every entry of ``model.state_dict()`` (one to one).

    Raises:
        ValueError: a key of ``model`` has no counterpart in the original (a ``_prior`` model).
    """
    own = model.state_dict()
    key_map = {original_key(k): k for k in own}
    if len(key_map) != len(own):  # internal invariant of the table
        raise AssertionError("the key map sends two of our keys to one of the original's")
    return key_map


def dead_branch_shapes(model: nn.Module) -> dict[str, torch.Size]:
    """The original's names and shapes of the dead branches that ``model`` does not build: the
    ``downsample2/3/4`` tensors of every stride-1 ``Bottleneck3D`` (216 for every SketchAwareSSC).
    """
    shapes: dict[str, torch.Size] = {}
    for name, block in model.named_modules():
        if not isinstance(block, Bottleneck3D) or block.stride != 1:
            continue
        with torch.device("meta"):  # names and shapes only
            branch = _resize_branch(block.conv1.out_channels, (1, 1, 1)).state_dict()
        prefix = original_key(f"{name}.")
        for which in DEAD_BRANCHES:
            shapes.update({f"{prefix}{which}.{k}": v.shape for k, v in branch.items()})
    return shapes


def strip_data_parallel(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without the ``module.`` prefix when every key has it (``nn.DataParallel``)."""
    sd = dict(state_dict)
    if sd and all(str(k).startswith(DATA_PARALLEL_PREFIX) for k in sd):
        sd = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in sd.items()}
    return sd


def is_original_checkpoint(obj: object) -> bool:
    """True for the original's ``epoch-N.pth`` contents: a dict with a ``"model"`` state dict in
    its naming (a key under one of its own prefixes, e.g. ``stage1.oper1.``) and neither our
    ``"config"`` nor ``"format_version"``."""
    if not isinstance(obj, dict) or "config" in obj or "format_version" in obj:
        return False
    sd = obj.get("model")
    if not isinstance(sd, dict) or not sd:
        return False
    return any(str(k).startswith(_ORIGINAL_ONLY) for k in strip_data_parallel(sd))


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if torch.is_tensor(value) else f"a {type(value).__name__}, not a tensor"


def _names(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def from_original_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *,
                             source: str = "state dict", name: str | None = None
                             ) -> tuple[dict[str, torch.Tensor], int]:
    """Our state dict for ``model`` from a state dict in the original's naming.

    Args:
        model: a SketchAwareSSC (any device, ``meta`` included: only names, shapes and strides
            are read).
        state_dict: the original's ``"model"`` entry (a ``module.`` prefix on every key is removed).
        source, name: the file and the model's name in the error message (default: its class).
    Returns:
        ``(our state dict, skipped)``: the file's own tensors (not copied, dtypes kept) under our
        names, and how many dead-branch tensors were skipped (216 for a complete file).
    Raises:
        ValueError: one line: the tensors missing from the file, the file's tensors with no place
            in ``model`` (dead branches excepted), and those of another shape, each named in the
            original's naming (the first four of each kind, with the count of the rest).
    """
    key_map = original_key_map(model)
    dead = dead_branch_shapes(model)
    sd = strip_data_parallel(state_dict)
    own = model.state_dict()
    missing = [k for k in key_map if k not in sd]
    unexpected = [k for k in sd if k not in key_map and k not in dead]
    reshaped = [f"{k!r} is {_shape(sd[k])}, expected {tuple(own[key_map[k]].shape)}"
                for k in key_map if k in sd and (not torch.is_tensor(sd[k]) or sd[k].shape != own[key_map[k]].shape)]
    if missing or unexpected or reshaped:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor{'s' * (len(missing) > 1)}: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor{'s' * (len(unexpected) > 1)}: {_names(unexpected)}")
        if reshaped:
            more = f" and {len(reshaped) - 4} more" if len(reshaped) > 4 else ""
            parts.append(f"wrong shape: {', '.join(reshaped[:4])}{more}")
        raise ValueError(f"{source}: does not fit model {name or type(model).__name__!r} in the original "
                         f"TorchSSC's naming: {'; '.join(parts)}")
    skipped = sum(1 for k in sd if k in dead)
    return {key_map[k]: sd[k] for k in key_map}, skipped


def to_original_state_dict(model_or_state: nn.Module | Mapping[str, torch.Tensor], *,
                           dead_branches: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Our state dict (or a model's) under the original's names.

    Args:
        model_or_state: a SketchAwareSSC, or a state dict of one.
        dead_branches: a SketchAwareSSC whose dead branches are added (:func:`dead_branch_shapes`),
            filled as freshly built modules are, deterministically: conv weights 0, BatchNorm
            weight 1, bias 0, running mean 0, variance 1, counter 0 (never used in forward, so
            their values do not matter); a file the original's code loads strictly needs them.
    Raises:
        ValueError: a key without counterpart (:func:`original_key`).
    """
    sd = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    out = {original_key(k): v for k, v in sd.items()}
    if dead_branches is not None:
        for key, shape in dead_branch_shapes(dead_branches).items():
            fill = 1.0 if key.endswith((".2.weight", ".2.running_var")) else 0.0
            dtype = torch.int64 if key.endswith("num_batches_tracked") else torch.float32
            out[key] = torch.full(shape, fill, dtype=dtype)
    return out


__all__ = [
    "DEAD_BRANCHES", "ORIGINAL_FORMAT", "PREFIXES", "dead_branch_shapes", "from_original_state_dict",
    "is_original_checkpoint", "original_key", "original_key_map", "our_key", "strip_data_parallel",
    "to_original_state_dict",
]
