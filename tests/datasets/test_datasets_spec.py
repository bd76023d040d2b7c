"""Dataset declarations (torchssc.datasets): the built-in specs hold NYU's conventions exactly,
spec files are validated with one clear error, and the label map agrees with a naive loop."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from _toy import TOY_YAML
from torchssc import geometry
from torchssc.datasets import get_dataset_spec, list_datasets, read_spec, spec_from_dict
from torchssc.losses.class_weighted import NYU_CLASS_WEIGHTS


def test_nyu_spec_is_the_geometry_conventions():
    nyu = get_dataset_spec("nyu")
    assert nyu.classes == geometry.CLASS_NAMES and nyu.num_classes == geometry.NUM_CLASSES
    assert nyu.grid == geometry.LABEL_SHAPE and nyu.fine_grid == geometry.FINE_SHAPE
    assert nyu.voxel_size == geometry.LABEL_VOXEL and nyu.fine_voxel == geometry.FINE_VOXEL  # exactly
    assert nyu.grid_numel == geometry.LABEL_NUMEL and nyu.no_pixel == 640 * 480
    assert np.array_equal(nyu.palette_lut(), geometry.palette_with_ignore())
    assert tuple(nyu.label_map) == tuple(geometry.NYU36_TO_11.tolist())
    r = geometry.RELEASE_INTRINSICS
    assert nyu.intrinsics == (r.fx, r.fy, r.cx, r.cy)
    assert nyu.class_weights == tuple(NYU_CLASS_WEIGHTS)
    synth = get_dataset_spec("synth")
    assert synth.classes == nyu.classes and synth.intrinsics == (518.8579, 518.8579, 320.0, 240.0)
    assert {"nyu", "synth"} <= set(list_datasets())


def test_label_map_against_a_loop():
    nyu = get_dataset_spec("nyu")
    raw = np.random.default_rng(0).integers(0, 37, (5, 4, 3))
    raw[0, 0, 0] = 255
    expected = np.zeros(raw.shape, np.uint8)
    for idx in np.ndindex(raw.shape):
        expected[idx] = 255 if raw[idx] == 255 else nyu.label_map[raw[idx]]
    assert np.array_equal(nyu.map_labels(raw), expected)
    assert np.array_equal(nyu.map_labels(raw), geometry.map_36_to_11(raw))
    with pytest.raises(ValueError, match=r"scene\.bin: label ids must be in 0\.\.36 or 255 \(nyu\), found \[40\]"):
        nyu.map_labels(np.array([3, 40]), "scene.bin")


def test_a_spec_file_is_read_and_checked(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_YAML)
    toy = get_dataset_spec(str(path))
    assert toy.name == "toy5" and toy.num_classes == 5 and toy.grid == (32, 16, 32) and toy.fine_grid == (128, 64, 128)
    assert toy.path == str(path) and toy.no_pixel == 64 * 48 and toy.label_map is None
    assert np.array_equal(toy.map_labels(np.array([0, 4, 255])), [0, 4, 255])
    data = yaml.safe_load(TOY_YAML)
    for change, message in [
        ({"clases": ["a", "b"]}, "unknown dataset key 'clases'; did you mean 'classes'"),
        ({"grid": [32, 16]}, "'grid' = \\[32, 16\\]: expected 3 integers"),
        ({"palette": [[0, 0, 0]]}, "'palette'.*5 RGB triples"),
        ({"class_weights": [1, 2]}, "'class_weights'.*5 numbers"),
        ({"intrinsics": [52, 52, 32]}, "'intrinsics'.*fx, fy, cx, cy"),
        ({"layout": "hdf5"}, "'layout' = 'hdf5': expected one of"),
        ({"voxel_size": 0}, "'voxel_size' = 0: expected a finite number > 0"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({**data, **change}))
        with pytest.raises(ValueError, match=f"bad.yaml: {message}"):
            read_spec(bad)
    missing = {k: v for k, v in data.items() if k != "grid"}
    with pytest.raises(ValueError, match="dataset key 'grid' is missing"):
        spec_from_dict(missing)
    with pytest.raises(FileNotFoundError, match="no such dataset .*built-in: .*nyu"):
        get_dataset_spec("nyu_v3")
