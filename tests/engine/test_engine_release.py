"""`torchssc train` and `torchssc eval` pointed at the released NYU files, as they are.

A tiny prior SketchAwareSSC trains two steps on three released training scenes and is scored on
two released test scenes under `torchssc` and `all`; `sscnet` needs a visibility volume the
release does not have and says so. Reads ../shared/data (or $TORCHSSC_DATA) in place.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from torchssc.cli import main

TINY = ["model.kwargs.width=8", "model.kwargs.stem_channels=2", "model.kwargs.cvae_hidden=2",
        "model.kwargs.latent_channels=2", "model.kwargs.num_samples=1"]


def _cli(*argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue()


@pytest.mark.slow
def test_train_and_eval_on_the_release(nyu_release, tmp_path):
    overrides = [f"data.root={nyu_release}", "data.train_split=[3,4,5]", "data.val_fraction=0.0",
                 "train.epochs=1", "train.iters_per_epoch=2", "train.global_batch=1", "train.eval_every=0",
                 "train.progress=false", f"run.dir={tmp_path}", "run.name=release", *TINY]
    rc, _ = _cli("train", "sketch_aware_ssc_prior_nyu_cpu", *overrides)
    assert rc == 0
    run = tmp_path / "release"
    assert (run / "checkpoints" / "epoch_0001.pt").is_file()
    rc, out = _cli("eval", run, "--checkpoints", "last", "--protocol", "torchssc,all", "--split", "0001,0002",
                   "--no-progress")
    assert rc == 0
    reports = sorted((run / "eval").glob("*.json"))
    assert [p.name.rsplit("_", 1)[1] for p in reports] == ["all.json", "torchssc.json"]
    for path in reports:
        record = json.loads(path.read_text())
        assert record["frames"] == 2 and record["split"] == ["0001", "0002"]
        assert 0.0 <= record["metrics"]["sc_iou"] <= 1.0
    rc, out = _cli("eval", run, "--checkpoints", "last", "--protocol", "sscnet", "--split", "0001", "--no-progress")
    assert rc == 2 and "visibility" in out.splitlines()[-1]
