"""Your own labelled scans as a dataset (layout ``scans``, data/layouts.py): synthetic rooms
written in ScanNet's exporter layout with a label volume per frame (synth/scans.py) read equal to
`prepare`'s frames of the same rooms, and trained on from one spec YAML."""

from __future__ import annotations

import json

import numpy as np
import pytest

from torchssc.cli import main
from torchssc.data import SSCDataset
from torchssc.data.check import check_root
from torchssc.geometry import NYU_INTRINSICS
from torchssc.prepare.pipeline import prepare_depthbin
from torchssc.synth.generator import generate_frame, split_ids, write_synth_frame

SPEC = """\
# my labelled scans: NYU's classes and grid, the frames' own camera (intrinsic/)
name: my_scans
classes: [empty, ceiling, floor, wall, window, chair, bed, sofa, table, tvs, furniture, objects]
grid: [60, 36, 60]
voxel_size: 0.08
intrinsics: [518.8579, 518.8579, 320.0, 240.0]
image_size: [640, 480]
layout: scans
"""


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    assert main(["synth", "--layout", "scans", "--out", str(root / "scan"), "--frames", "3",
                 "--test-fraction", "0.34", "--no-progress"]) == 0
    (root / "my_scans.yaml").write_text(SPEC)
    train, test = split_ids(3, 0, 0.34)
    return root, {"train": train, "test": test}


def test_labelled_scans_read_as_prepare_prepares_the_same_rooms(scans, tmp_path):
    root, split = scans
    ds = SSCDataset(root / "scan", "train", spec=root / "my_scans.yaml", keys=["rgb", "depth", "visibility"])
    assert ds.ids == [str(i) for i in split["train"]] and ds.has_meta
    for index, frame_id in enumerate(ds.ids):
        write_synth_frame(tmp_path, int(frame_id), generate_frame(0, int(frame_id), NYU_INTRINSICS))
        prepared = prepare_depthbin(tmp_path / f"NYU{int(frame_id):04d}_0000.bin", intrinsics=NYU_INTRINSICS)
        item = ds[index]
        for key, expected in (("tsdf", prepared.tsdf), ("mapping", prepared.mapping), ("label", prepared.label),
                              ("label_weight", prepared.label_weight), ("visibility", prepared.visibility)):
            np.testing.assert_array_equal(item[key].numpy().reshape(expected.shape), expected, err_msg=key)
        np.testing.assert_array_equal(item["origin"].numpy(), prepared.origin.astype(np.float32))
        assert item["rgb"].shape == (3, 480, 640)


def test_check_data_reads_every_labelled_frame(scans):
    root, split = scans
    report = check_root(root / "scan", ("train", "test"), dataset=root / "my_scans.yaml")
    assert report.ok and report.scenes == {"train": len(split["train"]), "test": len(split["test"])}
    bad = root / "scan" / "label" / f"{split['test'][0]}.npz"
    good = bad.read_bytes()
    try:
        np.savez(bad, labels=np.full((60, 36, 60), 40, np.uint8))
        report = check_root(root / "scan", ("train", "test"), dataset=root / "my_scans.yaml")
        assert list(report.bad) == [str(split["test"][0])] and "'labels'" in report.bad[str(split["test"][0])][0]
    finally:
        bad.write_bytes(good)


def test_scans_refuse_what_they_do_not_carry(scans):
    root, _ = scans
    with pytest.raises(ValueError, match=r"'prior'.*'scans'"):
        SSCDataset(root / "scan", "train", spec=root / "my_scans.yaml", keys={"prior": "model 'unet3d_prior'"})


@pytest.mark.slow
def test_train_a_few_steps_on_labelled_scans_from_one_yaml(scans, tmp_path, monkeypatch):
    root, _ = scans
    monkeypatch.chdir(tmp_path)
    code = main(["train", "sketch_aware_ssc_synth_cpu", f"data.dataset={root / 'my_scans.yaml'}",
                 f"data.root={root / 'scan'}", "data.check=true", "train.epochs=1", "train.iters_per_epoch=2",
                 "train.global_batch=1", "train.progress=false", "run.name=scans",
                 "model.kwargs={width: 8, stem_channels: 4, latent_channels: 4}"])
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "runs" / "scans" / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["epoch"] == 1 and np.isfinite(rows[-1]["train"]["total"])
