"""Which camera took a depthbin frame (prepare/camera_check.py), and NYUCAD-style depthbin frames
through `torchssc prepare`: synthetic depthbin files, whose camera is known."""

from __future__ import annotations

import numpy as np
import pytest

from torchssc.cli import main
from torchssc.datasets import get_dataset_spec
from torchssc.geometry import RELEASE_INTRINSICS, SSCNET_INTRINSICS
from torchssc.io.prepared import load_npz
from torchssc.prepare.camera_check import compare_cameras, occupied_distance
from torchssc.synth.generator import generate_frame, write_synth_frame

CAMERAS = {"release": RELEASE_INTRINSICS, "sscnet": SSCNET_INTRINSICS}


@pytest.fixture(scope="module")
def depthbin(tmp_path_factory):
    """One synthetic room rendered (exact depth) with each camera, as NYUCAD depthbin folders."""
    root = tmp_path_factory.mktemp("cad")
    paths = {}
    for name, cam in CAMERAS.items():
        folder = root / name / "NYUCADtest"
        folder.mkdir(parents=True)
        write_synth_frame(folder, 3, generate_frame(0, 3, cam, noise="none"))
        paths[name] = folder / "NYU0003_0000.bin"
    return paths


@pytest.mark.slow
def test_the_camera_that_rendered_the_depth_fits_the_ground_truth_best(depthbin):
    for truth, path in depthbin.items():
        fits = compare_cameras([path], CAMERAS)
        other = next(n for n in CAMERAS if n != truth)
        assert fits[truth].distance < fits[other].distance, (truth, fits)
        assert fits[truth].on_surface > 0.9


def test_occupied_distance_matches_naive_loop():
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 0, 0, 5, 255], np.uint8), size=(4, 3, 5))
    got = occupied_distance(labels)
    occ = np.argwhere((labels != 0) & (labels != 255))
    for idx in np.ndindex(labels.shape):
        expected = np.sqrt(((occ - np.array(idx)) ** 2).sum(axis=1)).min()
        assert got[idx] == pytest.approx(expected)


@pytest.mark.slow
def test_nyucad_depthbin_prepares_with_the_spec_camera(depthbin, tmp_path):
    """NYUCAD's camera (docs/nyucad.md) is SSCNet's; `prepare --intrinsics sscnet` records it."""
    spec = get_dataset_spec("nyucad")
    assert (*spec.intrinsics, *spec.image_size) == tuple(SSCNET_INTRINSICS.as_array())
    out = tmp_path / "NYUCAD"
    raw = depthbin["sscnet"].parent
    assert main(["prepare", "--raw", str(raw), "--out", str(out), "--intrinsics", "sscnet", "--no-progress"]) == 0
    assert (out / "test.txt").read_text().split() == ["0003"]
    (intrinsics,) = load_npz(out / "Meta" / "0003.npz", "intrinsics")
    np.testing.assert_array_equal(intrinsics, [*spec.intrinsics, *spec.image_size])
