"""The 240 -> 60 label rule, in torch: a prediction made on another grid, brought to the
benchmark's label grid for scoring.

The benchmark scores class ids on the 60x36x60 label grid (0.08 m), built from the fine
240x144x240 labels (0.02 m) by the 240 -> 60 rule of :mod:`torchssc.prepare.downsample`
(``tie_rule="default"``): a 4x4x4 block with at least 61 of its 64 voxels in {0, 255} is 0 when
it holds more 0 than 255 voxels, else 255; any other block is its most frequent class among
1..11, ties to the smallest id.

A model whose output grid is not the label grid is scored by the same rule
(docs/baselines.md, "Scoring native-resolution models"):

1. take the argmax at the model's own resolution;
2. bring it to the fine grid by nearest repetition: ``k`` fine voxels per output voxel along each
   axis (``k = 3`` for ForkNet's 0.06 m grid, ``k = 1`` for a full-resolution 0.02 m output);
3. reduce it to the label grid with the rule above, exactly as the ground truth was made.

So a prediction equal to the fine ground truth (or, for ``k = 3``, to any fine truth that is
constant on 3x3x3 blocks), with its outside-room voxels (255) predicted empty, is reduced to the
label-grid truth wherever that truth is scored (the rule counts 0 and 255 alike; a block it
makes 255 is ignored by every protocol): it scores 100 %. The output-to-fine factor ``k`` is
read from the shapes: ``k = 4 * label_size / output_size`` must be the same integer on every
axis. ``k = 4`` (output on the label grid) leaves the prediction as it is.

Every function takes a batch of class-id volumes ``(B, D, H, W)`` (axes as
:mod:`torchssc.geometry`: world X, up, world Y) on any device.
"""

from __future__ import annotations

import torch

from torchssc.geometry import DOWNSAMPLE, IGNORE_LABEL, NUM_CLASSES

EMPTY_FRACTION = 0.95
"""As :data:`torchssc.prepare.downsample.EMPTY_FRACTION`: more than 95 % of a block in {0, 255}
(61 of 64 voxels) makes it empty or outside."""


def fine_factor(output_shape: tuple[int, ...], label_shape: tuple[int, ...], factor: int = DOWNSAMPLE) -> int:
    """Fine voxels per output voxel along each axis: ``factor * label / output``, the same
    integer on the three axes.

    Args:
        output_shape: the prediction's spatial shape ``(D, H, W)``.
        label_shape: the label grid's ``(D', H', W')``, ``factor`` fine voxels per label voxel.
    Raises:
        ValueError: the grids are not nested that way (not an integer, or not the same on every
            axis).
    """
    output_shape, label_shape = tuple(int(s) for s in output_shape), tuple(int(s) for s in label_shape)
    if len(output_shape) != 3 or len(label_shape) != 3:
        raise ValueError(f"expected 3-D grids, got output {output_shape} and labels {label_shape}")
    ks = {(factor * l) // o if (factor * l) % o == 0 else None for o, l in zip(output_shape, label_shape)}
    if len(ks) != 1 or None in ks or 0 in ks:
        raise ValueError(
            f"a prediction of shape {output_shape} cannot be scored on the label grid {label_shape}: "
            f"{factor} x label size / output size must be the same integer on every axis"
        )
    return ks.pop()


def repeat_grid(pred: torch.Tensor, k: int) -> torch.Tensor:
    """Nearest repetition: ``(B, D, H, W)`` -> ``(B, kD, kH, kW)``, each voxel copied ``k³`` times."""
    if pred.dim() != 4:
        raise ValueError(f"pred must be (B, D, H, W), got {tuple(pred.shape)}")
    if k == 1:
        return pred
    b, d, h, w = pred.shape
    # (B, D, 1, H, 1, W, 1) -> expand each axis k times -> (B, kD, kH, kW)
    return pred[:, :, None, :, None, :, None].expand(b, d, k, h, k, w, k).reshape(b, d * k, h * k, w * k)


def reduce_labels(fine: torch.Tensor, factor: int = DOWNSAMPLE, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """The benchmark's label rule (module docstring) on a batch, in torch.

    Equal to :func:`torchssc.prepare.downsample.downsample_labels` with ``raw=False`` and
    ``tie_rule="default"``, frame by frame (tested).

    Args:
        fine: ``(B, D, H, W)`` integer labels ``0..num_classes-1`` or 255, sizes divisible by ``factor``.
        num_classes: classes of the dataset, empty included (its spec's; 12 for NYU).
    Returns:
        ``(B, D/f, H/f, W/f) uint8`` labels 0..11 or 255, on ``fine``'s device.
    """
    if fine.dim() != 4 or any(s % factor for s in fine.shape[1:]):
        raise ValueError(f"fine labels must be (B, D, H, W) with D, H, W divisible by {factor}, got {tuple(fine.shape)}")
    b, d, h, w = fine.shape
    blocks = fine.reshape(b, d // factor, factor, h // factor, factor, w // factor, factor)
    cells = (2, 4, 6)

    def count(value: int) -> torch.Tensor:
        return (blocks == value).sum(dim=cells, dtype=torch.int32)  # (B, d, h, w)

    n_empty, n_out = count(0), count(IGNORE_LABEL)
    per_class = torch.stack([count(c) for c in range(1, num_classes)], dim=-1)  # (B, d, h, w, K-1)
    class_label = per_class.argmax(dim=-1).to(torch.uint8) + 1  # first maximum: smallest class id
    empty_label = torch.where(n_empty >= n_out, 0, IGNORE_LABEL).to(torch.uint8)
    is_empty = (n_empty + n_out) > EMPTY_FRACTION * factor ** 3
    return torch.where(is_empty, empty_label, class_label)


def to_label_grid(pred: torch.Tensor, label_shape: tuple[int, ...], factor: int = DOWNSAMPLE,
                  num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Class ids on the model's grid -> class ids on the label grid (module docstring).

    Args:
        pred: ``(B, D, H, W)`` integer class ids 0..11 at the model's resolution.
        label_shape: ``(D', H', W')`` of the label grid.
        factor: fine voxels per label voxel (the spec's ``fine_factor``).
        num_classes: the dataset's classes (its spec's).
    Returns:
        ``(B, *label_shape) uint8``; ``pred`` itself (as uint8) when it already is on that grid.
    """
    k = fine_factor(tuple(pred.shape[1:]), tuple(label_shape), factor)
    if k == factor:
        return pred.to(torch.uint8)
    return reduce_labels(repeat_grid(pred.to(torch.uint8), k), factor, num_classes)


def benchmark_prediction(logits: torch.Tensor, label_shape: tuple[int, ...]) -> torch.Tensor:
    """``(B, C, D, H, W)`` logits at any nested resolution -> ``(B, *label_shape) uint8`` class
    ids: the argmax, then :func:`to_label_grid`."""
    return to_label_grid(logits.argmax(1), label_shape)
