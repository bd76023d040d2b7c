"""Training-time transforms of a batch: random flips along the two horizontal axes
(``train.flip``) and the observed free space supervised as empty (``train.free_space_empty``);
docs/training.md, "Augmentation and free space".

Both act on a collated batch (every tensor with a leading ``B``) in the training loop, after it
reached the device, and never in validation or evaluation (those go through
:func:`torchssc.engine.evaluate.score_model`, which knows nothing of them).

**Flips.** Grid axes are [world X, world Z (up), world Y] (SPEC §1), so the horizontal axes are
a volume's first and last grid axes (tensor dims ``-3`` and ``-1``). Each sample is flipped along
X with probability 1/2 and, independently, along Y with probability 1/2. Every key of a sample
follows one rule of :data:`FLIP_RULES`, so that the flipped sample is the sample of the mirrored
scene:

=====================  ==========  ==============================================================
key                    rule        what happens
=====================  ==========  ==============================================================
``tsdf``               ``grid``    ``(B, 1, D0, D1, D2)``: dims -3 / -1 reversed
``label``              ``grid``    ``(B, D0, D1, D2)``: idem
``label_weight``       ``grid``    idem
``sketch_gt``          ``grid``    idem
``visibility``         ``grid``    idem
``tsdf_fine``          ``grid``    ``(B, 1, 4*D0, 4*D1, 4*D2)``: idem (the same box, finer)
``label_fine``         ``grid``    ``(B, 4*D0, 4*D1, 4*D2)``: idem
``forknet_tsdf``       ``grid``    ``(B, 1, 80, 48, 80)``: idem (ForkNet's grid of the same box)
``forknet_label``      ``grid``    ``(B, 80, 48, 80)``: idem
``forknet_surface``    ``grid``    idem
``mapping``            ``flat``    ``(B, D0*D1*D2)`` voxel -> pixel: viewed as ``(B, D0, D1, D2)``,
                                   reversed like a volume, flattened back; the pixel indices
                                   themselves are kept (voxel ``v`` of the flipped scene holds
                                   the pixel of the voxel it mirrors), so the lifting of the
                                   image onto the flipped grid is the flipped lifting
``rgb``                ``image``   unchanged: the image is not flipped (the mapping says where
``prior``              ``image``   each pixel goes)
``depth``              ``image``   unchanged
``pose``               ``camera``  removed from the batch: the mirrored scene has no proper
``origin``             ``camera``  camera (a reflection is not a rotation); a run whose model or
``intrinsics``         ``camera``  loss reads them (DDRNet, AICNet, VVNet back-project the depth
                                   with them) is refused (:func:`check_flip_inputs`)
=====================  ==========  ==============================================================

Any other tensor in the batch is an error (:class:`ValueError` naming it): a new volume must get
its rule here, never pass through unflipped. Non-tensors (``id``) are kept.

The draws are a pure function of ``(seed, iteration)``, made for the GLOBAL batch and sliced by
rank like the frames themselves (:mod:`torchssc.engine.sampler`): N processes see exactly the
flips one process with the whole global batch sees, and a resumed run draws the same flips (no
RNG state to save).

**Free space.** The paper's loss looks only at voxels with ``label_weight > 0`` (occupied or
occluded, SPEC §4.3); the empty space the depth shows is never supervised.
:func:`free_space_targets` adds it: on voxels whose TSDF is > 0 (the TorchSSC TSDF is the mean of
the fine TSDF with unobserved voxels 0, and observed fine voxels in front of the surface are
positive, SPEC §4.1: a positive mean means the depth sees the block, mostly in front of the
surface) and whose ground truth is empty (0) or ignored (255), the label becomes 0 and the weight
1. Where the ground truth is occupied (1..K-1) it is kept, with its weight (already 1): the
annotation is more reliable than one depth frame, which misses thin objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch

FLIP_RULES: dict[str, str] = {
    "tsdf": "grid", "label": "grid", "label_weight": "grid", "sketch_gt": "grid", "visibility": "grid",
    "tsdf_fine": "grid", "label_fine": "grid",
    "forknet_tsdf": "grid", "forknet_label": "grid", "forknet_surface": "grid",
    "mapping": "flat",
    "rgb": "image", "prior": "image", "depth": "image",
    "pose": "camera", "origin": "camera", "intrinsics": "camera",
}
"""How each batch key flips (module docstring): ``grid`` reverses the volume's first and/or last
grid axis (tensor dims -3, -1), ``flat`` does so on the voxel -> pixel list viewed as the label
grid, ``image`` keeps the 2D input, ``camera`` removes the key (runs reading it are refused)."""

CAMERA_KEYS = tuple(k for k, rule in FLIP_RULES.items() if rule == "camera")

FLIP_STREAM = 0x666C6970
"""The flips' own stream in ``SeedSequence([seed, iteration, FLIP_STREAM])`` (ASCII "flip"), apart
from the sampler's ``[seed, epoch]``."""


def flip_draws(seed: int, iteration: int, global_batch: int) -> np.ndarray:
    """The flips of one training step for the whole global batch.

    Returns:
        ``(global_batch, 2) bool``: row ``i`` is ``(flip along X, flip along Y)`` of the ``i``-th
        frame of the step's global batch; each entry is 1/2-probable, independently. A pure
        function of ``(seed, iteration)``; row ``i`` does not depend on ``global_batch``.
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(iteration), FLIP_STREAM])))
    return rng.random((int(global_batch), 2)) < 0.5


def check_flip_inputs(readers: Mapping[str, str] | Iterable[str]) -> None:
    """Refuse flips for a run that reads a ``camera`` key (``readers``: ``{key: who reads it}``, as
    :func:`torchssc.engine.builders.run_inputs` gives, or the keys)."""
    readers = dict(readers) if isinstance(readers, Mapping) else {k: "" for k in readers}
    bad = [k for k in readers if FLIP_RULES.get(k) == "camera"]
    if bad:
        who = readers[bad[0]] or "this run"
        raise ValueError(f"train.flip: {who} reads {bad} (the camera, to back-project the depth), which a mirrored "
                         f"scene does not have; flips are for models that read the TSDF, the mapping and the "
                         f"images (docs/training.md)")


def _flip_rows(t: torch.Tensor, rows: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` with the samples ``rows`` (``(B,) bool``) reversed along ``dim``."""
    if not bool(rows.any()):
        return t
    rows = rows.to(t.device)
    out = t.clone()
    out[rows] = t[rows].flip(dim)
    return out


def _flip_volume(key: str, t: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """A ``(B, ..., S0, S1, S2)`` volume with sample ``b`` reversed along dim -3 where
    ``flips[b, 0]`` and along dim -1 where ``flips[b, 1]``."""
    if t.dim() < 4:
        raise ValueError(f"flip: batch key '{key}' should be a volume (B, ..., S0, S1, S2), got {tuple(t.shape)}")
    return _flip_rows(_flip_rows(t, flips[:, 0], -3), flips[:, 1], -1)


def flip_batch(batch: dict, flips: torch.Tensor | np.ndarray, grid: tuple[int, int, int]) -> dict:
    """Flip each sample of a collated ``batch`` as ``flips`` says, every key by :data:`FLIP_RULES`.

    Args:
        batch: ``{key: (B, ...) tensor}`` (plus non-tensors such as ``id``, kept).
        flips: ``(B, 2) bool``: ``(along X = dim -3, along Y = dim -1)`` per sample.
        grid: the label grid ``(D0, D1, D2)`` the ``mapping`` is flattened over (the spec's).

    Returns:
        A new dict: flipped volumes and mapping, images unchanged, the camera keys removed.

    Raises:
        ValueError: a tensor key without a rule, a volume that is not one, a mapping or ``flips``
            of the wrong shape.
    """
    flips = flips.detach().cpu().bool() if torch.is_tensor(flips) else torch.as_tensor(np.asarray(flips, dtype=bool))
    unknown = sorted(k for k, v in batch.items() if torch.is_tensor(v) and k not in FLIP_RULES)
    if unknown:
        raise ValueError(f"flip: no rule for batch key(s) {unknown}: add each to torchssc.data.augment.FLIP_RULES "
                         f"(known: {', '.join(FLIP_RULES)})")
    sizes = {v.shape[0] for v in batch.values() if torch.is_tensor(v)}
    if flips.shape != (next(iter(sizes), flips.shape[0]), 2) or len(sizes) > 1:
        raise ValueError(f"flip: flips must be (B, 2) for a batch of {sorted(sizes)} samples, got {tuple(flips.shape)}")
    out: dict = {}
    for key, value in batch.items():
        rule = FLIP_RULES.get(key)
        if not torch.is_tensor(value) or rule == "image":
            out[key] = value
        elif rule == "grid":
            out[key] = _flip_volume(key, value, flips)
        elif rule == "flat":
            n = grid[0] * grid[1] * grid[2]
            if value.dim() != 2 or value.shape[1] != n:
                raise ValueError(f"flip: '{key}' must be (B, {n}) over the grid {tuple(grid)}, got {tuple(value.shape)}")
            out[key] = _flip_volume(key, value.reshape(-1, *grid), flips).reshape(value.shape)
        # rule == "camera": dropped
    return out


def free_space_targets(tsdf: torch.Tensor, label: torch.Tensor, label_weight: torch.Tensor, *,
                       ignore_id: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """The targets with the observed free space supervised as empty (module docstring).

    Args:
        tsdf: the TorchSSC TSDF, ``(B, 1, D0, D1, D2)`` (or any shape of ``label``'s numel).
        label: ``(B, D0, D1, D2)`` integer, 0 empty, 1..K-1 classes, ``ignore_id``.
        label_weight: ``(B, D0, D1, D2)`` 0/1.

    Returns:
        ``(label, label_weight)``, new tensors: where ``tsdf > 0`` and the label is 0 or
        ``ignore_id``, label 0 and weight 1; elsewhere as given.
    """
    if tsdf.numel() != label.numel() or label.shape != label_weight.shape:
        raise ValueError(f"free space: tsdf {tuple(tsdf.shape)}, label {tuple(label.shape)} and label_weight "
                         f"{tuple(label_weight.shape)} must cover the same grid")
    free = (tsdf.reshape(label.shape) > 0) & ((label == 0) | (label == ignore_id))
    return (torch.where(free, torch.zeros_like(label), label),
            torch.where(free, torch.ones_like(label_weight), label_weight))


@dataclass(frozen=True)
class TrainingTransform:
    """What ``train.flip`` and ``train.free_space_empty`` do to each training batch.

    Call as ``transform(batch, iteration)`` with this rank's slice of the step's global batch
    (``iteration``: the 0-based step, counted over the whole run).

    Attributes:
        grid: the label grid (the dataset spec's), for the mapping.
        flip: random flips along X and Y (:func:`flip_batch`, :func:`flip_draws`).
        free_space: :func:`free_space_targets` on ``label`` / ``label_weight``.
        seed: ``train.seed``.
        ignore_id: the spec's ignore label.
        rank, world_size: this process's slice of the global batch.
    """

    grid: tuple[int, int, int]
    flip: bool = False
    free_space: bool = False
    seed: int = 0
    ignore_id: int = 255
    rank: int = 0
    world_size: int = 1

    def __call__(self, batch: dict, iteration: int) -> dict:
        if self.flip:
            local = next(v.shape[0] for v in batch.values() if torch.is_tensor(v))
            draws = flip_draws(self.seed, iteration, local * self.world_size)
            batch = flip_batch(batch, draws[self.rank * local:(self.rank + 1) * local], self.grid)
        if self.free_space:
            label, weight = free_space_targets(batch["tsdf"], batch["label"], batch["label_weight"],
                                               ignore_id=self.ignore_id)
            batch = {**batch, "label": label, "label_weight": weight}
        return batch
