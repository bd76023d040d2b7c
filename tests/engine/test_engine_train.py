"""End-to-end training tests on CPU (gloo): DDP == single process, exact resume, NaN stop, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import _engine_tiny as tiny
from torchssc.cli import main as cli_main
from torchssc.config import load_config
from torchssc.engine import checkpoint as ckpt_mod
from torchssc.engine.checkpoint import epoch_path, list_checkpoints, load_checkpoint
from torchssc.engine.evaluate import VAL_KEYS, evaluate_checkpoints
from torchssc.engine.logs import json_ready
from torchssc.engine.train import NonFiniteLossError, main
from torchssc.io.prepared import write_split


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    tiny.make_frames(root, n=5, seed=3)
    return root


def _cfg(tmp_path: Path, data_root: Path, name: str, overrides=(), **train) -> dict:
    recipe = tiny.write_recipe(tmp_path / f"{name}.yaml", data_root, tmp_path / "runs", **train)
    return load_config(recipe, [f"run.name={name}", *overrides])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path, data_root, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    # same global batch (4): 1 process x 4 frames vs 2 processes x 2 frames, BatchNorm synced
    single = _cfg(tmp_path, data_root, "single", global_batch=4, epochs=1, iters_per_epoch=3)
    main(single)
    double = _cfg(tmp_path, data_root, "double", global_batch=4, epochs=1, iters_per_epoch=3)
    mp.spawn(tiny.ddp_worker, args=(2, tiny.free_port(), double), nprocs=2, join=True)

    a = _weights(tmp_path / "runs" / "single" / "checkpoints" / "epoch_0001.pt")
    b = _weights(tmp_path / "runs" / "double" / "checkpoints" / "epoch_0001.pt")
    assert a.keys() == b.keys()
    for key in a:  # weights AND BatchNorm running statistics
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6, msg=f"{key} differs")
    # the check has teeth: training moved the weights well beyond the tolerance
    fresh = tiny.TinySSC(width=4).state_dict()
    assert (a["head.weight"] - fresh["head.weight"]).abs().max() > 1e-3 or (a["bn.running_mean"] - fresh["bn.running_mean"]).abs().max() > 1e-3
    ck = load_checkpoint(tmp_path / "runs" / "double" / "checkpoints" / "epoch_0001.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    # each rank's RNG state was recorded separately (seeded per rank)
    assert not torch.equal(ck["rng"][0]["torch"], ck["rng"][1]["torch"])


def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path, data_root):
    # dropout makes the model draw from the global RNG: resuming must restore the streams too
    over = ["model.kwargs.dropout=0.3", "data.num_workers=1"]  # workers: persistent, re-positioned per epoch
    full = main(_cfg(tmp_path, data_root, "full", over, epochs=2, iters_per_epoch=2))
    part = _cfg(tmp_path, data_root, "part", over, epochs=2, iters_per_epoch=2, max_iters=3)
    first = main(part)
    assert first["iteration"] == 3 and first["checkpoint"].name == "last.pt"
    assert sorted(list_checkpoints(first["run_dir"])) == [1]
    # a fresh start in a folder with checkpoints is refused
    rest = _cfg(tmp_path, data_root, "part", over, epochs=2, iters_per_epoch=2)
    with pytest.raises(ValueError, match="--resume"):
        main(rest)
    second = main(rest, resume=True)
    assert second["iteration"] == 4
    a, b = _weights(full["checkpoint"]), _weights(second["checkpoint"])
    for key in a:
        assert torch.equal(a[key], b[key]), key
    full_ck, resumed_ck = load_checkpoint(full["checkpoint"]), load_checkpoint(second["checkpoint"])
    assert full_ck["scheduler"]["last_epoch"] == resumed_ck["scheduler"]["last_epoch"] == 4
    for s_a, s_b in zip(full_ck["optimizer"]["state"].values(), resumed_ck["optimizer"]["state"].values()):
        assert torch.equal(s_a["momentum_buffer"], s_b["momentum_buffer"])
    # the log has one row per epoch segment, none duplicated after the resume
    rows = [json.loads(line) for line in (second["run_dir"] / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [2, 3, 4]


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root, "nan", ["loss.kwargs.nan_at=3"], epochs=3, iters_per_epoch=2)
    with pytest.raises(NonFiniteLossError, match=r"iteration 3 \(epoch 2\): term 'semantic'") as info:
        main(cfg)
    assert "epoch_0001.pt" in str(info.value)
    ckpts = list_checkpoints(tmp_path / "runs" / "nan")
    assert sorted(ckpts) == [1]
    good = load_checkpoint(ckpts[1])
    assert good["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())
    last = tmp_path / "runs" / "nan" / "checkpoints" / "last.pt"
    assert last.read_bytes() == ckpts[1].read_bytes()


def test_failed_checkpoint_write_keeps_previous(tmp_path, data_root, monkeypatch):
    cfg = _cfg(tmp_path, data_root, "crash", epochs=2, iters_per_epoch=2)
    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the epoch-2 checkpoint: write half a file, then die
            Path(f).write_bytes(b"partial")
            raise OSError("disk full (simulated)")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt_mod.torch, "save", flaky_save)
    with pytest.raises(OSError, match="simulated"):
        main(cfg)
    folder = tmp_path / "runs" / "crash" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_0001.pt", "last.pt"]  # no temp files left
    assert load_checkpoint(folder / "last.pt")["iteration"] == 2
    assert load_checkpoint(folder / "epoch_0001.pt")["epoch"] == 1


def test_cli_train_writes_run_folder(tmp_path, data_root, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = tiny.write_recipe(tmp_path / "cli.yaml", data_root, Path("runs"))
    code = cli_main(["train", str(recipe), "run.name=cli", "train.epochs=2", "train.iters_per_epoch=2", "data.val_fraction=0.4", "train.eval_every=1"])
    assert code == 0
    run = tmp_path / "runs" / "cli"
    saved = load_config(run / "config.yaml")
    assert saved["train"]["epochs"] == 2 and saved["run"]["name"] == "cli" and saved["data"]["val_fraction"] == 0.4
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]["train"]) == {"total", "semantic", "penalty"}
    assert rows[0]["val"]["semantic_ce"] > 0
    assert rows[0]["val"]["protocol"] == "torchssc" and 0 <= rows[0]["val"]["ssc_miou"] <= 1
    assert sorted(list_checkpoints(run)) == [1, 2]
    from torchssc.engine.builders import split_train_val

    held_out = (run / "val_ids.txt").read_text().split()  # the validation scenes, listed
    assert held_out == split_train_val(saved)[1] and len(held_out) > 0
    ck = load_checkpoint(run / "checkpoints" / "epoch_0002.pt")
    assert ck["config"] == saved and ck["epoch"] == 2 and ck["iteration"] == 4
    for key in ("model", "optimizer", "scheduler", "scaler", "rng", "format_version"):
        assert key in ck
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    # --resume-from a given checkpoint redoes epoch 2 from the end of epoch 1, same result
    epoch2 = load_checkpoint(run / "checkpoints" / "epoch_0002.pt")["model"]
    code = cli_main(["train", str(run / "config.yaml"), "--resume-from", str(run / "checkpoints" / "epoch_0001.pt")])
    assert code == 0
    redone = load_checkpoint(run / "checkpoints" / "epoch_0002.pt")["model"]
    assert all(torch.equal(epoch2[k], redone[k]) for k in epoch2)
    assert [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]
    # a NaN through the CLI is a clean non-zero exit
    assert cli_main(["train", str(recipe), "run.name=cli_nan", "loss.kwargs.nan_at=1"]) == 1
    # unknown keys are refused before anything runs: one line, exit status 2
    capsys.readouterr()
    assert cli_main(["train", str(recipe), "train.epoch=3"]) == 2
    assert capsys.readouterr().err == ("torchssc train: error: override 'train.epoch=3': unknown config key "
                                         "'train.epoch'; did you mean 'train.epochs'?\n")


@pytest.mark.parametrize("protocol", ["torchssc", "all"])
def test_validation_equals_eval_on_the_same_checkpoint(tmp_path, data_root, protocol):
    write_split(data_root, "val", ["0002", "0004", "0005"])
    # the model's inference noise depends on model.seed and on the global RNG: only the same
    # seeding gives the same numbers
    over = ["data.val_split=val", "model.kwargs.noise=0.5", f"eval.protocol={protocol}", "eval.seed=7",
            "eval.batch_size=2"]
    cfg = _cfg(tmp_path, data_root, f"val_{protocol}", over, epochs=2, iters_per_epoch=2, eval_every=1)
    run = main(cfg)["run_dir"]
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for epoch, row in zip((1, 2), rows):
        (record,) = evaluate_checkpoints(cfg, [epoch_path(run, epoch)], protocols=[protocol], split="val",
                                         progress=False)
        scored = json_ready(record["metrics"])
        assert {k: row["val"][k] for k in VAL_KEYS} == {k: scored[k] for k in VAL_KEYS}
        assert row["val"]["protocol"] == protocol and row["val"]["semantic_ce"] > 0
    assert rows[0]["val"]["ssc_iou"] != rows[1]["val"]["ssc_iou"]  # the weights changed
    # the comparison has teeth: another eval seed gives other numbers
    reseeded = {**cfg, "eval": {**cfg["eval"], "seed": 8}}
    (other,) = evaluate_checkpoints(reseeded, [epoch_path(run, 2)], protocols=[protocol], split="val", progress=False)
    assert json_ready(other["metrics"])["ssc_iou"] != rows[1]["val"]["ssc_iou"]


def test_sscnet_protocol_without_visibility_says_it_needs_one(tmp_path, data_root):
    # validation: refused before any training step, instead of scoring another protocol
    cfg = _cfg(tmp_path, data_root, "vis", ["data.val_fraction=0.4", "eval.protocol=sscnet"], eval_every=1)
    with pytest.raises(FileNotFoundError, match="protocol 'sscnet' needs input 'visibility', which .* lacks"):
        main(cfg)
    assert list_checkpoints(tmp_path / "runs" / "vis") == {}
    # evaluation: the same rule; torchssc and all need no visibility
    cfg = _cfg(tmp_path, data_root, "vis_ok", epochs=1, iters_per_epoch=1)
    checkpoint = main(cfg)["checkpoint"]
    with pytest.raises(FileNotFoundError, match="protocol 'sscnet' needs input 'visibility'.*'torchssc' and 'all'"):
        evaluate_checkpoints(cfg, [checkpoint], protocols=["torchssc", "sscnet"], split="train", progress=False)
    records = evaluate_checkpoints(cfg, [checkpoint], protocols=["torchssc", "all"], split="train", progress=False)
    assert [r["protocol"] for r in records] == ["torchssc", "all"]
    assert all(r["metrics"]["scenes"] == 5 for r in records)
