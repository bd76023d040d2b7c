"""Named weights (docs/zoo.md): the registry, resolution (shipped, cached, downloaded, put by
hand), its one-line failures, ``torchssc weights``, and ``eval`` / ``predict`` with ``--weights``.

Every entry is made here: a tiny TSDF-only U-Net (``unet3d_prior`` at width 2, untrained) saved
with the checkpoint API, registered once as a shipped file and once behind a ``file://`` URL.
No network: the unreachable URL is a closed local port."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from torchssc.cli import main
from torchssc.config import load_config
from torchssc.engine.builders import build_model
from torchssc.engine.checkpoint import FORMAT_VERSION, save_checkpoint
from torchssc.geometry import LABEL_NUMEL, LABEL_SHAPE
from torchssc.io.depthbin import write_depth_png
from torchssc.io.prepared import PreparedFrame, write_frame, write_split
from torchssc.models import model_inputs
from torchssc.zoo import (
    entry_config,
    entry_inputs,
    find_entry,
    load_registry,
    read_registry,
    resolve_weights,
    sha256_of,
    weights_state,
)
from torchssc.zoo import registry as registry_module

RECIPE = """\
model:
  name: unet3d_prior
  kwargs: {channels: [2, 2, 2], prior_classes: 0}
loss:
  name: class_weighted_ce
data:
  num_workers: 0
train:
  device: cpu
  progress: false
"""
FIGURES = {"sc_iou": 12.5, "ssc_miou": 3.25, "protocol": "torchssc", "split": "3 random test scenes",
           "chosen": "untrained (a test entry)"}


def _checkpoint(path: Path, recipe: Path, seed: int) -> Path:
    cfg = load_config(recipe)
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():  # large random weights: an untrained net whose argmax still varies with the input
        for p in model.parameters():
            p.normal_(0.0, 1.0)
    save_checkpoint(path, {"format_version": FORMAT_VERSION, "model": model.state_dict(), "config": cfg,
                           "epoch": 1, "iteration": 1})
    return path


def _entry(checkpoint: Path, **extra) -> dict:
    return {"recipe": "tiny.yaml", "model": "unet3d_prior", "dataset": "nyu", "figures": dict(FIGURES),
            "size": checkpoint.stat().st_size, "sha256": sha256_of(checkpoint), **extra}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A registry folder with a shipped entry and a URL entry (a ``file://`` URL into a "server"
    folder), plus the files themselves."""
    root = tmp_path_factory.mktemp("zoo")
    reg = root / "registry"
    (reg / "weights").mkdir(parents=True)
    (reg / "tiny.yaml").write_text(RECIPE)
    shipped = _checkpoint(reg / "weights" / "tiny_shipped.pt", reg / "tiny.yaml", seed=0)
    server = root / "server"
    server.mkdir()
    remote = _checkpoint(server / "tiny_url.pt", reg / "tiny.yaml", seed=1)
    entries = {
        "tiny_shipped": _entry(shipped, file="tiny_shipped.pt", description="a shipped test entry"),
        "tiny_url": _entry(remote, url=remote.as_uri()),
        "tiny_offline": _entry(remote, url=(server / "gone.pt").as_uri(), file="tiny_offline.pt"),
        "tiny_unreachable": _entry(remote, url="http://127.0.0.1:9/tiny_unreachable.pt"),
        "tiny_bad_sum": _entry(remote, url=remote.as_uri(), file="tiny_bad_sum.pt", sha256="0" * 64),
    }
    (reg / "weights.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))
    return {"registry": reg / "weights.yaml", "shipped": shipped, "remote": remote, "root": root}


@pytest.fixture
def home(tmp_path, monkeypatch, zoo):
    """A fresh ``$TORCHSSC_HOME``, the test registry as ``$TORCHSSC_WEIGHTS_REGISTRY``, and a
    counter of the URLs opened."""
    monkeypatch.setenv("TORCHSSC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCHSSC_WEIGHTS_REGISTRY", str(zoo["registry"]))
    opened = []
    real = urllib.request.urlopen

    def counting(url, *a, **k):
        opened.append(url)
        return real(url, *a, **k)

    monkeypatch.setattr(urllib.request, "urlopen", counting)
    return {"path": tmp_path / "home", "opened": opened}


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"torchssc {command}: error: ") and err.count("\n") == 1, err
    return err


# ---------------------------------------------------------------------------------------------
def test_registry_reads_entries_and_derives_inputs(zoo):
    reg = read_registry(zoo["registry"])
    assert list(reg) == ["tiny_shipped", "tiny_url", "tiny_offline", "tiny_unreachable", "tiny_bad_sum"]
    shipped, url = reg["tiny_shipped"], reg["tiny_url"]
    assert shipped.shipped and shipped.shipped_path == zoo["shipped"]
    assert not url.shipped and url.file == "tiny_url.pt" and url.url.startswith("file://")
    # Inputs come from the model the recipe builds: prior_classes=0 makes it TSDF-only, unlike
    # the registered default of unet3d_prior.
    model = build_model(entry_config(shipped))
    assert entry_inputs(shipped) == model_inputs("unet3d_prior", model) == ("tsdf",)
    assert model_inputs("unet3d_prior") == ("tsdf", "mapping", "prior")


def test_registry_refuses_bad_entries(tmp_path):
    good = {"recipe": "r", "model": "m", "dataset": "nyu", "figures": dict(FIGURES), "size": 3, "sha256": "a" * 64,
            "file": "x.pt"}
    cases = [({**good, "sha": "a"}, "unknown key 'sha' (did you mean 'sha256'?)"),
             ({k: v for k, v in good.items() if k != "size"}, "missing size"),
             ({**good, "sha256": "xyz"}, "expected 64 hex digits"),
             ({**good, "file": "../x.pt"}, "expected a file name"),
             ({**good, "figures": {**FIGURES, "ssc_miou": 130}}, "expected a percentage"),
             ({**good, "figures": {"sc_iou": 1}}, "'figures' lacks ssc_miou"),
             ({k: v for k, v in good.items() if k != "file"}, "give 'file'")]
    for raw, message in cases:
        path = tmp_path / "reg.yaml"
        path.write_text(yaml.safe_dump({"bad": raw}))
        with pytest.raises(ValueError, match=r"reg.yaml: weights 'bad': ") as info:
            read_registry(path)
        assert message in str(info.value), (message, str(info.value))
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert read_registry(tmp_path / "empty.yaml") == {}
    path.write_text(yaml.safe_dump({"x": good}))
    with pytest.raises(ValueError, match="'x' is defined twice"):
        load_registry([path, path])


def test_entry_recipe_must_match_its_model(zoo, tmp_path):
    raw = yaml.safe_load(zoo["registry"].read_text())["tiny_shipped"]
    (tmp_path / "tiny.yaml").write_text(RECIPE)
    path = tmp_path / "reg.yaml"
    path.write_text(yaml.safe_dump({"wrong": {**raw, "model": "sscnet"}}))
    with pytest.raises(ValueError, match="its recipe 'tiny.yaml' has model.name = 'unet3d_prior', the entry says 'sscnet'"):
        entry_config(read_registry(path)["wrong"])


def test_unknown_name_suggests_the_nearest(zoo):
    reg = read_registry(zoo["registry"])
    with pytest.raises(ValueError, match=r"unknown weights 'tiny_shiped': did you mean tiny_shipped.*torchssc weights"):
        resolve_weights("tiny_shiped", reg)
    with pytest.raises(ValueError, match="the registry has no entries"):
        resolve_weights("anything", {})


def test_shipped_entry_resolves_to_its_file_and_is_checked(zoo, tmp_path):
    reg = read_registry(zoo["registry"])
    assert resolve_weights("tiny_shipped", reg, home=tmp_path) == zoo["shipped"]
    assert weights_state(reg["tiny_shipped"]) == "shipped"
    assert not (tmp_path / "weights").exists()  # nothing cached for a shipped file
    damaged = tmp_path / "registry"
    shutil.copytree(zoo["registry"].parent, damaged)
    data = bytearray((damaged / "weights" / "tiny_shipped.pt").read_bytes())
    data[-20] ^= 0xFF  # same size, another sha256
    (damaged / "weights" / "tiny_shipped.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="shipped file .*tiny_shipped.pt is damaged .*sha256.*reinstall"):
        resolve_weights("tiny_shipped", read_registry(damaged / "weights.yaml"))


def test_url_entry_downloads_once_into_the_cache(zoo, home):
    reg = read_registry(zoo["registry"])
    assert weights_state(reg["tiny_url"]) == "URL, not downloaded"
    path = resolve_weights("tiny_url", reg, progress=False)
    assert path == home["path"] / "weights" / "tiny_url.pt"
    assert path.read_bytes() == zoo["remote"].read_bytes()
    assert home["opened"] == [reg["tiny_url"].url]
    assert weights_state(reg["tiny_url"]) == "URL, cached"
    assert [p.name for p in path.parent.iterdir()] == ["tiny_url.pt"]  # no temporary left
    # The cached file is used: no second download.
    assert resolve_weights("tiny_url", reg, progress=False) == path
    assert len(home["opened"]) == 1


def test_file_put_by_hand_is_used_as_is(zoo, home):
    reg = read_registry(zoo["registry"])
    target = home["path"] / "weights" / "tiny_offline.pt"  # its URL points at nothing
    target.parent.mkdir(parents=True)
    shutil.copyfile(zoo["remote"], target)
    assert resolve_weights("tiny_offline", reg) == target
    assert home["opened"] == []


def test_checksum_mismatch_is_refused_and_the_file_not_used(zoo, home, capsys):
    reg = read_registry(zoo["registry"])
    # Downloaded with the wrong checksum: deleted, nothing left in the cache.
    with pytest.raises(ValueError, match=r"downloaded from file://.*sha256 .*the registry says 000000000000\.\.\.: deleted"):
        resolve_weights("tiny_bad_sum", reg, progress=False)
    assert not any((home["path"] / "weights").iterdir())
    # Put by hand with other bytes: refused, left where it is, and said so.
    target = home["path"] / "weights" / "tiny_url.pt"
    target.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="tiny_url.pt is not the registry's file .*not used.*by hand.*left"):
        resolve_weights("tiny_url", reg)
    assert target.read_bytes() == b"not a checkpoint" and len(home["opened"]) == 1  # the bad download only
    assert main(["predict", "--weights", "tiny_url", "--depth", "d.png"]) == 2
    assert "not the registry's file" in _one_line_error(capsys, "predict")


@pytest.mark.parametrize("name", ["tiny_offline", "tiny_unreachable"])
def test_offline_is_one_line_naming_the_file_and_where_to_put_it(zoo, home, capsys, name):
    reg = read_registry(zoo["registry"])
    target = home["path"] / "weights" / f"{name}.pt"
    with pytest.raises(OSError, match=rf"cannot download .*put the file {name}.pt .*at {target} by hand"):
        resolve_weights(name, reg, progress=False)
    assert not target.exists()
    assert main(["weights", name, "--download", "--no-progress"]) == 2
    err = _one_line_error(capsys, "weights")
    assert f"{name}.pt" in err and str(target) in err and reg[name].sha256 in err


# ---------------------------------------------------------------------------------------------
def test_weights_command_lists_and_describes(zoo, home, capsys, monkeypatch):
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| tiny_")]
    assert len(rows) == 5
    shipped = next(r for r in rows if r.startswith("| tiny_shipped "))
    digest = sha256_of(zoo["shipped"])
    for cell in ("unet3d_prior", "nyu", "| tsdf |", "12.5 / 3.2", "torchssc, 3 random test scenes",
                 "untrained (a test entry)", digest[:12], "| shipped |"):
        assert cell in shipped, (cell, shipped)
    assert "URL, not downloaded" in next(r for r in rows if r.startswith("| tiny_url "))
    assert main(["weights", "tiny_url", "--download", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"sha256: {sha256_of(zoo['remote'])}" in out and "inputs: tsdf" in out
    assert f"ready: {home['path'] / 'weights' / 'tiny_url.pt'}" in out
    assert main(["weights", "tiny_url"]) == 0
    assert "source: URL, cached" in capsys.readouterr().out
    # No entries at all: one line.
    empty = zoo["root"] / "empty.yaml"
    empty.write_text("")
    monkeypatch.setattr(registry_module, "package_registry", lambda: empty)
    monkeypatch.delenv("TORCHSSC_WEIGHTS_REGISTRY")
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no named weights yet") and out.count("\n") == 1


def test_package_registry_entries_are_complete():
    """The shipped registry (empty or not): every entry's recipe builds its model and dataset,
    and every shipped file is there with its size and sha256."""
    for name, entry in read_registry(registry_module.package_registry()).items():
        cfg = entry_config(entry)
        assert (cfg["model"]["name"], cfg["data"]["dataset"]) == (entry.model, entry.dataset)
        assert entry_inputs(entry)
        if entry.shipped:
            assert entry.shipped_path.stat().st_size == entry.size, name
            assert sha256_of(entry.shipped_path) == entry.sha256, name


# ---------------------------------------------------------------------------------------------
def _frames(root: Path, n: int = 3) -> None:
    rng = np.random.default_rng(0)
    ids = [f"{i + 1:04d}" for i in range(n)]
    for fid in ids:
        write_frame(root, fid, PreparedFrame(
            tsdf=rng.uniform(-1, 1, size=LABEL_SHAPE).astype(np.float32),
            label_weight=np.ones(LABEL_SHAPE, np.uint8),
            mapping=rng.integers(0, 307201, size=LABEL_NUMEL),
            label=rng.integers(0, 12, size=LABEL_SHAPE).astype(np.uint8),
            sketch=rng.integers(0, 2, size=LABEL_SHAPE).astype(np.uint8)))
    write_split(root, "test", ids)


def test_eval_with_weights_matches_eval_of_the_file(zoo, home, tmp_path, capsys, monkeypatch):
    _frames(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--weights", "tiny_url", f"data.root={tmp_path / 'data'}", "--no-progress"]) == 0
    assert len(home["opened"]) == 1  # downloaded, then evaluated
    by_name = json.loads((tmp_path / "eval_tiny_url" / "tiny_url_torchssc.json").read_text())
    assert by_name["frames"] == 3 and by_name["checkpoint"] == str(home["path"] / "weights" / "tiny_url.pt")
    # The same file evaluated the ordinary way, with the recipe it was trained with.
    assert main(["eval", str(zoo["registry"].parent / "tiny.yaml"), "--checkpoints", str(zoo["remote"]),
                 f"data.root={tmp_path / 'data'}", "--out", str(tmp_path / "plain"), "--no-progress"]) == 0
    plain = json.loads((tmp_path / "plain" / "tiny_url_torchssc.json").read_text())
    assert by_name["metrics"] == plain["metrics"]
    assert by_name["metrics"]["ssc_miou"] is not None
    capsys.readouterr()
    assert main(["eval", "--weights", "tiny_url", "--checkpoints", "last"]) == 2
    assert "not both" in _one_line_error(capsys, "eval")
    assert main(["eval"]) == 2
    assert "--weights NAME" in _one_line_error(capsys, "eval")


def _level_pose(height: float = 1.18) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = [[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]  # a level camera looking along world +y
    pose[2, 3] = height
    return pose


def test_predict_with_weights_matches_predict_with_the_file(zoo, home, tmp_path, capsys):
    write_depth_png(tmp_path / "depth.png", np.full((480, 640), 2.0, np.float32))  # a wall 2 m ahead
    np.savetxt(tmp_path / "pose.txt", _level_pose())
    common = ["--depth", str(tmp_path / "depth.png"), "--pose", str(tmp_path / "pose.txt"), "--formats", "npy"]
    assert main(["predict", "--weights", "tiny_shipped", "--out", str(tmp_path / "named"), *common]) == 0
    assert main(["predict", "--checkpoint", str(zoo["shipped"]), "--out", str(tmp_path / "file"), *common]) == 0
    named = np.load(tmp_path / "named" / "scene.npy")
    assert named.shape == LABEL_SHAPE
    np.testing.assert_array_equal(named, np.load(tmp_path / "file" / "scene.npy"))
    for argv in (["predict", *common], ["predict", "--weights", "tiny_shipped", "--checkpoint", "x.pt", *common]):
        with pytest.raises(SystemExit) as info:  # argparse: exactly one of the two
            main(argv)
        assert info.value.code == 2
    capsys.readouterr()
    assert main(["predict", "--weights", "tiny_shiped", *common]) == 2
    assert "did you mean tiny_shipped" in _one_line_error(capsys, "predict")


def test_viz_with_weights_draws_the_completion_eval_saves(zoo, home, tmp_path, capsys):
    _frames(tmp_path / "data")
    data = str(tmp_path / "data")
    assert main(["eval", "--weights", "tiny_shipped", f"data.root={data}", "--split", "0002",
                 "--save", str(tmp_path / "saved"), "--out", str(tmp_path / "reports"), "--no-progress"]) == 0
    saved = np.load(tmp_path / "saved" / "results" / "0002.npy")
    assert len(np.unique(saved)) > 1  # not a constant volume: the comparisons below mean something
    from torchssc.zoo.use import model_source, predict_prepared

    cfg, path = model_source(None, "tiny_shipped", [f"data.root={data}"])
    np.testing.assert_array_equal(predict_prepared(cfg, path, "0002"), saved)
    cfg, path = model_source(str(zoo["shipped"]), None, [f"data.root={data}"])  # --checkpoint: its own recipe
    np.testing.assert_array_equal(predict_prepared(cfg, path, "0002"), saved)
    # The command draws that volume beside the frame's ground truth: the same picture as the
    # saved volume drawn the ordinary way.
    common = ["--prepared", data, "--id", "0002", "--formats", "png", "--size", "64x48"]
    assert main(["viz", "--weights", "tiny_shipped", "--out", str(tmp_path / "named"), *common]) == 0
    assert main(["viz", str(tmp_path / "saved" / "results" / "0002.npy"), "--out", str(tmp_path / "plain"), *common]) == 0
    named, plain = sorted((tmp_path / "named").iterdir()), sorted((tmp_path / "plain").iterdir())
    assert [p.name for p in named] == [p.name for p in plain] and named
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(named, plain))
    capsys.readouterr()
    assert main(["viz", "--weights", "tiny_shipped", "--out", str(tmp_path / "x")]) == 2
    assert "give --prepared ROOT --id ID" in _one_line_error(capsys, "viz")


def test_a_download_cut_short_leaves_nothing(zoo, home, monkeypatch):
    class Cut:
        """A response that gives 1 kB, then loses the connection."""

        def __init__(self):
            self.sent = False

        def read(self, n):
            if self.sent:
                raise ConnectionResetError(104, "Connection reset by peer")
            self.sent = True
            return b"x" * 1024

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Cut())
    reg = read_registry(zoo["registry"])
    target = home["path"] / "weights" / "tiny_url.pt"
    with pytest.raises(OSError, match=rf"interrupted: Connection reset by peer.*put the file tiny_url.pt .*at {target}"):
        resolve_weights("tiny_url", reg, progress=False)
    assert list(target.parent.iterdir()) == []  # no partial file, no temporary
