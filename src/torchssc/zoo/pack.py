"""A training checkpoint -> a zoo file: the weights and the recipe only, optionally in half
precision (docs/zoo.md, "Adding an entry").

A training checkpoint also holds the optimiser, scheduler and RNG states (about twice the weights
for AdamW); a zoo file keeps :data:`torchssc.engine.checkpoint.REQUIRED_KEYS` (what ``eval`` and
``predict`` read) plus where it came from. ``half=True`` stores the floating-point tensors as
float16 (half the size again); loading casts them back to the model's float32, so only the
rounding of each weight changes: re-measure the figures from the packed file (``torchssc eval
--weights NAME``) before quoting them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from torchssc.engine.checkpoint import REQUIRED_KEYS, load_checkpoint, save_checkpoint
from torchssc.zoo.resolve import sha256_of


def half_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every float32/float64 tensor as float16; other tensors (BN counters) kept."""
    return {k: v.half() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state.items()}


def pack_weights(checkpoint: str | os.PathLike, out: str | os.PathLike, *, half: bool = False) -> tuple[int, str]:
    """Write the zoo file of ``checkpoint`` to ``out`` (atomically).

    Returns:
        ``(size in bytes, sha256)`` of the written file, the registry's ``size`` and ``sha256``.
    Raises:
        FileNotFoundError, ValueError: as :func:`torchssc.engine.checkpoint.load_checkpoint`.
    """
    state = load_checkpoint(checkpoint, map_location="cpu")
    packed = {key: state[key] for key in REQUIRED_KEYS}
    if half:
        packed["model"] = half_state(packed["model"])
    packed["packed_from"] = {"file": Path(checkpoint).name, "precision": "float16" if half else "as trained"}
    save_checkpoint(out, packed)
    return Path(out).stat().st_size, sha256_of(out)
