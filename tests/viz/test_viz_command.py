"""``torchssc viz`` end to end on small volumes, a prepared frame and the real depthbin sample."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from torchssc.cli import main
from torchssc.geometry import LABEL_SHAPE, NYU_INTRINSICS, PALETTE
from torchssc.io.prepared import PreparedFrame, write_frame
from torchssc.viz.html import decode_voxels
from torchssc.viz.camera import look_at



def room():
    labels = np.zeros(LABEL_SHAPE, np.uint8)
    labels[:, 0, :] = 2
    labels[0, :, :] = 3
    labels[10:20, 1:6, 30:40] = 6
    labels[40:50, 1:10, 20:30] = 10
    return labels


def colours(path):
    with Image.open(path) as im:
        return {tuple(c) for c in np.asarray(im.convert("RGB")).reshape(-1, 3)}


def test_cli_on_a_npy_volume(tmp_path, capsys):
    np.save(tmp_path / "scene.npy", room())
    out = tmp_path / "out"
    rc = main(["viz", str(tmp_path / "scene.npy"), "--out", str(out), "--size", "64x48", "--shading", "flat"])
    assert rc == 0
    for ext in ("png", "ply", "glb", "html"):
        assert (out / f"scene.{ext}").is_file()
    printed = capsys.readouterr().out.split()
    assert len(printed) == 4
    seen = colours(out / "scene.png")
    for cls in (2, 6, 10):
        assert tuple(PALETTE[cls]) in seen
    assert tuple(PALETTE[8]) in seen  # only in the legend: table is listed
    assert (out / "scene.glb").read_bytes()[:4] == b"glTF"
    assert (out / "scene.ply").read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")


def prepared_root(tmp_path):
    label = room()
    weight = np.zeros(LABEL_SHAPE, np.uint8)
    weight[:30] = 1  # the bed (a = 10..19) is weighted, the furniture (a = 40..49) is not
    eye = np.array([2.4, 0.2, 1.2])
    pose = np.eye(4)
    pose[:3, :3] = look_at(eye, eye + np.array([0.0, 1.0, -0.4]))
    pose[:3, 3] = eye
    frame = PreparedFrame(
        tsdf=np.zeros(LABEL_SHAPE, np.float32), label_weight=weight,
        mapping=np.full(np.prod(LABEL_SHAPE), 307200, np.int64), label=label,
        sketch=np.zeros(LABEL_SHAPE, np.uint8), pose=pose, origin=np.zeros(3),
        intrinsics=NYU_INTRINSICS.as_array(),
    )
    write_frame(tmp_path / "NYU", "0001", frame)
    return tmp_path / "NYU", label


def test_cli_prediction_beside_prepared_gt_with_label_weight_mask(tmp_path):
    root, label = prepared_root(tmp_path)
    pred = label.copy()
    pred[40:50, 1:10, 20:30] = 7  # sofa where the gt has furniture, in the zero-weight part
    pred[12:16, 6:8, 32:36] = 9  # tvs on the bed, weighted
    (tmp_path / "results").mkdir()
    np.save(tmp_path / "results" / "0001.npy", pred)
    out = tmp_path / "viz"
    rc = main(["viz", str(tmp_path / "results" / "0001.npy"), "--prepared", str(root), "--out", str(out),
               "--size", "48x36", "--shading", "flat", "--mask", "label_weight", "--formats", "png,html,ply"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"0001.png", "0001.html", "0001_gt.ply", "0001_pred.ply"}
    with Image.open(out / "0001.png") as im:
        img = np.asarray(im.convert("RGB"))
    assert img.shape[1] == 2 * 48 + 3 * 4  # side by side
    panels = img[27 : 27 + 3 * 36 + 4 * 4]  # below the column titles, above the legend
    seen = {tuple(c) for c in panels.reshape(-1, 3)}
    assert tuple(PALETTE[9]) in seen  # weighted prediction shown
    assert tuple(PALETTE[7]) not in seen and tuple(PALETTE[10]) not in seen  # masked out
    text = (out / "0001.html").read_text()
    import json
    import re
    data = json.loads(re.search(r'id="data">(.*?)</script>', text, re.S).group(1))
    labels_shown = {int(x) for v in data["volumes"] for x in decode_voxels(v["data"])["label"]}
    assert 9 in labels_shown and 7 not in labels_shown and 10 not in labels_shown


def test_cli_frustum_mask_and_camera_view(tmp_path):
    root, _ = prepared_root(tmp_path)
    out = tmp_path / "viz"
    rc = main(["viz", "--prepared", str(root), "--id", "0001", "--out", str(out), "--formats", "html",
               "--mask", "frustum"])
    assert rc == 0
    import json
    import re
    data = json.loads(re.search(r'id="data">(.*?)</script>', (out / "0001.html").read_text(), re.S).group(1))
    rec = decode_voxels(data["volumes"][0]["data"])
    assert len(data["volumes"]) == 1 and len(rec) > 0
    # the camera at y = 0.2 m looks along +y: nothing behind it (c < 2) survives
    assert rec["c"].min() >= 2
    rc = main(["viz", "--prepared", str(root), "--id", "0001", "--out", str(out), "--formats", "png",
               "--views", "camera", "--size", "32x24"])
    assert rc == 0
    with Image.open(out / "0001.png") as im:
        assert im.size[0] == 32 + 2 * 4


def test_cli_real_depthbin_sample(tmp_path, nyu_sample):
    out = tmp_path / "viz"
    rc = main(["viz", str(nyu_sample / "NYU0001_0000.bin"), "--downsample", "--out", str(out),
               "--size", "48x36", "--formats", "png,glb", "--shading", "flat"])
    assert rc == 0
    with Image.open(out / "NYU0001_0000.png") as im:
        img = np.asarray(im.convert("RGB"))
    panels = img[26 + 1 : 26 + 1 + 36 + 2 * 4]  # one row of three views under the titles
    seen = {tuple(c) for c in panels.reshape(-1, 3)}
    for cls in (2, 3, 5, 10):  # floor, wall, chair, furniture are in the frame's ground truth
        assert tuple(PALETTE[cls]) in seen
    assert tuple(PALETTE[6]) not in seen  # no bed in this frame
    assert (out / "NYU0001_0000.glb").stat().st_size > 1000


@pytest.mark.parametrize(
    "argv,message",
    [
        (["viz"], "nothing to show"),
        (["viz", "missing.npy"], "missing.npy"),
        (["viz", "--prepared", "somewhere"], "--id"),
        (["viz", "--id", "0001"], "--prepared"),
        (["viz", "--prepared", "nowhere", "--id", "0001"], "nowhere"),
    ],
)
def test_cli_errors_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_mask_needs_frame(tmp_path, capsys):
    np.save(tmp_path / "v.npy", room())
    assert main(["viz", str(tmp_path / "v.npy"), "--mask", "label_weight", "--out", str(tmp_path)]) == 2
    assert "label_weight" in capsys.readouterr().err
