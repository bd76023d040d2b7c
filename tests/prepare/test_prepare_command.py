"""`torchssc prepare` end to end on the real NYU sample frame, plus RGB sources and errors.

The raw folders are built in tmp_path from copies of the sample's .bin/.png made at test time
(the sample itself is read in place, never copied into the repository).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from torchssc.cli import main
from torchssc.data import SSCDataset
from torchssc.geometry import LABEL_NUMEL, LABEL_SHAPE, RELEASE_INTRINSICS, Intrinsics
from torchssc.io.prepared import PreparedFrame, frame_paths, read_frame, read_rgb, read_split
from torchssc.prepare.runner import find_frames, infer_split, prepare_split

H, W = RELEASE_INTRINSICS.height, RELEASE_INTRINSICS.width
FRAME_FILES = ("tsdf", "mapping", "label", "sketch", "meta", "depth", "visibility")


def _copy_sample(sample: Path, raw: Path, frame_id: str) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sample / "NYU0001_0000.bin", raw / f"NYU{frame_id}_0000.bin")
    shutil.copyfile(sample / "NYU0001_0000.png", raw / f"NYU{frame_id}_0000.png")
    return raw / f"NYU{frame_id}_0000.bin"


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3)).astype(np.uint8)


def _cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["prepare", *map(str, argv), "--no-progress"])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def nyutrain(tmp_path_factory, nyu_sample):
    """Raw NYUtrain/ with two good frames (0001 with RGB beside it, 0002 without) and two bad
    ones (0003: truncated .bin, 0004: corrupt depth .png), prepared with 1 and with 2 workers."""
    base = tmp_path_factory.mktemp("prepare")
    raw = base / "NYUtrain"
    _copy_sample(nyu_sample, raw, "0001")
    Image.fromarray(_rgb(1)).save(raw / "NYU0001_colors.png")
    _copy_sample(nyu_sample, raw, "0002")
    bad_bin = _copy_sample(nyu_sample, raw, "0003")
    bad_bin.write_bytes(bad_bin.read_bytes()[: 76 + 8 * 100])
    _copy_sample(nyu_sample, raw, "0004")
    (raw / "NYU0004_0000.png").write_bytes(b"this is not a png")
    runs = {n: _cli("--raw", raw, "--out", base / f"out{n}", "--workers", n) for n in (1, 2)}
    return types.SimpleNamespace(raw=raw, base=base, out1=base / "out1", out2=base / "out2", runs=runs)


def test_good_frames_written_and_listed(nyutrain):
    out = nyutrain.out1
    for frame_id in ("0001", "0002"):
        paths = frame_paths(out, frame_id)
        for key in FRAME_FILES:
            assert paths[key].is_file(), paths[key]
    np.testing.assert_array_equal(read_rgb(frame_paths(out, "0001")["rgb"]), _rgb(1))
    assert not frame_paths(out, "0002")["rgb"].exists()  # no RGB: prepared without it
    for frame_id in ("0003", "0004"):
        assert not frame_paths(out, frame_id)["sketch"].exists()
    assert (out / "train.txt").read_text() == "0001\n0002\n"
    frame = read_frame(out, "0001")
    np.testing.assert_allclose(frame.origin, [-1.545918, 0.8907361, -0.05], atol=1e-6)
    np.testing.assert_allclose(frame.intrinsics, RELEASE_INTRINSICS.as_array())


def test_bad_frames_reported_by_name_with_reason(nyutrain):
    for n, (rc, out, err) in nyutrain.runs.items():
        assert rc == 1, n
        assert "train: 2 prepared, 0 skipped, 2 failed (0003, 0004); 2 frames listed" in out
        line3 = next(line for line in err.splitlines() if line.startswith("FAILED NYU0003_0000.bin: "))
        assert str(nyutrain.raw / "NYU0003_0000.bin") in line3 and "RLE runs sum to" in line3
        line4 = next(line for line in err.splitlines() if line.startswith("FAILED NYU0004_0000.bin: "))
        assert str(nyutrain.raw / "NYU0004_0000.png") in line4
        assert err.count("FAILED") == 2
        assert "NYU0001" not in err and "NYU0002" not in err


def _contents(path: Path):
    """A file's content, decoded where the bytes may legitimately differ (zip timestamps)."""
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: data[k] for k in data.keys()}
    if path.suffix == ".png":
        with Image.open(path) as img:
            return img.mode, np.array(img)
    return path.read_bytes()


def test_two_workers_give_identical_files(nyutrain):
    files1 = sorted(p.relative_to(nyutrain.out1) for p in nyutrain.out1.rglob("*") if p.is_file())
    files2 = sorted(p.relative_to(nyutrain.out2) for p in nyutrain.out2.rglob("*") if p.is_file())
    assert files1 == files2
    assert len(files1) >= 2 * len(FRAME_FILES) + 2  # two frames, one RGB, the split list
    for rel in files1:
        a, b = _contents(nyutrain.out1 / rel), _contents(nyutrain.out2 / rel)
        if isinstance(a, dict):
            assert a.keys() == b.keys(), rel
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=str(rel))
        elif isinstance(a, tuple):
            assert a[0] == b[0], rel
            np.testing.assert_array_equal(a[1], b[1], err_msg=str(rel))
        else:
            assert a == b, rel


def test_rerun_skips_resumes_and_merges_split_list(nyutrain, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(nyutrain.out1, out)
    (out / "train.txt").write_text("0003\n0100\n")  # 0100 from elsewhere; 0003 is broken here
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.np*")}
    rc, stdout, _ = _cli("--raw", nyutrain.raw, "--out", out)
    assert rc == 1
    assert "train: 0 prepared, 2 skipped, 2 failed (0003, 0004); 3 frames listed" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.np*")} == stamp  # nothing rewritten
    assert read_split(out, "train") == ["0001", "0002", "0100"]
    # An interrupted frame (no sketch yet: it is written last) is prepared again.
    frame_paths(out, "0002")["sketch"].unlink()
    (out / "train.txt").write_text("")
    rc, stdout, _ = _cli("--raw", nyutrain.raw, "--out", out, "--split", "train")
    assert "train: 1 prepared, 1 skipped, 2 failed (0003, 0004); 2 frames listed" in stdout
    assert frame_paths(out, "0002")["sketch"].is_file()
    assert frame_paths(out, "0001")["tsdf"].stat().st_mtime_ns == stamp[frame_paths(out, "0001")["tsdf"]]


def test_rgb_dir_intrinsics_and_test_split_inference(tmp_path, nyu_sample):
    raw = tmp_path / "NYUtest"
    _copy_sample(nyu_sample, raw, "0001")
    _copy_sample(nyu_sample, raw, "0002")
    Image.fromarray(_rgb(5)).save(raw / "NYU0002_colors.png")  # ignored: --rgb-dir wins
    rgb_dir = tmp_path / "rgb"
    rgb_dir.mkdir()
    Image.fromarray(_rgb(7)).save(rgb_dir / "NYU0001_colors.png")
    rc, stdout, stderr = _cli("--raw", raw, "--out", tmp_path / "out", "--rgb-dir", rgb_dir,
                              "--intrinsics", "520,521,320,240")
    assert rc == 1
    assert "test: 1 prepared, 0 skipped, 1 failed (0002); 1 frames listed" in stdout
    assert "FAILED NYU0002_0000.bin: FileNotFoundError" in stderr
    assert str(rgb_dir / "NYU0002_colors.png") in stderr
    assert read_split(tmp_path / "out", "test") == ["0001"]
    assert not (tmp_path / "out" / "train.txt").exists()
    np.testing.assert_array_equal(read_rgb(frame_paths(tmp_path / "out", "0001")["rgb"]), _rgb(7))
    np.testing.assert_allclose(read_frame(tmp_path / "out", "0001").intrinsics, [520, 521, 320, 240, 640, 480])


def _write_mat(path: Path, images: list[np.ndarray]) -> None:
    """MATLAB v7.3 layout: h5py sees (N, 3, W, H) (see tests/io/test_io_nyu_mat.py)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.stack([img.transpose(2, 1, 0) for img in images]))


def test_rgb_from_mat_with_fine_tsdf(tmp_path, nyu_sample):
    raw = tmp_path / "raw"
    _copy_sample(nyu_sample, raw, "0002")
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    _write_mat(mat, [_rgb(11), _rgb(12), _rgb(13)])
    rc, stdout, stderr = _cli("--raw", raw, "--out", tmp_path / "out", "--rgb-mat", mat, "--fine")
    assert rc == 0, stderr
    assert "train: 1 prepared, 0 skipped, 0 failed; 1 frames listed" in stdout
    paths = frame_paths(tmp_path / "out", "0002")
    np.testing.assert_array_equal(read_rgb(paths["rgb"]), _rgb(12))  # image 2 (1-based) = frame 0002
    fine = read_frame(tmp_path / "out", "0002", fine=True).tsdf_fine
    assert fine.shape == (240, 144, 240)
    # SSCNet's flipped TSDF: surface 1, free/unknown 0.001, occluded -0.001, |v| never below 0.001.
    assert np.abs(fine).max() <= 1.0 and np.abs(fine).min() >= 0.00099
    assert (fine == 1.0).any()
    assert np.isclose(fine, 0.001, atol=1e-5).any() and np.isclose(fine, -0.001, atol=1e-5).any()
    # Without --fine the same output counts as complete and is skipped.
    rc, stdout, _ = _cli("--raw", raw, "--out", tmp_path / "out", "--rgb-mat", mat)
    assert "0 prepared, 1 skipped" in stdout


def test_dataset_reads_the_prepared_sample(nyutrain):
    ds = SSCDataset(nyutrain.out1, "train")
    assert ds.ids == ["0001", "0002"]
    assert "rgb" not in ds.keys  # nothing declared RGB: not loaded (0002 has none anyway)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["tsdf"].shape == (2, 1, *LABEL_SHAPE) and batch["mapping"].shape == (2, LABEL_NUMEL)
    assert torch.equal(batch["label"][0], batch["label"][1])  # same source frame
    label = batch["label"][0]
    assert set(label.unique().tolist()) <= set(range(12)) | {255}
    assert (label > 0).logical_and(label < 255).any()
    mapping = batch["mapping"][0]
    assert mapping.min() >= 0 and mapping.max() == H * W and (mapping < H * W).any()
    assert batch["tsdf"].abs().max() <= 1.0
    assert set(batch["label_weight"].unique().tolist()) <= {0.0, 1.0}
    assert set(batch["sketch_gt"].unique().tolist()) == {0, 1}
    assert "rgb" in SSCDataset(nyutrain.out1, ["0001"], keys=["rgb"])[0]


# ------------------------------------------------------------------------------------------
# Fast checks that need no real preparation
def test_find_frames_and_infer_split(tmp_path):
    for name in ("NYU0007_0000.bin", "NYU0012_0000.bin", "NYU0001_0000_constant.bin", "NYU12_0000.bin",
                 "NYU0003_0001.bin", "NYU0009_0000.png"):
        (tmp_path / name).write_bytes(b"")
    assert {k: v.name for k, v in find_frames(tmp_path).items()} == {
        "0007": "NYU0007_0000.bin", "0012": "NYU0012_0000.bin"}
    assert list(find_frames(tmp_path)) == ["0007", "0012"]
    assert infer_split(tmp_path / "NYUtest") == "test"
    assert infer_split(tmp_path / "NYUCADTest") == "test"
    assert infer_split(tmp_path / "NYUtrain") == "train"
    assert infer_split(tmp_path / "my_rooms") == "train"


def test_argument_errors(tmp_path):
    rc, _, err = _cli("--raw", tmp_path, "--out", tmp_path / "out")
    assert rc == 2 and "no NYU%04d_0000.bin frames found" in err
    rc, _, err = _cli("--raw", tmp_path / "absent", "--out", tmp_path / "out")
    assert rc == 2 and "absent: raw folder does not exist" in err
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "NYU0001_0000.bin").write_bytes(b"")
    (tmp_path / "v5.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(128))
    rc, _, err = _cli("--raw", raw, "--out", tmp_path / "out", "--rgb-mat", tmp_path / "v5.mat")
    assert rc == 2 and "v5.mat: not an HDF5 file" in err
    rc, _, err = _cli("--raw", raw, "--out", tmp_path / "out", "--intrinsics", "1,2,3")
    assert rc == 2 and "intrinsics" in err
    with pytest.raises(SystemExit):
        with contextlib.redirect_stderr(io.StringIO()):
            main(["prepare", "--raw", str(raw), "--out", "x", "--rgb-mat", "a", "--rgb-dir", "b"])
    with pytest.raises(ValueError, match="workers"):
        prepare_split(raw, tmp_path / "out", workers=0)
    assert not (tmp_path / "out").exists()


def test_options_reach_the_pipeline(tmp_path, monkeypatch):
    """--tie-rule, --intrinsics, --fine and the RGB reach prepare_depthbin (fake pipeline)."""
    calls = []

    def fake_prepare_depthbin(bin_path, *, rgb=None, **kw):
        calls.append((Path(bin_path).name, rgb, kw))
        z = np.zeros(LABEL_SHAPE, np.uint8)
        return PreparedFrame(tsdf=z.astype(np.float32), label_weight=z, mapping=np.zeros(LABEL_NUMEL, np.int64),
                             label=z, sketch=z, rgb=rgb, pose=np.eye(4), origin=np.zeros(3),
                             intrinsics=kw["intrinsics"].as_array(), visibility=z, depth=np.zeros((4, 6), np.float32),
                             tsdf_fine=np.zeros((240, 144, 240), np.float32) if kw["fine"] else None)

    fake = types.ModuleType("torchssc.prepare.pipeline")
    fake.prepare_depthbin = fake_prepare_depthbin
    import torchssc.prepare

    monkeypatch.setitem(sys.modules, "torchssc.prepare.pipeline", fake)
    monkeypatch.setattr(torchssc.prepare, "pipeline", fake, raising=False)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "NYU0005_0000.bin").write_bytes(b"")
    rgb_small = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    Image.fromarray(rgb_small).save(raw / "NYU0005_colors.png")
    rc, stdout, stderr = _cli("--raw", raw, "--out", tmp_path / "out", "--tie-rule", "sscnet",
                              "--intrinsics", "5,5,3,2,6,4", "--fine")
    assert rc == 0, stderr
    [(name, rgb, kw)] = calls
    assert name == "NYU0005_0000.bin"
    np.testing.assert_array_equal(rgb, rgb_small)
    assert kw == {"intrinsics": Intrinsics(5, 5, 3, 2, 6, 4), "fine": True, "fine_intrinsics": None,
                  "tie_rule": "sscnet"}
    assert "intrinsics fx 5, fy 5, cx 3, cy 2, 6x4 [given]" in stdout
    assert frame_paths(tmp_path / "out", "0005")["tsdf_fine"].is_file()
    # An RGB image whose size disagrees with the intrinsics fails the frame, naming the image.
    calls.clear()
    rc, _, stderr = _cli("--raw", raw, "--out", tmp_path / "out2")
    assert rc == 1 and not calls
    assert "NYU0005_colors.png: RGB is 6x4, expected 640x480" in stderr
    # The library call returns the same outcome and reports through the callback.
    lines = []
    summary = prepare_split(raw, tmp_path / "out2", progress=False, report=lines.append)
    assert not summary.ok and list(summary.failed) == ["0005"] and summary.prepared == []
    assert summary.split == "train" and summary.listed == [] and read_split(tmp_path / "out2", "train") == []
    assert lines == [f"NYU0005_0000.bin: {summary.failed['0005']}"]


def test_intrinsics_come_from_the_dataset(tmp_path, monkeypatch):
    """No flag: intrinsics.json beside the frames (as `torchssc synth` writes it), else the NYU
    release convention; a preset name works as a flag; the summary says which was used."""
    from torchssc.geometry import SSCNET_INTRINSICS
    from torchssc.io.depthbin import write_intrinsics_file

    seen = []

    def fake_prepare_depthbin(bin_path, *, rgb=None, **kw):
        seen.append((kw["intrinsics"], kw["fine_intrinsics"]))
        raise ValueError("stop here")

    fake = types.ModuleType("torchssc.prepare.pipeline")
    fake.prepare_depthbin = fake_prepare_depthbin
    import torchssc.prepare

    monkeypatch.setitem(sys.modules, "torchssc.prepare.pipeline", fake)
    monkeypatch.setattr(torchssc.prepare, "pipeline", fake, raising=False)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "NYU0005_0000.bin").write_bytes(b"")
    _, stdout, _ = _cli("--raw", raw, "--out", tmp_path / "a")
    assert seen.pop() == (RELEASE_INTRINSICS, None)
    assert "intrinsics release (fx 518.858, fy 519.47, cx 325.58, cy 253.74, 640x480) [default]" in stdout
    write_intrinsics_file(raw, Intrinsics(500, 501, 300, 200, 600, 400))
    _, stdout, _ = _cli("--raw", raw, "--out", tmp_path / "b")
    assert seen.pop() == (Intrinsics(500, 501, 300, 200, 600, 400), None)
    assert f"[{raw / 'intrinsics.json'}]" in stdout
    _, stdout, _ = _cli("--raw", raw, "--out", tmp_path / "c", "--intrinsics", "sscnet", "--fine-intrinsics", "release")
    assert seen.pop() == (SSCNET_INTRINSICS, RELEASE_INTRINSICS)
    (raw / "intrinsics.json").write_text("{not json")
    rc, _, err = _cli("--raw", raw, "--out", tmp_path / "d")
    assert rc == 2 and "intrinsics.json: not a valid intrinsics file" in err


def test_dataset_spec_gives_the_camera_when_none_is_given(tmp_path):
    """``prepare --dataset nyucad`` uses the spec's camera (SSCNet's) when neither --intrinsics nor
    an intrinsics.json says otherwise; NYU keeps the release camera."""
    from torchssc.prepare.runner import prepare_split
    from torchssc.synth.generator import generate_dataset

    raw = tmp_path / "raw"
    generate_dataset(raw, frames=1, test_fraction=0.0, seed=3, progress=False)
    (raw / "NYUtrain" / "intrinsics.json").unlink()
    summary = prepare_split(raw / "NYUtrain", tmp_path / "cad", dataset="nyucad", progress=False)
    assert summary.intrinsics_source == "dataset nyucad"
    assert (summary.intrinsics.fx, summary.intrinsics.fy, summary.intrinsics.cx, summary.intrinsics.cy) == (
        518.8579, 518.8579, 320.0, 240.0)
    summary = prepare_split(raw / "NYUtrain", tmp_path / "nyu", progress=False)
    assert summary.intrinsics_source == "default" and summary.intrinsics.cx == 325.58
