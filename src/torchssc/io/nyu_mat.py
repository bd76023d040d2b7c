"""RGB frames from the official NYUv2 labelled set, ``nyu_depth_v2_labeled.mat`` (docs/data.md).

The file is MATLAB v7.3, i.e. HDF5. MATLAB's ``images`` array is ``480 x 640 x 3 x 1449``
(row, column, channel, image) in column-major order; HDF5 stores the dimensions reversed, so
h5py sees a ``(1449, 3, 640, 480)`` dataset indexed ``[image, channel, column, row]``.
Image ``i`` (1-based, the NYUv2 image index used in ``NYU%04d`` file names) is therefore
``images[i - 1].transpose(2, 1, 0)`` -> ``(480, 640, 3)`` (row, column, channel).

Only the requested image is read (h5py slices lazily); the 2.8 GB file is never loaded whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

IMAGES_KEY = "images"
"""Name of the RGB dataset inside the .mat file."""


class NyuLabeledMat:
    """Read-only access to the RGB images of ``nyu_depth_v2_labeled.mat``.

    Use as a context manager (or call :meth:`close`)::

        with NyuLabeledMat(path) as mat:
            rgb = mat.rgb(1)  # (480, 640, 3) uint8, NYUv2 image 1

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not HDF5 (e.g. a pre-v7.3 MATLAB file), has no ``images``
            dataset, or ``images`` is not a 4-D ``(N, 3, W, H)`` uint8 array.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such NYUv2 .mat file")
        if not h5py.is_hdf5(self.path):
            raise ValueError(
                f"{self.path}: not an HDF5 file; expected the official nyu_depth_v2_labeled.mat "
                "(MATLAB v7.3 = HDF5)"
            )
        self._file = h5py.File(self.path, "r")
        try:
            if IMAGES_KEY not in self._file or not isinstance(self._file[IMAGES_KEY], h5py.Dataset):
                raise ValueError(
                    f"{self.path}: no '{IMAGES_KEY}' dataset (found {sorted(self._file.keys())})"
                )
            images = self._file[IMAGES_KEY]
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(
                    f"{self.path}: '{IMAGES_KEY}' has shape {images.shape}, expected (N, 3, W, H) "
                    "(MATLAB H x W x 3 x N)"
                )
            if images.dtype != np.uint8:
                raise ValueError(f"{self.path}: '{IMAGES_KEY}' has dtype {images.dtype}, expected uint8")
        except BaseException:
            self._file.close()
            raise
        self._images = images

    def __len__(self) -> int:
        """Number of images N."""
        return int(self._images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of every image (``(480, 640)`` for NYUv2)."""
        return int(self._images.shape[3]), int(self._images.shape[2])

    def rgb(self, index: int) -> np.ndarray:
        """Image ``index`` (1-based NYUv2 index) as ``(H, W, 3) uint8``, row-major, RGB order.

        Raises:
            ValueError: ``index`` outside ``1..N``.
        """
        if isinstance(index, bool) or int(index) != index:
            raise ValueError(f"{self.path}: image index must be an integer, got {index!r}")
        index = int(index)
        if not 1 <= index <= len(self):
            raise ValueError(f"{self.path}: image index {index} out of range 1..{len(self)} (1-based)")
        chw = self._images[index - 1]  # (3, W, H): channel, column, row
        return np.ascontiguousarray(chw.transpose(2, 1, 0))  # (H, W, 3)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "NyuLabeledMat":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_nyu_rgb(path: str | os.PathLike, index: int) -> np.ndarray:
    """NYUv2 RGB image ``index`` (1-based) from ``nyu_depth_v2_labeled.mat``.

    Returns:
        ``(480, 640, 3) uint8`` (``(H, W, 3)`` in general), RGB order.
    Raises:
        FileNotFoundError, or ValueError naming the file (not HDF5, no ``images``, index out
        of range).
    """
    with NyuLabeledMat(path) as mat:
        return mat.rgb(index)
