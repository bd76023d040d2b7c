"""Label and TSDF downsampling vs naive per-block references, with constructed ties."""

from __future__ import annotations

import numpy as np
import pytest

from torchssc.geometry import NYU36_TO_11
from torchssc.prepare.downsample import downsample_labels, downsample_mean


def _ref_default(block: np.ndarray) -> int:
    vals = block.ravel().tolist()
    n0, n255 = vals.count(0), vals.count(255)
    if n0 + n255 > 0.95 * len(vals):
        return 0 if n0 >= n255 else 255  # a tie gives 0 (the released NYU files)
    counts = [vals.count(k) for k in range(1, 12)]
    return 1 + counts.index(max(counts))


def _ref_sscnet(block: np.ndarray) -> int:
    """SSCNet's loop: scan x (our c) outermost, z (our a) innermost; count equal values after n."""
    f = block.shape[0]
    vals = [int(block[a, b, c]) for c in range(f) for b in range(f) for a in range(f)]
    zero = sum(1 for x in vals if x == 0 or x == 255)
    best, best_count = 0, 0
    for n, x in enumerate(vals):
        if zero > 0.95 * len(vals) or 0 < x < 255:
            count = vals[n + 1 :].count(x)
            if count > best_count:
                best, best_count = x, count
    return best


def _blockwise(labels, fn, f=4):
    d, h, w = (s // f for s in labels.shape)
    out = np.zeros((d, h, w), np.uint8)
    for i, j, k in np.ndindex(d, h, w):
        out[i, j, k] = fn(labels[i * f : (i + 1) * f, j * f : (j + 1) * f, k * f : (k + 1) * f])
    return out


def _random_labels(seed, shape=(12, 8, 20)):
    rng = np.random.default_rng(seed)
    out = np.empty(shape, np.uint8)
    f = 4
    for i, j, k in np.ndindex(*(s // f for s in shape)):
        kind = rng.integers(5)
        if kind == 0:  # uniform
            blk = np.full(64, rng.choice([0, 255, 3]))
        elif kind == 1:  # nearly empty: 59..64 of 0/255 in random proportion
            n_empty = rng.integers(59, 65)
            blk = np.concatenate([rng.choice([0, 255], n_empty), rng.integers(1, 12, 64 - n_empty)])
        elif kind == 2:  # few classes, ties likely
            blk = rng.choice([0, 2, 5, 7], 64)
        else:
            blk = rng.choice([0, 255, 1, 4, 9, 11], 64, p=[0.3, 0.3, 0.1, 0.1, 0.1, 0.1])
        rng.shuffle(blk)
        out[i * f : (i + 1) * f, j * f : (j + 1) * f, k * f : (k + 1) * f] = blk.reshape(4, 4, 4)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_match_naive_reference(seed):
    labels = _random_labels(seed)
    got = downsample_labels(labels, raw=False)
    np.testing.assert_array_equal(got, _blockwise(labels, _ref_default))
    got_s = downsample_labels(labels, raw=False, tie_rule="sscnet")
    np.testing.assert_array_equal(got_s, _blockwise(labels, _ref_sscnet))
    assert got.dtype == np.uint8 and got.shape == (3, 2, 5)


def _one_block(fill=0):
    return np.full((4, 4, 4), fill, np.uint8)


def test_class_tie_default_smallest_sscnet_scan_order():
    blk = _one_block()
    # 8 voxels of class 5 and 8 of class 3; class 5 owns offset (0,0,0), the first in the scan
    pos = list(np.ndindex(4, 4, 4))
    five = [(0, 0, 0)] + [p for p in pos if p[2] == 3][:7]
    three = [p for p in pos if p[2] == 2][:8]
    for p in five:
        blk[p] = 5
    for p in three:
        blk[p] = 3
    assert downsample_labels(blk, raw=False)[0, 0, 0] == 3
    assert downsample_labels(blk, raw=False, tie_rule="sscnet")[0, 0, 0] == 5


def test_sscnet_scan_is_fortran_order_of_block():
    blk = _one_block()
    # classes 4 and 6, 4 voxels each. 6 occupies (1,0,0), the 2nd element of SSCNet's scan
    # (a fastest); 4 occupies (0,0,1), the 2nd element in C order but the 17th in the scan.
    for p in [(1, 0, 0), (2, 3, 3), (3, 3, 3), (3, 2, 3)]:
        blk[p] = 6
    for p in [(0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 1, 3)]:
        blk[p] = 4
    assert downsample_labels(blk, raw=False, tie_rule="sscnet")[0, 0, 0] == 6
    assert downsample_labels(blk, raw=False)[0, 0, 0] == 4


def test_empty_rule_threshold_and_ties():
    blk = _one_block(255)
    blk.flat[:29] = 0
    blk.flat[40:43] = 7  # 61 of 64 are 0/255 -> empty branch; 29 zeros < 32 x 255
    assert downsample_labels(blk, raw=False)[0, 0, 0] == 255
    blk.flat[:33] = 0  # 33 zeros vs 28 255s
    assert downsample_labels(blk, raw=False)[0, 0, 0] == 0
    blk.flat[40:44] = 7  # only 60 of 0/255: class branch
    assert downsample_labels(blk, raw=False)[0, 0, 0] == 7
    tie = _one_block(0)
    tie[:2] = 255  # 32 zeros, 32 x 255: default -> 0; SSCNet scan meets 255 first at (0,0,0)
    assert downsample_labels(tie, raw=False)[0, 0, 0] == 0
    assert downsample_labels(tie, raw=False, tie_rule="sscnet")[0, 0, 0] == 255
    tie = tie[::-1].copy()  # now (0,0,0) is 0
    assert downsample_labels(tie, raw=False)[0, 0, 0] == 0
    assert downsample_labels(tie, raw=False, tie_rule="sscnet")[0, 0, 0] == 0


def test_sscnet_all_singletons_quirk():
    blk = _one_block()
    blk.flat[[3, 17, 40, 63]] = [9, 2, 11, 5]  # 60 zeros: class branch, every class once
    assert downsample_labels(blk, raw=False)[0, 0, 0] == 2
    assert downsample_labels(blk, raw=False, tie_rule="sscnet")[0, 0, 0] == 0


def test_raw_labels_are_mapped_first():
    raw = np.zeros((4, 4, 8), np.uint8)
    raw[:, :, :4] = 5    # NYU36 5 -> 11 (objects)
    raw[:, :, 4:] = 36   # -> 11 as well
    raw[0, 0, 4:] = 255
    got = downsample_labels(raw)
    assert got.tolist() == [[[NYU36_TO_11[5], NYU36_TO_11[36]]]]
    with pytest.raises(ValueError, match="0..36"):
        downsample_labels(np.full((4, 4, 4), 40, np.uint8))
    with pytest.raises(ValueError, match="divisible"):
        downsample_labels(np.zeros((4, 4, 6), np.uint8))
    with pytest.raises(ValueError, match="tie_rule"):
        downsample_labels(raw, tie_rule="random")
    with pytest.raises(ValueError, match="integers"):
        downsample_labels(raw.astype(np.float32))
    with pytest.raises(ValueError, match="0..11 or 255"):
        downsample_labels(np.full((4, 4, 4), 12, np.int64), raw=False)
    # int64 input works like uint8
    np.testing.assert_array_equal(downsample_labels(raw.astype(np.int64)), got)


def test_tsdf_mean_matches_loop():
    rng = np.random.default_rng(5)
    vol = rng.uniform(-1, 1, (8, 12, 4)).astype(np.float32)
    vol[rng.random(vol.shape) < 0.3] = 0.0
    got = downsample_mean(vol)
    ref = np.zeros((2, 3, 1))
    for i, j, k in np.ndindex(2, 3, 1):
        ref[i, j, k] = float(np.float64(vol[i * 4 : i * 4 + 4, j * 4 : j * 4 + 4, k * 4 : k * 4 + 4]).sum()) / 64
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-7)
    assert got.dtype == np.float32 and got.shape == (2, 3, 1)


def test_tsdf_mean_is_the_float32_running_sum_in_scan_order():
    """Bit for bit: acc += v in float32, first axis outermost, then / 64 (the released files)."""
    rng = np.random.default_rng(6)
    vol = (rng.uniform(-1, 1, (8, 4, 12)) / 7).astype(np.float32)
    got = downsample_mean(vol)
    for i, j, k in np.ndindex(2, 1, 3):
        acc = np.float32(0)
        for a, b, c in np.ndindex(4, 4, 4):
            acc = np.float32(acc + vol[4 * i + a, 4 * j + b, 4 * k + c])
        assert got[i, j, k].view(np.int32) == np.float32(acc / np.float32(64)).view(np.int32)
    # the order matters: another order differs in the last bit somewhere
    other = vol.reshape(2, 4, 1, 4, 3, 4).transpose(0, 2, 4, 5, 3, 1).reshape(6, 64)
    reversed_sum = np.zeros(6, np.float32)
    for n in range(64):
        reversed_sum += other[:, n]
    assert (reversed_sum / np.float32(64) != got.ravel()).any()


@pytest.mark.parametrize("seed", [0, 1])
def test_another_datasets_label_map_against_a_loop(seed):
    """A spec with 5 classes and its own map (source ids 0..9 -> 0..4): the rules of the
    module docstring over the mapped values, with the class count of the spec."""
    label_map = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4]
    rng = np.random.default_rng(seed)
    raw = rng.choice([0, 255, *range(1, 10)], size=(8, 8, 12), p=[0.3, 0.25, *[0.05] * 9]).astype(np.uint8)

    def ref(block):
        vals = [255 if v == 255 else label_map[v] for v in block.ravel().tolist()]
        n0, n255 = vals.count(0), vals.count(255)
        if n0 + n255 > 0.95 * len(vals):
            return 0 if n0 >= n255 else 255
        counts = [vals.count(k) for k in range(1, 5)]
        return 1 + counts.index(max(counts))

    got = downsample_labels(raw, label_map=label_map, num_classes=5)
    np.testing.assert_array_equal(got, _blockwise(raw, ref))
    with pytest.raises(ValueError, match=r"0\.\.9 or 255 \(raw source ids\), found \[10\]"):
        downsample_labels(np.full((4, 4, 4), 10, np.uint8), label_map=label_map, num_classes=5)
