"""NYUv2 labelled .mat RGB reader: orientation, errors, lazy per-image reads."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from torchssc.io.nyu_mat import NyuLabeledMat, read_nyu_rgb

H, W, N = 4, 5, 3  # tiny, non-square, odd


def _pattern(k: int) -> np.ndarray:
    """An asymmetric (H, W, 3) uint8 image, distinct per k: every (v, u, c) has its own value."""
    img = np.zeros((H, W, 3), np.uint8)
    for v in range(H):
        for u in range(W):
            for c in range(3):
                img[v, u, c] = (k * 7 + c * 64 + v * 16 + u) % 256
    return img


def _write_matlab_layout(path, images: list[np.ndarray], **extra) -> None:
    """Write images as MATLAB v7.3 does: MATLAB array (row, col, ch, n) column-major, which
    HDF5 exposes with reversed dims as (n, ch, col, row). Element-by-element on purpose."""
    data = np.zeros((len(images), 3, W, H), np.uint8)
    for n, img in enumerate(images):
        for v in range(H):
            for u in range(W):
                for c in range(3):
                    data[n, c, u, v] = img[v, u, c]
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=data, chunks=(1, 3, W, H))
        f.create_dataset("depths", data=np.zeros((len(images), W, H), np.float32))
        for key, value in extra.items():
            f.create_dataset(key, data=value)


@pytest.fixture()
def mat_path(tmp_path):
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    _write_matlab_layout(path, [_pattern(k) for k in range(1, N + 1)])
    return path


def test_orientation_every_image(mat_path):
    for k in range(1, N + 1):
        rgb = read_nyu_rgb(mat_path, k)
        assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
        np.testing.assert_array_equal(rgb, _pattern(k))
        assert rgb.flags["C_CONTIGUOUS"]


def test_corner_pixels_are_where_matlab_puts_them(mat_path):
    # MATLAB images(1, W, 2, 2) = top-right pixel, green, image 2 -> HDF5 [1, 1, W-1, 0].
    with h5py.File(mat_path, "r") as f:
        stored = int(f["images"][1, 1, W - 1, 0])
    with NyuLabeledMat(mat_path) as mat:
        assert len(mat) == N
        assert mat.image_size == (H, W)
        img = mat.rgb(2)
    assert img[0, W - 1, 1] == stored
    assert img[0, W - 1, 1] != img[H - 1, 0, 1]  # not flipped
    assert img[0, W - 1, 1] != img[0, W - 1, 2]  # channels not swapped


def test_index_out_of_range(mat_path):
    for bad in (0, N + 1, -1):
        with pytest.raises(ValueError, match=rf"index {bad} out of range 1\.\.{N}"):
            read_nyu_rgb(mat_path, bad)
    with pytest.raises(ValueError, match="integer"):
        read_nyu_rgb(mat_path, 1.5)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        read_nyu_rgb(tmp_path / "nope.mat", 1)


def test_not_hdf5(tmp_path):
    path = tmp_path / "old.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file, not HDF5" + bytes(200))
    with pytest.raises(ValueError, match=r"old\.mat: not an HDF5 file"):
        read_nyu_rgb(path, 1)


def test_no_images_dataset(tmp_path):
    path = tmp_path / "depths_only.mat"
    with h5py.File(path, "w") as f:
        f.create_dataset("depths", data=np.zeros((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"depths_only\.mat: no 'images' dataset \(found \['depths'\]\)"):
        read_nyu_rgb(path, 1)


def test_wrong_layout(tmp_path):
    path = tmp_path / "hwc.mat"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, W, H, 3), np.uint8))  # channels last
    with pytest.raises(ValueError, match=r"shape \(2, 5, 4, 3\)"):
        read_nyu_rgb(path, 1)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 3, W, H), np.float32))
    with pytest.raises(ValueError, match="dtype float32"):
        read_nyu_rgb(path, 1)


def test_reads_only_the_requested_image(mat_path, monkeypatch):
    """The reader slices one image; it never asks h5py for the whole dataset."""
    requested = []
    original = h5py.Dataset.__getitem__

    def spy(self, key, *args, **kw):
        if self.name == "/images":
            requested.append(key)
        return original(self, key, *args, **kw)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    read_nyu_rgb(mat_path, 3)
    assert requested == [2]
