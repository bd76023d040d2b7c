"""2D -> 3D feature lifting of SketchAwareSSC stage 2 (SPEC §5.1).

The original upsamples the reduced feature map ``(B, C, h, w)`` (h = H/16) to the full image
``(B, C, H, W)`` with bilinear interpolation (``align_corners=True``), then gives every label-grid
voxel the feature of its mapped pixel (``mapping``, flat ``v * W + u``; ``H * W`` = no pixel ->
zero feature). Only the few thousand mapped pixels are ever read, so :func:`lift_features`
evaluates the same bilinear interpolation at exactly those pixels and never materialises the
``C x H x W`` tensor (128 x 480 x 640 floats = 157 MB per sample, plus its gradient).
:func:`lift_features_naive` is the original's path, kept as the reference for tests and the
benchmark.

align_corners=True bilinear, for output row ``v`` of ``H`` from an input of ``h`` rows:
``y = v * (h - 1) / (H - 1)``, ``y0 = floor(y)``, ``y1 = min(y0 + 1, h - 1)``, weights
``1 - (y - y0)`` and ``y - y0``; likewise for columns. Any ``h, w`` works (not only H/16).

:func:`fill_unmapped` is the original's "3D init": where a voxel's feature is exactly 0 (per
channel element), add the 3x3x3 average of its neighbours (zero padding counted, divisor 27).
:func:`lift_and_fill` (the model's fast path) computes ``fill_unmapped(lift_features(...))``
on the mapped voxels and their neighbourhoods only, since the lifted volume is zero elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(features: torch.Tensor, mapping: torch.Tensor, grid_shape: tuple[int, int, int],
           image_size: tuple[int, int]) -> None:
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, h, w), got {tuple(features.shape)}")
    n = grid_shape[0] * grid_shape[1] * grid_shape[2]
    if mapping.dim() != 2 or mapping.shape != (features.shape[0], n):
        raise ValueError(f"mapping must be (B, {n}) = (B, prod(grid_shape)) with "
                         f"B = {features.shape[0]}, got {tuple(mapping.shape)}")
    if mapping.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"mapping must be an integer tensor, got {mapping.dtype}")
    if image_size[0] < 1 or image_size[1] < 1:
        raise ValueError(f"image_size must be positive (H, W), got {image_size}")


def _axis_weights(pos: torch.Tensor, n_out: int, n_in: int, dtype: torch.dtype):
    """Source indices and weights along one axis for output positions ``pos`` (int64).

    Computed in ``dtype`` (float32, or float64 for float64 features), as torch's upsampling does.
    """
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    src = pos.to(dtype) * scale
    i0 = src.floor().to(torch.int64).clamp_(max=n_in - 1)
    frac = src - i0.to(dtype)
    i1 = (i0 + 1).clamp_(max=n_in - 1)
    return i0, i1, frac


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
        ``features`` to ``(H, W)`` read at each voxel's pixel, 0 where there is none. Equal to
        :func:`lift_features_naive` (to float rounding); differentiable w.r.t. ``features``.
        The result is contiguous in ``torch.channels_last_3d`` memory format.
    """
    _check(features, mapping, grid_shape, image_size)
    b, c = features.shape[:2]
    n = mapping.shape[1]
    rows, values = _sample_mapped(features, mapping, image_size)
    out = features.new_zeros(b * n, c).index_copy(0, rows, values)  # (B*N, C)
    return out.view(b, *grid_shape, c).permute(0, 4, 1, 2, 3)       # (B, C, D, Hg, Wg)


def _sample_mapped(features: torch.Tensor, mapping: torch.Tensor, image_size: tuple[int, int],
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The mapped voxels and their bilinear features.

    Returns ``rows (M,)`` int64 positions in the flattened ``(B*N,)`` voxels that have a pixel
    (ascending) and ``values (M, C)`` the align_corners=True bilinear upsample of ``features``
    read at their pixels.
    """
    b, c, h, w = features.shape
    big_h, big_w = image_size
    n = mapping.shape[1]
    flat = mapping.reshape(-1).to(torch.int64)                      # (B*N,)
    valid = (flat >= 0) & (flat < big_h * big_w)
    rows = valid.nonzero().squeeze(1)                              # (M,) positions in B*N
    pix = flat[rows]
    batch = torch.div(rows, n, rounding_mode="floor")
    opmath = torch.float64 if features.dtype == torch.float64 else torch.float32
    y0, y1, fy = _axis_weights(torch.div(pix, big_w, rounding_mode="floor"), big_h, h, opmath)
    x0, x1, fx = _axis_weights(pix % big_w, big_w, w, opmath)
    table = features.permute(0, 2, 3, 1).reshape(b * h * w, c)     # (B*h*w, C) one row per pixel
    base = batch * (h * w)
    fy, fx = fy.to(features.dtype).unsqueeze(1), fx.to(features.dtype).unsqueeze(1)
    top = table[base + y0 * w + x0] * (1 - fx) + table[base + y0 * w + x1] * fx
    bottom = table[base + y1 * w + x0] * (1 - fx) + table[base + y1 * w + x1] * fx
    return rows, top * (1 - fy) + bottom * fy                      # (M,), (M, C)


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


def lift_and_fill(
    features: torch.Tensor,
    mapping: torch.Tensor,
    grid_shape: tuple[int, int, int],
    image_size: tuple[int, int],
) -> torch.Tensor:
    """``fill_unmapped(lift_features(...))`` computed on the mapped voxels and their neighbours only.

    The lifted volume is zero except at the M mapped voxels (a few thousand of 129,600), so its
    3x3x3 average is non-zero only in their neighbourhoods: this sums each mapped feature / 27
    into its (at most 27) in-grid neighbours, keeps a mapped voxel's own non-zero elements, and
    writes the result into a zero volume. No dense pooling, no full-size mask; same maths as the
    original (float sums in another order: equal to ~1e-7 relative).

    Arguments as :func:`lift_features`. Returns ``(B, C, D, Hg, Wg)`` contiguous (NCDHW),
    differentiable w.r.t. ``features``.
    """
    _check(features, mapping, grid_shape, image_size)
    b, c = features.shape[:2]
    n = mapping.shape[1]
    rows, values = _sample_mapped(features, mapping, image_size)    # (M,), (M, C)
    source, target = _neighbours(rows, grid_shape, n)               # (K,), (K,)
    touched, slot = torch.unique(target, sorted=True, return_inverse=True)  # (S,), (K,)
    pooled = values.new_zeros(touched.numel(), c).index_add_(
        0, slot, (values / 27).index_select(0, source))              # (S, C) box mean
    own = torch.searchsorted(touched, rows)                         # (M,) slot of each mapped voxel
    zero = (values == 0).to(values.dtype)
    filled = values + pooled.index_select(0, own) * zero           # the original's V + mean * [V == 0]
    pooled = pooled.index_copy(0, own, filled)
    out = features.new_zeros(b, c, n)
    first = torch.searchsorted(touched, torch.arange(b + 1, device=rows.device) * n).tolist()
    for i in range(b):  # frames of the batch (not voxels): scatter each frame's columns
        part = slice(first[i], first[i + 1])
        out[i, :, touched[part] - i * n] = pooled[part].t()
    return out.view(b, c, *grid_shape)


def lift_features_naive(
    features: torch.Tensor,
    mapping: torch.Tensor,
    grid_shape: tuple[int, int, int],
    image_size: tuple[int, int],
) -> torch.Tensor:
    """The original's lifting: full-resolution upsample, then a per-sample gather.

    Same arguments and result as :func:`lift_features` (output contiguous, NCDHW); materialises
    ``(B, C, H, W)``. Reference for tests and the benchmark only.
    """
    _check(features, mapping, grid_shape, image_size)
    b, c = features.shape[:2]
    big_h, big_w = image_size
    up = F.interpolate(features, size=(big_h, big_w), mode="bilinear", align_corners=True)
    table = torch.cat([up.reshape(b, c, big_h * big_w), up.new_zeros(b, c, 1)], dim=2)
    index = mapping.to(torch.int64).clone()
    index[(index < 0) | (index > big_h * big_w)] = big_h * big_w
    out = [table[i].index_select(1, index[i]) for i in range(b)]    # B x (C, N)
    return torch.stack(out).view(b, c, *grid_shape)


def fill_unmapped(volume: torch.Tensor) -> torch.Tensor:
    """Where an element of ``volume`` is exactly 0, add the 3x3x3 mean of its neighbourhood.

    Args:
        volume: ``(B, C, D, H, W)`` float.
    Returns:
        ``volume + avg_pool3d(volume, 3, stride 1, padding 1, zero padding counted) * (volume == 0)``
        (same shape; the mean divides by 27 everywhere, borders included). Elementwise per
        channel, as the original (a mapped voxel's post-ReLU zeros are filled too).
    """
    if volume.dim() != 5:
        raise ValueError(f"volume must be (B, C, D, H, W), got {tuple(volume.shape)}")
    pooled = F.avg_pool3d(volume, 3, stride=1, padding=1, count_include_pad=True)
    return volume + pooled * (volume == 0).to(volume.dtype)
