"""Fine (240x144x240) -> label grid (60x36x60) downsampling of labels and TSDF (SPEC §4.2).

Labels are first mapped 36 -> 11 (:func:`torchssc.geometry.map_36_to_11`), then each 4x4x4
block gets one label:

``tie_rule="default"`` (TorchSSC / the published Python preprocessing)
    If at least 61 of the 64 voxels are 0 or 255 (SSCNet's ``> 0.95 * 64``), the block is 0
    when ``#0 > #255`` else 255. Otherwise it is the most frequent class in 1..11, ties to the
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

The TorchSSC TSDF (``arr_0``) is the plain mean of the 64 fine values (unobserved = 0).
"""

from __future__ import annotations

import numpy as np

from torchssc.geometry import DOWNSAMPLE, IGNORE_LABEL, map_36_to_11

EMPTY_FRACTION = 0.95
"""A block with more than this fraction of 0/255 voxels (61 of 64) is empty (0) or outside (255)."""
TIE_RULES = ("default", "sscnet")
_NUM_CODES = 13  # labels 0..11, and 12 standing for 255


def _check_shape(shape: tuple[int, ...], factor: int, what: str) -> tuple[int, int, int]:
    if len(shape) != 3 or any(s % factor or s == 0 for s in shape):
        raise ValueError(f"{what} must be a 3-D grid with sizes divisible by {factor}, got shape {shape}")
    return tuple(s // factor for s in shape)


def block_view(volume: np.ndarray, factor: int = DOWNSAMPLE, order: str = "C") -> np.ndarray:
    """Rearrange a ``(D, H, W)`` volume into ``(D/f * H/f * W/f, f³)`` blocks (a copy).

    Rows follow the C order of the coarse grid. Within a row, ``order="C"`` lists the block's
    voxels in C order of their offsets (a, b, c); ``order="F"`` in Fortran order (SSCNet's scan).
    """
    small = _check_shape(volume.shape, factor, "volume")
    blocks = volume.reshape(small[0], factor, small[1], factor, small[2], factor)
    if order == "C":
        blocks = blocks.transpose(0, 2, 4, 1, 3, 5)
    elif order == "F":
        blocks = blocks.transpose(0, 2, 4, 5, 3, 1)
    else:
        raise ValueError(f"order must be 'C' or 'F', got {order!r}")
    return np.ascontiguousarray(blocks).reshape(-1, factor ** 3)


def _counts(codes: np.ndarray) -> np.ndarray:
    """``(N, K) uint8`` codes in 0..12 -> ``(N, 13) int64`` counts per row."""
    n = codes.shape[0]
    keys = codes.astype(np.int64) + _NUM_CODES * np.arange(n, dtype=np.int64)[:, None]
    return np.bincount(keys.ravel(), minlength=n * _NUM_CODES).reshape(n, _NUM_CODES)


def _scan_mode(codes: np.ndarray, counts: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """SSCNet's scan-order mode over the ``allowed`` codes (see module docstring).

    Args:
        codes: ``(N, K)`` codes in scan order. counts: ``(N, 13)``. allowed: ``(13,) bool``.
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


def downsample_labels(
    labels: np.ndarray,
    *,
    factor: int = DOWNSAMPLE,
    tie_rule: str = "default",
    raw: bool = True,
) -> np.ndarray:
    """Downsample a fine label grid by ``factor`` per axis.

    Args:
        labels: ``(D, H, W)`` integer labels, raw NYU36 (0..36, 255) when ``raw`` else 0..11/255.
        factor: block edge (4 for 240x144x240 -> 60x36x60).
        tie_rule: ``"default"`` or ``"sscnet"`` (module docstring).
        raw: map 36 -> 11 first.
    Returns:
        ``(D/f, H/f, W/f) uint8`` labels 0..11 or 255.
    """
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    labels = np.asarray(labels)
    small = _check_shape(labels.shape, factor, "labels")
    mapped = map_36_to_11(labels) if raw else np.asarray(labels, dtype=np.uint8)
    if not raw and not np.all((mapped <= 11) | (mapped == IGNORE_LABEL)):
        raise ValueError("labels must be in 0..11 or 255 (pass raw=True for NYU36 ids)")
    blocks = block_view(mapped, factor, order="F" if tie_rule == "sscnet" else "C")
    # Most blocks are uniform: their label is their value under both rules.
    lo, hi = blocks.min(axis=1), blocks.max(axis=1)
    out = lo.copy()
    mixed = np.flatnonzero(lo != hi)
    if mixed.size:
        codes = blocks[mixed]
        codes[codes == IGNORE_LABEL] = _NUM_CODES - 1
        counts = _counts(codes)
        n_empty = counts[:, 0] + counts[:, _NUM_CODES - 1]
        empty = n_empty > EMPTY_FRACTION * factor ** 3
        if tie_rule == "default":
            empty_label = np.where(counts[:, 0] > counts[:, _NUM_CODES - 1], 0, _NUM_CODES - 1)
            class_label = counts[:, 1 : _NUM_CODES - 1].argmax(axis=1) + 1
        else:
            all_codes = np.ones(_NUM_CODES, dtype=bool)
            classes = np.zeros(_NUM_CODES, dtype=bool)
            classes[1 : _NUM_CODES - 1] = True
            empty_label = _scan_mode(codes, counts, all_codes)
            class_label = _scan_mode(codes, counts, classes)
        code = np.where(empty, empty_label, class_label)
        out[mixed] = np.where(code == _NUM_CODES - 1, IGNORE_LABEL, code).astype(np.uint8)
    return out.reshape(small)


def downsample_mean(volume: np.ndarray, factor: int = DOWNSAMPLE) -> np.ndarray:
    """Plain mean over ``factor³`` blocks.

    Args:
        volume: ``(D, H, W)`` float values (e.g. the TorchSSC fine TSDF, unobserved = 0).
    Returns:
        ``(D/f, H/f, W/f) float32``.
    """
    volume = np.asarray(volume, dtype=np.float32)
    d, h, w = _check_shape(volume.shape, factor, "volume")
    # Sum the contiguous axis first (cheap), then the others, in float64 for a faithful mean.
    s = volume.reshape(-1, factor).sum(axis=1, dtype=np.float64).reshape(d * factor, h * factor, w)
    s = s.reshape(d * factor, h, factor, w).sum(axis=2)
    s = s.reshape(d, factor, h, w).sum(axis=1)
    return (s / factor ** 3).astype(np.float32)
