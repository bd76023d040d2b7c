"""`torchssc predict` end to end on a tiny checkpoint, and its input readers.

The end-to-end runs use the real NYU frame 0001 (fixture ``nyu_sample``; skipped without it);
the readers and the error paths build their own files."""

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
from torchssc.io.depthbin import read_depth_png, write_bin, write_depth_png
from torchssc.predict.predict import frame_batch, read_depth, read_pose


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    recipe = folder / "tiny.yaml"
    recipe.write_text(
        "model:\n  name: sketch_aware_ssc_lite\n  kwargs: {width: 8, stem_channels: 4, latent_channels: 4}\n"
        "data:\n  rgb: false\n"
    )
    cfg = load_config(recipe)
    torch.manual_seed(0)
    model = build_model(cfg)
    path = folder / "epoch_0001.pt"
    save_checkpoint(path, {"format_version": FORMAT_VERSION, "model": model.state_dict(), "config": cfg,
                           "epoch": 1, "iteration": 1})
    return path


def test_depth_encodings_round_trip(tmp_path):
    depth = np.zeros((6, 5), np.float32)
    depth[1:, 1:] = np.linspace(0.5, 4.0, 20).reshape(5, 4)
    write_depth_png(tmp_path / "rot.png", depth)
    np.testing.assert_allclose(read_depth(tmp_path / "rot.png"), read_depth_png(tmp_path / "rot.png"))
    mm = np.round(depth * 1000).astype(np.uint16)
    mm[1, 1] = 1001  # not a multiple of 8: plain millimetres
    Image.fromarray(mm).save(tmp_path / "mm.png")
    got = read_depth(tmp_path / "mm.png")
    np.testing.assert_allclose(got, mm / 1000.0, atol=1e-6)
    np.testing.assert_allclose(read_depth(tmp_path / "mm.png", "millimetres"), got)
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png.*16-bit"):
        read_depth(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="expected 640x480"):
        read_depth(tmp_path / "mm.png", size=(480, 640))


def _level_pose(height: float = 1.18) -> np.ndarray:
    """Camera-to-world of a level camera ``height`` m up, looking along world +y."""
    pose = np.eye(4)
    pose[:3, :3] = [[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]  # cam x -> X, cam y -> -Z, cam z -> Y
    pose[2, 3] = height
    return pose


def test_read_pose_files(tmp_path):
    write_bin(tmp_path / "frame.bin", (-1.545918, 0.8907361, -0.05), _level_pose(), np.zeros((240, 144, 240), np.uint8))
    pose, origin = read_pose(tmp_path / "frame.bin")
    np.testing.assert_allclose(origin, (-1.545918, 0.8907361, -0.05), atol=1e-6)
    np.testing.assert_allclose(pose, _level_pose(), atol=1e-6)
    np.savetxt(tmp_path / "pose.txt", pose)
    again, none = read_pose(tmp_path / "pose.txt")
    np.testing.assert_allclose(again, pose)
    assert none is None
    np.savetxt(tmp_path / "bad.txt", np.ones(9))
    with pytest.raises(ValueError, match="bad.txt.*16 numbers"):
        read_pose(tmp_path / "bad.txt")


def test_frame_batch_matches_the_preparation_pipeline(nyu_sample):
    from torchssc.io.depthbin import read_bin
    from torchssc.geometry import NYU_INTRINSICS
    from torchssc.prepare.pipeline import prepare_frame

    raw = read_bin(nyu_sample / "NYU0001_0000.bin")
    depth = read_depth_png(nyu_sample / "NYU0001_0000.png")
    prepared = prepare_frame(depth, raw.pose, raw.origin, raw.labels, intrinsics=NYU_INTRINSICS)
    batch = frame_batch(depth, raw.pose, raw.origin)
    np.testing.assert_array_equal(batch["tsdf"][0, 0].numpy(), prepared.tsdf)
    np.testing.assert_array_equal(batch["mapping"][0].numpy(), prepared.mapping)


def _rgb(folder: Path) -> Path:
    path = folder / "rgb.png"
    rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def test_predict_end_to_end_estimated_pose(tiny_checkpoint, tmp_path, nyu_sample):
    depth = tmp_path / "depth.png"
    shutil.copyfile(nyu_sample / "NYU0001_0000.png", depth)
    out = tmp_path / "out"
    rgb = _rgb(tmp_path)
    rc = main(["predict", "--checkpoint", str(tiny_checkpoint), "--depth", str(depth), "--rgb", str(rgb),
               "--out", str(out), "--formats", "npy,png,ply,glb,html"])
    assert rc == 0
    labels = np.load(out / "scene.npy")
    assert labels.shape == (60, 36, 60) and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) <= set(range(12)) | {255}  # 255: not seen (predict/observation.py)
    pose = np.loadtxt(out / "scene_pose.txt")
    assert pose.shape == (4, 4) and abs(pose[2, 3] - 1.18) < 0.1  # estimated camera height
    for ext in ("png", "ply", "glb", "html"):
        assert (out / f"scene.{ext}").stat().st_size > 0
    # Reproducible: the same command gives the same volume.
    main(["predict", "--checkpoint", str(tiny_checkpoint), "--depth", str(depth), "--rgb", str(rgb),
          "--out", str(tmp_path / "again"), "--formats", "npy"])
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "scene.npy"), labels)


def test_predict_with_pose_file(tiny_checkpoint, tmp_path, nyu_sample):
    rc = main(["predict", "--checkpoint", str(tiny_checkpoint), "--depth", str(nyu_sample / "NYU0001_0000.png"),
               "--rgb", str(_rgb(tmp_path)), "--pose", str(nyu_sample / "NYU0001_0000.bin"), "--out", str(tmp_path),
               "--formats", "npy"])
    assert rc == 0
    pose = np.loadtxt(tmp_path / "scene_pose.txt")
    np.testing.assert_allclose(pose[2, 3], 1.1794727, atol=1e-5)


def test_rgb_model_without_rgb_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    write_depth_png(tmp_path / "depth.png", np.full((480, 640), 2.0, np.float32))  # a wall 2 m ahead
    np.savetxt(tmp_path / "pose.txt", _level_pose())
    argv = ["predict", "--checkpoint", str(tiny_checkpoint), "--depth", str(tmp_path / "depth.png"),
            "--pose", str(tmp_path / "pose.txt"), "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("torchssc predict: error: ") and "rgb" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="rgb"):  # --debug: the exception itself, with its traceback
        main(["--debug", *argv])


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    write_depth_png(tmp_path / "depth.png", np.full((480, 640), 2.0, np.float32))
    assert main(["predict", "--checkpoint", str(tmp_path / "nope.pt"), "--depth", str(tmp_path / "depth.png")]) == 2
    assert capsys.readouterr().err == f"torchssc predict: error: {tmp_path / 'nope.pt'}: no such checkpoint\n"
