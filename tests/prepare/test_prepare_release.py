"""`prepare` reproduces the released TorchSSC NYU files bit for bit (scene 0001 = the raw sample).

Reads ../shared/data (or $TORCHSSC_DATA) in place; skips without it.
"""

from __future__ import annotations

import numpy as np
import pytest

from torchssc import geometry as g
from torchssc.io.depthbin import read_bin, read_depth_png
from torchssc.prepare import prepare_depthbin
from torchssc.prepare.tsdf import _observe_fast, _observe_grid


@pytest.fixture(scope="module")
def release_0001(nyu_release):
    def arr(folder, *keys):
        with np.load(nyu_release / folder / "0001.npz") as z:
            return tuple(z[k] for k in keys)

    (label,) = arr("L", "arr_0")
    tsdf, weight = arr("T", "arr_0", "arr_1")
    (mapping,) = arr("Mapping", "arr_0")
    return {"label": label, "tsdf": tsdf, "weight": weight, "mapping": mapping}


@pytest.fixture(scope="module")
def prepared_0001(nyu_sample):
    return prepare_depthbin(nyu_sample / "NYU0001_0000.bin")  # NYU default: release intrinsics


def test_release_is_reproduced_bit_for_bit(prepared_0001, release_0001):
    ref, got = release_0001, prepared_0001
    assert ref["tsdf"].dtype == np.float32 and ref["label"].dtype == np.int32
    np.testing.assert_array_equal(got.label.ravel(), ref["label"])
    np.testing.assert_array_equal(got.label_weight.ravel(), ref["weight"])
    np.testing.assert_array_equal(got.mapping, ref["mapping"])
    # bit-identical float32, not merely close
    np.testing.assert_array_equal(got.tsdf.ravel().view(np.int32), ref["tsdf"].view(np.int32))
    assert (ref["mapping"] < 307200).sum() == 2750 and ref["weight"].sum() == 68495


def test_the_sscnet_camera_does_not_reproduce_it(nyu_sample, release_0001):
    """The convention matters: with SSCNet's intrinsics 13% of the TSDF differs by > 0.05."""
    got = prepare_depthbin(nyu_sample / "NYU0001_0000.bin", intrinsics=g.SSCNET_INTRINSICS)
    far = np.abs(got.tsdf.ravel() - release_0001["tsdf"]) > 0.05
    assert 0.12 < far.mean() < 0.14
    assert (got.label_weight.ravel() != release_0001["weight"]).mean() > 0.01
    assert (got.mapping < 307200).sum() == 2653


def test_exact_recompute_is_needed_on_the_sample(nyu_sample):
    """float64 alone decides at least one voxel of the sample differently from the kernel."""
    raw = read_bin(nyu_sample / "NYU0001_0000.bin")
    depth = read_depth_png(nyu_sample / "NYU0001_0000.png")
    args = (depth, raw.pose, raw.origin, g.RELEASE_INTRINSICS, g.FINE_VOXEL, g.FINE_SHAPE)
    fast, unsure = _observe_fast(*args)
    exact, _ = _observe_grid(*args)
    assert (fast != exact).sum() >= 1
    assert len(unsure) < 0.02 * fast.size  # and only ~1% of the grid is recomputed
