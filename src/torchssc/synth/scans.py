"""Synthetic rooms written as a folder of RGB-D frames in ScanNet's exporter layout
(:mod:`torchssc.io.scans`), optionally with a label volume per frame: the stand-in for a scan
of your own, to predict on (``torchssc predict --frames``) or to train on (layout ``scans``).

Frame ``i`` is room ``i`` of :func:`~torchssc.synth.generator.generate_frame` (the same room,
pose and depth as the depthbin frame ``NYU%04d_0000`` of ``torchssc synth`` with the same seed)::

    <out>/depth/<i>.png                   16-bit millimetres (rounded to the nearest mm)
    <out>/color/<i>.png                   RGB (PNG: lossless, unlike ScanNet's JPEG)
    <out>/pose/<i>.txt                    4x4 camera-to-world (world z up, floor at z = 0)
    <out>/intrinsic/intrinsic_depth.txt   4x4 camera matrix
    <out>/label/<i>.npz                   labels (60, 36, 60) 0..11 / 255, origin (3,)  [labels=True]
    <out>/train.txt, test.txt             frame names per split
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from torchssc.geometry import NYU_INTRINSICS, Intrinsics
from torchssc.io.atomic import atomic_path, write_bytes_atomic
from torchssc.io.prepared import write_rgb, write_split
from torchssc.prepare.downsample import downsample_labels
from torchssc.synth.generator import SynthFrame, generate_frame, split_ids


def _text(matrix: np.ndarray) -> bytes:
    out = io.StringIO()
    np.savetxt(out, np.asarray(matrix, np.float64), fmt="%.17g")  # exact round trip of the values
    return out.getvalue().encode()


def write_intrinsic(out: Path, intrinsics: Intrinsics) -> None:
    """``intrinsic/intrinsic_depth.txt``: the 4x4 camera matrix, as ScanNet's exporter writes."""
    k = np.eye(4)
    k[:3, :3] = intrinsics.matrix
    write_bytes_atomic(out / "intrinsic" / "intrinsic_depth.txt", _text(k))


def write_scan_frame(out: str | os.PathLike, name: str, frame: SynthFrame, *, labels: bool = False) -> None:
    """One frame's depth, colour, pose (and label volume) in the folder ``out``."""
    out = Path(out)
    for sub in ("depth", "color", "pose") + (("label",) if labels else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    mm = np.floor(np.asarray(frame.depth, np.float64) * 1000.0 + 0.5)
    if mm.max(initial=0) > 0xFFFF:
        raise ValueError(f"frame {name}: depth beyond 65.535 m cannot be written as 16-bit millimetres")
    with atomic_path(out / "depth" / f"{name}.png") as tmp:
        Image.fromarray(mm.astype(np.uint16)).save(tmp, format="PNG")
    write_rgb(out / "color" / f"{name}.png", frame.rgb)
    write_bytes_atomic(out / "pose" / f"{name}.txt", _text(frame.pose))
    if labels:
        with atomic_path(out / "label" / f"{name}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, labels=downsample_labels(frame.labels),
                                    origin=np.asarray(frame.origin, np.float64))


def generate_scan_folder(out: str | os.PathLike, frames: int, *, seed: int = 0, test_fraction: float = 0.2,
                         noise: str = "kinect", intrinsics: Intrinsics = NYU_INTRINSICS, labels: bool = True,
                         progress: bool = False) -> dict[str, list[int]]:
    """Write rooms ``1..frames`` as one folder of frames (module docstring).

    Returns:
        ``{"train": ids, "test": ids}`` (the split of :func:`~torchssc.synth.generator.split_ids`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = split_ids(frames, seed, test_fraction)
    write_intrinsic(out, intrinsics)
    from tqdm import tqdm

    for i in tqdm(range(1, frames + 1), desc="synth", unit="frame", disable=not progress):
        write_scan_frame(out, str(i), generate_frame(seed, i, intrinsics, noise), labels=labels)
    write_split(out, "train", [str(i) for i in train])
    write_split(out, "test", [str(i) for i in test])
    return {"train": train, "test": test}
