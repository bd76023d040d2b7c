"""Model inputs derived from what third-party layouts store (docs/datasets.md, "Layouts").

Other preprocessors keep the fine volumes and a pixel -> voxel list where the TorchSSC layout
keeps the 60-grid TSDF and a voxel -> pixel mapping. Both are derivable by the release's rules
(SPEC.md §4):

* :func:`mapping_from_pixel_voxels`: the voxel -> pixel Mapping of :mod:`.mapping` (the
  **largest** pixel index whose point falls in a label voxel; ``W*H`` where none does) from a
  pixel -> fine-voxel list: a label voxel is ``floor(fine_index / factor)`` per axis.
* :func:`distance_from_flipped`: the signed truncated distance (TorchSSC's encoding: surface 0,
  unobserved 0, ``sign * min(1, d / 12)`` elsewhere) from an SSCNet-style flipped TSDF
  ``s * max(0.001, 1 - |v|)``, whose surface and (in the EdgeNet encoding) unobserved voxels are
  both 1.0, i.e. both 0 in TorchSSC's encoding; the 60-grid TSDF is then
  :func:`~torchssc.prepare.downsample.downsample_mean` of it, as for a prepared frame.
* :func:`sscnet_from_flipped`: SSCNet's own network input (unobserved 0.001, not 1.0) from the
  EdgeNet encoding, given the surface voxels (the pixel -> voxel list's targets).
"""

from __future__ import annotations

import numpy as np

from torchssc.prepare.tsdf import FLIP_EPS


def mapping_from_pixel_voxels(
    pixel_voxels: np.ndarray, fine_shape: tuple[int, int, int], factor: int, num_pixels: int
) -> np.ndarray:
    """Voxel -> pixel Mapping of the label grid from a pixel -> fine-voxel list.

    Args:
        pixel_voxels: ``(P,)`` integers, entry ``p`` (flat pixel ``v * W + u``) = flat C-order
            index of the fine voxel holding that pixel's point, negative = none. Entries past
            ``num_pixels`` (padding) must be negative.
        fine_shape: the fine grid ``(D, H, W)``; factor: fine voxels per label voxel per axis.
        num_pixels: ``W * H``, the "no pixel" value.
    Returns:
        ``(D*H*W / factor³,) int64``: largest pixel index per label voxel, ``num_pixels`` = none.
    Raises:
        ValueError: an index outside the fine grid, or a pixel index beyond the image.
    """
    pixel_voxels = np.asarray(pixel_voxels).reshape(-1)
    if not np.issubdtype(pixel_voxels.dtype, np.integer):
        raise ValueError(f"the pixel -> voxel list must hold integers, got dtype {pixel_voxels.dtype}")
    small = tuple(s // factor for s in fine_shape)
    if any(s % factor for s in fine_shape):
        raise ValueError(f"fine grid {fine_shape} is not divisible by {factor}")
    pixels = np.flatnonzero(pixel_voxels >= 0)
    if pixels.size and pixels[-1] >= num_pixels:
        raise ValueError(f"the pixel -> voxel list maps entry {int(pixels[-1])}, beyond the {num_pixels} pixels")
    fine = pixel_voxels[pixels].astype(np.int64)
    if fine.size and fine.max() >= int(np.prod(fine_shape)):
        raise ValueError(f"the pixel -> voxel list holds fine index {int(fine.max())}, outside the grid {fine_shape}")
    a, b, c = np.unravel_index(fine, fine_shape)
    voxels = np.ravel_multi_index((a // factor, b // factor, c // factor), small)
    mapping = np.full(int(np.prod(small)), -1, dtype=np.int64)
    np.maximum.at(mapping, voxels, pixels)
    mapping[mapping < 0] = num_pixels
    return mapping


def distance_from_flipped(flipped: np.ndarray) -> np.ndarray:
    """TorchSSC's signed truncated distance from a flipped TSDF.

    ``|f| <= 0.001`` (truncated: free +, occluded -) gives ``sign(f)``; otherwise
    ``sign(f) * (1 - |f|)``, so 1.0 (surface, or unobserved in the EdgeNet encoding) gives 0.

    Args:
        flipped: any shape, values in [-1, 1].
    Returns:
        ``float32`` array of the same shape in [-1, 1].
    """
    f = np.asarray(flipped, dtype=np.float32)
    magnitude = np.float32(1.0) - np.abs(f)
    magnitude = np.where(np.abs(f) <= np.float32(FLIP_EPS), np.float32(1.0), magnitude)
    return (np.sign(f) * magnitude).astype(np.float32)


def sscnet_from_flipped(flipped: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """SSCNet's flipped input from the EdgeNet encoding: 1.0 off the surface becomes 0.001.

    Args:
        flipped: ``(D, H, W)`` EdgeNet flipped TSDF (unobserved 1.0).
        surface: ``(D, H, W) bool``, the voxels holding a depth point.
    Returns:
        ``(D, H, W) float32``: surface 1, unobserved and truncated free 0.001, occluded -0.001.
    """
    f = np.asarray(flipped, dtype=np.float32)
    return np.where((f == np.float32(1.0)) & ~surface, np.float32(FLIP_EPS), f).astype(np.float32)


def surface_from_pixel_voxels(pixel_voxels: np.ndarray, fine_shape: tuple[int, int, int]) -> np.ndarray:
    """``fine_shape bool``: True on the fine voxels some pixel's point falls in."""
    pixel_voxels = np.asarray(pixel_voxels).reshape(-1)
    surface = np.zeros(int(np.prod(fine_shape)), dtype=bool)
    surface[pixel_voxels[pixel_voxels >= 0]] = True
    return surface.reshape(fine_shape)
