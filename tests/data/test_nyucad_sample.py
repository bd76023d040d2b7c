"""Facts of the three real NYUCAD scenes (../shared/data/nyucad_sample, EdgeNet-style npz),
reproduced through the toolkit's readers; measured against the NYU release (nyu_torchssc).
Skips, saying why, when the data is absent."""

from __future__ import annotations

import numpy as np
import pytest

from torchssc.data import SSCDataset
from torchssc.data.check import check_root
from torchssc.datasets import get_dataset_spec
from torchssc.io.edgenet import read_edgenet
from torchssc.io.prepared import load_npz

# scene: (agreement % where the release is not 255 (the README's rounding), voxels where the
# release is 255, valid mapped pixels, voxels with weights > 0, of which label_weight > 0 in T/)
FACTS = {
    "0358": (99.996, 3, 30_421, 278_037, 14_286, 13_389),
    "0524": (99.79, 2, 98_784, 264_677, 7_346, 6_952),
    "1385": (99.86, 2, 41_506, 262_757, 7_667, 7_292),
}


@pytest.fixture(scope="module")
def dataset(nyucad_sample):
    return SSCDataset(nyucad_sample, "test", spec="nyucad_edgenet", keys=["tsdf_fine"])


def test_the_folder_is_the_split(dataset):
    assert dataset.ids == sorted(FACTS)


@pytest.mark.parametrize("frame_id", sorted(FACTS))
def test_labels_are_nyus_where_the_release_is_not_255(dataset, nyu_release, frame_id):
    agree_pct, digits, n255, *_ = FACTS[frame_id]
    label = dataset[dataset.ids.index(frame_id)]["label"].numpy().ravel()
    (release,) = load_npz(nyu_release / "L" / f"{frame_id}.npz")
    release = release.ravel()
    known = release != 255
    assert round(100.0 * float((label[known] == release[known]).mean()), digits) == agree_pct
    assert int((~known).sum()) == n255
    assert np.all(label[~known] == 0)  # that preprocessor writes no 255


@pytest.mark.parametrize("frame_id", sorted(FACTS))
def test_mapped_pixels_and_weights(nyucad_sample, nyu_release, frame_id):
    *_, pixels, weighted, also_release = FACTS[frame_id]
    spec = get_dataset_spec("nyucad_edgenet")
    raw = read_edgenet(nyucad_sample / f"NYU{frame_id}_0000.npz", spec.grid, spec.fine_grid, spec.no_pixel,
                       spec.num_classes)
    assert int((raw.pixel_voxels >= 0).sum()) == pixels
    (release_weight,) = load_npz(nyu_release / "T" / f"{frame_id}.npz", "arr_1")
    w = raw.weights.ravel() > 0
    assert int(w.sum()) == weighted
    assert int((w & (release_weight.ravel() > 0)).sum()) == also_release
    # why they are the layout's label_weight: every occupied voxel, never one outside the room
    (release,) = load_npz(nyu_release / "L" / f"{frame_id}.npz")
    assert not np.any(w & (release.ravel() == 255))
    assert np.all(w[raw.label.ravel() > 0])


@pytest.mark.parametrize("frame_id", sorted(FACTS))
def test_derived_inputs_are_consistent(dataset, nyucad_sample, frame_id):
    item = dataset[dataset.ids.index(frame_id)]
    spec = dataset.spec
    mapping = item["mapping"].numpy()
    mapped = mapping < spec.no_pixel
    # every mapped voxel holds a fine surface voxel (1.0 in the flipped TSDF), and the TSDF of the
    # 60-grid is in [-1, 1]
    fine = item["tsdf_fine"][0].numpy()
    assert np.all(fine.reshape(60, 4, 36, 4, 60, 4).max(axis=(1, 3, 5)).ravel()[mapped] == 1.0)
    assert item["tsdf"].abs().max() <= 1.0
    # the mapped pixels are distinct (the voxel -> pixel map is injective, as the release's)
    assert len(np.unique(mapping[mapped])) == int(mapped.sum()) > 1000


def test_check_data_reports_three_clean_scenes(nyucad_sample):
    report = check_root(nyucad_sample)
    assert report.ok
    assert report.scenes == {nyucad_sample.name: 3}
    assert report.summary().endswith("3 scenes checked (nyucad_sample 3): all clean")
