"""`torchssc predict --prior`: a user's 2D label PNG (NYU-13 ids) reaches a prior model, lifted
through the mapping built from the depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from torchssc.cli import main
from torchssc.config import load_config
from torchssc.engine.builders import build_model
from torchssc.engine.checkpoint import FORMAT_VERSION, save_checkpoint
from torchssc.geometry import SSCNET_INTRINSICS, voxel_origin_for_pose
from torchssc.io.depthbin import write_depth_png
from torchssc.predict.predict import prepare_inputs


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    """A wall 2.5 m ahead of a camera 1.2 m above the floor, level; its pose file."""
    folder = tmp_path_factory.mktemp("frame")
    depth = np.full((480, 640), 2.5, np.float32)
    write_depth_png(folder / "depth.png", depth)
    pose = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 1.2], [0, 0, 0, 1]], np.float64)
    np.savetxt(folder / "pose.txt", pose)
    for name, value in (("wall", 12), ("window", 13)):
        Image.fromarray(np.full((480, 640), value, np.uint8)).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def prior_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    recipe = folder / "tiny.yaml"
    recipe.write_text("model:\n  name: sketch_aware_ssc_prior_lite\n"
                      "  kwargs: {width: 8, stem_channels: 2, latent_channels: 2, cvae_hidden: 2}\n"
                      "data:\n  rgb: false\n  prior: true\n")
    torch.manual_seed(0)
    model = build_model(load_config(recipe))
    path = folder / "epoch_0001.pt"
    save_checkpoint(path, {"format_version": FORMAT_VERSION, "model": model.state_dict(),
                           "config": load_config(recipe), "epoch": 1, "iteration": 1})
    return path


def test_prior_is_lifted_through_the_depth_mapping(frame):
    batch, pose, origin, _ = prepare_inputs(frame / "depth.png", prior_path=frame / "window.png",
                                            pose_path=frame / "pose.txt", intrinsics=SSCNET_INTRINSICS)
    np.testing.assert_allclose(origin, voxel_origin_for_pose(pose))
    assert batch["prior"].shape == (1, 480, 640) and (batch["prior"] == 13).all()
    mapped = batch["mapping"][0] < 307200
    assert 100 < int(mapped.sum()) < 5000  # the wall's voxels
    with pytest.raises(ValueError, match="small.png: prior is 64x48, expected 640x480"):
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(frame / "small.png")
        prepare_inputs(frame / "depth.png", prior_path=frame / "small.png", pose_path=frame / "pose.txt")


def test_predict_with_a_prior(prior_checkpoint, frame, tmp_path):
    rc = main(["predict", "--checkpoint", str(prior_checkpoint), "--depth", str(frame / "depth.png"),
               "--prior", str(frame / "wall.png"), "--pose", str(frame / "pose.txt"),
               "--out", str(tmp_path), "--formats", "npy"])
    assert rc == 0 and np.load(tmp_path / "scene.npy").shape == (60, 36, 60)
    # the prior reaches the model: another prior, other logits
    from torchssc.engine.checkpoint import load_model

    model, _ = load_model(prior_checkpoint)
    logits = {}
    for name in ("wall", "window"):
        batch, *_ = prepare_inputs(frame / "depth.png", prior_path=frame / f"{name}.png",
                                   pose_path=frame / "pose.txt")
        torch.manual_seed(0)
        with torch.no_grad():
            logits[name] = model(batch)["semantic"]
    assert not torch.allclose(logits["wall"], logits["window"])


def test_viz_shows_the_lifted_prior(frame, tmp_path):
    """`torchssc viz --prior PNG --depth D --pose P`: the prior lifted through the depth's mapping,
    alone and beside a prediction."""
    rc = main(["viz", "--prior", str(frame / "window.png"), "--depth", str(frame / "depth.png"),
               "--pose", str(frame / "pose.txt"), "--out", str(tmp_path / "alone"), "--formats", "png,ply",
               "--name", "prior"])
    assert rc == 0 and (tmp_path / "alone" / "prior.png").stat().st_size > 0
    import argparse

    from torchssc.commands.viz import lifted_prior_volume

    volume = lifted_prior_volume(argparse.Namespace(prior=str(frame / "window.png"), depth=str(frame / "depth.png"),
                                                    pose=str(frame / "pose.txt"), intrinsics=None))
    assert set(np.unique(volume.labels).tolist()) == {0, 4}  # empty, and window where the wall is seen
    assert 100 < int((volume.labels == 4).sum()) < 5000
    np.save(tmp_path / "scene.npy", np.full((60, 36, 60), 3, np.uint8))
    rc = main(["viz", str(tmp_path / "scene.npy"), "--prior", str(frame / "wall.png"), "--depth",
               str(frame / "depth.png"), "--pose", str(frame / "pose.txt"), "--out", str(tmp_path / "both"),
               "--formats", "png", "--name", "both"])
    assert rc == 0 and (tmp_path / "both" / "both.png").stat().st_size > 0
    rc = main(["viz", "--prior", str(frame / "wall.png"), "--out", str(tmp_path / "x")])
    assert rc == 2  # --prior needs --depth
