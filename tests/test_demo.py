"""The out-of-the-box job end to end in a tiny configuration."""

import json

import numpy as np
import pytest

from torchssc.cli import main


@pytest.mark.slow
def test_demo_pipeline_tiny(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--frames", "4", "--test-fraction", "0.25", "--workers", "1",
               "--renders", "1", "train.epochs=1", "train.iters_per_epoch=2", "train.progress=false",
               "data.num_workers=0", "model.kwargs.width=8", "model.kwargs.stem_channels=4",
               "model.kwargs.latent_channels=4"])
    assert rc == 0
    rows = json.loads((out / "summary.json").read_text())
    methods = {r["method"].split(" (")[0] for r in rows}
    assert {"SketchAwareSSC", "all empty", "most frequent class"} <= methods
    assert {r["protocol"] for r in rows} == {"torchssc", "sscnet", "all"}
    empty = [r for r in rows if r["method"] == "all empty"]
    assert all(r["sc_iou"] == 0.0 and r["ssc_miou"] == 0.0 for r in empty)
    # One test room: its prediction, renders and viewer exist.
    test_ids = (out / "data" / "test.txt").read_text().split()
    assert len(test_ids) == 1
    pred = np.load(out / "run" / "eval" / "results" / f"{test_ids[0]}.npy")
    assert pred.shape == (60, 36, 60) and pred.max() <= 11
    assert (out / "renders" / f"room_{test_ids[0]}.png").stat().st_size > 10_000
    assert (out / "renders" / f"room_{test_ids[0]}.html").is_file()
    printed = capsys.readouterr().out
    assert "| method | protocol |" in printed and "SSC mIoU" in printed
    # A rerun resumes: nothing is regenerated or retrained, the same numbers come out.
    stamp = (out / "run" / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert main(["demo", "--out", str(out), "--frames", "4", "--test-fraction", "0.25", "--workers", "1",
                 "--renders", "1", "train.epochs=1", "train.iters_per_epoch=2", "train.progress=false",
                 "data.num_workers=0", "model.kwargs.width=8", "model.kwargs.stem_channels=4",
                 "model.kwargs.latent_channels=4"]) == 0
    assert (out / "run" / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    assert json.loads((out / "summary.json").read_text()) == rows


def test_demo_refuses_rooms_of_another_size(tmp_path):
    from torchssc.demo import make_data

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.txt").write_text("0001\n0002\n")
    (raw / "test.txt").write_text("0003\n")
    with pytest.raises(ValueError, match="3 synthetic rooms, not 5"):
        make_data(tmp_path, frames=5, test_fraction=0.2, seed=0, workers=1)


def test_demo_command_reports_rooms_of_another_size(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.txt").write_text("0001\n")
    (raw / "test.txt").write_text("0002\n")
    assert main(["demo", "--out", str(tmp_path), "--frames", "60"]) == 2
    assert "already holds 2 synthetic rooms, not 60" in capsys.readouterr().err
