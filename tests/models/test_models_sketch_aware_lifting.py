"""2D->3D lifting (features and the one-hot 2D prior) and the zero-fill rule of SketchAwareSSC,
against naive loop references."""

import itertools

import pytest
import torch

import _sketch_aware_reference as ref
from _sketch_aware_reference import fill_unmapped, lift_features_naive
from torchssc.models.lifting import lift_and_fill, lift_features, lift_labels


def _bilinear_loop(feat, v, u, big_h, big_w):
    """align_corners=True bilinear value of feat (C, h, w) at output pixel (v, u), by hand."""
    c, h, w = feat.shape
    y = v * (h - 1) / (big_h - 1)
    x = u * (w - 1) / (big_w - 1)
    y0, x0 = int(y), int(x)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    fy, fx = y - y0, x - x0
    return ((1 - fy) * (1 - fx) * feat[:, y0, x0] + (1 - fy) * fx * feat[:, y0, x1]
            + fy * (1 - fx) * feat[:, y1, x0] + fy * fx * feat[:, y1, x1])


def _lift_loop(features, mapping, grid, image_size):
    b, c = features.shape[:2]
    big_h, big_w = image_size
    out = torch.zeros(b, c, *grid, dtype=torch.float64)
    f64 = features.double()
    for i in range(b):
        for flat, (a, bb, cc) in enumerate(itertools.product(*map(range, grid))):
            p = int(mapping[i, flat])
            if p < big_h * big_w:
                out[i, :, a, bb, cc] = _bilinear_loop(f64[i], p // big_w, p % big_w, big_h, big_w)
    return out


def _random_mapping(b, grid, image_size, seed, frac=0.4):
    g = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1] * grid[2]
    hw = image_size[0] * image_size[1]
    mapping = torch.randint(0, hw, (b, n), generator=g)
    mapping[torch.rand(b, n, generator=g) > frac] = hw
    mapping[0, 0], mapping[-1, -1] = hw - 1, 0     # the last and the first pixel
    return mapping


@pytest.mark.parametrize(
    "grid, feat_hw, image_size",
    [((5, 3, 7), (3, 4), (48, 64)), ((4, 4, 4), (5, 7), (31, 45)), ((3, 5, 2), (1, 6), (17, 23))],
)

def test_lift_matches_loop_and_naive(grid, feat_hw, image_size):
    torch.manual_seed(0)
    b, c = 2, 5
    features = torch.randn(b, c, *feat_hw)
    mapping = _random_mapping(b, grid, image_size, seed=1)
    fast = lift_features(features, mapping, grid, image_size)
    naive = lift_features_naive(features, mapping, grid, image_size)
    loop = _lift_loop(features, mapping, grid, image_size)
    assert fast.shape == (b, c, *grid)
    torch.testing.assert_close(naive.double(), loop, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
    assert (fast[mapping.view(b, 1, *grid).expand_as(fast) == image_size[0] * image_size[1]] == 0).all()


def test_lift_at_output_stride_16_equals_upsample_x16_gather():
    # the model's case: feature map = image / 16, the original upsampled with scale_factor=16
    torch.manual_seed(1)
    b, c, grid, image_size = 2, 6, (8, 4, 8), (96, 128)
    features = torch.randn(b, c, 6, 8)
    mapping = _random_mapping(b, grid, image_size, seed=2, frac=0.7)
    up = torch.nn.functional.interpolate(features, scale_factor=16, mode="bilinear",
                                         align_corners=True)
    table = torch.cat([up.flatten(2), torch.zeros(b, c, 1)], 2)
    expected = torch.stack([table[i][:, mapping[i]] for i in range(b)]).view(b, c, *grid)
    torch.testing.assert_close(lift_features(features, mapping, grid, image_size), expected,
                               atol=1e-5, rtol=0)


def test_lift_gradients_match_naive():
    torch.manual_seed(2)
    grid, image_size = (4, 3, 5), (40, 56)
    features = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    mapping = _random_mapping(2, grid, image_size, seed=3, frac=0.6)
    weights = torch.randn(2, 3, *grid, dtype=torch.float64)
    (g_fast,) = torch.autograd.grad((lift_features(features, mapping, grid, image_size) * weights).sum(), features)
    (g_naive,) = torch.autograd.grad((lift_features_naive(features, mapping, grid, image_size) * weights).sum(), features)
    torch.testing.assert_close(g_fast, g_naive)
    assert g_fast.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda f: lift_features(f, mapping, grid, image_size), (features,))


def test_lift_rejects_bad_mapping_shape():
    with pytest.raises(ValueError, match="mapping"):
        lift_features(torch.zeros(1, 2, 3, 4), torch.zeros(1, 10, dtype=torch.int64), (2, 2, 2), (8, 8))


def _fill_loop(volume):
    b, c, d, h, w = volume.shape
    out = volume.clone()
    for i, ch, x, y, z in itertools.product(range(b), range(c), range(d), range(h), range(w)):
        if volume[i, ch, x, y, z] != 0:
            continue
        total = 0.0
        for dx, dy, dz in itertools.product((-1, 0, 1), repeat=3):
            xx, yy, zz = x + dx, y + dy, z + dz
            if 0 <= xx < d and 0 <= yy < h and 0 <= zz < w:
                total += float(volume[i, ch, xx, yy, zz])
        out[i, ch, x, y, z] = total / 27.0
    return out


def test_fill_unmapped_matches_loop():
    torch.manual_seed(3)
    volume = torch.randn(2, 3, 5, 4, 7, dtype=torch.float64)
    volume[torch.rand_like(volume) < 0.5] = 0.0   # many zeros, corners and borders included
    volume[0, 0, 0, 0, 0] = 0.0
    filled = fill_unmapped(volume)
    torch.testing.assert_close(filled, _fill_loop(volume))
    nonzero = volume != 0
    assert torch.equal(filled[nonzero], volume[nonzero])
    assert (filled[~nonzero] != 0).any()


@pytest.mark.parametrize("frac", [0.05, 0.4, 1.0])
def test_lift_and_fill_equals_fill_of_lift_and_the_loops(frac):
    """The sparse lift + fill against the dense original and against the two naive loops, on an
    odd grid whose mapped voxels touch every face; exact zeros inside mapped voxels included."""
    grid, image_size = (5, 3, 7), (48, 64)
    torch.manual_seed(5)
    features = torch.relu(torch.randn(2, 3, 3, 4, dtype=torch.float64))  # post-ReLU zeros
    mapping = _random_mapping(2, grid, image_size, seed=7, frac=frac)
    got = lift_and_fill(features, mapping, grid, image_size)
    assert got.shape == (2, 3, *grid) and got.is_contiguous()
    torch.testing.assert_close(got, fill_unmapped(lift_features_naive(features, mapping, grid, image_size)))
    torch.testing.assert_close(got, _fill_loop(_lift_loop(features, mapping, grid, image_size)))


def test_lift_and_fill_gradients_match_dense_path():
    grid, image_size = (4, 5, 6), (31, 45)
    torch.manual_seed(6)
    features = torch.relu(torch.randn(2, 4, 5, 7, dtype=torch.float64)).requires_grad_(True)
    mapping = _random_mapping(2, grid, image_size, seed=8, frac=0.2)
    weights = torch.randn(2, 4, *grid, dtype=torch.float64)
    (g_sparse,) = torch.autograd.grad((lift_and_fill(features, mapping, grid, image_size) * weights).sum(), features)
    dense = fill_unmapped(lift_features_naive(features, mapping, grid, image_size))
    (g_dense,) = torch.autograd.grad((dense * weights).sum(), features)
    torch.testing.assert_close(g_sparse, g_dense)
    # away from exact zeros (where the fill rule jumps), the gradient is the analytic one
    positive = (torch.rand(2, 4, 5, 7, dtype=torch.float64) + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: lift_and_fill(f, mapping, grid, image_size), (positive,))


def test_lift_and_fill_with_nothing_mapped_is_zero():
    grid, image_size = (2, 3, 4), (8, 8)
    mapping = torch.full((1, 24), 64, dtype=torch.int64)
    out = lift_and_fill(torch.randn(1, 2, 3, 3), mapping, grid, image_size)
    assert out.shape == (1, 2, *grid) and not out.any()


# --- the 2D segmentation prior: one-hot ids lifted like the features -----------------------------

def _lift_labels_loop(labels, mapping, grid, num_classes):
    """Each voxel with a pixel gets the one-hot vector of that pixel's id, by hand."""
    b, h, w = labels.shape
    out = torch.zeros(b, num_classes, *grid, dtype=torch.float64)
    for i in range(b):
        for flat, (a, bb, cc) in enumerate(itertools.product(*map(range, grid))):
            p = int(mapping[i, flat])
            if 0 <= p < h * w:
                out[i, int(labels[i, p // w, p % w]), a, bb, cc] = 1.0
    return out


@pytest.mark.parametrize(
    "grid, image_size, num_classes, frac",
    [((5, 3, 7), (12, 16), 14, 0.4), ((4, 4, 4), (9, 13), 5, 1.0), ((3, 5, 3), (7, 11), 3, 0.05)],
)
def test_lift_labels_matches_loop_and_dense_one_hot(grid, image_size, num_classes, frac):
    g = torch.Generator().manual_seed(11)
    b = 2
    labels = torch.randint(0, num_classes, (b, *image_size), generator=g)
    mapping = _random_mapping(b, grid, image_size, seed=12, frac=frac)
    loop = _lift_labels_loop(labels, mapping, grid, num_classes)
    plain = lift_labels(labels, mapping, grid, num_classes, fill=False, dtype=torch.float64)
    assert plain.shape == (b, num_classes, *grid) and plain.is_contiguous()
    torch.testing.assert_close(plain, loop, atol=0, rtol=0)
    filled = lift_labels(labels, mapping, grid, num_classes, dtype=torch.float64)
    assert filled.is_contiguous()
    torch.testing.assert_close(filled, _fill_loop(loop))
    # the dense path: one-hot image (B, K, H, W), full-size lift, dense fill
    torch.testing.assert_close(filled, ref.lift_labels_naive(labels, mapping, grid, num_classes,
                                                             dtype=torch.float64))
    # the same as lifting the one-hot image as features
    image = ref.one_hot_image(labels, num_classes, torch.float64)
    torch.testing.assert_close(filled, lift_and_fill(image, mapping, grid, image_size))
    # every mapped voxel holds exactly one 1 before the fill; unmapped ones are all zero
    mapped = (mapping < image_size[0] * image_size[1]).view(b, *grid)
    assert torch.equal(plain.sum(1), mapped.double())
    assert lift_labels(labels, mapping, grid, num_classes).dtype == torch.float32


def test_lift_labels_reads_only_mapped_pixels_and_checks_ids():
    grid, image_size = (2, 3, 4), (5, 6)
    labels = torch.full((1, *image_size), 255, dtype=torch.uint8)        # invalid everywhere ...
    mapping = torch.full((1, 24), 30, dtype=torch.int64)
    mapping[0, 5] = 7
    labels[0, 1, 1] = 3                                                  # ... but at pixel 7
    out = lift_labels(labels, mapping, grid, 4, fill=False)
    assert out.sum() == 1 and out[0, 3].flatten()[5] == 1
    labels[0, 1, 1] = 4
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        lift_labels(labels, mapping, grid, 4)
    with pytest.raises(ValueError, match="labels"):
        lift_labels(labels.float(), mapping, grid, 4)
    with pytest.raises(ValueError, match="mapping"):
        lift_labels(labels, mapping[:, :10], grid, 4)
    empty = lift_labels(labels, torch.full((1, 24), 30), grid, 4)         # nothing mapped
    assert empty.shape == (1, 4, *grid) and not empty.any()
