"""Training-time transforms (torchssc.data.augment): horizontal flips and the observed free space
supervised as empty."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

import _engine_tiny as tiny
from _toy import toy_frame, write_toy_spec
from torchssc.config import DEFAULTS, list_recipes, load_config
from torchssc.data import SSCDataset
from torchssc.data import augment
from torchssc.data.augment import (
    CAMERA_KEYS,
    FLIP_RULES,
    TrainingTransform,
    flip_batch,
    flip_draws,
    free_space_targets,
)
from torchssc.datasets import get_dataset_spec
from torchssc.engine.builders import build_training_transform, run_inputs
from torchssc.engine.train import main
from torchssc.geometry import Intrinsics
from torchssc.io.prepared import BASE_KEYS, FORKNET_GRID, OPTIONAL_KEYS, frame_paths, write_frame
from torchssc.models.lifting import lift_and_fill, lift_labels
from torchssc.prepare.pipeline import prepare_frame
from torchssc.prepare.sketch import sketch_from_labels

FLIPS = [(False, False), (True, False), (False, True), (True, True)]  # (along X, along Y)


def _flip3(a: np.ndarray, fx: bool, fy: bool) -> np.ndarray:
    """A 3-D grid array [X, Z, Y] mirrored by hand: axis 0 for X, axis 2 for Y."""
    if fx:
        a = a[::-1, :, :]
    if fy:
        a = a[:, :, ::-1]
    return np.ascontiguousarray(a)


def _mirrored_frame(frame, grid, fx: bool, fy: bool):
    """The prepared frame of the mirrored scene, flipped with numpy: every volume mirrored, the
    voxel -> pixel list mirrored as the grid it is flattened over, the images and camera kept."""
    volumes = ("tsdf", "label_weight", "label", "sketch", "visibility", "tsdf_fine", "label_fine",
               "forknet_tsdf", "forknet_label", "forknet_surface")
    changes = {k: _flip3(getattr(frame, k), fx, fy) for k in volumes}
    changes["mapping"] = _flip3(np.asarray(frame.mapping).reshape(grid), fx, fy).ravel()
    return dataclasses.replace(frame, **changes)


def _full_frame(spec, seed: int):
    """A toy frame with every volume a model may read, ForkNet's included."""
    rng = np.random.default_rng(seed)
    return dataclasses.replace(
        toy_frame(spec, seed=seed),
        forknet_tsdf=rng.uniform(-1, 1, FORKNET_GRID).astype(np.float32),
        forknet_label=rng.integers(0, spec.num_classes, FORKNET_GRID).astype(np.uint8),
        forknet_surface=rng.integers(0, 2, FORKNET_GRID).astype(np.uint8),
    )


def _write(root: Path, frame_id: str, frame) -> None:
    write_frame(root, frame_id, frame)
    prior = frame_paths(root, frame_id)["prior"]
    prior.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame.prior).save(prior)


@pytest.fixture()
def toy_spec(tmp_path):
    return get_dataset_spec(write_toy_spec(tmp_path / "spec"))


# ------------------------------------------------------------------------------------------
# The rule table
def test_every_batch_key_has_a_flip_rule():
    assert set(FLIP_RULES) == set(BASE_KEYS) | set(OPTIONAL_KEYS)
    assert set(FLIP_RULES.values()) == {"grid", "flat", "image", "camera"}
    assert set(CAMERA_KEYS) == {"pose", "origin", "intrinsics"}


def test_an_unknown_tensor_key_is_an_error_not_left_unflipped():
    batch = {"tsdf": torch.zeros(2, 1, 4, 3, 5), "hha": torch.zeros(2, 3, 4, 3, 5), "id": ["0001", "0002"]}
    with pytest.raises(ValueError, match="hha"):
        flip_batch(batch, [(True, False), (False, False)], (4, 3, 5))


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="mapping"):
        flip_batch({"mapping": torch.zeros(2, 59, dtype=torch.int64)}, [(True, True)] * 2, (4, 3, 5))
    with pytest.raises(ValueError, match="label"):
        flip_batch({"label": torch.zeros(2, 4, 5)}, [(True, True)] * 2, (4, 3, 5))
    with pytest.raises(ValueError, match="flips"):
        flip_batch({"label": torch.zeros(2, 4, 3, 5)}, [(True, True)] * 3, (4, 3, 5))


# ------------------------------------------------------------------------------------------
# A flipped batch is the batch of the flipped scene
def test_flipped_batch_equals_the_batch_of_the_flipped_scene(tmp_path, toy_spec):
    """Scene A and its three mirror images written as prepared folders (mirrored by hand with
    numpy); the dataset's batch of A four times, flipped by FLIPS, equals the dataset's batch of
    (A, A mirrored in X, in Y, in both), key by key."""
    frame = _full_frame(toy_spec, seed=5)
    ids = ["0001", "0002", "0003", "0004"]
    for frame_id, (fx, fy) in zip(ids, FLIPS):
        _write(tmp_path / "data", frame_id, _mirrored_frame(frame, toy_spec.grid, fx, fy))
    data = SSCDataset(tmp_path / "data", ids, keys=list(OPTIONAL_KEYS), spec=toy_spec)
    original = default_collate([data[0]] * 4)
    expected = default_collate([data[i] for i in range(4)])

    flipped = flip_batch(original, FLIPS, toy_spec.grid)

    assert set(original) == set(BASE_KEYS) | set(OPTIONAL_KEYS) | {"id"}  # every key is exercised
    assert set(flipped) == set(expected) - set(CAMERA_KEYS)  # no stale camera in a mirrored scene
    for key in flipped:
        if key == "id":
            continue
        assert flipped[key].dtype == expected[key].dtype, key
        assert torch.equal(flipped[key], expected[key]), f"{key} differs from the mirrored scene's"
    for key in ("tsdf", "label", "mapping", "tsdf_fine", "forknet_label"):  # the comparison has teeth
        for b in (1, 2, 3):
            assert not torch.equal(expected[key][b], expected[key][0]), (key, b)
    for b in range(4):  # the pixel indices are kept, only their voxels move
        assert torch.equal(flipped["mapping"][b].sort().values, original["mapping"][b].sort().values)
    for key in ("rgb", "prior", "depth"):
        assert torch.equal(flipped[key], original[key])
    assert torch.equal(original["tsdf"], default_collate([data[0]] * 4)["tsdf"])  # the input is not changed


def test_the_mirrored_sketch_is_the_sketch_of_the_mirrored_labels(toy_spec):
    """Why ``sketch_gt`` is flipped rather than recomputed: the sketch's derivative kernels change
    sign under a mirror, its smoothing and box kernels do not, and only "non-zero" counts."""
    label = toy_frame(toy_spec, seed=2).label
    for fx, fy in FLIPS[1:]:
        assert np.array_equal(sketch_from_labels(_flip3(label, fx, fy)), _flip3(sketch_from_labels(label), fx, fy))


def _mirror_batch(volume: torch.Tensor, flips) -> torch.Tensor:
    """``(B, ..., S0, S1, S2)`` with sample b mirrored by torch.flip, one sample at a time."""
    out = []
    for v, (fx, fy) in zip(volume, flips):
        v = v.flip(-3) if fx else v
        out.append(v.flip(-1) if fy else v)
    return torch.stack(out)


def test_lifting_of_the_flipped_sample_equals_the_flipped_lifting():
    grid, (h, w), k = (5, 3, 4), (6, 7), 5
    g = torch.Generator().manual_seed(0)
    n = grid[0] * grid[1] * grid[2]
    mapping = torch.where(torch.rand(4, n, generator=g) < 0.4, torch.randint(0, h * w, (4, n), generator=g),
                          torch.full((4, n), h * w))
    prior = torch.randint(0, k, (4, h, w), generator=g)
    features = torch.randn(4, 3, 3, 4, generator=g, dtype=torch.float64)
    flipped = flip_batch({"mapping": mapping, "prior": prior}, FLIPS, grid)
    assert torch.equal(flipped["prior"], prior)

    lifted = lift_labels(prior, mapping, grid, k)  # (B, K, 5, 3, 4), with the zero fill
    assert lifted.abs().sum() > 0
    assert torch.equal(lift_labels(prior, flipped["mapping"], grid, k), _mirror_batch(lifted, FLIPS))
    for align in (True, False):  # SketchAwareSSC's features; AMMNet's upsample
        feats = lift_and_fill(features, mapping, grid, (h, w), align_corners=align)
        torch.testing.assert_close(lift_and_fill(features, flipped["mapping"], grid, (h, w), align_corners=align),
                                   _mirror_batch(feats, FLIPS), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Draws: seeded, per global batch, sliced by rank
def test_flips_are_a_function_of_seed_and_iteration():
    assert np.array_equal(flip_draws(3, 7, 4), flip_draws(3, 7, 4))
    assert np.array_equal(flip_draws(3, 7, 2), flip_draws(3, 7, 4)[:2])  # row i independent of the batch size
    draws = np.stack([flip_draws(3, it, 4) for it in range(50)])
    assert len({d.tobytes() for d in draws}) > 40  # they change from step to step
    assert not np.array_equal(draws, np.stack([flip_draws(4, it, 4) for it in range(50)]))  # and with the seed
    many = flip_draws(0, 0, 4000)
    assert 0.45 < many[:, 0].mean() < 0.55 and 0.45 < many[:, 1].mean() < 0.55
    assert 0.2 < (many[:, 0] & many[:, 1]).mean() < 0.3  # independent axes


def test_the_transform_is_deterministic_and_sliced_by_rank(toy_spec):
    from _toy import make_batch

    batch = make_batch(("visibility", "tsdf_fine"), toy_spec, batch_size=4, seed=1)
    one = TrainingTransform(grid=toy_spec.grid, flip=True, seed=11)
    a, b = one(batch, 5), one(batch, 5)
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key])
    # two processes, two frames each, see what one process with the global batch sees
    halves = [TrainingTransform(grid=toy_spec.grid, flip=True, seed=11, rank=r, world_size=2)(
        {k: v[2 * r:2 * r + 2] for k, v in batch.items()}, 5) for r in (0, 1)]
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(torch.cat([halves[0][key], halves[1][key]]), a[key]), key
    expected = flip_batch(batch, flip_draws(11, 5, 4), toy_spec.grid)
    assert all(torch.equal(a[k], expected[k]) for k in expected if torch.is_tensor(expected[k]))
    # some step flips something
    assert any(not torch.equal(one(batch, it)["tsdf"], batch["tsdf"]) for it in range(4))


# ------------------------------------------------------------------------------------------
# Off by default; refused where it cannot be right
def test_both_options_are_off_by_default():
    assert DEFAULTS["train"]["flip"] is False and DEFAULTS["train"]["free_space_empty"] is False
    for name in list_recipes():
        cfg = load_config(name)
        assert cfg["train"]["flip"] is False and cfg["train"]["free_space_empty"] is False, name
        assert build_training_transform(cfg, run_inputs(cfg)) is None, name


def test_recipe_keys_build_the_transform():
    cfg = load_config("unet3d_prior_nyu_cpu", ["train.flip=true", "train.free_space_empty=true", "train.seed=4"])
    transform = build_training_transform(cfg, run_inputs(cfg), rank=1, world_size=2)
    assert transform == TrainingTransform(grid=(60, 36, 60), flip=True, free_space=True, seed=4, ignore_id=255,
                                          rank=1, world_size=2)
    with pytest.raises(ValueError, match="true or false"):
        load_config("unet3d_prior_nyu_cpu", ["train.flip=1"])


def test_flips_are_refused_for_models_that_read_the_camera():
    cfg = load_config("ddrnet_nyu", ["train.flip=true"])
    with pytest.raises(ValueError, match="model 'ddrnet' reads.*pose"):
        build_training_transform(cfg, run_inputs(cfg))


def test_free_space_is_refused_for_a_loss_without_label_weight():
    cfg = load_config("sscnet_nyu", ["train.free_space_empty=true"])
    with pytest.raises(ValueError, match="label_weight"):
        build_training_transform(cfg, run_inputs(cfg))


# ------------------------------------------------------------------------------------------
# Free space
def _free_space_naive(tsdf, label, weight, ignore_id=255):
    label, weight = label.clone(), weight.clone()
    for b in range(label.shape[0]):
        for i in range(label.shape[1]):
            for j in range(label.shape[2]):
                for k in range(label.shape[3]):
                    observed_free = float(tsdf[b, 0, i, j, k]) > 0.0
                    if observed_free and int(label[b, i, j, k]) in (0, ignore_id):
                        label[b, i, j, k] = 0
                        weight[b, i, j, k] = 1.0
    return label, weight


def test_free_space_equals_the_naive_loop():
    g = torch.Generator().manual_seed(2)
    shape = (2, 3, 4, 5)
    tsdf = torch.rand(2, 1, 3, 4, 5, generator=g) * 2 - 1
    tsdf[torch.rand(tsdf.shape, generator=g) < 0.2] = 0.0  # unobserved
    label = torch.tensor([0, 1, 2, 255])[torch.randint(0, 4, shape, generator=g)]
    weight = torch.randint(0, 2, shape, generator=g).float()
    got = free_space_targets(tsdf, label, weight)
    want = _free_space_naive(tsdf, label, weight)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert not torch.equal(got[1], weight) and not torch.equal(got[0], label)  # it did something
    other = _free_space_naive(tsdf, label, weight, ignore_id=2)
    got2 = free_space_targets(tsdf, label, weight, ignore_id=2)
    assert torch.equal(got2[0], other[0]) and torch.equal(got2[1], other[1])


def _ray_box(origin, dirs, lo, hi):
    """Entry distance of rays ``origin + t dirs`` (``dirs`` (N, 3)) into the box [lo, hi]; inf on a miss."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - origin) / dirs, (hi - origin) / dirs
    near = np.nanmax(np.minimum(t1, t2), axis=1)
    far = np.nanmin(np.maximum(t1, t2), axis=1)
    return np.where((far >= near) & (near > 0), near, np.inf)


def test_free_space_on_a_synthetic_room_whose_truth_is_known():
    """A 0.96 x 0.48 x 0.96 m box (fine 48x24x48, grid 12x6x12), a camera 0.3 m in front of it
    looking along world +Y: floor, back wall, a table block in the middle; the top layer of the
    grid annotated "outside the room" (255) although the camera sees it empty. Depth ray-cast
    from that truth, then the real preparation (TSDF, labels, label_weight)."""
    fine, voxel = (48, 24, 48), 0.02
    origin = np.array([0.0, 0.0, 0.0])
    cam = np.array([0.48, -0.3, 0.24])
    pose = np.eye(4)
    pose[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]  # camera x, y (down), z -> world x, -z, y
    pose[:3, 3] = cam
    intr = Intrinsics(fx=40.0, fy=40.0, cx=31.5, cy=23.5, width=64, height=48)
    boxes = {  # world (x, y, z) min, max; raw NYU36 ids: 2 floor, 3 wall, 9 table (-> 8)
        2: ((-2.0, -1.0, 0.0), (3.0, 0.96, 0.04)),  # floor and back wall reach beyond the grid:
        3: ((-2.0, 0.88, 0.0), (3.0, 0.96, 2.00)),  # every ray meets a surface
        9: ((0.36, 0.40, 0.04), (0.60, 0.56, 0.20)),
    }
    v, u = np.mgrid[0:intr.height, 0:intr.width]
    rays = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u, float)], -1).reshape(-1, 3)
    dirs = rays @ pose[:3, :3].T  # world directions, camera z = 1
    t = np.min([_ray_box(cam, dirs, np.array(lo), np.array(hi)) for lo, hi in boxes.values()], axis=0)
    depth = np.where(np.isfinite(t), t, 0.0).reshape(intr.height, intr.width).astype(np.float32)
    centres = (np.stack(np.meshgrid(*[np.arange(s) for s in fine], indexing="ij"), -1) + 0.5) * voxel  # [X, Z, Y]
    xyz = centres[..., [0, 2, 1]]
    raw = np.zeros(fine, np.uint8)
    for raw_id, (lo, hi) in boxes.items():
        raw[np.all((xyz >= lo) & (xyz <= hi), axis=-1)] = raw_id
    raw[:, -4:, :] = 255  # the top grid layer: "outside the room" in the annotation
    frame = prepare_frame(depth, pose, origin, raw, intrinsics=intr)
    tsdf = torch.from_numpy(frame.tsdf.astype(np.float32))[None, None]
    label = torch.from_numpy(frame.label.astype(np.int64))[None]
    weight = torch.from_numpy(frame.label_weight.astype(np.float32))[None]

    new_label, new_weight = (x[0].numpy() for x in free_space_targets(tsdf, label, weight))
    label, weight, tsdf = label[0].numpy(), weight[0].numpy(), tsdf[0, 0].numpy()

    # grid-voxel centres in world coordinates, and in the camera
    grid_xyz = ((np.stack(np.meshgrid(*[np.arange(s) for s in label.shape], indexing="ij"), -1) + 0.5) * 0.08)[..., [0, 2, 1]]
    rel = grid_xyz - cam
    z_cam, x_cam, y_cam = rel[..., 1], rel[..., 0], -(rel[..., 2])
    in_view = (np.abs(x_cam / z_cam) < 0.7) & (np.abs(y_cam / z_cam) < 0.4)
    in_front = grid_xyz[..., 1] < 0.40 - 0.08  # nearer than the table's front face, by a voxel
    above_floor = grid_xyz[..., 2] > 0.04 + 0.08
    seen_free = in_view & in_front & above_floor

    occupied = (label > 0) & (label != 255)
    assert occupied.sum() > 100 and seen_free.sum() > 20
    # 1. the ground truth's occupied voxels keep their label and weight
    assert np.array_equal(new_label[occupied], label[occupied])
    assert np.array_equal(new_weight[occupied], weight[occupied])
    # 2. the empty space the camera sees is supervised as empty, the mis-annotated 255 included
    assert (new_label[seen_free] == 0).all() and (new_weight[seen_free] == 1).all()
    assert (weight[seen_free] == 0).all()  # the paper's loss never looked there
    assert ((label == 255) & seen_free).sum() > 5 and (new_label[(label == 255) & seen_free] == 0).all()
    # 3. what the camera cannot see keeps its targets: outside the view, behind the table
    outside = (np.abs(x_cam / z_cam) > 1.2) & (grid_xyz[..., 1] < 0.3)
    behind = (grid_xyz[..., 1] > 0.60) & (grid_xyz[..., 1] < 0.84) & (np.abs(grid_xyz[..., 0] - 0.48) < 0.06) \
        & (grid_xyz[..., 2] > 0.08) & (grid_xyz[..., 2] < 0.16)
    assert outside.sum() > 5 and behind.sum() > 1
    for hidden in (outside, behind):
        assert np.array_equal(new_label[hidden], label[hidden]) and np.array_equal(new_weight[hidden], weight[hidden])
    assert (tsdf[outside] == 0).all() and (tsdf[behind] < 0).all()
    # 4. nothing else moved: every change is a seen-free voxel (TSDF > 0) that the truth calls empty or 255
    changed = (new_label != label) | (new_weight != weight)
    assert (tsdf[changed] > 0).all() and np.isin(label[changed], (0, 255)).all()
    blocks = raw.reshape(12, 4, 6, 4, 12, 4)
    truth_empty = ~np.isin(blocks, (2, 3, 9)).any(axis=(1, 3, 5))  # no fine voxel of the block is occupied
    assert truth_empty[changed].all()


# ------------------------------------------------------------------------------------------
# The engine
def test_a_training_with_both_options_runs_and_transforms_every_step(tmp_path, monkeypatch):
    tiny.make_frames(tmp_path / "data", n=4, seed=1)
    recipe = tiny.write_recipe(tmp_path / "r.yaml", tmp_path / "data", tmp_path / "runs", epochs=1, iters_per_epoch=2,
                               eval_every=1)
    cfg = load_config(recipe, ["train.flip=true", "train.free_space_empty=true", "data.val_fraction=0.25"])
    calls = []
    real = augment.TrainingTransform.__call__

    def spy(self, batch, iteration):
        calls.append((iteration, tuple(batch["id"])))
        return real(self, batch, iteration)

    monkeypatch.setattr(augment.TrainingTransform, "__call__", spy)
    result = main(cfg)
    assert result["iteration"] == 2 and Path(result["checkpoint"]).is_file()
    assert [c[0] for c in calls] == [0, 1]  # every training step, never validation
    assert all(len(ids) == 2 for _, ids in calls)
