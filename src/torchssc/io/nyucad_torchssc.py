"""The TorchSSC-lineage NYUCAD folders (AMMNet, CleanerS; layout ``nyucad_torchssc``).

NYUCAD's inputs sit in their own folder, its labels in NYU's (the datasets share the ground
truth): ``data.root`` is the NYU folder in the TorchSSC layout (split lists, ``Label/`` or ``L/``,
``TSDF/`` or ``T/`` for ``label_weight``, optionally ``RGB/``, ``seg_result_label13/``), and the
NYUCAD folder is ``<root>/NYUCAD`` or, beside it, ``<root>/../NYUCAD``::

    NYUCAD/<split>/TSDF_lr/NYU<id>_0000_voxels.npz   tsdf_lr: the 60x36x60 TSDF NYUCAD models read
    NYUCAD/<split>/mapping/NYU<id>_0000_voxels.npz   arr_1: 129,600 voxel -> pixel indices

``<split>`` is any sub-folder (``train``, ``test``): a frame is found in whichever holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from torchssc.io.prepared import load_npz

TSDF_KEY = "tsdf_lr"
MAPPING_KEY = "arr_1"


def nyucad_folder(root: str | os.PathLike) -> Path:
    """``<root>/NYUCAD`` or ``<root>/../NYUCAD``, whichever exists.

    Raises:
        FileNotFoundError: naming both places.
    """
    root = Path(root)
    for candidate in (root / "NYUCAD", root.parent / "NYUCAD"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{root}: no NYUCAD folder at {root / 'NYUCAD'} or {root.parent / 'NYUCAD'} "
                            "(layout nyucad_torchssc: NYUCAD/<split>/TSDF_lr/, NYUCAD/<split>/mapping/)")


def index_frames(cad: Path) -> dict[str, Path]:
    """Frame id -> the split folder of ``cad`` holding its ``TSDF_lr`` file."""
    found: dict[str, Path] = {}
    for path in sorted(cad.glob("*/TSDF_lr/NYU*_0000_voxels.npz")):
        found.setdefault(path.name[3:7], path.parent.parent)
    return found


def frame_files(split_dir: Path, frame_id: str) -> dict[str, Path]:
    """The two NYUCAD files of a frame: ``tsdf`` and ``mapping``."""
    name = f"NYU{frame_id}_0000_voxels.npz"
    return {"tsdf": split_dir / "TSDF_lr" / name, "mapping": split_dir / "mapping" / name}


def read_inputs(split_dir: Path, frame_id: str, grid: tuple[int, int, int],
                num_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tsdf grid float32, mapping (prod(grid),) int64)`` of one NYUCAD frame.

    Raises:
        FileNotFoundError / ValueError naming the file and the key (wrong size, dtype, range).
    """
    files = frame_files(split_dir, frame_id)
    (tsdf,) = load_npz(files["tsdf"], TSDF_KEY)
    n = int(np.prod(grid))
    if tsdf.size != n or not np.issubdtype(tsdf.dtype, np.floating) or not np.all(np.isfinite(tsdf)):
        raise ValueError(f"{files['tsdf']}: '{TSDF_KEY}' must be {n} finite floats {grid}, "
                         f"got shape {tsdf.shape} {tsdf.dtype} (layout nyucad_torchssc)")
    (mapping,) = load_npz(files["mapping"], MAPPING_KEY)
    if mapping.size != n or not np.issubdtype(mapping.dtype, np.integer):
        raise ValueError(f"{files['mapping']}: '{MAPPING_KEY}' must be {n} integer voxel -> pixel indices, "
                         f"got shape {mapping.shape} {mapping.dtype} (layout nyucad_torchssc)")
    if mapping.min() < 0 or mapping.max() > num_pixels:
        raise ValueError(f"{files['mapping']}: '{MAPPING_KEY}' must be in 0..{num_pixels} ({num_pixels} = no "
                         f"pixel), found {int(mapping.min())}..{int(mapping.max())}")
    return tsdf.reshape(grid).astype(np.float32), mapping.reshape(-1).astype(np.int64)
