"""A dataset of other classes and another grid, end to end, with no code: one spec YAML and the
prepared files (docs/datasets.md, "Adding a dataset"; this test follows that checklist).

The toy dataset (tests/datasets/_toy.py): 5 classes on a 32x16x32 grid. ``torchssc train`` (a
few steps of the U-Net on TSDF + prior), ``torchssc eval`` (the table's columns are the 5 class
names) and ``torchssc viz`` (the legend and the viewer show them).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from _toy import TOY_CLASSES, write_toy_dataset, write_toy_spec
from torchssc.cli import main as cli_main
from torchssc.datasets import get_dataset_spec
from torchssc.viz.compose import legend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("toy")
    spec = write_toy_spec(base)  # checklist 1: the spec, one YAML
    root = write_toy_dataset(base / "data", spec, train=4, test=2)  # checklist 2: the files, in a layout
    recipe = base / "unet3d_prior_toy.yaml"  # checklist 3: a recipe, one short file
    recipe.write_text(yaml.safe_dump({
        "compose": ["model/unet3d_prior", "schedule/adamw_linear"],
        "data": {"dataset": str(spec), "root": str(root), "num_workers": 0, "check": True},
        "model": {"kwargs": {"channels": [8, 8, 8]}},
        "train": {"epochs": 2, "iters_per_epoch": 2, "global_batch": 2, "device": "cpu", "progress": False},
        "run": {"dir": str(base / "runs"), "name": "toy"},
    }))
    return base, spec, root, recipe


def test_train_eval_viz_from_one_yaml(toy, capsys):
    base, spec, root, recipe = toy
    assert cli_main(["check-data", str(root), "--dataset", str(spec)]) == 0  # the data doctor knows its grid
    assert cli_main(["train", str(recipe)]) == 0  # (data.check: the doctor again, before the first step)
    run = base / "runs" / "toy"
    assert (run / "checkpoints").is_dir() or any(run.rglob("*.pt"))
    capsys.readouterr()
    # eval: the table names the 5 classes (its columns come from the spec)
    assert cli_main(["eval", str(run), "--protocol", "torchssc", "--save", str(base / "pred"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| SSC IoU"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["SSC IoU (torchssc)", *TOY_CLASSES[1:], "mIoU"]
    saved = np.load(base / "pred" / "results" / "0005.npy")
    assert saved.shape == (32, 16, 32) and saved.max() < len(TOY_CLASSES)
    # viz: the legend and the viewer show the 5 classes in the spec's colours
    code = cli_main(["viz", str(base / "pred" / "results" / "0005.npy"), "--prepared", str(root),
                     "--dataset", str(spec), "--out", str(base / "viz"), "--formats", "png,html", "--views", "top"])
    assert code == 0
    page = (base / "viz" / "0005.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))
    assert data["names"] == list(TOY_CLASSES)
    assert data["palette"] == [list(c) for c in get_dataset_spec(spec).palette]
    image = np.asarray(Image.open(base / "viz" / "0005.png").convert("RGB"))
    strip = legend(image.shape[1], spec=spec)
    assert np.array_equal(image[-strip.shape[0]:], strip)  # the toy legend, not NYU's
    assert not np.array_equal(strip, legend(image.shape[1]))
