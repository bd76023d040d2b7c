"""benchmarks/gpu_check.py on the CPU: it refuses without CUDA in one line; its dry run (tiny shapes,
the CPU) goes through every section's plumbing and writes the JSON and the markdown table."""

from __future__ import annotations

import json

import pytest
import torch

import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the script would run")
def test_refuses_without_cuda_in_one_line(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "gc")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0] and "--dry-run" in err[0]
    assert not (tmp_path / "gc").exists()
    assert gpu_check.main(["--device", "cpu"]) == 2  # the CPU only for a dry run


@pytest.mark.slow
def test_dry_run_writes_the_report(tmp_path):
    out = tmp_path / "gc"
    rc = gpu_check.main(["--device", "cpu", "--dry-run", "--out", str(out), "--models", "unet3d_prior",
                         "--skip", "release", "eval"])
    report = json.loads((out / "gpu_check.json").read_text())
    assert rc == 0, report
    assert report["dry_run"] and set(report["sections"]) == {"placement", "train_steps", "ddp"}
    assert report["sections"]["placement"]["result"]["unet3d_prior"]["status"] == "ok"
    steps = report["sections"]["train_steps"]["result"]
    assert set(steps) == {"unet3d_prior/fp32", "unet3d_prior/bf16"}
    assert all(r["status"] == "ok" and r["s_per_step"] > 0 for r in steps.values())
    ddp = report["sections"]["ddp"]["result"]
    assert ddp["backend"] == "gloo" and ddp["all_reduce_ok"] and ddp["rel_diff"] < 1e-5
    table = (out / "gpu_check.md").read_text()
    assert "DRY RUN" in table and "| unet3d_prior/bf16 | unet3d_prior_nyu | 1 |" in table


@pytest.mark.slow
def test_dry_run_on_the_release_projects_the_wall_time(tmp_path, nyu_release):
    out = tmp_path / "gc"
    rc = gpu_check.main(["--device", "cpu", "--dry-run", "--out", str(out), "--data", str(nyu_release),
                         "--skip", "placement", "train_steps", "ddp"])
    report = json.loads((out / "gpu_check.json").read_text())
    assert rc == 0, report
    rel = report["sections"]["release"]["result"]
    assert rel["steps"] == 2 and rel["total_iters"] > 0
    assert rel["projected_train_h"] == pytest.approx(rel["total_iters"] / rel["steps_per_s"] / 3600)
    assert report["sections"]["eval"]["result"]["scenes"] == 2
