"""Run a trained model on one RGB-D frame of your own.

Steps: read the depth (and RGB) → pose from a file or :func:`torchssc.predict.pose.estimate_pose`
→ the SSC box origin (:func:`torchssc.geometry.voxel_origin_for_pose`) → the model's inputs by
the same preparation code as the datasets (fine TSDF → 60-grid TSDF mean, voxel→pixel mapping)
→ the model → a ``(60, 36, 60)`` label volume.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from torchssc.data.dataset import normalize_rgb
from torchssc.geometry import FINE_SHAPE, FINE_VOXEL, NYU_INTRINSICS, Intrinsics, check_pose, voxel_origin_for_pose
from torchssc.io.depthbin import decode_depth, read_bin, read_png16
from torchssc.io.prepared import read_prior, read_rgb
from torchssc.predict.observation import observation_visibility
from torchssc.prepare.downsample import downsample_mean
from torchssc.prepare.mapping import voxel_pixel_mapping
from torchssc.prepare.tsdf import compute_tsdf, depth_hits

logger = logging.getLogger(__name__)

DEPTH_ENCODINGS = ("auto", "sscnet", "millimetres")


def read_depth(path: str | os.PathLike, encoding: str = "auto", size: tuple[int, int] | None = None,
               report: Callable[[str], None] | None = None) -> np.ndarray:
    """A depth image in metres, ``(H, W) float32`` (0 = missing).

    Args:
        path: a 16-bit PNG, or a ``.npy`` of metres (with ``auto``, millimetres are recognised
            and converted: :func:`npy_depth_units`).
        encoding: ``"sscnet"`` (millimetres rotated left by 3 bits, NYU depthbin), ``"millimetres"``
            (plain 16-bit millimetres, most sensors; a ``.npy`` of millimetres), or ``"auto"``
            (:func:`guess_depth_encoding` for a PNG, :func:`npy_depth_units` for a ``.npy``).
        size: expected ``(H, W)``, or None.
        report: called with one line when ``auto`` converts a ``.npy`` of millimetres (default:
            a logging warning).
    Raises:
        FileNotFoundError, or ValueError naming the file (unreadable or pickled, wrong size, no
        valid pixel, an encoding ``auto`` cannot tell).
    """
    path = Path(path)
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {encoding!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such depth image")
    if path.suffix == ".npy":
        depth = _read_npy_depth(path, encoding, report or logger.warning)
    else:
        raw = read_png16(path)
        if encoding == "auto":
            encoding = guess_depth_encoding(raw, path)
        depth = decode_depth(raw) if encoding == "sscnet" else (raw / 1000.0).astype(np.float32)
    if depth.ndim != 2:
        raise ValueError(f"{path}: depth must be one channel, got shape {depth.shape}")
    if size is not None and depth.shape != tuple(size):
        raise ValueError(f"{path}: depth is {depth.shape[1]}x{depth.shape[0]}, expected {size[1]}x{size[0]}")
    if not np.all(np.isfinite(depth)) or depth.min() < 0:
        raise ValueError(f"{path}: depth must be finite and non-negative")
    if not (depth > 0).any():
        raise ValueError(f"{path}: no valid depth (every pixel is 0)")
    return depth


PLAUSIBLE_MEDIAN_DEPTH = (0.25, 8.0)
"""Range (m) of a plausible median depth of an indoor frame, used by :func:`guess_depth_encoding`
and :func:`npy_depth_units`."""

FAR_BEYOND_A_ROOM = 100.0
"""A median depth (m) far beyond any room a depth camera sees (they reach about 10 m): a ``.npy``
whose valid values have a larger median is not in metres (:func:`npy_depth_units`)."""


def _read_npy_depth(path: Path, encoding: str, report: Callable[[str], None]) -> np.ndarray:
    """A ``.npy`` depth in metres: read without pickles, numeric, units decided (see :func:`read_depth`)."""
    if encoding == "sscnet":
        raise ValueError(f"{path}: --depth-encoding sscnet is for 16-bit PNGs; a .npy holds metres or millimetres")
    try:
        depth = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(f"{path}: a pickled object array, refused (it could run code when loaded); "
                             "save the depth as a numeric array") from None
        raise ValueError(f"{path}: unreadable .npy ({exc})") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: unreadable .npy ({exc})") from None
    if depth.dtype.kind not in "iuf":
        raise ValueError(f"{path}: depth must be numbers, got dtype {depth.dtype}")
    depth = depth.astype(np.float32)
    if encoding == "auto" and depth.ndim == 2 and np.all(np.isfinite(depth)):
        encoding = npy_depth_units(depth, path)
        if encoding == "millimetres":
            valid = depth[depth > 0]
            report(f"{path}: values {valid.min():.0f}..{valid.max():.0f} (median {np.median(valid):.0f}) are far "
                   "beyond a room in metres: read as millimetres (divided by 1000)")
    return depth / 1000.0 if encoding == "millimetres" else depth


def npy_depth_units(depth: np.ndarray, path: str | os.PathLike) -> str:
    """``"metres"`` or ``"millimetres"`` for a ``.npy`` depth, on evidence, or refuse.

    Depth in metres is what a ``.npy`` should hold; one whose valid (positive) values have a median
    beyond :data:`FAR_BEYOND_A_ROOM` is in millimetres when that median, divided by 1000, is a
    plausible room depth (:data:`PLAUSIBLE_MEDIAN_DEPTH`: 250..8000), and refused otherwise.

    Raises:
        ValueError naming ``path``: far beyond a room, yet not plausible millimetres either.
    """
    valid = depth[depth > 0]
    median = float(np.median(valid)) if valid.size else 0.0
    if median <= FAR_BEYOND_A_ROOM:
        return "metres"
    lo, hi = PLAUSIBLE_MEDIAN_DEPTH
    if lo <= median / 1000.0 <= hi:
        return "millimetres"
    raise ValueError(f"{path}: median depth {median:.6g} is far beyond a room in metres and {median / 1000:.6g} m "
                     "as millimetres is not plausible either: save the depth in metres")


def guess_depth_encoding(raw: np.ndarray, path: str | os.PathLike) -> str:
    """``"sscnet"`` or ``"millimetres"`` for a 16-bit depth PNG, on evidence, or refuse.

    SSCNet's encoding rotates millimetres left by 3 bits, so its stored values are multiples
    of 8 except for pixels beyond 8.192 m; plain millimetres have arbitrary low bits. The rule:

    * more than half of the valid pixels are not multiples of 8: they would decode beyond
      8.192 m as SSCNet's encoding, so the file is ``millimetres`` (if its median is plausible);
    * otherwise decode both ways: the one encoding whose median depth is plausible for a room
      (:data:`PLAUSIBLE_MEDIAN_DEPTH`) wins (SSCNet's encoding read as millimetres is 8x too far);
    * anything else is ambiguous and refused.

    Raises:
        ValueError naming ``path``: no valid pixel, or the encoding cannot be told apart; the
            message asks for ``--depth-encoding``.
    """
    values = raw[raw > 0]
    if values.size == 0:
        raise ValueError(f"{path}: no valid depth (every pixel is 0)")
    lo, hi = PLAUSIBLE_MEDIAN_DEPTH
    median_mm = float(np.median(values)) / 1000.0
    median_sscnet = float(np.median(decode_depth(values)))
    not_multiple_of_8 = float((values % 8 != 0).mean())
    plausible = {"millimetres": lo <= median_mm <= hi, "sscnet": lo <= median_sscnet <= hi}
    if not_multiple_of_8 > 0.5 and plausible["millimetres"]:
        return "millimetres"
    if not_multiple_of_8 <= 0.5 and plausible["sscnet"] != plausible["millimetres"]:
        return "sscnet" if plausible["sscnet"] else "millimetres"
    raise ValueError(
        f"{path}: cannot tell the depth encoding (median {median_sscnet:.2f} m as SSCNet's rotated "
        f"millimetres, {median_mm:.2f} m as plain millimetres; {not_multiple_of_8:.0%} of the values "
        "are not multiples of 8): pass --depth-encoding sscnet or millimetres"
    )


def read_pose(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """``(pose (4, 4) float64 camera-to-world, origin (3,) or None)`` from a file.

    ``.bin`` (depthbin: its pose and origin), ``.npy`` (4x4) or text (16 numbers, row-major).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pose file")
    if path.suffix == ".bin":
        frame = read_bin(path)
        return check_pose(frame.pose, str(path)), frame.origin.astype(np.float64)
    try:
        values = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: unreadable pose file ({exc})") from None
    values = np.asarray(values, dtype=np.float64)
    if values.size != 16:
        raise ValueError(f"{path}: a pose needs 16 numbers (4x4 camera-to-world), found {values.size}")
    return check_pose(values.reshape(4, 4), str(path)), None


def frame_batch(
    depth: np.ndarray,
    pose: np.ndarray,
    origin: np.ndarray,
    *,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    rgb: np.ndarray | None = None,
    prior: np.ndarray | None = None,
    fine: bool = False,
) -> dict[str, torch.Tensor]:
    """A batch of one frame with the keys of :class:`torchssc.data.SSCDataset` (no labels).

    Args:
        depth: ``(H, W)`` metres. pose: ``(4, 4)`` camera-to-world. origin: ``(3,)`` grid corner.
        rgb: ``(H, W, 3) uint8`` or None. prior: ``(H, W)`` NYU-13 ids 0..13 (the 2D semantic
            prior) or None. fine: also compute SSCNet's flipped fine TSDF.
    Returns:
        ``tsdf (1, 1, 60, 36, 60)``, ``mapping (1, 129600)`` (built from the depth),
        ``visibility (1, 60, 36, 60) int64`` (``geometry.VIS_*`` codes of the depth's TSDF, what
        :func:`torchssc.predict.observation.apply_observation` reads),
        ``depth (1, 1, H, W)``, ``pose``, ``origin``, ``intrinsics``, and ``rgb (1, 3, H, W)`` /
        ``prior (1, H, W)`` / ``tsdf_fine`` when available.
    """
    depth = np.asarray(depth, dtype=np.float32)
    hits = depth_hits(depth, pose, origin, intrinsics=intrinsics, voxel=FINE_VOXEL, shape=FINE_SHAPE)
    fine_tsdf = compute_tsdf(depth, pose, origin, intrinsics=intrinsics, hits=hits)
    tsdf = downsample_mean(fine_tsdf.distance)
    mapping = voxel_pixel_mapping(depth, pose, origin, intrinsics=intrinsics, hits=hits)
    visibility = observation_visibility(fine_tsdf.state)
    batch = {
        "tsdf": torch.from_numpy(np.ascontiguousarray(tsdf, dtype=np.float32))[None, None],
        "mapping": torch.from_numpy(mapping.astype(np.int64))[None],
        "visibility": torch.from_numpy(visibility.astype(np.int64))[None],
        "depth": torch.from_numpy(depth)[None, None],
        "pose": torch.from_numpy(np.asarray(pose, dtype=np.float32))[None],
        "origin": torch.from_numpy(np.asarray(origin, dtype=np.float32))[None],
        "intrinsics": torch.from_numpy(intrinsics.as_array().astype(np.float32))[None],
    }
    if rgb is not None:
        batch["rgb"] = normalize_rgb(rgb)[None]
    if prior is not None:
        batch["prior"] = torch.from_numpy(np.asarray(prior).astype(np.int64))[None]
    if fine:
        batch["tsdf_fine"] = torch.from_numpy(fine_tsdf.sscnet_input())[None, None]
    return batch


@torch.no_grad()
def predict_labels(model: nn.Module, batch: dict, *, seed: int = 0) -> np.ndarray:
    """Argmax labels ``(D, H, W) uint8`` of a batch of one, reproducible given ``seed``
    (the model's raw output: :func:`torchssc.predict.observation.apply_observation` masks it)."""
    tensors = list(model.parameters()) + list(model.buffers())
    device = tensors[0].device if tensors else torch.device("cpu")  # a model without tensors: CPU
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    if hasattr(model, "seed"):
        model.seed = int(seed)
    torch.manual_seed(seed)
    outputs = model(batch)
    return outputs["semantic"].argmax(1)[0].to(torch.uint8).cpu().numpy()


def prepare_inputs(
    depth_path: str | os.PathLike,
    *,
    rgb_path: str | os.PathLike | None = None,
    prior_path: str | os.PathLike | None = None,
    pose_path: str | os.PathLike | None = None,
    intrinsics: Intrinsics = NYU_INTRINSICS,
    depth_encoding: str = "auto",
    fine: bool = False,
    seed: int = 0,
    report: Callable[[str], None] | None = None,
) -> tuple[dict, np.ndarray, np.ndarray, str]:
    """Read a frame, find its pose and build the model batch.

    ``prior_path``: an 8-bit PNG of NYU-13 ids 0..13 (the 2D semantic prior of the prior
    models), the depth image's size; it is lifted through the mapping built from the depth.
    ``report``: where a conversion of the depth is said (:func:`read_depth`).

    Returns:
        ``(batch, pose, origin, how)`` where ``how`` says where the pose came from.
    """
    from torchssc.predict.pose import estimate_pose

    size = (intrinsics.height, intrinsics.width)
    depth = read_depth(depth_path, depth_encoding, size=size, report=report)
    rgb = None
    if rgb_path is not None:
        rgb = read_rgb(rgb_path)
        if rgb.shape[:2] != size:
            raise ValueError(f"{rgb_path}: RGB is {rgb.shape[1]}x{rgb.shape[0]}, expected {size[1]}x{size[0]}")
    prior = read_prior(prior_path, size) if prior_path is not None else None
    origin = None
    if pose_path is not None:
        pose, origin = read_pose(pose_path)
        how = f"pose from {pose_path}"
    else:
        est = estimate_pose(depth, intrinsics, seed=seed)
        pose = est.pose
        how = (f"estimated pose: camera {est.camera_height:.3f} m above the floor "
               f"({est.floor_inliers} floor points), wall-direction confidence {est.yaw_confidence:.2f}")
    if origin is None:
        origin = voxel_origin_for_pose(pose)
    batch = frame_batch(depth, pose, origin, intrinsics=intrinsics, rgb=rgb, prior=prior, fine=fine)
    return batch, pose, origin, how
