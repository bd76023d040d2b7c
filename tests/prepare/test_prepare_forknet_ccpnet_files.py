"""``torchssc prepare --forknet --fine-labels`` on a synthetic room: the extra prepared files, read
back by the dataset, agree with the library functions and with the standard label grid."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from torchssc.cli import main as cli_main
from torchssc.data import SSCDataset
from torchssc.geometry import LABEL_NUMEL, LABEL_SHAPE, map_36_to_11
from torchssc.io.depthbin import read_bin
from torchssc.io.prepared import PreparedFrame, frame_paths
from torchssc.prepare.downsample import downsample_labels
from torchssc.prepare.forknet import forknet_labels
from torchssc.prepare.runner import prepare_split


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("forknet_files")
    raw, out = tmp / "raw", tmp / "prepared"
    assert cli_main(["synth", "--out", str(raw), "--frames", "1", "--seed", "4", "--test-fraction", "0"]) == 0
    assert cli_main(["prepare", "--raw", str(raw / "NYUtrain"), "--out", str(out), "--forknet", "--fine-labels",
                     "--fine", "--no-progress"]) == 0
    return raw / "NYUtrain", out


def test_extra_files_read_back_by_the_dataset(prepared):
    raw_dir, out = prepared
    paths = frame_paths(out, "0001")
    assert paths["forknet"].is_file() and paths["label_fine"].is_file()
    item = SSCDataset(out, "train", keys=("tsdf_fine", "forknet_tsdf", "label_fine"))[0]
    assert item["forknet_tsdf"].shape == (1, 80, 48, 80) and item["forknet_tsdf"].dtype == torch.float32
    assert item["forknet_label"].shape == (80, 48, 80) and item["forknet_label"].dtype == torch.int64
    assert item["forknet_surface"].shape == (80, 48, 80) and item["forknet_surface"].dtype == torch.uint8
    assert item["label_fine"].shape == (240, 144, 240) and item["label_fine"].dtype == torch.uint8
    # ForkNet's loader rule was applied (no invalid code left), and the band is there
    tsdf = item["forknet_tsdf"]
    assert tsdf.min() >= -1 and tsdf.max() <= 1 and (tsdf > 0.9).any() and (tsdf < -0.5).any()
    raw = read_bin(raw_dir / "NYU0001_0000.bin").labels
    np.testing.assert_array_equal(item["label_fine"].numpy(), map_36_to_11(raw))
    np.testing.assert_array_equal(item["forknet_label"].numpy(), forknet_labels(raw))
    # the standard label grid is the fine labels under the 240 -> 60 rule
    np.testing.assert_array_equal(downsample_labels(item["label_fine"].numpy(), raw=False), item["label"].numpy())
    surface = item["forknet_surface"].bool()
    assert surface.sum() > 100 and (item["forknet_label"][surface] > 0).float().mean() > 0.7
    # a frame prepared without the extras is incomplete for a run that asks for them
    summary = prepare_split(raw_dir, out, progress=False)
    assert summary.skipped == ["0001"]
    with pytest.raises(FileNotFoundError, match="ForkNet"):
        paths["forknet"].rename(paths["forknet"].with_suffix(".bak"))
        try:
            SSCDataset(out, "train", keys=["forknet_tsdf"])
        finally:
            paths["forknet"].with_suffix(".bak").rename(paths["forknet"])


def test_forknet_options_reach_the_pipeline(tmp_path, monkeypatch):
    calls = []

    def fake_prepare_depthbin(bin_path, *, rgb=None, **kw):
        calls.append(kw)
        z = np.zeros(LABEL_SHAPE, np.uint8)
        g = np.zeros((80, 48, 80), np.uint8)
        return PreparedFrame(tsdf=z.astype(np.float32), label_weight=z, mapping=np.zeros(LABEL_NUMEL, np.int64),
                             label=z, sketch=z, pose=np.eye(4), origin=np.zeros(3), visibility=z,
                             intrinsics=kw["intrinsics"].as_array(), depth=np.zeros((480, 640), np.float32),
                             forknet_tsdf=g.astype(np.float32), forknet_label=g, forknet_surface=g,
                             label_fine=np.zeros((240, 144, 240), np.uint8))

    fake = types.ModuleType("torchssc.prepare.pipeline")
    fake.prepare_depthbin = fake_prepare_depthbin
    import torchssc.prepare

    monkeypatch.setitem(sys.modules, "torchssc.prepare.pipeline", fake)
    monkeypatch.setattr(torchssc.prepare, "pipeline", fake, raising=False)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "NYU0005_0000.bin").write_bytes(b"")
    assert cli_main(["prepare", "--raw", str(raw), "--out", str(tmp_path / "out"), "--forknet",
                     "--forknet-class-map", "forknet_door_as_furniture", "--fine-labels", "--no-progress"]) == 0
    [kw] = calls
    assert kw["forknet"] is True and kw["forknet_class_map"] == "forknet_door_as_furniture" and kw["fine_labels"] is True
    assert frame_paths(tmp_path / "out", "0005")["forknet"].is_file()
    with pytest.raises(ValueError, match="forknet_class_map"):
        prepare_split(raw, tmp_path / "out2", forknet=True, forknet_class_map="door")
