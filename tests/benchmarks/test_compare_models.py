"""Tests of benchmarks/compare.py (the equal-budget comparison behind
benchmarks/compare_models.py): recipes and budget overrides, one tiny model trained, scored and
measured in-process, a failing model reported while the next one still runs, process isolation,
and the table / JSON written."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import _engine_tiny as tiny
import numpy as np
import pytest
import yaml
from compare import (
    DEFAULT_MODELS,
    Budget,
    ModelSpec,
    add_overrides,
    check_root,
    compare_models,
    prepare_rooms,
    recipe_for_model,
    run_context,
    run_step,
    table_markdown,
    write_outputs,
)

from torchssc.config import load_config
from torchssc.geometry import LABEL_NUMEL, LABEL_SHAPE, VIS_FREE, VIS_OCCLUDED, VIS_SURFACE
from torchssc.io.prepared import PreparedFrame, write_frame, write_split
from torchssc.metrics import PROTOCOLS

REPO = Path(__file__).resolve().parents[2]


def _frames(root: Path, split: str, ids: list[str], seed: int) -> None:
    """Random valid frames with visibility (for the ``sscnet`` protocol); some voxels ignored."""
    rng = np.random.default_rng(seed)
    for fid in ids:
        label = rng.integers(0, 12, size=LABEL_SHAPE).astype(np.uint8)
        label[rng.random(LABEL_SHAPE) < 0.05] = 255
        write_frame(root, fid, PreparedFrame(
            tsdf=rng.uniform(-1, 1, size=LABEL_SHAPE).astype(np.float32),
            label_weight=(rng.random(LABEL_SHAPE) < 0.8).astype(np.uint8),
            mapping=rng.integers(0, 307201, size=LABEL_NUMEL),
            label=label,
            sketch=rng.integers(0, 2, size=LABEL_SHAPE).astype(np.uint8),
            visibility=rng.choice([VIS_FREE, VIS_SURFACE, VIS_OCCLUDED], size=LABEL_SHAPE).astype(np.uint8),
        ))
    write_split(root, split, ids)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare") / "prepared"
    _frames(root, "train", ["0001", "0002", "0003"], seed=1)
    _frames(root, "test", ["0004", "0005"], seed=2)
    return root


def _recipe(path: Path, model: str = tiny.MODEL) -> Path:
    """A tiny recipe of the engine test model, with settings the budget must override."""
    path.write_text(yaml.safe_dump({
        "data": {"num_workers": 2, "val_fraction": 0.5},
        "model": {"name": model, "kwargs": {"width": 4}},
        "loss": {"name": tiny.LOSS, "kwargs": {}},
        "optim": {"lr": 0.5, "schedule": "poly"},
        "train": {"epochs": 7, "iters_per_epoch": 9, "global_batch": 3, "sampler": "with_replacement"},
    }))
    return path


def test_recipes_of_the_default_models_and_budget_overrides(tmp_path):
    specs = {m: recipe_for_model(m) for m in (*DEFAULT_MODELS, "sketch_aware_ssc")}
    assert specs["vvnet_r120"].recipe.name == "vvnet_synth_cpu.yaml"
    assert specs["sketch_aware_ssc_lite"].recipe.name == "sketch_aware_ssc_synth_cpu.yaml"
    budget = Budget(iters=5, batch=2, lr=0.02, seed=3)
    for name, spec in specs.items():
        cfg = load_config(spec.recipe, [*spec.extra, *budget.overrides(tmp_path / "d", tmp_path / "r", name)])
        assert cfg["model"]["name"] == name  # its own model ...
        own = load_config(specs[name].recipe)
        assert cfg["loss"] == own["loss"]  # ... its own loss and dataset
        assert cfg["data"]["dataset"] == own["data"]["dataset"]
        t, o = cfg["train"], cfg["optim"]  # ... and the same budget
        assert (t["epochs"], t["iters_per_epoch"], t["global_batch"], t["seed"]) == (1, 5, 2, 3)
        assert (t["sampler"], o["lr"], o["schedule"]) == ("shuffle", 0.02, "constant")
        assert (cfg["data"]["num_workers"], cfg["data"]["val_fraction"]) == (0, 0.0)
        assert cfg["data"]["root"] == str(tmp_path / "d") and cfg["eval"]["seed"] == 3
    assert specs["sketch_aware_ssc"].extra == ("model.name=sketch_aware_ssc", "model.kwargs={}")
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        recipe_for_model("no_such_model")
    with pytest.raises(ValueError, match="iters"):
        Budget(iters=0, batch=1, lr=0.1)
    # Per-model extras go before the budget; budget keys cannot be changed for one model.
    paper = add_overrides(list(specs.values()), ["sketch_aware_ssc:model.kwargs.width=8"])[-1]
    cfg = load_config(paper.recipe, [*paper.extra, *budget.overrides(tmp_path, tmp_path, "p")])
    assert cfg["model"] == {"name": "sketch_aware_ssc", "kwargs": {"width": 8}}
    for bad, match in (("sscnet:optim.lr=1", "equal budget"), ("nope:optim.momentum=0", "no model"),
                       ("sscnet", "LABEL:key=value")):
        with pytest.raises(ValueError, match=match):
            add_overrides(list(specs.values()), [bad])


def test_check_root_names_missing_folders(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="TSDFFine"):
        check_root(data)
    assert check_root(data, required=("Visibility",)) == {"train": 3, "test": 2}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_root(tmp_path / "nowhere")


@pytest.mark.slow
def test_prepare_rooms_prepares_what_every_model_needs(tmp_path):
    root = prepare_rooms(tmp_path / "synth", frames=2, seed=0, test_fraction=0.5)
    assert check_root(root) == {"train": 1, "test": 1}  # TSDFFine, Depth, Visibility, RGB present
    assert prepare_rooms(tmp_path / "synth", frames=2) == root  # reused
    with pytest.raises(ValueError, match="already holds 2 synthetic rooms"):
        prepare_rooms(tmp_path / "synth", frames=3)


@pytest.mark.slow
def test_run_step_isolates_and_reports_failures():
    child = run_step(os.getpid, ())
    assert child["ok"] != os.getpid()  # a fresh process
    failed = run_step(math.sqrt, (-1.0,))
    assert failed["error"].startswith("ValueError: ") and "Traceback" in failed["traceback"]
    died = run_step(os._exit, (3,))
    assert "code 3" in died["error"]
    assert run_step(math.sqrt, (-1.0,), spawn=False)["error"].startswith("ValueError")


@pytest.mark.slow
def test_compare_tiny_models_with_a_failure_in_between(data, tmp_path):
    good = _recipe(tmp_path / "tiny.yaml")
    broken = _recipe(tmp_path / "broken.yaml", model="no_such_model")
    specs = [ModelSpec("tiny_a", good), ModelSpec("broken", broken), ModelSpec("missing", tmp_path / "nope.yaml"),
             ModelSpec("tiny_b", good, ("model.kwargs.width=6",))]
    budget = Budget(iters=1, batch=2, lr=0.1, seed=0, threads=1)
    out = tmp_path / "out"
    seen = []
    rows = compare_models(specs, root=data, out=out, budget=budget, infer_frames=3, spawn=False, on_row=seen.append)
    assert [r["label"] for r in rows] == [r["label"] for r in seen] == ["tiny_a", "broken", "missing", "tiny_b"]
    assert set(rows[1]["errors"]) == {"train"} and "no_such_model" in rows[1]["errors"]["train"]
    assert set(rows[2]["errors"]) == {"setup"} and "nope.yaml" in rows[2]["errors"]["setup"]
    for row, width in ((rows[0], 4), (rows[3], 6)):
        assert row["errors"] == {}
        assert row["params"] == row["params_total"] == 1 * width + 2 * width + width * 12 + 12  # conv, BN, head
        assert row["iteration"] == 1 and row["loss"] == tiny.LOSS and row["infer_frames"] == 3
        assert row["train_cpu_s"] > 0 and row["infer_cpu_s"] > 0 and row["score_wall_s"] > 0
        assert row["train_peak_mib"] > 0 and row["infer_peak_mib"] > 0
        assert set(row["metrics"]) == set(PROTOCOLS)
        for m in row["metrics"].values():
            for key in ("sc_iou", "ssc_miou", "sc_precision", "sc_recall"):
                assert math.isfinite(m[key]) and 0.0 <= m[key] <= 1.0
            assert m["scenes"] == 2
        assert Path(row["checkpoint"]).is_file() and Path(row["checkpoint"]).is_relative_to(out / "runs" / row["label"])
        saved = load_config(out / "runs" / row["label"] / "config.yaml")
        assert saved["train"]["iters_per_epoch"] == 1 and saved["optim"]["schedule"] == "constant"
    # The same data, seed and budget: the two models' scores come from the same frames.
    assert rows[0]["metrics"]["all"]["scenes"] == rows[3]["metrics"]["all"]["scenes"]

    context = run_context(budget=budget, root=data, protocols=PROTOCOLS, infer_frames=3, command="cmd --x",
                          spawn=False)
    json_path, md_path = write_outputs(out, rows, context)
    payload = json.loads(json_path.read_text())
    assert payload["context"]["frames"] == {"train": 3, "test": 2} and payload["context"]["command"] == "cmd --x"
    assert [r["label"] for r in payload["rows"]] == ["tiny_a", "broken", "missing", "tiny_b"]
    text = md_path.read_text()
    assert "cmd --x" in text and table_markdown(rows) in text
    table = [line for line in table_markdown(rows).splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4 and all(line.count("|") == 14 for line in table)  # 13 columns
    assert "| model | loss | trainable params | train CPU s |" in table[0] and "`sscnet` SC IoU" in table[0]
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[0] == "`tiny_a`" and cells[2] == f"{rows[0]['params']:,}"
    for p, col in zip(PROTOCOLS, range(7, 13, 2)):
        assert cells[col] == f"{100 * rows[0]['metrics'][p]['sc_iou']:.1f}"
        assert cells[col + 1] == f"{100 * rows[0]['metrics'][p]['ssc_miou']:.1f}"
    assert table[3].startswith("| `broken` (failed) |") and table[3].count("—") == 11
    assert "- `broken` train failed: " in text and "- `missing` setup failed: " in text
    # A second run into the same folder is refused rather than mixing runs.
    with pytest.raises(FileExistsError, match="tiny_a"):
        compare_models(specs[:1], root=data, out=out, budget=budget, spawn=False)


def test_script_arguments_need_data(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("compare_models_script", REPO / "benchmarks" / "compare_models.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = script.parse_args(["--root", str(tmp_path), "--out", str(tmp_path / "o"), "--iters", "4"])
    assert args.models.split(",") == list(DEFAULT_MODELS) and args.iters == 4 and args.device == "cpu"
    with pytest.raises(SystemExit):
        script.parse_args(["--out", str(tmp_path / "o")])
    assert "--root" in capsys.readouterr().err
    # Bad data or model names stop it before anything trains, with one line naming the problem.
    assert script.main(["--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "TSDFFine" in capsys.readouterr().err and not (tmp_path / "o").exists()
