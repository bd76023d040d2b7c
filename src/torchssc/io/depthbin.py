"""SSCNet "depthbin" raw format (docs/data.md): ``.bin`` label volumes and rotated depth ``.png``.

``.bin`` (little-endian, no header): bytes 0-11 ``float32[3]`` voxel origin (world x, y, z);
bytes 12-75 ``float32[16]`` camera-to-world pose, row-major; then ``uint32`` pairs
``(value, run_length)`` to the end of the file, a run-length encoding of the
``(240, 144, 240)`` label grid in C order (axes as in :mod:`torchssc.geometry`). Values: 0 empty,
1..36 NYU36 classes, 255 outside the room.

Depth ``.png``: 16-bit single channel, millimetres rotated left by 3 bits; 0 = missing.

``intrinsics.json`` (torchssc's, optional) beside a split's frames records the camera they were
taken with; ``torchssc synth`` writes it and ``torchssc prepare`` reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from torchssc.geometry import FINE_SHAPE, Intrinsics
from torchssc.io.atomic import atomic_path, write_bytes_atomic

HEADER_BYTES = 4 * (3 + 16)


@dataclass
class DepthBin:
    """Contents of a ``.bin`` file.

    Attributes:
        origin: ``(3,) float32`` world (x, y, z) of the fine grid's corner.
        pose: ``(4, 4) float32`` camera-to-world.
        labels: ``(240, 144, 240) uint8`` raw labels (0..36, 255).
    """

    origin: np.ndarray
    pose: np.ndarray
    labels: np.ndarray


def rle_decode(values: np.ndarray, counts: np.ndarray, numel: int, name: str = "<stream>") -> np.ndarray:
    """Expand ``(value, count)`` runs into a flat ``uint8`` array of ``numel`` voxels.

    A stream exactly one voxel short (the original MATLAB writer's quirk for constant volumes)
    is padded with its last value; any other total is a ``ValueError`` naming ``name``.
    """
    counts = counts.astype(np.int64)
    total = int(counts.sum())
    if total == numel - 1 and len(counts) > 0:
        counts = counts.copy()
        counts[-1] += 1
    elif total != numel:
        raise ValueError(f"{name}: RLE runs sum to {total:,} voxels, expected {numel:,}")
    if values.size and values.max() > 255:
        raise ValueError(f"{name}: label value {int(values.max())} does not fit the label space (max 255)")
    return np.repeat(values.astype(np.uint8), counts)


def rle_encode(flat: np.ndarray) -> np.ndarray:
    """Run-length encode a flat array into interleaved ``uint32`` ``(value, count)`` pairs."""
    flat = np.asarray(flat).ravel()
    if flat.size == 0:
        return np.zeros(0, dtype="<u4")
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    counts = np.diff(np.concatenate([starts, [flat.size]]))
    pairs = np.empty((len(starts), 2), dtype="<u4")
    pairs[:, 0] = flat[starts]
    pairs[:, 1] = counts
    return pairs.ravel()


def read_bin(path: str | os.PathLike, shape: tuple[int, int, int] = FINE_SHAPE) -> DepthBin:
    """Read a depthbin ``.bin`` file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is too short, has an odd RLE tail, or its runs do not sum to the
            grid size (except the one-voxel-short quirk, which is padded).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .bin file")
    raw = path.read_bytes()
    if len(raw) < HEADER_BYTES:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than the {HEADER_BYTES}-byte header")
    body = len(raw) - HEADER_BYTES
    if body % 8:
        raise ValueError(f"{path}: RLE section of {body} bytes is not a whole number of (value, count) pairs")
    header = np.frombuffer(raw, dtype="<f4", count=19)
    origin = header[:3].copy()
    pose = header[3:].reshape(4, 4).copy()
    pairs = np.frombuffer(raw, dtype="<u4", offset=HEADER_BYTES).reshape(-1, 2)
    flat = rle_decode(pairs[:, 0], pairs[:, 1], int(np.prod(shape)), name=str(path))
    return DepthBin(origin=origin, pose=pose, labels=flat.reshape(shape))


def write_bin(path: str | os.PathLike, origin: np.ndarray, pose: np.ndarray, labels: np.ndarray) -> None:
    """Write a depthbin ``.bin`` atomically.

    Args:
        origin: ``(3,)`` world corner; pose: ``(4, 4)`` camera-to-world;
        labels: ``(240, 144, 240)`` integer labels in 0..255 (any grid shape is accepted; the
            reader must then be given the same shape).
    """
    origin = np.asarray(origin, dtype="<f4").reshape(3)
    pose = np.asarray(pose, dtype="<f4").reshape(16)
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"{path}: labels must be in 0..255")
    data = origin.tobytes() + pose.tobytes() + rle_encode(labels.astype(np.uint8)).tobytes()
    write_bytes_atomic(path, data)


def decode_depth(raw: np.ndarray) -> np.ndarray:
    """Rotated 16-bit PNG values -> metres (``float32``); 0 stays 0 (missing)."""
    raw = np.asarray(raw).astype(np.uint32)
    mm = ((raw >> 3) | (raw << 13)) & 0xFFFF
    return mm.astype(np.float32) / np.float32(1000.0)  # float32 division, as the release


def encode_depth(depth_m: np.ndarray) -> np.ndarray:
    """Metres -> rotated 16-bit values (nearest millimetre). Depth must be in [0, 65.535] m."""
    depth_m = np.asarray(depth_m, dtype=np.float64)
    if not np.all(np.isfinite(depth_m)) or depth_m.min(initial=0) < 0 or depth_m.max(initial=0) > 65.535:
        raise ValueError("depth must be finite and within [0, 65.535] m")
    mm = np.floor(depth_m * 1000.0 + 0.5).astype(np.uint32)
    return (((mm << 3) | (mm >> 13)) & 0xFFFF).astype(np.uint16)


def read_png16(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """The raw values of a single-channel 16-bit PNG, ``(H, W) int64``.

    Raises:
        FileNotFoundError, or ValueError naming the file when it is not a single-channel 16-bit
        image or, with ``size`` = ``(H, W)``, has another size.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such depth image")
    with Image.open(path) as img:
        if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"{path}: depth PNG must be 16-bit single channel, got mode {img.mode!r}")
        raw = np.array(img).astype(np.int64)
    if raw.ndim != 2:
        raise ValueError(f"{path}: depth PNG must have one channel, got shape {raw.shape}")
    if size is not None and raw.shape != tuple(size):
        raise ValueError(f"{path}: depth image is {raw.shape[1]}x{raw.shape[0]}, expected {size[1]}x{size[0]}")
    if raw.min(initial=0) < 0 or raw.max(initial=0) > 0xFFFF:
        raise ValueError(f"{path}: depth values outside 16 bits")
    return raw


def read_depth_png(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a rotated-millimetre depth PNG.

    Args:
        size: expected ``(H, W)``, or None to accept any.
    Returns:
        ``(H, W) float32`` metres, 0 = missing.
    Raises:
        as :func:`read_png16`.
    """
    return decode_depth(read_png16(path, size))


FAR_DEPTH = 8.192
"""Depth (m) from which the rotated encoding's stored values stop being multiples of 8."""


def check_depth(depth: np.ndarray, where: str | os.PathLike) -> np.ndarray:
    """Refuse a decoded depthbin depth image that cannot be one.

    Raises:
        ValueError naming ``where``: no valid pixel at all, or most valid pixels beyond
            8.192 m — what plain (unrotated) millimetres look like when decoded as depthbin.
    """
    valid = depth > 0
    if not valid.any():
        raise ValueError(f"{where}: no valid depth (every pixel is 0)")
    far = float((depth[valid] >= FAR_DEPTH).mean())
    if far > 0.5:
        raise ValueError(
            f"{where}: {far:.0%} of the pixels decode beyond {FAR_DEPTH} m: this looks like plain "
            "millimetres; a depthbin PNG stores millimetres rotated left by 3 bits "
            "(torchssc.io.depthbin.write_depth_png writes it)"
        )
    return depth


def write_depth_png(path: str | os.PathLike, depth_m: np.ndarray) -> None:
    """Write ``(H, W)`` metres as a rotated-millimetre 16-bit PNG, atomically."""
    encoded = encode_depth(depth_m)
    with atomic_path(path) as tmp:
        Image.fromarray(encoded).save(tmp, format="PNG")


def read_depthbin_frame(bin_path: str | os.PathLike) -> tuple[DepthBin, np.ndarray]:
    """Read ``NYUxxxx_0000.bin`` and the ``.png`` beside it: ``(DepthBin, depth (H, W) metres)``."""
    bin_path = Path(bin_path)
    return read_bin(bin_path), read_depth_png(bin_path.with_suffix(".png"))


INTRINSICS_FILE = "intrinsics.json"
"""Name of the file beside a raw split's frames recording the camera they were taken with."""


def write_intrinsics_file(folder: str | os.PathLike, intrinsics: Intrinsics) -> Path:
    """Record ``intrinsics`` in ``<folder>/intrinsics.json`` (atomically); returns the path."""
    import json

    path = Path(folder) / INTRINSICS_FILE
    values = dict(zip(("fx", "fy", "cx", "cy", "width", "height"), intrinsics.as_array().tolist()))
    values["width"], values["height"] = int(values["width"]), int(values["height"])
    write_bytes_atomic(path, (json.dumps(values, indent=1) + "\n").encode())
    return path


def read_intrinsics_file(folder: str | os.PathLike) -> Intrinsics | None:
    """The intrinsics recorded in ``<folder>/intrinsics.json``, or None when there is none.

    Raises:
        ValueError: the file exists but is not valid (the message names it).
    """
    import json

    path = Path(folder) / INTRINSICS_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
        keys = ("fx", "fy", "cx", "cy", "width", "height")
        intrinsics = Intrinsics.from_array([float(values[k]) for k in keys])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid intrinsics file ({type(exc).__name__}: {exc})") from None
    if min(intrinsics.fx, intrinsics.fy) <= 0 or min(intrinsics.width, intrinsics.height) <= 0:
        raise ValueError(f"{path}: focal lengths and image size must be positive")
    return intrinsics
