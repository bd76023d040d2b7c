"""depthbin .bin/.png reading and writing: round trips, the real sample's facts, bad files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from torchssc import geometry as g
from torchssc.io.depthbin import (
    decode_depth,
    encode_depth,
    read_bin,
    read_depth_png,
    read_depthbin_frame,
    rle_decode,
    rle_encode,
    write_bin,
    write_depth_png,
)

@pytest.fixture(scope="module")
def sample(nyu_sample):
    return read_depthbin_frame(nyu_sample / "NYU0001_0000.bin")


def test_bin_round_trip_is_byte_identical(sample, nyu_sample, tmp_path):
    raw, _ = sample
    out = tmp_path / "copy.bin"
    write_bin(out, raw.origin, raw.pose, raw.labels)
    assert out.read_bytes() == (nyu_sample / "NYU0001_0000.bin").read_bytes()


def test_sample_header_and_counts(sample):
    raw, _ = sample
    np.testing.assert_allclose(raw.origin, [-1.545918, 0.8907361, -0.05], atol=1e-6)
    np.testing.assert_allclose(raw.pose[:3, 3], [0.0, 0.0, 1.1794727], atol=1e-6)
    np.testing.assert_allclose(raw.pose[3], [0, 0, 0, 1])
    assert raw.labels.shape == g.FINE_SHAPE and raw.labels.dtype == np.uint8
    values, counts = np.unique(raw.labels, return_counts=True)
    expected = {0: 1_558_348, 1: 10_791, 2: 8_803, 3: 35_784, 6: 23_518, 9: 1_185, 12: 6_705,
                13: 124_082, 20: 17_003, 21: 9_128, 36: 28_672, 255: 6_470_381}
    assert dict(zip(values.tolist(), counts.tolist())) == expected
    assert counts.sum() == 240 * 144 * 240


def test_sample_depth(sample):
    _, depth = sample
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    valid = depth > 0
    assert valid.sum() == 265_189
    assert depth[valid].min() == pytest.approx(1.215, abs=1e-6)
    assert depth.max() == pytest.approx(3.703, abs=1e-6)


def test_sample_axis_order(sample):
    """The (X, Z-up, Y) order puts ~65% of the depth points on labelled voxels; others don't."""
    raw, depth = sample
    idx, valid = g.depth_to_grid_index(depth, raw.pose, raw.origin)
    assert valid.sum() == 259_404
    lab = raw.labels[tuple(idx[valid].T)]
    right = ((lab >= 1) & (lab <= 36)).mean()
    assert 0.63 < right < 0.67
    world_rel = np.floor((g.camera_to_world(g.backproject(depth), raw.pose) - raw.origin) / g.FINE_VOXEL)
    world_rel = world_rel[depth > 0].astype(np.int64)  # world (x, y, z) order
    fractions = {}
    for perm in itertools.permutations(range(3)):
        ix = world_rel[:, perm]
        ok = np.all((ix >= 0) & (ix < np.array(g.FINE_SHAPE)), axis=1)
        lab = raw.labels[tuple(ix[ok].T)]
        fractions[perm] = ((lab >= 1) & (lab <= 36)).mean()
    assert fractions[(0, 2, 1)] == pytest.approx(right)
    assert max(v for k, v in fractions.items() if k != (0, 2, 1)) < 0.4
    assert 0.15 < fractions[(0, 1, 2)] < 0.2  # the classic bug: [X, Y, Z] axes


def test_constant_volume_quirk(nyu_sample):
    constant = nyu_sample / "NYU0001_0000_constant.bin"
    raw = read_bin(constant)
    assert raw.labels.shape == g.FINE_SHAPE and not raw.labels.any()
    # its header is a valid frame header (not byte-identical to NYU0001's, despite the README)
    assert raw.origin[2] == pytest.approx(-0.05)
    rot = raw.pose[:3, :3].astype(np.float64)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-4)
    assert constant.stat().st_size == 76 + 8


def _header():
    """A depthbin header of our own: origin (3 float32), then an identity pose (16 float32)."""
    return np.concatenate([[-1.5, 0.9, -0.05], np.eye(4).ravel()]).astype("<f4").tobytes()


@pytest.mark.parametrize(
    "body,match",
    [
        (b"", "RLE runs sum to 0"),
        (np.array([0, 8_294_398], "<u4").tobytes(), "8,294,398"),   # two voxels short
        (np.array([0, 8_294_400, 3, 1], "<u4").tobytes(), "8,294,401"),  # over-long
        (np.array([0, 8_294_400], "<u4").tobytes() + b"\0\0\0\0", "not a whole number"),  # odd length
        (np.array([300, 8_294_400], "<u4").tobytes(), "300"),
    ],
)
def test_bad_bin_files_name_the_file(tmp_path, body, match):
    path = tmp_path / "NYU9999_0000.bin"
    path.write_bytes(_header() + body)
    with pytest.raises(ValueError, match=match) as err:
        read_bin(path)
    assert "NYU9999_0000.bin" in str(err.value)


def test_truncated_header_and_missing(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(_header()[:50])
    with pytest.raises(ValueError, match="short.bin.*header"):
        read_bin(path)
    with pytest.raises(FileNotFoundError, match="absent.bin"):
        read_bin(tmp_path / "absent.bin")
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_depth_png(tmp_path / "absent.png")


def test_rle_round_trip_and_quirk_padding():
    rng = np.random.default_rng(0)
    flat = np.repeat(rng.choice([0, 3, 255], 50), rng.integers(1, 9, 50)).astype(np.uint8)
    pairs = rle_encode(flat).reshape(-1, 2)
    assert pairs[:, 1].sum() == flat.size and np.all(pairs[1:, 0] != pairs[:-1, 0])
    np.testing.assert_array_equal(rle_decode(pairs[:, 0], pairs[:, 1], flat.size), flat)
    short = pairs.copy()
    short[-1, 1] -= 1
    np.testing.assert_array_equal(rle_decode(short[:, 0], short[:, 1], flat.size), flat)


def test_depth_codec_and_png_round_trip(sample, nyu_sample, tmp_path):
    _, depth = sample
    with Image.open(nyu_sample / "NYU0001_0000.png") as img:
        raw = np.array(img)
    mm = ((raw.astype(np.uint32) >> 3) | (raw.astype(np.uint32) << 13)) & 0xFFFF
    np.testing.assert_array_equal(decode_depth(raw), (mm / 1000.0).astype(np.float32))
    np.testing.assert_array_equal(encode_depth(depth), raw)
    out = tmp_path / "d.png"
    write_depth_png(out, depth)
    assert out.read_bytes() != b"" and np.array_equal(read_depth_png(out, size=(480, 640)), depth)
    # writers round to the nearest millimetre
    rounded = decode_depth(encode_depth(np.array([[1.2344, 1.2346, 0.0]])))
    np.testing.assert_array_equal(rounded, np.float32([[1.234, 1.235, 0.0]]))
    with pytest.raises(ValueError):
        encode_depth(np.array([[-1.0]]))


def test_bad_png(tmp_path):
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((480, 640, 3), np.uint8)).save(rgb)
    with pytest.raises(ValueError, match="rgb.png.*16-bit"):
        read_depth_png(rgb)
    small = tmp_path / "small.png"
    write_depth_png(small, np.ones((48, 64)))
    with pytest.raises(ValueError, match="small.png.*64x48, expected 640x480"):
        read_depth_png(small, size=(480, 640))
    assert read_depth_png(small).shape == (48, 64)
