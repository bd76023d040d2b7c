"""2D -> 3D lifting for the RGB-D baselines, in plain torch (no compiled extension).

Three pieces, used by DDRNet/AICNet (scatter-max into the fine 240x144x240 grid) and VVNetR-120
(averaging into a 120x72x120 grid of 0.04 m voxels); ``docs/baselines.md`` describes both:

* :func:`pixel_to_voxel_index` -- for every pixel, the flat index of the voxel its
  back-projected depth point falls in, computed from ``depth``, ``pose``, ``origin`` and
  ``intrinsics`` (:func:`pixel_to_grid_coords`). Two arithmetics: ``"float64"`` equals
  :func:`torchssc.geometry.depth_to_grid_index`; ``"float32"`` repeats, operation for
  operation, the float32 computation of the DDRNet/AICNet authors' data loader, so that a
  coordinate of exactly x.5 there is x.5 here too. Pixels with no depth or whose point lies
  outside the grid get the **dummy** index ``prod(grid_shape)``, one slot past the grid, which the
  scatters below drop. (The authors' loader leaves those pixels at index 0, so they all land in
  voxel 0, a corner voxel: a known defect we do not reproduce.)
* :func:`scatter_max_to_grid` -- per voxel, the element-wise max of the features of the pixels in
  it and 0 (``Tensor.scatter_reduce_(..., "amax", include_self=True)`` on a zero tensor).
* :func:`scatter_mean_to_grid` -- per voxel, the mean of the features of the pixels in it, 0 where
  no pixel falls.

Grid layouts: ``"xzy"`` is the axis order of :mod:`torchssc.geometry` ([world X, world Z (up),
world Y]); ``"yzx"`` swaps the first and last axes, the order in which the DDRNet/AICNet authors
run their 3D network. The order matters for those two networks (their blocks are not symmetric
in the two horizontal axes), not for SSCNet or VVNet (``docs/baselines.md``, "Grid layout").
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from torchssc.geometry import FINE_SHAPE, FINE_VOXEL

ROUNDINGS = ("floor", "rint")
PRECISIONS = ("float64", "float32")
LAYOUTS = ("xzy", "yzx")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def layout_shape(grid_shape: tuple[int, int, int], layout: str) -> tuple[int, int, int]:
    """The array shape of a grid of ``grid_shape`` (given in ``"xzy"`` order) stored in ``layout``."""
    _check_choice("layout", layout, LAYOUTS)
    s0, s1, s2 = (int(s) for s in grid_shape)
    return (s0, s1, s2) if layout == "xzy" else (s2, s1, s0)


def _check_frame(depth, pose, origin, intrinsics) -> torch.Tensor:
    """Validate the shapes; return depth as ``(B, H, W)``."""
    if depth.dim() == 4:
        if depth.shape[1] != 1:
            raise ValueError(f"depth must be (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
        depth = depth[:, 0]
    if depth.dim() != 3:
        raise ValueError(f"depth must be (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
    b = depth.shape[0]
    if pose.shape != (b, 4, 4):
        raise ValueError(f"pose must be ({b}, 4, 4), got {tuple(pose.shape)}")
    if origin.shape != (b, 3):
        raise ValueError(f"origin must be ({b}, 3), got {tuple(origin.shape)}")
    if intrinsics.dim() != 2 or intrinsics.shape[0] != b or intrinsics.shape[1] not in (4, 6):
        raise ValueError(f"intrinsics must be ({b}, 6) or ({b}, 4), got {tuple(intrinsics.shape)}")
    return depth


def _camera_xy(depth: torch.Tensor, intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u - cx) * d / fx`` and ``(v - cy) * d / fy`` in float64, each ``(B, H, W)``."""
    b, h, w = depth.shape
    f64 = torch.float64
    d = depth.to(f64)
    k = intrinsics.to(f64)
    fx, fy, cx, cy = (k[:, i].view(b, 1, 1) for i in range(4))
    v, u = torch.meshgrid(
        torch.arange(h, device=depth.device, dtype=f64),
        torch.arange(w, device=depth.device, dtype=f64),
        indexing="ij",
    )
    return (u - cx) * d / fx, (v - cy) * d / fy


def _grid_coords_float32(depth, pose, origin, intrinsics, voxel_size) -> torch.Tensor:
    """The DDRNet/AICNet authors' arithmetic (Li et al., CVPR 2019 data loader), step by step.

    Camera x and y are computed in float64 from the depth and stored as float32; z is the depth
    as float32. Then, all in float32 and in this order: ``world_r = ((R_r0 x + R_r1 y) + R_r2 z) +
    t_r``, ``world_r - origin_r``, reordered to (X, Z, Y), divided by ``float32(voxel_size)``.
    Each step is a separate element-wise op (no matmul, no fused multiply-add) so that every
    intermediate is rounded to float32 as theirs is.
    """
    f32 = torch.float32
    x, y = (c.to(f32) for c in _camera_xy(depth, intrinsics))
    z = depth.to(torch.float64).to(f32)
    p = pose.to(f32)
    o = origin.to(f32)
    b = depth.shape[0]
    rel = []
    for r in range(3):
        coef = [p[:, r, j].view(b, 1, 1) for j in range(4)]
        world = coef[0] * x + coef[1] * y + coef[2] * z + coef[3]
        rel.append(world - o[:, r].view(b, 1, 1))
    unit = torch.tensor(voxel_size, dtype=f32, device=depth.device)  # a device tensor: true division
    return torch.stack([rel[0], rel[2], rel[1]], dim=-1) / unit


def pixel_to_grid_coords(
    depth: torch.Tensor,
    pose: torch.Tensor,
    origin: torch.Tensor,
    intrinsics: torch.Tensor,
    *,
    voxel_size: float = FINE_VOXEL,
    precision: str = "float64",
) -> torch.Tensor:
    """Continuous grid coordinates of every pixel's back-projected depth point.

    Args:
        depth: ``(B, 1, H, W)`` or ``(B, H, W)`` float, metres; 0 (or negative) = missing.
        pose: ``(B, 4, 4)`` camera-to-world.
        origin: ``(B, 3)`` world (x, y, z) of the grid corner, metres.
        intrinsics: ``(B, 6)`` or ``(B, 4)``: fx, fy, cx, cy[, W, H] in pixels (only the first four
            are used; the image size is the depth's).
        voxel_size: voxel edge in metres.
        precision: ``"float64"`` (every step in float64, as :mod:`torchssc.geometry`) or
            ``"float32"`` (the DDRNet/AICNet authors' float32 steps, :func:`_grid_coords_float32`).
    Returns:
        ``(B, H, W, 3)`` in ``precision``: ``(a, b, c)`` along (world X, world Z (up), world Y),
        in voxels from the grid corner; the voxel is ``floor`` or ``rint`` of it.

    With ``"float32"``, inputs given in float64 (depth, intrinsics) give the authors' coordinates
    bit for bit (their depth is float64, PNG value / 8000). The float32 depth and intrinsics of our
    datasets move the last bit of some coordinates (measured on the real NYU frame: 62,381 of
    307,200 pixels), which changed no voxel there (tested).
    """
    _check_choice("precision", precision, PRECISIONS)
    depth = _check_frame(depth, pose, origin, intrinsics)
    if precision == "float32":
        return _grid_coords_float32(depth, pose, origin, intrinsics, voxel_size)
    f64 = torch.float64
    b = depth.shape[0]
    x, y = _camera_xy(depth, intrinsics)
    cam = torch.stack([x, y, depth.to(f64)], dim=-1)  # (B, H, W, 3) camera xyz
    pose64 = pose.to(f64)
    world = cam @ pose64[:, None, :3, :3].transpose(-1, -2) + pose64[:, None, None, :3, 3]  # (B, H, W, 3)
    rel = (world - origin.to(f64).view(b, 1, 1, 3)) / voxel_size
    return rel[..., [0, 2, 1]]  # (B, H, W, 3): world X, Z (up), Y


def pixel_to_voxel_index(
    depth: torch.Tensor,
    pose: torch.Tensor,
    origin: torch.Tensor,
    intrinsics: torch.Tensor,
    *,
    grid_shape: tuple[int, int, int] = FINE_SHAPE,
    voxel_size: float = FINE_VOXEL,
    rounding: str = "floor",
    precision: str = "float64",
    layout: str = "xzy",
) -> torch.Tensor:
    """Flat voxel index of every pixel's back-projected depth point.

    Args:
        depth, pose, origin, intrinsics, voxel_size, precision: as :func:`pixel_to_grid_coords`.
        grid_shape: ``(S0, S1, S2)`` target grid in geometry axis order (X, Z-up, Y).
        rounding: ``"floor"`` (SSCNet / VVNet / TorchSSC lineage) or ``"rint"`` (the DDRNet/AICNet
            authors: round half to even, as ``np.rint``).
        layout: ``"xzy"`` (geometry order) or ``"yzx"`` (first and last axes swapped): the
            C-order of the flat index.
    Returns:
        ``(B, H*W) int64``; pixel ``v*W + u`` holds, for voxel ``(a, b, c)`` (X, Z, Y),
        ``a*S1*S2 + b*S2 + c`` (``"xzy"``) or ``c*S1*S0 + b*S0 + a`` (``"yzx"``), or
        ``S0*S1*S2`` (the dummy slot) when its depth is missing or the voxel is outside the grid.
    Raises:
        ValueError: on bad shapes or an unknown ``rounding``, ``precision`` or ``layout``.

    ``"float64"`` equals :func:`torchssc.geometry.depth_to_grid_index` (tested on the real frame).
    """
    _check_choice("index_rounding", rounding, ROUNDINGS)
    _check_choice("layout", layout, LAYOUTS)
    if len(grid_shape) != 3:
        raise ValueError(f"grid_shape must have 3 dims, got {grid_shape}")
    grid = pixel_to_grid_coords(depth, pose, origin, intrinsics, voxel_size=voxel_size, precision=precision)
    b, h, w, _ = grid.shape
    idx = torch.floor(grid) if rounding == "floor" else torch.round(grid)  # torch.round = half to even
    size = torch.tensor(grid_shape, device=grid.device, dtype=grid.dtype)
    d = depth.reshape(b, h, w)
    valid = (d > 0) & ((idx >= 0) & (idx < size)).all(dim=-1)  # (B, H, W)
    idx = torch.where(valid[..., None], idx, torch.zeros_like(idx)).to(torch.int64)
    s0, s1, s2 = (int(s) for s in grid_shape)
    if layout == "xzy":
        flat = (idx[..., 0] * s1 + idx[..., 1]) * s2 + idx[..., 2]
    else:
        flat = (idx[..., 2] * s1 + idx[..., 1]) * s0 + idx[..., 0]
    flat = torch.where(valid, flat, torch.full_like(flat, s0 * s1 * s2))
    return flat.reshape(b, h * w)


def _check_scatter_inputs(features: torch.Tensor, index: torch.Tensor, grid_shape) -> tuple[int, int, int]:
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got {tuple(features.shape)}")
    b, c, h, w = features.shape
    if index.shape != (b, h * w):
        raise ValueError(f"index must be ({b}, {h * w}) for features {tuple(features.shape)}, got {tuple(index.shape)}")
    if index.dtype != torch.int64:
        raise ValueError(f"index must be int64, got {index.dtype}")
    return b, c, h * w


def _flat_targets(index: torch.Tensor, c: int, numel: int) -> torch.Tensor:
    """``(B*C*P,) int64`` targets in a flat ``(B*C*numel + 1,)`` buffer: pixel ``p`` of channel ``k``
    of sample ``i`` goes to ``(i*C + k)*numel + index[i, p]``, or to the one dummy slot at the end
    when ``index[i, p] == numel``. Keeping the dummy at the very end makes the result a contiguous
    view of the buffer (no copy of the volume)."""
    b, n_pix = index.shape
    offsets = torch.arange(b * c, device=index.device, dtype=torch.int64).view(b, c, 1) * numel
    idx = index[:, None, :]
    return torch.where(idx < numel, idx + offsets, torch.full_like(idx, b * c * numel)).reshape(-1)


def scatter_max_to_grid(features: torch.Tensor, index: torch.Tensor, grid_shape: tuple[int, int, int]) -> torch.Tensor:
    """Lift pixel features into a voxel grid by max (DDRNet/AICNet ``Project2Dto3D``).

    Args:
        features: ``(B, C, H, W)`` float.
        index: ``(B, H*W) int64`` from :func:`pixel_to_voxel_index`; values in
            ``0..prod(grid_shape)``, the last being the dummy slot (dropped).
        grid_shape: ``(S0, S1, S2)``.
    Returns:
        ``(B, C, S0, S1, S2)`` contiguous: per voxel ``max(0, max over its pixels)``; 0 where no
        pixel falls. Gradients go to the arg-max pixel(s) (ties share them), none where the 0 wins.
    """
    b, c, n_pix = _check_scatter_inputs(features, index, grid_shape)
    numel = math.prod(grid_shape)
    out = features.new_zeros(b * c * numel + 1)  # +1: the dummy voxel for invalid pixels
    out.scatter_reduce_(0, _flat_targets(index, c, numel), features.reshape(-1), reduce="amax", include_self=True)
    return out[:-1].view(b, c, *grid_shape)


def scatter_mean_to_grid(features: torch.Tensor, index: torch.Tensor, grid_shape: tuple[int, int, int]) -> torch.Tensor:
    """Lift pixel features into a voxel grid by averaging (VVNet's view-volume projection).

    Args:
        features: ``(B, C, H, W)`` float.
        index: ``(B, H*W) int64`` as in :func:`scatter_max_to_grid` (dummy slot dropped).
        grid_shape: ``(S0, S1, S2)``.
    Returns:
        ``(B, C, S0, S1, S2)`` contiguous: per voxel the mean feature of its pixels; 0 where no
        pixel falls.
    """
    b, c, n_pix = _check_scatter_inputs(features, index, grid_shape)
    numel = math.prod(grid_shape)
    total = features.new_zeros(b * c * numel + 1)
    total.scatter_add_(0, _flat_targets(index, c, numel), features.reshape(-1))
    count = features.new_zeros(b * numel + 1)
    count.scatter_add_(0, _flat_targets(index, 1, numel), features.new_ones(b * n_pix))
    return total[:-1].view(b, c, *grid_shape).div_(count[:-1].clamp_min_(1.0).view(b, 1, *grid_shape))


class DepthProjection(nn.Module):
    """Pixel -> voxel index plus a 2D -> 3D scatter, configured once per model.

    Args:
        grid_shape: target grid ``(S0, S1, S2)`` in geometry axis order (X, Z-up, Y).
        voxel_size: its voxel edge (m).
        index_rounding: ``"floor"`` or ``"rint"``.
        reduce: ``"max"`` (DDRNet/AICNet) or ``"mean"`` (VVNet).
        index_precision: ``"float64"`` or ``"float32"`` (the DDRNet/AICNet authors' arithmetic),
            see :func:`pixel_to_grid_coords`.
        layout: ``"xzy"`` (geometry order) or ``"yzx"`` (first and last axes swapped): the axis
            order of the volume it writes, ``volume_shape``.

    All four choices are recorded in the model's ``repr``. ``index(batch)`` needs
    ``batch["depth"] (B,1,H,W)``, ``["pose"] (B,4,4)``, ``["origin"] (B,3)``, ``["intrinsics"]
    (B,6)`` and returns the ``(B, H*W)`` index in ``layout``; ``forward(features (B,C,H,W), index
    (B,H*W))`` returns ``(B, C, *volume_shape)``.
    """

    def __init__(
        self,
        *,
        grid_shape: tuple[int, int, int] = FINE_SHAPE,
        voxel_size: float = FINE_VOXEL,
        index_rounding: str = "floor",
        reduce: str = "max",
        index_precision: str = "float64",
        layout: str = "xzy",
    ) -> None:
        super().__init__()
        _check_choice("index_rounding", index_rounding, ROUNDINGS)
        _check_choice("reduce", reduce, ("max", "mean"))
        _check_choice("index_precision", index_precision, PRECISIONS)
        _check_choice("layout", layout, LAYOUTS)
        if len(grid_shape) != 3 or any(int(s) <= 0 for s in grid_shape):
            raise ValueError(f"grid_shape must be 3 positive sizes, got {grid_shape}")
        self.grid_shape = tuple(int(s) for s in grid_shape)
        self.voxel_size = float(voxel_size)
        self.index_rounding = index_rounding
        self.reduce = reduce
        self.index_precision = index_precision
        self.layout = layout
        self.volume_shape = layout_shape(self.grid_shape, layout)

    def extra_repr(self) -> str:
        return (
            f"grid_shape={self.grid_shape}, voxel_size={self.voxel_size}, "
            f"index_rounding={self.index_rounding!r}, index_precision={self.index_precision!r}, "
            f"layout={self.layout!r}, reduce={self.reduce!r}"
        )

    def index(self, batch: dict) -> torch.Tensor:
        """``(B, H*W) int64`` voxel index of every pixel in ``layout`` (dummy = ``prod(grid_shape)``)."""
        for key in ("depth", "pose", "origin", "intrinsics"):
            if key not in batch:
                raise ValueError(f"batch has no {key!r}: the projection needs depth, pose, origin and intrinsics")
        return pixel_to_voxel_index(
            batch["depth"],
            batch["pose"],
            batch["origin"],
            batch["intrinsics"],
            grid_shape=self.grid_shape,
            voxel_size=self.voxel_size,
            rounding=self.index_rounding,
            precision=self.index_precision,
            layout=self.layout,
        )

    def forward(self, features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.reduce == "max":
            return scatter_max_to_grid(features, index, self.volume_shape)
        return scatter_mean_to_grid(features, index, self.volume_shape)


def depth_normals(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Surface normals from a depth image, as VVNet's data preparation (``docs/baselines.md``).

    Back-project every pixel with ``(fx, fy, cx, cy)`` to camera points ``P (H, W, 3)``; along
    each image axis take the central difference ``P[i+1] - P[i-1]`` (the sum of the forward and
    backward differences) with edge padding (the border pixel repeated, so the border difference is
    one-sided); the normal is ``normalise(dx x dy)`` (column difference cross row difference), so a
    fronto-parallel plane gives ``(0, 0, 1)`` in camera coordinates (x right, y down, z forward).
    The normal is 0 where it is undefined: the pixel or any of the (up to four) neighbours used has
    no depth, or the cross product vanishes.

    Args:
        depth: ``(B, 1, H, W)`` float, metres, 0 = missing.
        intrinsics: ``(B, 6)`` or ``(B, 4)`` fx, fy, cx, cy[, W, H].
    Returns:
        ``(B, 3, H, W)`` float (depth's dtype), unit length or 0, camera frame.
    """
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth must be (B, 1, H, W), got {tuple(depth.shape)}")
    b, _, h, w = depth.shape
    if intrinsics.dim() != 2 or intrinsics.shape[0] != b or intrinsics.shape[1] not in (4, 6):
        raise ValueError(f"intrinsics must be ({b}, 6) or ({b}, 4), got {tuple(intrinsics.shape)}")
    d = depth[:, 0]
    k = intrinsics.to(depth.dtype)
    fx, fy, cx, cy = (k[:, i].view(b, 1, 1) for i in range(4))
    v, u = torch.meshgrid(
        torch.arange(h, device=depth.device, dtype=depth.dtype),
        torch.arange(w, device=depth.device, dtype=depth.dtype),
        indexing="ij",
    )
    points = torch.stack([(u - cx) * d / fx, (v - cy) * d / fy, d], dim=1)  # (B, 3, H, W)
    padded = nn.functional.pad(points, (1, 1, 1, 1), mode="replicate")  # (B, 3, H+2, W+2)
    dx = padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]  # along u (columns)
    dy = padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]  # along v (rows)
    normal = torch.cross(dx, dy, dim=1)
    norm = normal.norm(dim=1, keepdim=True)
    have = (d > 0)[:, None].to(depth.dtype)
    hp = nn.functional.pad(have, (1, 1, 1, 1), mode="replicate")
    defined = (hp[:, :, 1:-1, 2:] * hp[:, :, 1:-1, :-2] * hp[:, :, 2:, 1:-1] * hp[:, :, :-2, 1:-1] * have) > 0
    defined = defined & (norm > 0)
    return torch.where(defined, normal / norm.clamp_min(torch.finfo(depth.dtype).tiny), torch.zeros_like(normal))
