"""Item 3: ``predict``'s ``auto`` depth encoding decides on evidence that far pixels cannot fool,
or refuses and asks for ``--depth-encoding``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import _faults
from torchssc.io.depthbin import write_depth_png
from torchssc.predict.predict import read_depth


def _room(far_fraction: float, seed: int = 0) -> np.ndarray:
    """A 480x640 depth (m) around 2.5 m with ``far_fraction`` of the pixels at 9-12 m (a window)."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(1.5, 3.5, (480, 640))
    far = rng.random((480, 640)) < far_fraction
    depth[far] = rng.uniform(9.0, 12.0, int(far.sum()))
    return depth.astype(np.float32)


@pytest.mark.parametrize("far_fraction", [0.01, 0.2, 0.45])
def test_sscnet_png_with_far_pixels_is_read_as_sscnet(tmp_path, far_fraction):
    """Pixels beyond 8.192 m are not multiples of 8 in SSCNet's encoding: once enough of them made
    ``auto`` read the whole image as millimetres (median 19.9 m instead of 2.49 m)."""
    depth = _room(far_fraction)
    write_depth_png(tmp_path / "d.png", depth)
    got = read_depth(tmp_path / "d.png")
    np.testing.assert_allclose(got, np.round(depth * 1000) / 1000, atol=1e-3)
    assert 2.0 < float(np.median(got)) < 3.5


@pytest.mark.parametrize("far_fraction", [0.0, 0.2])
def test_millimetre_png_with_far_pixels_is_read_as_millimetres(tmp_path, far_fraction):
    mm = np.round(_room(far_fraction, seed=1) * 1000).astype(np.uint16)
    Image.fromarray(mm).save(tmp_path / "d.png")
    np.testing.assert_allclose(read_depth(tmp_path / "d.png"), mm / 1000.0, atol=1e-6)


def test_ambiguous_png_is_refused_asking_for_the_encoding(tmp_path, capsys):
    """Plain millimetres that happen to be multiples of 8, median 4 m: 0.5 m as SSCNet's encoding is
    plausible too. ``auto`` refuses, in one line; ``--depth-encoding`` settles it."""
    mm = (np.full((480, 640), 4000, np.uint16) // 8 * 8)
    mm[::7] = 3000
    Image.fromarray(mm).save(tmp_path / "d.png")
    with pytest.raises(ValueError, match="--depth-encoding"):
        read_depth(tmp_path / "d.png")
    np.testing.assert_allclose(read_depth(tmp_path / "d.png", "millimetres"), mm / 1000.0, atol=1e-6)
    checkpoint = _faults.tiny_checkpoint(tmp_path / "tiny.pt")
    rc, _, err = _faults.cli(capsys, "predict", "--checkpoint", checkpoint, "--depth", tmp_path / "d.png",
                             "--out", tmp_path / "out")
    line = _faults.error_line(err, "predict")
    assert rc == 2 and line.startswith(f"{tmp_path / 'd.png'}: cannot tell the depth encoding")
    assert line.endswith("pass --depth-encoding sscnet or millimetres")
