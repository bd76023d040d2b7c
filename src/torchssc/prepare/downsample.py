"""Fine (240x144x240) -> label grid (60x36x60) downsampling of labels and TSDF (docs/data.md).

Labels are first mapped to the dataset's classes (NYU: 36 -> 11, as
:func:`torchssc.geometry.map_36_to_11`; any ``label_map`` of a dataset spec), then each 4x4x4
block gets one label:

``tie_rule="default"`` (TorchSSC / the published Python preprocessing)
    If at least 61 of the 64 voxels are 0 or 255 (SSCNet's ``> 0.95 * 64``), the block is 0
    when ``#0 >= #255`` else 255 (a tie gives 0, as in the released NYU files). Otherwise it is the most frequent class in 1..11, ties to the
    smallest class id.

``tie_rule="sscnet"`` (SSCNet's own ``DownsampleLabel`` / ``modeLargerZero``)
    Same threshold, but both branches take a *mode computed by scanning the block*: the block
    is scanned in SSCNet's loop order — its x outermost, z innermost, where SSCNet's (x, y, z)
    are our array axes (c, b, a), i.e. **Fortran order of the (a, b, c) block** — and for each
    element the number of equal elements *after* it is counted; the first element whose count
    strictly exceeds the best so far wins. Hence: the value with the largest count, ties to the
    value whose first occurrence comes first in that scan; and, faithfully reproduced, if no
    value occurs twice the result is 0. The empty branch takes the mode of all 64 values
    (0 or 255; a 32/32 tie goes to whichever comes first in the scan); the other branch only
    considers classes 1..11 (a block with 4+ labelled voxels of pairwise different classes
    becomes 0).

The TorchSSC TSDF (``arr_0``) is the plain mean of the 64 fine values (unobserved = 0), summed
as the released files were: a float32 running sum in scan order, then divided by 64.
"""

from __future__ import annotations

import numpy as np

from typing import Sequence

from torchssc.geometry import DOWNSAMPLE, IGNORE_LABEL, NUM_CLASSES, NYU36_TO_11

EMPTY_FRACTION = 0.95
"""A block with more than this fraction of 0/255 voxels (61 of 64) is empty (0) or outside (255)."""
TIE_RULES = ("default", "sscnet")


def _check_shape(shape: tuple[int, ...], factor: int, what: str) -> tuple[int, int, int]:
    if len(shape) != 3 or any(s % factor or s == 0 for s in shape):
        raise ValueError(f"{what} must be a 3-D grid with sizes divisible by {factor}, got shape {shape}")
    return tuple(s // factor for s in shape)


def block_reduce(volume: np.ndarray, ufunc: np.ufunc, factor: int = DOWNSAMPLE, dtype=None) -> np.ndarray:
    """Reduce ``factor³`` blocks with a binary ufunc (``np.add``, ``np.minimum``, ...).

    Works with strided slices, one axis at a time (much faster than a 6-D reshape reduction).

    Args:
        volume: ``(D, H, W)``, sizes divisible by ``factor``.
        ufunc: associative, commutative binary ufunc.
        dtype: accumulator dtype after the first (innermost-axis) step; default: the input's.
    Returns:
        ``(D/f, H/f, W/f)`` array.
    """
    d, h, w = _check_shape(volume.shape, factor, "volume")
    out = volume[:, :, 0::factor].copy()  # (D, H, w): innermost axis first
    for i in range(1, factor):
        ufunc(out, volume[:, :, i::factor], out=out)
    if dtype is not None:
        out = out.astype(dtype)
    split = out.reshape(d * factor, h, factor, w)  # middle axis
    out = split[:, :, 0].copy()
    for i in range(1, factor):
        ufunc(out, split[:, :, i], out=out)
    split = out.reshape(d, factor, h, w)  # first axis
    out = split[:, 0].copy()
    for i in range(1, factor):
        ufunc(out, split[:, i], out=out)
    return out


def _block_offsets(shape: tuple[int, int, int], factor: int, order: str) -> np.ndarray:
    """Flat offsets of a block's ``factor³`` voxels in a C-order grid of ``shape``.

    ``order="C"``: offsets (a, b, c) in C order; ``"F"``: in Fortran order (a fastest), which is
    SSCNet's scan order (module docstring).
    """
    a, b, c = np.meshgrid(*(np.arange(factor),) * 3, indexing="ij")
    flat = (a * shape[1] + b) * shape[2] + c
    return flat.ravel(order=order)


def _block_values(volume: np.ndarray, blocks: np.ndarray, factor: int, order: str) -> np.ndarray:
    """``(N, factor³)`` values of the coarse blocks with flat coarse indices ``blocks``."""
    small = tuple(s // factor for s in volume.shape)
    i, j, k = np.unravel_index(blocks, small)
    base = ((i * factor) * volume.shape[1] + j * factor) * volume.shape[2] + k * factor
    return volume.ravel()[base[:, None] + _block_offsets(volume.shape, factor, order)[None, :]]


def _counts(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """``(N, K) uint8`` codes in ``0..n_codes-1`` -> ``(N, n_codes) int64`` counts per row."""
    n = codes.shape[0]
    keys = codes.astype(np.int64) + n_codes * np.arange(n, dtype=np.int64)[:, None]
    return np.bincount(keys.ravel(), minlength=n * n_codes).reshape(n, n_codes)


def _scan_mode(codes: np.ndarray, counts: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """SSCNet's scan-order mode over the ``allowed`` codes (see module docstring).

    Args:
        codes: ``(N, K)`` codes in scan order. counts: ``(N, C)``. allowed: ``(C,) bool``.
    Returns:
        ``(N,) int64`` winning code, or 0 where no allowed code occurs at least twice.
    """
    k = codes.shape[1]
    first = np.full(counts.shape, k, dtype=np.int64)
    for code in np.flatnonzero(allowed):
        hit = codes == code
        first[:, code] = np.where(hit.any(axis=1), hit.argmax(axis=1), k)
    score = np.where(allowed[None, :] & (counts >= 2), counts, 0)
    best = score.max(axis=1, keepdims=True)
    # among codes reaching the best count, the earliest first occurrence
    candidates = np.where((score == best) & (best > 0), first, k + 1)
    winner = candidates.argmin(axis=1)
    return np.where(best[:, 0] > 0, winner, 0)


def _code_lut(label_map: Sequence[int] | None, num_classes: int) -> np.ndarray:
    """``(256,) uint8``: label value -> code ``0..num_classes-1`` (classes), ``num_classes`` (255)
    or ``num_classes + 1`` (invalid).

    ``label_map``: source id -> class (NYU36 -> 11); ``None``: values are already class ids.
    """
    lut = np.full(256, num_classes + 1, dtype=np.uint8)
    if label_map is not None:
        lut[: len(label_map)] = np.asarray(label_map, dtype=np.uint8)
    else:
        lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_LABEL] = num_classes
    return lut


def downsample_labels(
    labels: np.ndarray,
    *,
    factor: int = DOWNSAMPLE,
    tie_rule: str = "default",
    raw: bool = True,
    label_map: Sequence[int] | None = None,
    num_classes: int = NUM_CLASSES,
) -> np.ndarray:
    """Downsample a fine label grid by ``factor`` per axis.

    Args:
        labels: ``(D, H, W)`` integer labels, raw NYU36 (0..36, 255) when ``raw`` else 0..11/255.
        factor: block edge (4 for 240x144x240 -> 60x36x60).
        tie_rule: ``"default"`` or ``"sscnet"`` (module docstring).
        raw: map the source ids first (``label_map``; NYU36 -> 11 when it is ``None``).
        label_map: source id -> class id of the dataset (its spec's ``label_map``).
        num_classes: classes of the dataset, empty included (12 for NYU).
    Returns:
        ``(D/f, H/f, W/f) uint8`` labels ``0..num_classes-1`` or 255.
    """
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    labels = np.asarray(labels)
    small = _check_shape(labels.shape, factor, "labels")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"labels must be in 0..255, got range {labels.min()}..{labels.max()}")
        labels = labels.astype(np.uint8)
    if raw and label_map is None:
        label_map = NYU36_TO_11
    lut = _code_lut(label_map if raw else None, num_classes)
    n_codes = num_classes + 1  # codes: the classes, then 255
    invalid = n_codes  # the code of a value the map does not know
    # Most blocks are uniform: their label is their (mapped) value under both rules. The 36 -> 11
    # map is applied to the uniform values and to the voxels of mixed blocks only.
    lo = block_reduce(labels, np.minimum, factor).ravel()
    hi = block_reduce(labels, np.maximum, factor).ravel()
    mixed = np.flatnonzero(lo != hi)
    out = lut[lo]
    codes = lut[_block_values(labels, mixed, factor, "F" if tie_rule == "sscnet" else "C")]
    if (out[lo == hi] == invalid).any() or (codes == invalid).any():
        bad = np.unique(labels[lut[labels] == invalid])[:10].tolist()
        allowed = (f"0..{len(label_map) - 1} or 255 (raw source ids)" if raw
                   else f"0..{num_classes - 1} or 255 (pass raw=True for source ids)")
        raise ValueError(f"labels must be in {allowed}, found {bad}")
    if mixed.size:
        counts = _counts(codes, n_codes)
        n_empty = counts[:, 0] + counts[:, n_codes - 1]
        empty = n_empty > EMPTY_FRACTION * factor ** 3
        if tie_rule == "default":
            empty_label = np.where(counts[:, 0] >= counts[:, n_codes - 1], 0, n_codes - 1)
            class_label = counts[:, 1 : n_codes - 1].argmax(axis=1) + 1
        else:
            all_codes = np.ones(n_codes, dtype=bool)
            classes = np.zeros(n_codes, dtype=bool)
            classes[1 : n_codes - 1] = True
            empty_label = _scan_mode(codes, counts, all_codes)
            class_label = _scan_mode(codes, counts, classes)
        code = np.where(empty, empty_label, class_label)
        out[mixed] = code
    out[out == n_codes - 1] = IGNORE_LABEL
    return out.reshape(small)


def downsample_mean(volume: np.ndarray, factor: int = DOWNSAMPLE) -> np.ndarray:
    """Mean over ``factor³`` blocks: a float32 running sum, then one division.

    The sum runs over the block's voxels in scan order (first axis outermost, last innermost),
    which reproduces the released TorchSSC TSDF bit for bit.

    Args:
        volume: ``(D, H, W)`` float values (e.g. the TorchSSC fine TSDF, unobserved = 0).
    Returns:
        ``(D/f, H/f, W/f) float32``.
    """
    volume = np.asarray(volume, dtype=np.float32)
    _check_shape(volume.shape, factor, "volume")
    total = np.zeros(tuple(s // factor for s in volume.shape), dtype=np.float32)
    for i in range(factor):
        for j in range(factor):
            for k in range(factor):
                total += volume[i::factor, j::factor, k::factor]
    return total / np.float32(factor ** 3)
