"""The toy dataset of the tests: 5 classes on a 32x16x32 grid, declared by one YAML file.

Used by the every-model test (tests/models/test_models_registry.py) and the end-to-end test
(tests/datasets/test_datasets_toy.py). :func:`make_batch` builds a batch of any declared keys
for a spec; :func:`write_toy_dataset` writes prepared frames (the TorchSSC layout) that a run
reads with no code change: the files a user would have made with their own preparation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.io.prepared import PreparedFrame, frame_paths, write_frame, write_split
from torchssc.prepare.label_weight import label_weight
from torchssc.prepare.sketch import sketch_from_labels

TOY_YAML = """\
# A toy dataset: 5 classes on a 32x16x32 grid (2.56 x 1.28 x 2.56 m), a 64x48 camera.
name: toy5
description: the tests' toy rooms
classes: [empty, floor, wall, table, lamp]
palette: [[22, 191, 206], [43, 160, 43], [158, 216, 229], [30, 119, 181], [255, 127, 12]]
class_weights: [0.3, 1.0, 1.0, 2.0, 4.0]
grid: [32, 16, 32]
voxel_size: 0.08
fine_factor: 4
intrinsics: [52.0, 52.0, 32.0, 24.0]
image_size: [64, 48]
layout: torchssc
"""
TOY_CLASSES = ("empty", "floor", "wall", "table", "lamp")


def write_toy_spec(folder: Path) -> Path:
    """Write the toy spec YAML into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "toy5.yaml"
    path.write_text(TOY_YAML)
    return path


def camera(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A camera 1.1 m above the floor looking along world +y into the box: ``(pose (4, 4),
    origin (3,), intrinsics (6,))`` (fx, fy, cx, cy, W, H)."""
    pose = np.eye(4)
    pose[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]  # camera x, y (down), z -> world x, -z, y
    pose[:3, 3] = (0.0, 0.0, 1.1)
    width = spec.grid[0] * spec.voxel_size
    origin = np.array([-width / 2, 0.6, -0.05])
    intrinsics = np.array([*spec.intrinsics, *spec.image_size], dtype=np.float64)
    return pose, origin, intrinsics


def toy_labels(spec: DatasetSpec, rng: np.random.Generator) -> np.ndarray:
    """A room on ``spec.grid``: floor, two walls, a table and a lamp, 255 outside the room."""
    d0, d1, d2 = spec.grid
    k = spec.num_classes
    label = np.zeros(spec.grid, np.uint8)
    label[:, 0, :] = 1 % k  # floor
    label[0, :, :] = label[:, :, -1] = 2 % k  # two walls
    tw, th = max(2, d0 // 4), max(2, d1 // 4)  # table size, in voxels (8 x 4 on 32x16x32)
    a, c = rng.integers(1, max(2, d0 - tw - 2)), rng.integers(1, max(2, d2 - tw - 2))
    label[a:a + tw, 1:1 + th, c:c + tw] = 3 % k  # table
    label[a + 1:a + 2 + tw // 4, 1 + th:1 + 2 * th, c + 1:c + 2 + tw // 4] = max(1, k - 1)  # lamp (the last class)
    label[-2:, :, :] = 255  # outside the room
    return label


def toy_frame(spec: DatasetSpec, seed: int) -> PreparedFrame:
    """One prepared frame of ``spec``: every file a model of the registry may read."""
    rng = np.random.default_rng(seed)
    label = toy_labels(spec, rng)
    occupied = (label > 0) & (label != 255)
    tsdf = np.where(occupied, -0.8, 0.6).astype(np.float32) + rng.normal(0, 0.05, spec.grid).astype(np.float32)
    weight = label_weight(label, tsdf)  # the release's rule, as the data doctor checks it
    w, h = spec.image_size
    mapping = np.where(rng.random(spec.grid_numel) < 0.2, rng.integers(0, w * h, spec.grid_numel), w * h)
    pose, origin, intrinsics = camera(spec)
    fine = tuple(spec.fine_grid)
    return PreparedFrame(
        tsdf=tsdf, label_weight=weight, mapping=mapping.astype(np.int64), label=label,
        sketch=sketch_from_labels(label), rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        pose=pose, origin=origin, intrinsics=intrinsics,
        visibility=rng.integers(0, 6, spec.grid).astype(np.uint8),
        tsdf_fine=np.clip(rng.normal(0, 0.5, fine), -1, 1).astype(np.float32),
        depth=rng.uniform(1.5, 2.5, (h, w)).astype(np.float32),
        prior=rng.integers(0, 14, (h, w)).astype(np.uint8),
        label_fine=np.repeat(np.repeat(np.repeat(label, spec.fine_factor, 0), spec.fine_factor, 1), spec.fine_factor, 2),
    )


def write_toy_dataset(root: Path, spec: DatasetSpec | str, *, train: int = 4, test: int = 2) -> Path:
    """Prepared frames ``0001..`` of ``spec`` under ``root`` with ``train.txt`` and ``test.txt``."""
    spec = get_dataset_spec(spec)
    ids = [f"{i:04d}" for i in range(1, train + test + 1)]
    for i, frame_id in enumerate(ids):
        frame = toy_frame(spec, seed=i)
        write_frame(root, frame_id, frame)
        prior = frame_paths(root, frame_id)["prior"]  # the 2D prior is the user's, not prepare's
        prior.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame.prior).save(prior)
    write_split(root, "train", ids[:train])
    write_split(root, "test", ids[train:])
    return root


def make_batch(keys, spec: DatasetSpec, *, batch_size: int = 2, seed: int = 0, forknet_grid=None) -> dict:
    """A collated batch holding the base keys and ``keys`` for ``spec``, from :func:`toy_frame`
    (deterministic in ``seed``). ``forknet_grid``: the shape of ForkNet's volumes, when asked."""
    from torch.utils.data import default_collate

    from torchssc.data.dataset import normalize_rgb

    items = []
    for b in range(batch_size):
        f = toy_frame(spec, seed=seed * 100 + b)
        item = {"id": f"{b + 1:04d}", "tsdf": torch.from_numpy(f.tsdf)[None], "mapping": torch.from_numpy(f.mapping),
                "label": torch.from_numpy(f.label.astype(np.int64)),
                "label_weight": torch.from_numpy(f.label_weight.astype(np.float32)),
                "sketch_gt": torch.from_numpy(f.sketch.astype(np.int64))}
        extra = {
            "rgb": lambda: normalize_rgb(f.rgb),
            "prior": lambda: torch.from_numpy(f.prior.astype(np.int64)),
            "depth": lambda: torch.from_numpy(f.depth)[None],
            "pose": lambda: torch.from_numpy(f.pose.astype(np.float32)),
            "origin": lambda: torch.from_numpy(f.origin.astype(np.float32)),
            "intrinsics": lambda: torch.from_numpy(f.intrinsics.astype(np.float32)),
            "visibility": lambda: torch.from_numpy(f.visibility.astype(np.int64)),
            "tsdf_fine": lambda: torch.from_numpy(f.tsdf_fine)[None],
            "label_fine": lambda: torch.from_numpy(f.label_fine),
        }
        for key in keys:
            if key in extra:
                item[key] = extra[key]()
        if any(k.startswith("forknet_") for k in keys):
            g = torch.Generator().manual_seed(seed * 100 + b)
            grid = tuple(forknet_grid)
            item["forknet_tsdf"] = torch.rand(1, *grid, generator=g) * 2 - 1
            item["forknet_label"] = torch.randint(0, spec.num_classes, grid, generator=g)
            item["forknet_surface"] = torch.randint(0, 2, grid, generator=g).to(torch.uint8)
        items.append(item)
    return default_collate(items)
