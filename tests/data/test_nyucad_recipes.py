"""The NYUCAD recipes (configs/*nyucad*.yaml) and which layouts can feed which model."""

from __future__ import annotations

import pytest

from torchssc.config import list_recipes, load_config
from torchssc.data.layouts import LAYOUT_CLASSES
from torchssc.engine.builders import dataset_spec, run_inputs
from torchssc.io.prepared import OPTIONAL_KEYS

NYUCAD_RECIPES = ["aicnet_nyucad", "ccpnet_style_nyucad", "ddrnet_nyucad", "sketch_aware_ssc_nyucad",
                  "sketch_aware_ssc_prior_nyucad", "sscnet_nyucad", "vvnet_nyucad"]


def layouts_feeding(cfg: dict) -> set[str]:
    """The layouts (besides torchssc, which holds every input) that give every key the run reads."""
    fields = {OPTIONAL_KEYS[k][0] for k in run_inputs(cfg) if k in OPTIONAL_KEYS}
    return {name for name, cls in LAYOUT_CLASSES.items() if fields <= cls.fields}


def test_nyucad_recipes_are_shipped_and_read_nyucad():
    assert sorted(r for r in list_recipes() if "nyucad" in r) == NYUCAD_RECIPES
    for name in NYUCAD_RECIPES:
        cfg = load_config(name)
        assert dataset_spec(cfg).name.startswith("nyucad")
        assert cfg["model"]["name"] == load_config(name.replace("_nyucad", "_nyu")).get("model")["name"]


@pytest.mark.parametrize("recipe, layouts", [
    ("sketch_aware_ssc_nyucad", {"nyucad_torchssc", "scans"}),  # RGB: not in the EdgeNet npz
    ("sketch_aware_ssc_prior_nyucad", {"nyucad_torchssc"}),  # the prior sits in NYU's folder
    ("sscnet_nyucad", {"edgenet", "scans"}),  # the fine TSDF
    ("ddrnet_nyucad", {"scans"}),  # depth and camera
    ("ccpnet_style_nyucad", set()),  # fine labels: prepare --fine-labels only
])
def test_which_layouts_feed_which_model(recipe, layouts):
    assert layouts_feeding(load_config(recipe)) == layouts


def test_held_out_frames_of_a_layout_without_split_lists(tmp_path):
    """data.val_fraction on an EdgeNet folder: the ids come from the folder's files."""
    import numpy as np

    from torchssc.engine.builders import split_train_val

    for i in range(1, 6):
        np.savez(tmp_path / f"NYU{i:04d}_0000.npz", lbl=np.zeros(1))
    cfg = load_config("sscnet_nyucad", ["data.dataset=nyucad_edgenet", f"data.root={tmp_path}",
                                        "data.val_fraction=0.4"])
    train, val = split_train_val(cfg)
    assert len(val) == 2 and sorted(train + val) == [f"{i:04d}" for i in range(1, 6)]
