"""`torchssc predict --depth DIR` (predict/folder.py) on synthetic rooms written in ScanNet's
exporter layout (synth/scans.py): the inputs built from the folder equal those `prepare` builds
from the same room's depthbin frame, bit for bit; the command writes one volume, picture and
viewer per frame and finishes the others when one fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchssc.cli import main
from torchssc.config import load_config
from torchssc.engine.builders import build_model
from torchssc.engine.checkpoint import FORMAT_VERSION, save_checkpoint
from torchssc.geometry import NYU_INTRINSICS
from torchssc.io.depthbin import write_intrinsics_file
from torchssc.io.scans import open_scan_folder
from torchssc.predict.folder import frame_inputs
from torchssc.prepare.pipeline import prepare_depthbin
from torchssc.synth.generator import generate_frame, write_synth_frame
from torchssc.synth.scans import write_intrinsic, write_scan_frame

ROOMS = (2, 5)


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """Rooms 2 and 5 (seed 0, Kinect-like noise) as depthbin frames and as one scan folder."""
    root = tmp_path_factory.mktemp("rooms")
    raw, scans = root / "NYUtest", root / "scan"
    raw.mkdir()
    write_intrinsic(scans, NYU_INTRINSICS)
    for i in ROOMS:
        frame = generate_frame(0, i, NYU_INTRINSICS, noise="kinect")
        write_synth_frame(raw, i, frame)
        write_scan_frame(scans, str(i), frame, labels=True)
    return raw, scans


def test_folder_inputs_equal_prepares_bit_for_bit(rooms):
    raw, scans = rooms
    folder = open_scan_folder(scans)
    assert folder.kind == "scannet" and [f.name for f in folder.frames] == ["2", "5"]
    assert folder.intrinsics == NYU_INTRINSICS
    for i in ROOMS:
        prepared = prepare_depthbin(raw / f"NYU{i:04d}_0000.bin", intrinsics=NYU_INTRINSICS)
        inputs = frame_inputs(folder, folder.frame(str(i)), floor=0.0, rgb=True)
        np.testing.assert_array_equal(inputs.origin, prepared.origin)
        np.testing.assert_array_equal(inputs.pose, prepared.pose)
        np.testing.assert_array_equal(inputs.batch["depth"][0, 0].numpy(), prepared.depth)
        np.testing.assert_array_equal(inputs.batch["tsdf"][0, 0].numpy(), prepared.tsdf)
        np.testing.assert_array_equal(inputs.batch["mapping"][0].numpy(), prepared.mapping)


def test_floor_found_in_the_depth_is_within_a_centimetre(rooms):
    _, scans = rooms
    folder = open_scan_folder(scans)
    for frame in folder.frames:
        inputs = frame_inputs(folder, frame)  # floor from the depth; the rooms' floor is at z = 0
        assert abs(inputs.origin[2] - (-0.05)) < 0.01, inputs.how


def test_axis_alignment_is_applied_and_lost_poses_refused(rooms, tmp_path):
    _, scans = rooms
    scan = tmp_path / "scan"
    shutil.copytree(scans, scan)
    lift = np.eye(4)
    lift[2, 3] = 1.5  # the world 1.5 m lower than the aligned one
    (scan / "scene0000_00.txt").write_text("axisAlignment = " + " ".join(f"{v:g}" for v in lift.ravel()) + "\n")
    folder = open_scan_folder(scan)
    np.testing.assert_array_equal(folder.axis_alignment, lift)
    shifted = frame_inputs(folder, folder.frame("2"), floor=1.5)
    plain = frame_inputs(open_scan_folder(scans), open_scan_folder(scans).frame("2"), floor=0.0)
    np.testing.assert_allclose(shifted.origin, plain.origin + [0, 0, 1.5], atol=1e-6)
    (scan / "pose" / "5.txt").write_text("-inf " * 16)
    with pytest.raises(ValueError, match="5.txt.*not finite"):
        frame_inputs(folder, folder.frame("5"))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    recipe = folder / "tiny.yaml"
    recipe.write_text("model:\n  name: sketch_aware_ssc_lite\n  kwargs: {width: 8, stem_channels: 4, latent_channels: 4}\n"
                      "data:\n  rgb: false\n")
    cfg = load_config(recipe)
    torch.manual_seed(0)
    model = build_model(cfg)
    path = folder / "epoch_0001.pt"
    save_checkpoint(path, {"format_version": FORMAT_VERSION, "model": model.state_dict(), "config": cfg,
                           "epoch": 1, "iteration": 1})
    return path


@pytest.mark.slow
def test_predict_a_folder_in_one_command_reports_a_bad_frame_and_finishes(rooms, tiny_checkpoint, tmp_path, capsys):
    _, scans = rooms
    scan = tmp_path / "scan"
    shutil.copytree(scans, scan)
    Image.fromarray(np.zeros((480, 640, 3), np.uint8)).save(scan / "depth" / "3.png")  # not 16-bit depth
    out = tmp_path / "out"
    rc = main(["predict", "--checkpoint", str(tiny_checkpoint), "--depth", str(scan), "--out", str(out),
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "FAILED frame 3:" in captured.err and "16-bit" in captured.err
    assert "2 frame(s) predicted, 1 failed" in captured.out
    for name in ("2", "5"):
        labels = np.load(out / f"{name}.npy")
        assert labels.shape == (60, 36, 60) and labels.dtype == np.uint8
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.html").is_file()
    assert not (out / "3.npy").exists()


@pytest.mark.slow
def test_predict_a_plain_folder_of_depth_pngs_estimates_the_pose(rooms, tiny_checkpoint, tmp_path, capsys):
    _, scans = rooms
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(scans / "depth" / "2.png", plain / "kitchen.png")
    shutil.copy(scans / "color" / "2.png", plain / "kitchen_color.png")  # the model reads RGB
    write_intrinsics_file(plain, NYU_INTRINSICS)
    folder = open_scan_folder(plain)
    assert folder.kind == "plain" and [f.name for f in folder.frames] == ["kitchen"]
    assert folder.frames[0].pose is None and folder.frames[0].color == plain / "kitchen_color.png"
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--depth", str(plain), "--out", str(out),
                 "--formats", "npy", "--no-progress"]) == 0
    assert np.load(out / "kitchen.npy").shape == (60, 36, 60)
    assert json.loads((plain / "intrinsics.json").read_text())["fx"] == NYU_INTRINSICS.fx
