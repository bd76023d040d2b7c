"""Tests of torchssc.engine.evaluate and the ``torchssc eval`` command: checkpoint selection,
protocol lists, sharding, and end to end on a tiny run folder (tiny model registered here, tiny
prepared frames, checkpoints written through the checkpoint API), single and 2-process."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import yaml

from torchssc.cli import main as cli_main
from torchssc.config import load_config, save_config
from torchssc.engine.checkpoint import FORMAT_VERSION, epoch_path, last_path, save_checkpoint
from torchssc.engine.evaluate import (
    evaluate_checkpoints,
    parse_protocols,
    run_checkpoints,
    select_checkpoints,
)
from torchssc.engine.sampler import shard_indices
from torchssc.geometry import LABEL_NUMEL, LABEL_SHAPE
from torchssc.io.prepared import PreparedFrame, read_frame, write_frame, write_split
from torchssc.metrics import PROTOCOLS, SSCMetrics
from torchssc.models.registry import MODELS

MODEL = "eval_test_tiny"
IDS = ["0001", "0004", "0010"]


class TinyEvalModel(nn.Module):
    """Pointwise: tsdf -> 12 semantic logits and 2 sketch logits, plus noise from the global RNG
    (so that the evaluator's seeding is what makes it repeatable)."""

    def __init__(self, noise: float = 0.3) -> None:
        super().__init__()
        self.head = nn.Conv3d(1, 12, 1)
        self.sketch = nn.Conv3d(1, 2, 1)
        self.noise = noise

    def forward(self, batch: dict) -> dict:
        x = batch["tsdf"]
        semantic = self.head(x)
        semantic = semantic + self.noise * torch.randn(semantic.shape, device=x.device)
        raw = self.sketch(x)
        return {"semantic": semantic, "sketch_raw": raw, "sketch_prior": -raw}


def _register() -> None:
    if MODEL not in MODELS.names():
        MODELS.register(MODEL)(lambda *, noise=0.3: TinyEvalModel(noise=noise))


_register()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
def test_select_checkpoints(tmp_path):
    avail = {e: tmp_path / f"epoch_{e:04d}.pt" for e in (1, 2, 5, 7, 9)}
    last = tmp_path / "last.pt"
    assert select_checkpoints("2-7", avail, last) == [avail[2], avail[5], avail[7]]
    assert select_checkpoints("5", avail, last) == [avail[5]]
    assert select_checkpoints("last", avail, last) == [last]
    assert select_checkpoints("all", avail, last) == [avail[e] for e in (1, 2, 5, 7, 9)]
    assert select_checkpoints("9, 1-2,9", avail, last) == [avail[9], avail[1], avail[2]]
    with pytest.raises(FileNotFoundError, match="epoch 3"):
        select_checkpoints("3", avail, last)
    with pytest.raises(FileNotFoundError, match="3..4"):
        select_checkpoints("3-4", avail, last)
    with pytest.raises(ValueError, match="after its end"):
        select_checkpoints("7-2", avail, last)
    with pytest.raises(ValueError, match="expected A-B"):
        select_checkpoints("latest", avail, last)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        select_checkpoints("last", {}, None)
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        select_checkpoints(str(tmp_path / "nope.pt"), avail, last)
    path = tmp_path / "somewhere" / "mine.pt"
    path.parent.mkdir()
    path.write_bytes(b"x")
    assert select_checkpoints(str(path), {}, None) == [path]


def test_run_checkpoints_reads_the_run_folder(tmp_path):
    for e in (3, 4):
        save_checkpoint(epoch_path(tmp_path, e), {"epoch": e})
    assert run_checkpoints("all", tmp_path) == [epoch_path(tmp_path, 3), epoch_path(tmp_path, 4)]
    assert run_checkpoints("last", tmp_path) == [epoch_path(tmp_path, 4)]  # no last.pt: highest epoch
    save_checkpoint(epoch_path(tmp_path, 4), {"epoch": 4}, also_last=True)
    assert run_checkpoints("last", tmp_path) == [last_path(tmp_path)]


def test_parse_protocols():
    assert parse_protocols("torchssc") == ["torchssc"]
    assert parse_protocols("all") == ["all"]  # the MonoScene protocol, not "every protocol"
    assert parse_protocols("every") == list(PROTOCOLS)
    assert parse_protocols("all, sscnet,all") == ["all", "sscnet"]
    with pytest.raises(ValueError, match="every"):
        parse_protocols("monoscene")


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_cover_every_frame_once(world):
    for n in range(0, 12):
        shards = [shard_indices(n, r, world) for r in range(world)]
        flat = [i for s in shards for i in s]
        assert sorted(flat) == list(range(n))  # covers everything, no duplicates
        assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


# --------------------------------------------------------------------------------------------
# A tiny run folder.
def _write_frames(root: Path) -> None:
    rng = np.random.default_rng(0)
    for k, frame_id in enumerate(IDS):
        label = rng.integers(0, 12, LABEL_SHAPE).astype(np.uint8)
        label[rng.random(LABEL_SHAPE) < 0.5] = 0
        label[:, :, :3] = 255
        tsdf = rng.uniform(-1, 1, LABEL_SHAPE).astype(np.float32)
        weight = (rng.random(LABEL_SHAPE) < 0.6).astype(np.uint8)
        mapping = rng.integers(0, 307200, LABEL_NUMEL)
        mapping[rng.random(LABEL_NUMEL) < 0.7] = 307200
        vis = rng.integers(0, 6, LABEL_SHAPE).astype(np.uint8)
        sketch = (rng.random(LABEL_SHAPE) < 0.1).astype(np.uint8)
        write_frame(
            root,
            frame_id,
            PreparedFrame(tsdf=tsdf, label_weight=weight, mapping=mapping, label=label, sketch=sketch, visibility=vis),
        )
    write_split(root, "test", IDS)


def _make_run(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    _write_frames(data)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(data), "num_workers": 0},
                "model": {"name": MODEL, "kwargs": {}},
                "train": {"device": "cpu"},
                "eval": {"seed": 3},
                "run": {"dir": str(tmp_path / "runs"), "name": "tiny"},
            }
        )
    )
    cfg = load_config(recipe)
    run = tmp_path / "runs" / "tiny"
    save_config(cfg, run / "config.yaml")
    torch.manual_seed(0)
    for epoch in (1, 2, 3):
        model = TinyEvalModel()
        state = {
            "format_version": FORMAT_VERSION,
            "model": model.state_dict(),
            "config": cfg,
            "epoch": epoch,
            "iteration": 10 * epoch,
        }
        save_checkpoint(epoch_path(run, epoch), state, also_last=epoch == 3)
    return run


def _reference(run: Path, epoch: int, seed: int) -> tuple[dict, dict]:
    """Per-frame predictions recomputed by hand, and every protocol's metrics from them."""
    from torchssc.engine.evaluate import frame_seed

    state = torch.load(epoch_path(run, epoch), weights_only=True)
    model = TinyEvalModel()
    model.load_state_dict(state["model"])
    model.eval()
    preds, sketches = {}, {}
    metrics = {p: SSCMetrics(p) for p in PROTOCOLS}
    for index, frame_id in enumerate(IDS):
        f = read_frame(run.parent.parent / "data", frame_id, visibility=True)
        torch.manual_seed(frame_seed(seed, index))
        with torch.no_grad():
            out = model({"tsdf": torch.from_numpy(f.tsdf)[None, None]})
        preds[frame_id] = out["semantic"].argmax(1)[0].numpy().astype(np.uint8)
        sketches[frame_id] = out["sketch_prior"].argmax(1)[0].numpy().astype(np.uint8)
        for m in metrics.values():
            m.update(
                preds[frame_id][None], f.label[None], label_weight=f.label_weight[None],
                mapping=f.mapping[None], visibility=f.visibility[None],
            )
    return {"pred": preds, "sketch": sketches}, {p: m.compute() for p, m in metrics.items()}


def _same_metrics(json_metrics: dict, computed: dict) -> None:
    for key in ("sc_precision", "sc_recall", "sc_iou", "ssc_miou"):
        a, b = json_metrics[key], computed[key]
        assert (a is None and math.isnan(b)) or a == pytest.approx(b, rel=1e-12), key
    assert json_metrics["confusion"] == computed["confusion"]
    assert json_metrics["scenes"] == len(IDS)


def test_eval_command_end_to_end(tmp_path, capsys):
    run = _make_run(tmp_path)
    save = tmp_path / "saved"
    rc = cli_main(["eval", str(run), "--checkpoints", "2-3", "--protocol", "every", "--save", str(save), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    for protocol in PROTOCOLS:
        assert f"protocol `{protocol}`" in printed
    for epoch in (2, 3):
        got, want = _reference(run, epoch, seed=3)
        for protocol in PROTOCOLS:
            stem = run / "eval" / f"epoch_{epoch:04d}_{protocol}"
            record = json.loads(stem.with_suffix(".json").read_text())
            assert record["protocol"] == protocol and record["metrics"]["protocol"] == protocol
            assert record["epoch"] == epoch and record["frames"] == len(IDS) and record["split"] == "test"
            _same_metrics(record["metrics"], want[protocol])
            md = stem.with_suffix(".md").read_text()
            assert f"`{protocol}`" in md and f"epoch_{epoch:04d}" in md
        # two checkpoints: predictions saved per checkpoint
        for frame_id in IDS:
            pred = np.load(save / f"epoch_{epoch:04d}" / "results" / f"{frame_id}.npy")
            sketch = np.load(save / f"epoch_{epoch:04d}" / "results_sketch" / f"{frame_id}.npy")
            assert pred.dtype == np.uint8 and pred.shape == LABEL_SHAPE
            np.testing.assert_array_equal(pred, got["pred"][frame_id])
            np.testing.assert_array_equal(sketch, got["sketch"][frame_id])
    # epochs 2 and 3 have different weights: different results
    a = json.loads((run / "eval" / "epoch_0002_all.json").read_text())["metrics"]["confusion"]
    b = json.loads((run / "eval" / "epoch_0003_all.json").read_text())["metrics"]["confusion"]
    assert a != b


def test_eval_from_recipe_with_checkpoint_path_and_single_protocol(tmp_path):
    run = _make_run(tmp_path)
    out = tmp_path / "reports"
    save = tmp_path / "one"
    ckpt = epoch_path(run, 1)
    rc = cli_main([
        "eval", str(tmp_path / "recipe.yaml"), "--checkpoints", str(ckpt),
        "--protocol", "all", "--out", str(out), "--save", str(save), "--no-progress", "eval.seed=5",
    ])  # overrides may follow the options
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["epoch_0001_all.json", "epoch_0001_all.md"]
    _, want = _reference(run, 1, seed=5)
    record = json.loads((out / "epoch_0001_all.json").read_text())
    assert record["seed"] == 5
    _same_metrics(record["metrics"], want["all"])
    assert sorted(p.name for p in (save / "results").iterdir()) == [f"{i}.npy" for i in IDS]


def _eval_worker(rank: int, world: int, port: int, run: str, out: str) -> None:
    _register()
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    cfg = load_config(Path(run) / "config.yaml")
    records = evaluate_checkpoints(
        cfg, [epoch_path(run, 2)], protocols=list(PROTOCOLS), out_dir=None,
        save_dir=Path(out) / "saved", progress=False,
    )
    torch.save([r["metrics"] for r in records], Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_process_eval_equals_single_process(tmp_path):
    run = _make_run(tmp_path)
    mp.spawn(_eval_worker, args=(2, _free_port(), str(run), str(tmp_path)), nprocs=2, join=True)
    cfg = load_config(run / "config.yaml")
    single = evaluate_checkpoints(cfg, [epoch_path(run, 2)], protocols=list(PROTOCOLS), progress=False)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for g, w in zip(got, single):
            w = w["metrics"]
            assert g["protocol"] == w["protocol"]
            # every frame counted exactly once over the two ranks
            assert g["scenes"] == w["scenes"] == len(IDS)
            assert g["confusion"] == w["confusion"] and g["ssc_voxels"] == w["ssc_voxels"]
            assert g["sc_iou"] == pytest.approx(w["sc_iou"], rel=1e-12)
            assert g["sc_precision"] == pytest.approx(w["sc_precision"], rel=1e-12)
    # every frame predicted by one of the ranks
    assert sorted(p.name for p in (tmp_path / "saved" / "results").iterdir()) == [f"{i}.npy" for i in IDS]


def test_best_checkpoint_is_chosen_on_validation(tmp_path):
    import json

    from torchssc.engine.evaluate import best_checkpoint, run_checkpoints

    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    for epoch in (1, 2, 3):
        (folder / "checkpoints" / f"epoch_{epoch:04d}.pt").write_bytes(b"x")
    rows = [{"epoch": 1, "val": {"ssc_miou": 0.30}}, {"epoch": 2, "val": {"ssc_miou": 0.41}},
            {"epoch": 3, "val": {"ssc_miou": 0.39}}, {"epoch": 4, "val": {"ssc_miou": 0.99}}]  # 4: no file
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_checkpoints("best", folder) == [folder / "checkpoints" / "epoch_0002.pt"]
    assert run_checkpoints("best,3", folder)[1].name == "epoch_0003.pt"
    (folder / "log.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")  # no validation recorded
    with pytest.raises(FileNotFoundError, match="no validated epoch"):
        best_checkpoint(folder, {1: folder / "checkpoints" / "epoch_0001.pt"})
