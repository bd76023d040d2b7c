"""2D -> 3D lifting for the RGB-D baselines, in plain torch (no compiled extension).

Three pieces, used by DDRNet/AICNet (scatter-max into the fine 240x144x240 grid, BASELINES §2.2)
and VVNetR-120 (averaging into a 120x72x120 grid of 0.04 m voxels, BASELINES §4.2):

* :func:`pixel_to_voxel_index` -- for every pixel, the flat index of the voxel its
  back-projected depth point falls in, computed from ``depth``, ``pose``, ``origin`` and
  ``intrinsics`` exactly like :func:`torchssc.geometry.depth_to_grid_index` (float64, axes
  [world X, world Z (up), world Y], C-order flat index). Pixels with no depth or whose point lies
  outside the grid get the **dummy** index ``prod(grid_shape)``, one slot past the grid, which the
  scatters below drop -- never voxel 0 (the WLJ code sent them all to voxel 0).
* :func:`scatter_max_to_grid` -- per voxel, the element-wise max of the features of the pixels in
  it and 0 (``Tensor.scatter_reduce_(..., "amax", include_self=True)`` on a zero tensor).
* :func:`scatter_mean_to_grid` -- per voxel, the mean of the features of the pixels in it, 0 where
  no pixel falls.

Projecting straight into the (X, Z-up, Y) order of :mod:`torchssc.geometry` needs no permute: the
networks are independent of which horizontal axis comes first (BASELINES "Axis convention").
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from torchssc.geometry import FINE_SHAPE, FINE_VOXEL

ROUNDINGS = ("floor", "rint")


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"index_rounding must be one of {ROUNDINGS}, got {rounding!r}")


def pixel_to_voxel_index(
    depth: torch.Tensor,
    pose: torch.Tensor,
    origin: torch.Tensor,
    intrinsics: torch.Tensor,
    *,
    grid_shape: tuple[int, int, int] = FINE_SHAPE,
    voxel_size: float = FINE_VOXEL,
    rounding: str = "floor",
) -> torch.Tensor:
    """Flat voxel index of every pixel's back-projected depth point.

    Args:
        depth: ``(B, 1, H, W)`` or ``(B, H, W)`` float, metres; 0 (or negative) = missing.
        pose: ``(B, 4, 4)`` camera-to-world.
        origin: ``(B, 3)`` world (x, y, z) of the grid corner, metres.
        intrinsics: ``(B, 6)`` or ``(B, 4)``: fx, fy, cx, cy[, W, H] in pixels (only the first four
            are used; the image size is the depth's).
        grid_shape: ``(S0, S1, S2)`` target grid in geometry axis order (X, Z-up, Y).
        voxel_size: voxel edge in metres.
        rounding: ``"floor"`` (SSCNet / VVNet / TorchSSC lineage) or ``"rint"`` (the WLJ
            DDRNet/AICNet code: round half to even, as ``np.rint``).
    Returns:
        ``(B, H*W) int64``; pixel ``v*W + u`` holds ``a*S1*S2 + b*S2 + c`` for voxel ``(a, b, c)``,
        or ``S0*S1*S2`` (the dummy slot) when its depth is missing or the voxel is outside the grid.
    Raises:
        ValueError: on bad shapes or an unknown ``rounding``.

    Computed in float64 so that the result equals :func:`torchssc.geometry.depth_to_grid_index`.
    """
    _check_rounding(rounding)
    if depth.dim() == 4:
        if depth.shape[1] != 1:
            raise ValueError(f"depth must be (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
        depth = depth[:, 0]
    if depth.dim() != 3:
        raise ValueError(f"depth must be (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
    b, h, w = depth.shape
    if pose.shape != (b, 4, 4):
        raise ValueError(f"pose must be ({b}, 4, 4), got {tuple(pose.shape)}")
    if origin.shape != (b, 3):
        raise ValueError(f"origin must be ({b}, 3), got {tuple(origin.shape)}")
    if intrinsics.dim() != 2 or intrinsics.shape[0] != b or intrinsics.shape[1] not in (4, 6):
        raise ValueError(f"intrinsics must be ({b}, 6) or ({b}, 4), got {tuple(intrinsics.shape)}")
    if len(grid_shape) != 3:
        raise ValueError(f"grid_shape must have 3 dims, got {grid_shape}")

    f64 = torch.float64
    d = depth.to(f64)
    k = intrinsics.to(f64)
    fx, fy, cx, cy = (k[:, i].view(b, 1, 1) for i in range(4))
    v, u = torch.meshgrid(
        torch.arange(h, device=depth.device, dtype=f64),
        torch.arange(w, device=depth.device, dtype=f64),
        indexing="ij",
    )
    cam = torch.stack([(u - cx) * d / fx, (v - cy) * d / fy, d], dim=-1)  # (B, H, W, 3) camera xyz
    pose64 = pose.to(f64)
    world = cam @ pose64[:, None, :3, :3].transpose(-1, -2) + pose64[:, None, None, :3, 3]  # (B, H, W, 3)
    rel = (world - origin.to(f64).view(b, 1, 1, 3)) / voxel_size
    grid = rel[..., [0, 2, 1]]  # (B, H, W, 3) continuous (a, b, c): world X, Z (up), Y
    idx = torch.floor(grid) if rounding == "floor" else torch.round(grid)  # torch.round = half to even
    size = torch.tensor(grid_shape, device=depth.device, dtype=f64)
    valid = (d > 0) & ((idx >= 0) & (idx < size)).all(dim=-1)  # (B, H, W)
    idx = torch.where(valid[..., None], idx, torch.zeros_like(idx)).to(torch.int64)
    s0, s1, s2 = (int(s) for s in grid_shape)
    flat = (idx[..., 0] * s1 + idx[..., 1]) * s2 + idx[..., 2]
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
        index_rounding: ``"floor"`` or ``"rint"`` (recorded in the model's ``extra_repr``).
        reduce: ``"max"`` (DDRNet/AICNet) or ``"mean"`` (VVNet).

    ``index(batch)`` needs ``batch["depth"] (B,1,H,W)``, ``["pose"] (B,4,4)``, ``["origin"] (B,3)``,
    ``["intrinsics"] (B,6)``; ``forward(features (B,C,H,W), index (B,H*W))`` returns
    ``(B, C, *grid_shape)``.
    """

    def __init__(
        self,
        *,
        grid_shape: tuple[int, int, int] = FINE_SHAPE,
        voxel_size: float = FINE_VOXEL,
        index_rounding: str = "floor",
        reduce: str = "max",
    ) -> None:
        super().__init__()
        _check_rounding(index_rounding)
        if reduce not in ("max", "mean"):
            raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
        if len(grid_shape) != 3 or any(int(s) <= 0 for s in grid_shape):
            raise ValueError(f"grid_shape must be 3 positive sizes, got {grid_shape}")
        self.grid_shape = tuple(int(s) for s in grid_shape)
        self.voxel_size = float(voxel_size)
        self.index_rounding = index_rounding
        self.reduce = reduce

    def extra_repr(self) -> str:
        return (
            f"grid_shape={self.grid_shape}, voxel_size={self.voxel_size}, "
            f"index_rounding={self.index_rounding!r}, reduce={self.reduce!r}"
        )

    def index(self, batch: dict) -> torch.Tensor:
        """``(B, H*W) int64`` voxel index of every pixel (dummy = ``prod(grid_shape)``)."""
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
        )

    def forward(self, features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.reduce == "max":
            return scatter_max_to_grid(features, index, self.grid_shape)
        return scatter_mean_to_grid(features, index, self.grid_shape)


def depth_normals(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Surface normals from a depth image, as VVNet's ``tools/prepare_data.py`` (BASELINES §4.1).

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
