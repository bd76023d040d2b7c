"""Load DDRNet/AICNet weights saved by the authors' public code, with one documented key map.

The authors' training script saves ``{"state_dict": model.state_dict()}`` of a model wrapped in
``nn.DataParallel``, so every key starts with ``module.``. Their layer names differ from ours only
by the renames below; the tensors are the same shapes, because our 3D network runs in their grid
layout (``trunk_layout="yzx"``) and every 1-D kernel therefore lies along the same axis as theirs.

Key map, ours -> theirs (applied to each dotted key; ``i`` counts from 0 in ours, 1 in theirs):

============================================  ==============================================
ours                                          the authors'
============================================  ==============================================
``dep_stages.i.`` / ``rgb_stages.i.``         ``res3d_{i+1}d.`` / ``res3d_{i+1}r.``
``head.``                                     ``conv_out.``
``aspp.branch0.`` (DDRNet)                    ``aspp.aspp0.``
``aspp.dilated.i.`` (DDRNet)                  ``aspp.aspp{i+1}.``
``aspp.pool_conv.`` (DDRNet)                  ``aspp.global_avg_pool.1.``
``fusion.i.`` (AICNet)                        ``aspp_{i+1}.``
``conv_w`` / ``conv_h`` (2D DDR block)        ``conv_1xk`` / ``conv_kx1``
``conv_last`` / ``conv_mid`` / ``conv_first``  ``conv1x1x3`` / ``conv1x3x1`` / ``conv3x1x1``
(3D DDR block)
``aic`` / ``modulation`` (AIC block)          ``basic_aic`` / ``conv_mx``
``convs.2.k`` / ``convs.1.k`` / ``convs.0.k``  ``conv_1x1xk.k`` / ``conv_1xkx1.k`` / ``conv_kx1x1.k``
(AIC block; the first index is the axis)
============================================  ==============================================

Every other component (``dep_feature2d``, ``rgb_feature3d``, ``conv_in``, ``conv_out`` inside a
block, ``conv``, ``weight``, ``bias``, Sequential indices) is the same. The projection has no
parameters in either.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from torchssc.models.two_stream import TwoStreamRGBD

DATA_PARALLEL_PREFIX = "module."

_PREFIXES = (  # (pattern at the start of our key, replacement): the table's first six rows
    (re.compile(r"^dep_stages\.(\d+)\."), lambda m: f"res3d_{int(m[1]) + 1}d."),
    (re.compile(r"^rgb_stages\.(\d+)\."), lambda m: f"res3d_{int(m[1]) + 1}r."),
    (re.compile(r"^head\."), lambda m: "conv_out."),
    (re.compile(r"^aspp\.branch0\."), lambda m: "aspp.aspp0."),
    (re.compile(r"^aspp\.dilated\.(\d+)\."), lambda m: f"aspp.aspp{int(m[1]) + 1}."),
    (re.compile(r"^aspp\.pool_conv\."), lambda m: "aspp.global_avg_pool.1."),
    (re.compile(r"^fusion\.(\d+)\."), lambda m: f"aspp_{int(m[1]) + 1}."),
)
_NAMES = {
    "conv_w": "conv_1xk",
    "conv_h": "conv_kx1",
    "conv_last": "conv1x1x3",
    "conv_mid": "conv1x3x1",
    "conv_first": "conv3x1x1",
    "aic": "basic_aic",
    "modulation": "conv_mx",
}
_AIC_AXES = {"0": "conv_kx1x1", "1": "conv_1xkx1", "2": "conv_1x1xk"}


def authors_key(key: str) -> str:
    """The authors' name of our state-dict ``key`` (the module docstring's table)."""
    for pattern, repl in _PREFIXES:
        key, n = pattern.subn(repl, key, count=1)
        if n:
            break
    parts = key.split(".")
    out: list[str] = []
    i = 0
    while i < len(parts):
        if parts[i] == "convs" and i + 1 < len(parts) and parts[i + 1] in _AIC_AXES:
            out.append(_AIC_AXES[parts[i + 1]])  # convs.<axis>.<k> -> conv_<axis name>.<k>
            i += 2
            continue
        out.append(_NAMES.get(parts[i], parts[i]))
        i += 1
    return ".".join(out)


def authors_key_map(model: TwoStreamRGBD) -> dict[str, str]:
    """``{authors' key: our key}`` for every entry of ``model.state_dict()`` (one to one)."""
    key_map = {authors_key(k): k for k in model.state_dict()}
    if len(key_map) != len(model.state_dict()):  # internal invariant of the table
        raise AssertionError("the key map sends two of our keys to one of the authors'")
    return key_map


def load_authors_state_dict(model: TwoStreamRGBD, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a state dict in the authors' key naming into ``model``, strictly.

    Args:
        model: a DDRNet or AICNet built with ``trunk_layout="yzx"`` (the default), the only layout
            in which their weights compute their function.
        state_dict: the authors' keys -> tensors: the ``"state_dict"`` entry of their checkpoint,
            loaded with ``torch.load(path, weights_only=True, map_location="cpu")``. A ``module.`` prefix
            (``nn.DataParallel``) on every key is removed; on only some keys it is an error.
    Raises:
        ValueError: a wrong layout; any key missing or unexpected (all are listed, in the authors'
            naming); any tensor whose shape differs from ours (named).
    """
    if not isinstance(model, TwoStreamRGBD):
        raise ValueError(f"expected a DDRNet or AICNet, got {type(model).__name__}")
    if model.trunk_layout != "yzx":
        raise ValueError(
            f"the authors' weights compute their function only with trunk_layout='yzx'; "
            f"this model runs {model.trunk_layout!r}"
        )
    sd = dict(state_dict)
    if sd and all(k.startswith(DATA_PARALLEL_PREFIX) for k in sd):
        sd = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in sd.items()}
    key_map = authors_key_map(model)
    missing = sorted(set(key_map) - set(sd))
    unexpected = sorted(set(sd) - set(key_map))
    if missing or unexpected:
        raise ValueError(
            f"{model.name} state dict in the authors' naming does not match: "
            f"missing {missing or 'none'}; unexpected {unexpected or 'none'}"
        )
    ours = model.state_dict()
    for theirs, mine in key_map.items():
        if tuple(sd[theirs].shape) != tuple(ours[mine].shape):
            raise ValueError(
                f"{theirs!r} has shape {tuple(sd[theirs].shape)}, but our {mine!r} is {tuple(ours[mine].shape)}"
            )
    model.load_state_dict({key_map[k]: v for k, v in sd.items()}, strict=True)
