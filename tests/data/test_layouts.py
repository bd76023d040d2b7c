"""The layouts other than torchssc's (data/layouts.py): EdgeNet-style npz and the TorchSSC-lineage
NYUCAD folders, read from small files the tests write in their documented structure, and the
derivations (prepare/derive.py) against naive loops."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from torchssc.data import SSCDataset
from torchssc.data.check import check_root
from torchssc.data.layouts import detect_layout
from torchssc.datasets import spec_from_dict
from torchssc.prepare.derive import distance_from_flipped, mapping_from_pixel_voxels, sscnet_from_flipped
from torchssc.prepare.tsdf import flip_tsdf

GRID = (2, 3, 2)
FACTOR = 2
FINE = (4, 6, 4)
W, H = 4, 3


def tiny_spec(layout: str) -> object:
    return spec_from_dict({
        "name": f"tiny_{layout}", "classes": ["empty", "a", "b"], "grid": list(GRID), "voxel_size": 0.08,
        "fine_factor": FACTOR, "intrinsics": [3.0, 3.0, 2.0, 1.5], "image_size": [W, H], "layout": layout,
    })


# -- derivations against naive loops -------------------------------------------------------
def naive_mapping(pixel_voxels, fine_shape, factor, num_pixels):
    small = tuple(s // factor for s in fine_shape)
    out = {}
    for pixel in range(num_pixels):
        fine = int(pixel_voxels[pixel])
        if fine < 0:
            continue
        a, b, c = np.unravel_index(fine, fine_shape)
        voxel = (a // factor * small[1] + b // factor) * small[2] + c // factor
        out[voxel] = max(out.get(voxel, -1), pixel)
    return np.array([out.get(v, num_pixels) for v in range(int(np.prod(small)))])


def test_mapping_from_pixel_voxels_matches_naive_loop():
    rng = np.random.default_rng(0)
    n_fine = int(np.prod(FINE))
    for _ in range(20):
        pv = rng.integers(-1, n_fine, size=W * H + 5)
        pv[W * H:] = -1  # padding
        pv[rng.random(W * H + 5) < 0.3] = -1
        got = mapping_from_pixel_voxels(pv, FINE, FACTOR, W * H)
        np.testing.assert_array_equal(got, naive_mapping(pv, FINE, FACTOR, W * H))


def test_mapping_from_pixel_voxels_refuses_bad_lists():
    with pytest.raises(ValueError, match="beyond"):
        mapping_from_pixel_voxels(np.array([0] * (W * H + 1)), FINE, FACTOR, W * H)
    with pytest.raises(ValueError, match="outside the grid"):
        mapping_from_pixel_voxels(np.array([10_000] + [-1] * (W * H - 1)), FINE, FACTOR, W * H)


def naive_distance(f: float) -> float:
    if abs(f) <= float(np.float32(0.001)):  # the threshold as stored (float32)
        return 1.0 if f > 0 else -1.0
    return (1.0 if f > 0 else -1.0) * (1.0 - abs(f))


def test_distance_from_flipped_matches_naive_and_inverts_flip():
    values = np.array([1.0, -0.001, 0.001, 0.5, -0.25, 11 / 12, -1 / 12, 0.9990001], np.float32)
    got = distance_from_flipped(values)
    np.testing.assert_allclose(got, [naive_distance(float(v)) for v in values], atol=1e-6)
    # flip_tsdf (SSCNet's encoding) then back: the distance again, truncation included
    v = np.concatenate([np.linspace(-1, 1, 241, dtype=np.float32), np.zeros(3, np.float32)])
    back = distance_from_flipped(flip_tsdf(v))
    np.testing.assert_allclose(back, np.where(np.abs(v) >= 0.999, np.sign(v), v), atol=1e-6)


def test_sscnet_from_flipped_only_changes_unobserved_ones():
    f = np.array([1.0, 1.0, 0.5, -0.001], np.float32).reshape(1, 1, 4)
    surface = np.array([True, False, False, False]).reshape(1, 1, 4)
    np.testing.assert_array_equal(sscnet_from_flipped(f, surface).ravel(), np.float32([1.0, 0.001, 0.5, -0.001]))


# -- EdgeNet-style npz ----------------------------------------------------------------------
def write_edgenet(folder: Path, frame_id: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    fine = rng.choice(np.float32([1.0, 0.001, -0.001, 0.5, -0.75, 11 / 12]), size=(*FINE, 1))
    pv = np.full(W * H + 7, -1, np.int64)
    pv[: W * H] = rng.integers(-1, int(np.prod(FINE)), W * H)
    arrays = dict(tsdf=fine.astype(np.float32), lbl=rng.integers(0, 3, GRID).astype(np.int32),
                  weights=rng.integers(0, 2, GRID).astype(np.float32), masks=np.zeros(GRID, np.float32),
                  mapping=pv, rgb=np.array("./data/x_colors"), label2d=np.array("./data/x_labels"))
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"NYU{frame_id}_0000.npz", **arrays)
    return arrays


def test_edgenet_folder_is_the_split_and_inputs_are_derived(tmp_path):
    arrays = {i: write_edgenet(tmp_path, i, seed) for seed, i in enumerate(("0007", "0003"))}
    ds = SSCDataset(tmp_path, "test", spec=tiny_spec("edgenet"), keys=["tsdf_fine"])
    assert ds.ids == ["0003", "0007"]
    for index, frame_id in enumerate(ds.ids):
        item, a = ds[index], arrays[frame_id]
        np.testing.assert_array_equal(item["label"].numpy(), a["lbl"])
        np.testing.assert_array_equal(item["mapping"].numpy(), naive_mapping(a["mapping"], FINE, FACTOR, W * H))
        # 60-grid TSDF: the block mean of the distances, by a naive loop over blocks
        dist = np.vectorize(naive_distance)(a["tsdf"][..., 0].astype(np.float64))
        expected = np.zeros(GRID)
        for i, j, k in itertools.product(*(range(g) for g in GRID)):
            expected[i, j, k] = dist[i * 2:i * 2 + 2, j * 2:j * 2 + 2, k * 2:k * 2 + 2].mean()
        np.testing.assert_allclose(item["tsdf"][0].numpy(), expected, atol=1e-6)
        np.testing.assert_array_equal(item["label_weight"].numpy(), (a["weights"] > 0).astype(np.float32))
        assert item["tsdf_fine"].shape == (1, *FINE)


def test_edgenet_refuses_what_it_does_not_carry_in_one_line(tmp_path):
    write_edgenet(tmp_path, "0001", 0)
    with pytest.raises(ValueError) as err:
        SSCDataset(tmp_path, "test", spec=tiny_spec("edgenet"), keys={"rgb": "model 'sketch_aware_ssc'"})
    message = str(err.value)
    assert "\n" not in message
    for part in ("NYU0001_0000.npz", "'rgb'", "'edgenet'", "model 'sketch_aware_ssc'"):
        assert part in message


def test_edgenet_split_folders_and_check_data(tmp_path):
    write_edgenet(tmp_path / "train", "0001", 0)
    write_edgenet(tmp_path / "test", "0002", 1)
    write_edgenet(tmp_path / "test", "0005", 2)
    spec = tiny_spec("edgenet")
    assert SSCDataset(tmp_path, "train", spec=spec).ids == ["0001"]
    assert SSCDataset(tmp_path, "test", spec=spec).ids == ["0002", "0005"]
    assert detect_layout(tmp_path) == "edgenet"
    report = check_root(tmp_path, ("train", "test"), dataset=spec)
    assert report.ok and report.scenes == {"train": 1, "test": 2}
    # a broken file is reported by name and key, the others stay clean
    bad = tmp_path / "test" / "NYU0005_0000.npz"
    arrays = dict(np.load(bad))
    arrays["lbl"] = np.full(GRID, 9, np.int32)
    np.savez(bad, **arrays)
    report = check_root(tmp_path, ("train", "test"), dataset=spec)
    assert list(report.bad) == ["0005"] and "'lbl'" in report.bad["0005"][0] and str(bad) in report.bad["0005"][0]


# -- TorchSSC-lineage NYUCAD folders ---------------------------------------------------------
def write_nyucad_torchssc(root: Path, ids: dict[str, str], seed: int = 0) -> dict:
    """NYU/ (train.txt, Label/, TSDF/) beside NYUCAD/<split>/{TSDF_lr,mapping}/."""
    rng = np.random.default_rng(seed)
    nyu, out = root / "NYU", {}
    for sub in ("Label", "TSDF"):
        (nyu / sub).mkdir(parents=True, exist_ok=True)
    for split in set(ids.values()):
        (nyu / f"{split}.txt").write_text("".join(f"{i}\n" for i, s in ids.items() if s == split))
        for sub in ("TSDF_lr", "mapping"):
            (root / "NYUCAD" / split / sub).mkdir(parents=True, exist_ok=True)
    n = int(np.prod(GRID))
    for frame_id, split in ids.items():
        label = rng.choice(np.array([0, 1, 2, 255]), n).astype(np.int32)
        weight = rng.integers(0, 2, n).astype(np.float64)
        nyu_tsdf = rng.uniform(-1, 1, n).astype(np.float32)
        cad_tsdf = rng.uniform(-1, 1, GRID).astype(np.float32)
        mapping = rng.integers(0, W * H + 1, n).astype(np.int64)
        np.savez_compressed(nyu / "Label" / f"{frame_id}.npz", arr_0=label)
        np.savez_compressed(nyu / "TSDF" / f"{frame_id}.npz", arr_0=nyu_tsdf, arr_1=weight)
        name = f"NYU{frame_id}_0000_voxels.npz"
        np.savez_compressed(root / "NYUCAD" / split / "TSDF_lr" / name, tsdf_lr=cad_tsdf)
        np.savez_compressed(root / "NYUCAD" / split / "mapping" / name, arr_0=np.zeros(3), arr_1=mapping)
        out[frame_id] = dict(label=label, weight=weight, tsdf=cad_tsdf, mapping=mapping)
    return out


def test_nyucad_torchssc_reads_cad_inputs_and_nyu_labels(tmp_path):
    files = write_nyucad_torchssc(tmp_path, {"0001": "train", "0002": "train", "0009": "test"})
    spec = tiny_spec("nyucad_torchssc")
    ds = SSCDataset(tmp_path / "NYU", "train", spec=spec)
    assert ds.ids == ["0001", "0002"]
    for index, frame_id in enumerate(ds.ids):
        item, f = ds[index], files[frame_id]
        np.testing.assert_array_equal(item["tsdf"][0].numpy(), f["tsdf"])  # NYUCAD's, as stored
        np.testing.assert_array_equal(item["mapping"].numpy(), f["mapping"])
        np.testing.assert_array_equal(item["label"].numpy().ravel(), f["label"])  # NYU's
        np.testing.assert_array_equal(item["label_weight"].numpy().ravel(), f["weight"])
    # a frame listed in another split folder is found; explicit id lists work
    assert SSCDataset(tmp_path / "NYU", ["0009", "0001"], spec=spec)[0]["tsdf"].shape == (1, *GRID)
    report = check_root(tmp_path / "NYU", ("train", "test"), dataset=spec)
    assert report.ok and report.scenes == {"train": 2, "test": 1}


def test_nyucad_torchssc_errors_name_file_and_key(tmp_path):
    write_nyucad_torchssc(tmp_path, {"0001": "train"})
    spec = tiny_spec("nyucad_torchssc")
    with pytest.raises(FileNotFoundError, match="RGB"):  # RGB comes from NYU's folder, absent here
        SSCDataset(tmp_path / "NYU", "train", spec=spec, keys=["rgb"])
    with pytest.raises(ValueError, match="'depth'.*'nyucad_torchssc'"):
        SSCDataset(tmp_path / "NYU", "train", spec=spec, keys=["depth"])
    mapping = tmp_path / "NYUCAD" / "train" / "mapping" / "NYU0001_0000_voxels.npz"
    np.savez_compressed(mapping, arr_1=np.arange(5))
    ds = SSCDataset(tmp_path / "NYU", "train", spec=spec)
    with pytest.raises(ValueError, match=r"mapping.*'arr_1'.*nyucad_torchssc"):
        ds[0]
    (tmp_path / "NYUCAD").rename(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="no NYUCAD folder"):
        SSCDataset(tmp_path / "NYU", "train", spec=spec)
