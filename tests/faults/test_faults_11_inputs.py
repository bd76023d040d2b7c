"""Item 11: inputs that were taken silently or refused without naming the file: an image that is
not 8-bit RGB given as ``--rgb``, millimetres or a pickle in a depth ``.npy``, a missing 2D prior
(in ``check-data`` and in ``predict``), an empty ``.npz`` in ``viz``, an unknown ``--formats``
entry, and a raw label of 100 in ``prepare``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import _faults
from torchssc.io.depthbin import read_bin, write_bin, write_depth_png


@pytest.fixture()
def frame(tmp_path: Path) -> tuple[Path, list]:
    """A tiny checkpoint and the options of a frame predict can run on (depth PNG, level pose)."""
    checkpoint = _faults.tiny_checkpoint(tmp_path / "tiny.pt")
    write_depth_png(tmp_path / "depth.png", np.full((480, 640), 2.0, np.float32))
    np.savetxt(tmp_path / "pose.txt", _faults.level_pose())
    return checkpoint, ["--pose", tmp_path / "pose.txt", "--out", tmp_path / "out", "--formats", "npy"]


def _png16(path: Path, array: np.ndarray, colour: bool) -> Path:
    """A 16-bit PNG written by hand (Pillow writes no 16-bit colour PNG): grey or RGB."""
    import struct
    import zlib

    height, width = array.shape[:2]
    rows = b"".join(b"\0" + array[i].astype(">u2").tobytes() for i in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2 if colour else 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("kind, what", [
    ("depth", "a 16-bit single-channel image (a depth image?), Pillow mode I;16"),
    ("grey16", "a 16-bit single-channel image (a depth image?), Pillow mode I;16"),
    ("rgb16", "a 16-bit colour image"),
    ("float", "a 32-bit float single-channel image, Pillow mode F"),
    ("bits", "a 1-bit black-and-white image, Pillow mode 1"),
])
def test_predict_rgb_must_be_8_bit_rgb_or_grey(tmp_path, frame, capsys, kind, what):
    """The depth PNG itself given as ``--rgb`` was taken silently (rc 0)."""
    checkpoint, options = frame
    image = {
        "depth": lambda: tmp_path / "depth.png",
        "grey16": lambda: _png16(tmp_path / "g.png", np.full((480, 640), 3000, np.uint16), colour=False),
        "rgb16": lambda: _png16(tmp_path / "c.png", np.full((480, 640, 3), 3000, np.uint16), colour=True),
        "float": lambda: (Image.fromarray(np.ones((480, 640), np.float32)).save(tmp_path / "f.tif"), tmp_path / "f.tif")[1],
        "bits": lambda: (Image.fromarray(np.ones((480, 640), bool)).save(tmp_path / "b.png"), tmp_path / "b.png")[1],
    }[kind]()
    rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", checkpoint, "--depth", tmp_path / "depth.png",
                             "--rgb", image, *options)
    assert rc == 2 and _faults.error_line(err, "predict") == f"{image}: not an 8-bit RGB or grey image: {what}"
    assert not (tmp_path / "out").exists()


def test_predict_rgb_takes_8_bit_rgb_grey_and_palette(tmp_path, frame, capsys):
    checkpoint, options = frame
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3)).astype(np.uint8)
    for name, image in (("rgb.png", Image.fromarray(rgb)), ("grey.png", Image.fromarray(rgb[..., 0])),
                        ("palette.png", Image.fromarray(rgb).convert("P")), ("rgb.jpg", Image.fromarray(rgb))):
        image.save(tmp_path / name)
        rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", checkpoint, "--depth", tmp_path / "depth.png",
                                 "--rgb", tmp_path / name, *options)
        assert rc == 0, (name, err)


def _millimetres(seed: int = 0) -> np.ndarray:
    """A 480x640 depth in millimetres, 1,215..3,703 (the issue's), with some missing pixels."""
    depth = np.random.default_rng(seed).uniform(1215, 3703, (480, 640)).astype(np.float32)
    depth[:20] = 0
    return depth


def test_predict_npy_of_millimetres_is_converted_and_said(tmp_path, frame, capsys):
    """A ``.npy`` of millimetres ran as metres (a room 2.4 km deep), silently."""
    checkpoint, options = frame
    mm = _millimetres()
    np.save(tmp_path / "mm.npy", mm)
    np.save(tmp_path / "m.npy", mm / 1000.0)
    rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", checkpoint, "--depth", tmp_path / "mm.npy", *options,
                             "--name", "from_mm")
    assert rc == 0, err
    valid = mm[mm > 0]
    assert err.splitlines() == [
        f"torchssc predict: warning: {tmp_path / 'mm.npy'}: values {valid.min():.0f}..{valid.max():.0f} (median "
        f"{np.median(valid):.0f}) are far beyond a room in metres: read as millimetres (divided by 1000)"]
    rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", checkpoint, "--depth", tmp_path / "m.npy", *options,
                             "--name", "from_m")
    assert rc == 0 and err == ""  # metres: nothing to say
    out = tmp_path / "out"
    np.testing.assert_array_equal(np.load(out / "from_mm.npy"), np.load(out / "from_m.npy"))


def test_read_depth_npy_units_on_evidence(tmp_path):
    from torchssc.predict.predict import read_depth

    mm = _millimetres(1)
    np.save(tmp_path / "mm.npy", mm)
    said: list[str] = []
    np.testing.assert_allclose(read_depth(tmp_path / "mm.npy", report=said.append), mm / 1000.0, rtol=1e-6)
    assert len(said) == 1 and "read as millimetres" in said[0]
    np.testing.assert_allclose(read_depth(tmp_path / "mm.npy", "millimetres"), mm / 1000.0, rtol=1e-6)
    for metres in (mm / 1000.0, np.full((480, 640), 9.5, np.float32)):  # a room; a far hall: metres as ever
        np.save(tmp_path / "m.npy", metres)
        np.testing.assert_array_equal(read_depth(tmp_path / "m.npy", report=said.append), metres.astype(np.float32))
    assert len(said) == 1
    np.save(tmp_path / "far.npy", np.full((480, 640), 50_000.0, np.float32))  # 50 km, or 50 m: neither
    with pytest.raises(ValueError, match=r"far\.npy: median depth 50000 is far beyond a room in metres"):
        read_depth(tmp_path / "far.npy")
    with pytest.raises(ValueError, match=r"mm\.npy: --depth-encoding sscnet is for 16-bit PNGs"):
        read_depth(tmp_path / "mm.npy", "sscnet")


def test_pickled_depth_npy_is_refused_naming_the_file(tmp_path, frame, capsys):
    """Refused, but as ``Object arrays cannot be loaded when allow_pickle=False``: no file named."""
    checkpoint, options = frame
    np.save(tmp_path / "pickled.npy", np.array([{"depth": 1}] * 4, dtype=object), allow_pickle=True)
    rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", checkpoint, "--depth", tmp_path / "pickled.npy",
                             *options)
    assert rc == 2 and _faults.error_line(err, "predict") == (
        f"{tmp_path / 'pickled.npy'}: a pickled object array, refused (it could run code when loaded); "
        "save the depth as a numeric array")


def test_predict_without_prior_on_a_prior_model_names_the_option(tmp_path, frame, capsys):
    """The error named ``batch['prior']``, which a user of the command never sees."""
    _, options = frame
    checkpoint = _faults.tiny_checkpoint(tmp_path / "prior.pt", model="unet3d_prior", channels=[2, 2, 2])
    rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", checkpoint, "--depth", tmp_path / "depth.png",
                             *options)
    assert rc == 2 and _faults.error_line(err, "predict") == (
        f"{checkpoint}: its model (UNet3D) reads the 2D semantic prior: pass --prior (an 8-bit PNG of NYU-13 ids "
        "0..13, the depth image's size)")
    Image.fromarray(np.full((480, 640), 5, np.uint8)).save(tmp_path / "prior.png")
    rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", checkpoint, "--depth", tmp_path / "depth.png",
                             "--prior", tmp_path / "prior.png", *options)
    assert rc == 0, err


def test_predict_formats_error_lists_npy(tmp_path, frame, capsys):
    """The allowed list left ``npy`` out (it came from ``viz``), and came after the model had run."""
    checkpoint, options = frame
    rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", checkpoint, "--depth", tmp_path / "depth.png",
                             *options[:-1], "npy,pdf")
    assert rc == 2
    assert _faults.error_line(err, "predict") == "--formats: unknown format(s) ['pdf']; choose from npy, png, ply, glb, html"
    assert not (tmp_path / "out").exists()


def test_check_data_names_a_missing_prior(tmp_path, capsys):
    """``check-data`` said "all clean" when one scene of a folder with priors had none."""
    root = tmp_path / "data"
    ids = _faults.make_clean_frames(root, 3)
    (root / "seg_result_label13").mkdir()
    for frame_id in ids:
        Image.fromarray(np.full((480, 640), 3, np.uint8)).save(root / "seg_result_label13" / f"{frame_id}.png")
    rc, out, _ = _faults.cli(capsys, "check-data", root, "--splits", "train")
    assert rc == 0 and out.rstrip().endswith("all clean"), out
    missing = root / "seg_result_label13" / f"{ids[1]}.png"
    missing.unlink()
    rc, out, _ = _faults.cli(capsys, "check-data", root, "--splits", "train")
    assert rc == 1
    assert f"BAD {ids[1]}: {missing}: missing: seg_result_label13/ holds the 2D priors of this folder, every scene " \
           "needs its own" in out
    assert out.rstrip().endswith("1 bad")
    for frame_id in ids:  # no prior folder at all: the priors are optional
        (root / "seg_result_label13" / f"{frame_id}.png").unlink(missing_ok=True)
    (root / "seg_result_label13").rmdir()
    rc, out, _ = _faults.cli(capsys, "check-data", root, "--splits", "train")
    assert rc == 0 and out.rstrip().endswith("all clean")


def test_viz_of_an_empty_npz_says_it_holds_no_array(tmp_path, capsys):
    """It said ``several arrays []; name one with key=``."""
    np.savez(tmp_path / "empty.npz")
    rc, _, err = _faults.cli(capsys, "viz", tmp_path / "empty.npz", "--out", tmp_path / "viz")
    assert rc == 2 and _faults.error_line(err, "viz") == f"{tmp_path / 'empty.npz'}: holds no array (an empty .npz)"


def test_prepare_names_the_file_of_a_label_100(tmp_path, capsys):
    """The reason said ``labels must be in 0..36 or 255 (raw NYU36 ids), found [100]``: which file?"""
    raw = tmp_path / "NYUtrain"
    bins = _faults.make_raw_frames(raw, 2)
    frame = read_bin(bins[1])
    labels = frame.labels.copy()
    labels[5, 5, 5] = 100
    write_bin(bins[1], frame.origin, frame.pose, labels)
    rc, out, err = _faults.cli(capsys, "prepare", "--raw", raw, "--out", tmp_path / "out", "--no-progress")
    assert rc == 1 and "1 prepared, 0 skipped, 1 failed (0002)" in out
    assert f"FAILED {bins[1].name}: ValueError: {bins[1]}: labels must be raw NYU36 ids 0..36 or 255, found [100] " \
           "on 1 voxel" in err
