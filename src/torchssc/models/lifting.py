"""2D -> 3D lifting through the voxel -> pixel ``mapping``: features (SketchAwareSSC stage 2) and
per-pixel labels (the 2D segmentation prior); see docs/model.md.

Every label-grid voxel takes the value of its mapped pixel (``mapping``, flat ``v * W + u``;
``H * W`` = no pixel -> zero). Only the few thousand mapped pixels are ever read, so nothing here
builds an image-sized tensor.

* :func:`lift_features`: a reduced feature map ``(B, C, h, w)`` is read with the bilinear weights of
  its ``align_corners=True`` upsampling to the image ``(H, W)`` (the paper's x16 upsample, then a
  per-voxel gather), evaluated at exactly the mapped pixels: no ``C x H x W`` tensor (128 x 480 x
  640 floats = 157 MB per sample, plus its gradient).
* :func:`lift_and_fill`: the same, followed by the paper's zero fill ("3D init"): where a voxel's
  feature is exactly 0 (per channel element), add the 3x3x3 average of its neighbours (zero
  padding counted, divisor 27). The lifted volume is zero except at the mapped voxels, so the fill
  is computed around them only.
* :func:`lift_labels`: per-pixel class ids ``(B, H, W)`` (e.g. the NYU-13 prior) lifted as one-hot
  vectors, with the same fill by default: equal to lifting the ``(B, K, H, W)`` one-hot image with
  :func:`lift_and_fill`, without building it.

align_corners=True bilinear, for output row ``v`` of ``H`` from an input of ``h`` rows:
``y = v * (h - 1) / (H - 1)``, ``y0 = floor(y)``, ``y1 = min(y0 + 1, h - 1)``, weights
``1 - (y - y0)`` and ``y - y0``; likewise for columns. Any ``h, w`` works (not only H/16).
The dense reference paths (full-size upsample + gather, dense fill) live in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_mapping(mapping: torch.Tensor, batch: int, grid_shape: tuple[int, int, int],
                   image_size: tuple[int, int]) -> None:
    n = grid_shape[0] * grid_shape[1] * grid_shape[2]
    if mapping.dim() != 2 or mapping.shape != (batch, n):
        raise ValueError(f"mapping must be (B, {n}) = (B, prod(grid_shape)) with "
                         f"B = {batch}, got {tuple(mapping.shape)}")
    if mapping.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"mapping must be an integer tensor, got {mapping.dtype}")
    if image_size[0] < 1 or image_size[1] < 1:
        raise ValueError(f"image_size must be positive (H, W), got {image_size}")


def _check(features: torch.Tensor, mapping: torch.Tensor, grid_shape: tuple[int, int, int],
           image_size: tuple[int, int]) -> None:
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, h, w), got {tuple(features.shape)}")
    _check_mapping(mapping, features.shape[0], grid_shape, image_size)


def _axis_weights(pos: torch.Tensor, n_out: int, n_in: int, dtype: torch.dtype, align_corners: bool = True):
    """Source indices and weights along one axis for output positions ``pos`` (int64).

    Computed in ``dtype`` (float32, or float64 for float64 features), as torch's upsampling does.
    ``align_corners=False``: ``src = max(0, (pos + 0.5) * n_in / n_out - 0.5)`` (torch's rule).
    """
    if align_corners:
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = pos.to(dtype) * scale
    else:
        src = ((pos.to(dtype) + 0.5) * (n_in / n_out) - 0.5).clamp_(min=0)
    i0 = src.floor().to(torch.int64).clamp_(max=n_in - 1)
    frac = src - i0.to(dtype)
    i1 = (i0 + 1).clamp_(max=n_in - 1)
    return i0, i1, frac


def _mapped(mapping: torch.Tensor, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows (M,)`` int64 positions in the flattened ``(B*N,)`` voxels that have a pixel
    (ascending; anything outside ``[0, H*W)`` is "no pixel") and ``pixels (M,)`` their flat pixel
    index ``v * W + u``."""
    flat = mapping.reshape(-1).to(torch.int64)                      # (B*N,)
    valid = (flat >= 0) & (flat < image_size[0] * image_size[1])
    rows = valid.nonzero().squeeze(1)                              # (M,)
    return rows, flat[rows]


def _sample_mapped(features: torch.Tensor, mapping: torch.Tensor, image_size: tuple[int, int],
                   align_corners: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The mapped voxels and their bilinear features.

    Returns ``rows (M,)`` as :func:`_mapped` and ``values (M, C)`` the bilinear upsample
    (``align_corners`` as torch's) of ``features (B, C, h, w)`` read at their pixels.
    """
    b, c, h, w = features.shape
    big_h, big_w = image_size
    n = mapping.shape[1]
    rows, pix = _mapped(mapping, image_size)
    batch = torch.div(rows, n, rounding_mode="floor")
    opmath = torch.float64 if features.dtype == torch.float64 else torch.float32
    y0, y1, fy = _axis_weights(torch.div(pix, big_w, rounding_mode="floor"), big_h, h, opmath, align_corners)
    x0, x1, fx = _axis_weights(pix % big_w, big_w, w, opmath, align_corners)
    table = features.permute(0, 2, 3, 1).reshape(b * h * w, c)     # (B*h*w, C) one row per pixel
    base = batch * (h * w)
    fy, fx = fy.to(features.dtype).unsqueeze(1), fx.to(features.dtype).unsqueeze(1)
    top = table[base + y0 * w + x0] * (1 - fx) + table[base + y0 * w + x1] * fx
    bottom = table[base + y1 * w + x0] * (1 - fx) + table[base + y1 * w + x1] * fx
    return rows, top * (1 - fy) + bottom * fy                      # (M,), (M, C)


def _scatter(rows: torch.Tensor, values: torch.Tensor, b: int, grid_shape: tuple[int, int, int],
             ) -> torch.Tensor:
    """``values (M, C)`` written at the flattened voxels ``rows (M,)`` of a zero volume:
    ``(B, C, D, Hg, Wg)`` (a view of a contiguous ``(B, D, Hg, Wg, C)``, differentiable)."""
    c = values.shape[1]
    n = grid_shape[0] * grid_shape[1] * grid_shape[2]
    out = values.new_zeros(b * n, c).index_copy(0, rows, values)   # (B*N, C)
    return out.view(b, *grid_shape, c).permute(0, 4, 1, 2, 3)


def _neighbours(rows: torch.Tensor, grid_shape: tuple[int, int, int], n: int,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The in-grid 3x3x3 neighbourhoods (self included) of the flattened voxels ``rows (M,)``.

    Returns ``source (K,)`` indices into ``rows`` and ``target (K,)`` flattened ``(B*N,)``
    positions of their neighbours, K <= 27 M (neighbours outside the grid are left out: the
    zero padding of the original's average pool).
    """
    d, hg, wg = grid_shape
    voxel = rows % n
    base = rows - voxel
    coords = (torch.div(voxel, hg * wg, rounding_mode="floor"),
              torch.div(voxel, wg, rounding_mode="floor") % hg, voxel % wg)
    step = torch.tensor([-1, 0, 1], device=rows.device)
    offsets = torch.cartesian_prod(step, step, step)                # (27, 3)
    moved = [c.unsqueeze(0) + offsets[:, k:k + 1] for k, c in enumerate(coords)]  # 3 x (27, M)
    inside = ((moved[0] >= 0) & (moved[0] < d) & (moved[1] >= 0) & (moved[1] < hg)
              & (moved[2] >= 0) & (moved[2] < wg))
    target = base.unsqueeze(0) + (moved[0] * hg + moved[1]) * wg + moved[2]
    source = torch.arange(rows.numel(), device=rows.device).expand(27, -1)
    return source[inside], target[inside]


def _fill_sparse(rows: torch.Tensor, values: torch.Tensor, b: int,
                 grid_shape: tuple[int, int, int]) -> torch.Tensor:
    """The zero fill of the volume that holds ``values (M, C)`` at the flattened voxels
    ``rows (M,)`` (ascending) and 0 elsewhere, computed around those voxels only.

    Its 3x3x3 mean is non-zero only in their neighbourhoods: each value / 27 is summed into its
    (at most 27) in-grid neighbours, a mapped voxel keeps its own non-zero elements (the rule
    ``V + mean * [V == 0]``), and the result is written into a zero volume. Returns
    ``(B, C, D, Hg, Wg)`` contiguous, differentiable w.r.t. ``values``.
    """
    c = values.shape[1]
    n = grid_shape[0] * grid_shape[1] * grid_shape[2]
    source, target = _neighbours(rows, grid_shape, n)               # (K,), (K,)
    touched, slot = torch.unique(target, sorted=True, return_inverse=True)  # (S,), (K,)
    pooled = values.new_zeros(touched.numel(), c).index_add_(
        0, slot, (values / 27).index_select(0, source))              # (S, C) box mean
    own = torch.searchsorted(touched, rows)                         # (M,) slot of each mapped voxel
    zero = (values == 0).to(values.dtype)
    filled = values + pooled.index_select(0, own) * zero           # the original's V + mean * [V == 0]
    pooled = pooled.index_copy(0, own, filled)
    out = values.new_zeros(b, c, n)
    first = torch.searchsorted(touched, torch.arange(b + 1, device=rows.device) * n).tolist()
    for i in range(b):  # frames of the batch (not voxels): scatter each frame's columns
        part = slice(first[i], first[i + 1])
        out[i, :, touched[part] - i * n] = pooled[part].t()
    return out.view(b, c, *grid_shape)


def lift_features(
    features: torch.Tensor,
    mapping: torch.Tensor,
    grid_shape: tuple[int, int, int],
    image_size: tuple[int, int],
) -> torch.Tensor:
    """Voxel features from a reduced 2D feature map, sampled only at the mapped pixels.

    Args:
        features: ``(B, C, h, w)`` float feature map (any h, w).
        mapping: ``(B, D*Hg*Wg)`` int64 flat pixel index ``v * W + u`` per voxel (C-order over
            ``grid_shape``); ``H * W`` (or anything outside ``[0, H*W)``) = no pixel.
        grid_shape: ``(D, Hg, Wg)`` voxel grid, e.g. ``(60, 36, 60)``.
        image_size: ``(H, W)`` of the image the mapping refers to, e.g. ``(480, 640)``.
    Returns:
        ``(B, C, D, Hg, Wg)`` with ``features.dtype``: the align_corners=True bilinear upsample of
        ``features`` to ``(H, W)`` read at each voxel's pixel, 0 where there is none (equal, to
        float rounding, to the full-size upsample + gather of the tests); differentiable w.r.t.
        ``features``. The result is contiguous in ``torch.channels_last_3d`` memory format.
    """
    _check(features, mapping, grid_shape, image_size)
    rows, values = _sample_mapped(features, mapping, image_size)
    return _scatter(rows, values, features.shape[0], grid_shape)


def lift_and_fill(
    features: torch.Tensor,
    mapping: torch.Tensor,
    grid_shape: tuple[int, int, int],
    image_size: tuple[int, int],
    *,
    align_corners: bool = True,
) -> torch.Tensor:
    """:func:`lift_features` followed by the zero fill, computed around the mapped voxels only.

    The fill: where an element of the lifted volume is exactly 0 (per channel, as the original:
    post-ReLU zeros of mapped voxels are filled too), add the 3x3x3 mean of its neighbourhood,
    zero padding counted (``/ 27`` everywhere, borders included). Same maths as the dense
    original (float sums in another order: equal to ~1e-7 relative).

    Arguments as :func:`lift_features`; ``align_corners=False`` reads the upsample that
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` gives (AMMNet's projection).
    Returns ``(B, C, D, Hg, Wg)`` contiguous (NCDHW), differentiable w.r.t. ``features``.
    """
    _check(features, mapping, grid_shape, image_size)
    rows, values = _sample_mapped(features, mapping, image_size, align_corners)  # (M,), (M, C)
    return _fill_sparse(rows, values, features.shape[0], grid_shape)


def lift_labels(
    labels: torch.Tensor,
    mapping: torch.Tensor,
    grid_shape: tuple[int, int, int],
    num_classes: int,
    *,
    fill: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """One-hot per-pixel class ids lifted into the voxel grid (the 2D segmentation prior).

    Each voxel with a pixel takes the one-hot vector of that pixel's id, every other voxel 0;
    with ``fill`` the zero fill of :func:`lift_and_fill` follows. Equal to
    ``lift_and_fill(one_hot(labels) as (B, K, H, W), mapping, grid_shape, (H, W))`` (the upsample
    to the same size is the identity), without the ``K x H x W`` image: only the mapped pixels'
    ids are read.

    Args:
        labels: ``(B, H, W)`` integer class ids in ``[0, num_classes)`` (e.g. NYU-13: 0 = void,
            1..13), at the resolution the mapping refers to (480 x 640 for NYU).
        mapping: ``(B, D*Hg*Wg)`` integer flat pixel index ``v * W + u``; ``H * W`` = no pixel.
        grid_shape: ``(D, Hg, Wg)``.
        num_classes: ``K``, the one-hot channels (14 for NYU-13 with void).
        fill: apply the zero fill (default) or return the plain lifted one-hot volume.
        dtype: floating dtype of the result.
    Returns:
        ``(B, K, D, Hg, Wg)`` ``dtype``, contiguous; no gradient (the input is discrete).
    Raises:
        ValueError: bad shapes or dtypes, or a mapped pixel whose id is outside ``[0, K)``.
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be (B, H, W), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    b, h, w = labels.shape
    _check_mapping(mapping, b, grid_shape, (h, w))
    n = mapping.shape[1]
    rows, pix = _mapped(mapping, (h, w))                            # (M,), (M,)
    ids = labels.reshape(-1).index_select(0, torch.div(rows, n, rounding_mode="floor") * (h * w) + pix).long()
    if ids.numel() and bool((ids.min() < 0) | (ids.max() >= num_classes)):
        raise ValueError(f"labels at mapped pixels must be in [0, {num_classes}), got "
                         f"{int(ids.min())}..{int(ids.max())}")
    values = F.one_hot(ids, num_classes).to(dtype)                  # (M, K)
    if fill:
        return _fill_sparse(rows, values, b, grid_shape)
    return _scatter(rows, values, b, grid_shape).contiguous()


__all__ = ["lift_and_fill", "lift_features", "lift_labels"]
