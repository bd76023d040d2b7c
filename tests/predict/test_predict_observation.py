"""The observation rule of ``torchssc predict`` (predict/observation.py): a naive-loop reference on
a tiny grid, then a synthetic room whose truth is known, through the library and the command."""

from pathlib import Path

import numpy as np
import pytest
import torch

from torchssc.cli import main
from torchssc.config import load_config
from torchssc.engine.builders import build_model
from torchssc.engine.checkpoint import FORMAT_VERSION, save_checkpoint
from torchssc.geometry import (
    NYU_INTRINSICS,
    VIS_FREE,
    VIS_MISSING_DEPTH,
    VIS_OCCLUDED,
    VIS_OUTSIDE_ROOM,
    VIS_OUTSIDE_VIEW,
    VIS_SURFACE,
)
from torchssc.models.constant import ConstantSSC
from torchssc.predict.observation import apply_observation, observation_visibility, region_counts
from torchssc.predict.predict import frame_batch, predict_labels, prepare_inputs
from torchssc.prepare.pipeline import prepare_frame
from torchssc.prepare.tsdf import STATE_BEHIND, STATE_FRONT, STATE_SURFACE
from torchssc.synth.generator import generate_frame, write_synth_frame

WALL = 3


# ------------------------------------------------------------------------------------------
# The rule against a naive loop
def _naive(state: np.ndarray, labels: np.ndarray, factor: int) -> np.ndarray:
    """The rule written out voxel by voxel, from the docstring's table."""
    out = np.zeros(labels.shape, np.uint8)
    for a in range(labels.shape[0]):
        for b in range(labels.shape[1]):
            for c in range(labels.shape[2]):
                block = state[a * factor:(a + 1) * factor, b * factor:(b + 1) * factor, c * factor:(c + 1) * factor]
                seen = set(block.ravel().tolist())
                if STATE_SURFACE in seen or STATE_BEHIND in seen:
                    out[a, b, c] = labels[a, b, c]  # observed surface or occluded: the model's
                elif STATE_FRONT in seen:
                    out[a, b, c] = 0  # seen through: empty
                else:
                    out[a, b, c] = 255  # in view without depth, or outside the view: unknown
    return out


@pytest.mark.parametrize("factor", [2, 4])
def test_rule_matches_a_naive_loop(factor):
    rng = np.random.default_rng(factor)
    small = (3, 2, 4)
    # each block gets a highest state (every one of the five occurs), its fine voxels any states below
    top = np.resize(np.arange(5, dtype=np.uint8), small)
    top = rng.permutation(top.ravel()).reshape(small)
    ceiling = np.kron(top, np.ones((factor,) * 3, np.uint8))
    state = np.minimum(rng.integers(0, 5, ceiling.shape, dtype=np.uint8), ceiling)
    labels = rng.integers(0, 12, small).astype(np.uint8)
    got = apply_observation(labels, observation_visibility(state, factor))
    np.testing.assert_array_equal(got, _naive(state, labels, factor))
    assert {0, 255} <= set(np.unique(got).tolist())


def test_rule_per_visibility_code_and_errors():
    vis = np.array([VIS_OUTSIDE_VIEW, VIS_FREE, VIS_SURFACE, VIS_OCCLUDED, VIS_MISSING_DEPTH, VIS_OUTSIDE_ROOM])
    labels = np.full(6, 7, np.uint8)
    np.testing.assert_array_equal(apply_observation(labels, vis), [255, 0, 7, 7, 255, 255])
    # leading batch axes broadcast; counts add up
    batch = np.stack([labels, labels])
    assert apply_observation(batch, vis).shape == (2, 6)
    assert region_counts(vis) == {"model": 2, "empty": 1, "unknown": 3}
    with pytest.raises(ValueError, match="does not fit"):
        apply_observation(np.zeros(5, np.uint8), vis)
    with pytest.raises(ValueError, match="does not fit"):  # visibility may broadcast, labels may not
        apply_observation(labels, np.stack([vis, vis]))
    with pytest.raises(ValueError, match="divisible by 4"):
        observation_visibility(np.zeros((4, 4, 6), np.uint8))


# ------------------------------------------------------------------------------------------
# A synthetic room: the truth is known
@pytest.fixture(scope="module")
def room():
    """A noise-free synthetic frame, its prepared truth, and the batch predict builds from it."""
    frame = generate_frame(3, 1, noise="none")
    truth = prepare_frame(frame.depth, frame.pose, frame.origin, frame.labels, intrinsics=NYU_INTRINSICS)
    batch = frame_batch(frame.depth, frame.pose.astype(np.float64), frame.origin.astype(np.float64))
    return frame, truth, batch


def test_predict_visibility_is_the_prepared_visibility(room):
    _, truth, batch = room
    vis = batch["visibility"][0].numpy()
    assert vis.shape == (60, 36, 60) and batch["visibility"].dtype == torch.int64
    want = truth.visibility.reshape(vis.shape)
    inside = want != VIS_OUTSIDE_ROOM  # the depth alone cannot know the room's outside
    np.testing.assert_array_equal(vis[inside], want[inside])
    # behind the walls, the room's outside is occluded or unseen space to the depth
    assert set(np.unique(vis[~inside]).tolist()) <= {VIS_OUTSIDE_VIEW, VIS_MISSING_DEPTH, VIS_OCCLUDED}


def test_constant_wall_model_is_masked_by_the_observation(room):
    _, truth, batch = room
    vis = batch["visibility"][0].numpy()
    label = truth.label.reshape(vis.shape)
    raw = predict_labels(ConstantSSC(WALL), batch)  # "wall" everywhere, as a model never taught free space
    assert (raw == WALL).all()
    out = apply_observation(raw, vis)
    free, seen_solid, unseen = vis == VIS_FREE, np.isin(vis, (VIS_SURFACE, VIS_OCCLUDED)), vis == VIS_OUTSIDE_VIEW
    assert free.sum() > 10_000 and seen_solid.sum() > 10_000 and unseen.sum() > 10_000
    # in front of the observed walls and furniture: empty, whatever the model says
    assert (out[free] == 0).all()
    # what the camera could not see through keeps the model's label
    assert (out[seen_solid] == WALL).all()
    # outside the view (and without depth): unknown
    assert (out[unseen] == 255).all()
    assert (out[vis == VIS_MISSING_DEPTH] == 255).all()
    # against the truth: the voxels written empty are empty in the room (a block seen free can
    # only hide occupied fine voxels the camera did not see)
    assert (label[free] == 0).mean() > 0.995
    # the walls the camera saw are kept as the model's wall
    seen_walls = (label == WALL) & (vis == VIS_SURFACE)
    assert seen_walls.sum() > 500 and (out[seen_walls] == WALL).all()


# ------------------------------------------------------------------------------------------
# Through `torchssc predict`: default and --raw
@pytest.fixture(scope="module")
def wall_checkpoint(tmp_path_factory) -> Path:
    """A TSDF-only U-Net whose head answers "wall" everywhere (zero weights, bias on wall)."""
    folder = tmp_path_factory.mktemp("wall")
    recipe = folder / "wall.yaml"
    recipe.write_text("model:\n  name: unet3d_prior\n  kwargs: {channels: [4, 4, 4], prior_classes: 0}\n")
    cfg = load_config(recipe)
    model = build_model(cfg)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[WALL] = 5.0
    path = folder / "wall.pt"
    save_checkpoint(path, {"format_version": FORMAT_VERSION, "model": model.state_dict(), "config": cfg,
                           "epoch": 1, "iteration": 1})
    return path


@pytest.mark.slow  # two predict runs end to end, a render: several seconds
def test_predict_command_default_and_raw(room, wall_checkpoint, tmp_path, capsys):
    frame, _, _ = room
    write_synth_frame(tmp_path, 1, frame)
    common = ["predict", "--checkpoint", str(wall_checkpoint), "--depth", str(tmp_path / "NYU0001_0000.png"),
              "--pose", str(tmp_path / "NYU0001_0000.bin"), "--intrinsics", "518.8579,518.8579,320,240",
              "--formats", "npy,png"]
    assert main(common + ["--out", str(tmp_path / "masked")]) == 0
    said = capsys.readouterr().out
    assert main(common + ["--out", str(tmp_path / "raw"), "--raw"]) == 0
    raw = np.load(tmp_path / "raw" / "scene.npy")
    masked = np.load(tmp_path / "masked" / "scene.npy")
    assert (raw == WALL).all()  # --raw: the network's output, unchanged
    files, _, _, _ = prepare_inputs(tmp_path / "NYU0001_0000.png", pose_path=tmp_path / "NYU0001_0000.bin")
    vis = files["visibility"][0].numpy()  # of the depth as written (millimetres)
    np.testing.assert_array_equal(masked, apply_observation(raw, vis))
    counts = region_counts(vis)
    assert f"occupied voxels: {counts['model']} of 129600, {counts['unknown']} unknown" in said
    assert (tmp_path / "masked" / "scene.png").is_file()


# ------------------------------------------------------------------------------------------
# The real sample: the rule against NYU's own annotation of scene 0001
def test_rule_agrees_with_the_release_labels_of_scene_0001(nyu_sample, nyu_release):
    from torchssc.geometry import RELEASE_INTRINSICS
    from torchssc.io.depthbin import read_bin, read_depth_png

    frame = read_bin(nyu_sample / "NYU0001_0000.bin")
    depth = read_depth_png(nyu_sample / "NYU0001_0000.png")
    batch = frame_batch(depth, frame.pose.astype(np.float64), frame.origin.astype(np.float64),
                        intrinsics=RELEASE_INTRINSICS)
    vis = batch["visibility"][0].numpy()
    with np.load(nyu_release / "L" / "0001.npz") as data:
        label = data["arr_0"].reshape(vis.shape)
    free, unseen = vis == VIS_FREE, vis == VIS_OUTSIDE_VIEW
    # measured: 15,649 free voxels, 313 (2.0%) of them occupied in the release (the rest empty,
    # or 255 where the depth saw past the annotated room); 36,112 outside the view, 84% of them
    # 255 in the release and 0.6% occupied
    assert free.sum() > 10_000 and unseen.sum() > 20_000
    occupied = (label >= 1) & (label <= 11)
    assert occupied[free].mean() < 0.03
    assert (label[unseen] == 255).mean() > 0.8 and occupied[unseen].mean() < 0.01
