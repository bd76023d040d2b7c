"""HTML viewer: self-contained, carries the voxels, no external references."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from torchssc.viz.html import RECORD, decode_voxels, encode_voxels, viewer_html, write_html
from torchssc.viz.mesh import exposed_faces


def payload(text):
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert m, "embedded data block missing"
    return json.loads(m.group(1))


def test_encode_roundtrip_and_face_bits():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 12, size=(5, 4, 7)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.1] = 255
    rec, text = encode_voxels(labels)
    assert RECORD.itemsize == 8
    back = decode_voxels(text)
    np.testing.assert_array_equal(back, rec)
    idx = np.stack([back["a"], back["b"], back["c"]], axis=1)
    np.testing.assert_array_equal(idx, np.argwhere((labels >= 1) & (labels <= 11)))  # every occupied voxel
    np.testing.assert_array_equal(back["label"], labels[tuple(idx.T)])
    faces = exposed_faces(labels)
    for code in range(6):
        np.testing.assert_array_equal((back["faces"] >> code) & 1, faces[code][tuple(idx.T)])


def test_page_is_self_contained_and_carries_data(tmp_path):
    gt = np.zeros((6, 5, 7), np.uint8)
    gt[1:3, 0:2, 2:5] = 6
    pred = gt.copy()
    pred[4, 0, 0] = 9
    write_html(tmp_path / "v.html", {"ground truth": gt, "prediction": pred}, title="room <1>",
               origin=(1.0, 2.0, 3.0))
    text = (tmp_path / "v.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    lowered = text.lower()
    for bad in ("http:", "https:", "//cdn", "<link", "src=", "@import", "url("):
        assert bad not in lowered, bad
    assert "room &lt;1&gt;" in text  # title escaped
    data = payload(text)
    assert [v["name"] for v in data["volumes"]] == ["ground truth", "prediction"]
    assert data["volumes"][0]["count"] == 12 and data["volumes"][1]["count"] == 13
    rec = decode_voxels(data["volumes"][1]["data"])
    assert {(int(r["a"]), int(r["b"]), int(r["c"]), int(r["label"])) for r in rec} >= {(4, 0, 0, 9)}
    np.testing.assert_allclose(data["box"], [6 * 0.08, 7 * 0.08, 5 * 0.08])
    assert len(data["palette"]) == 12 and data["names"][3] == "wall"
    assert "getContext(\"webgl\"" in text


def test_script_breakouts_are_escaped():
    text = viewer_html(np.zeros((2, 2, 2), np.uint8), title="</script><script>alert(1)</script>")
    assert text.count("</script>") == 3  # the error hook, the data block and the viewer script only
    assert payload(text)["title"] == "</script><script>alert(1)</script>"


def test_html_rejects_bad_volumes():
    with pytest.raises(ValueError, match="at least one"):
        viewer_html({})
    with pytest.raises(ValueError, match="labels must be"):
        viewer_html(np.full((2, 2, 2), 99, np.uint8))
    assert base64.b64decode(encode_voxels(np.zeros((2, 2, 2), np.uint8))[1]) == b""
