"""benchmarks/demo_seeds.py: another decoding of the logits is scored by wrapping the model, through
the one scoring path of ``torchssc eval``."""

from __future__ import annotations

import numpy as np
import torch
from demo_seeds import Decoded, occupancy_first
from test_engine_eval import IDS, _make_run, _same_metrics  # the tiny run folder of the eval tests

from torchssc.config import load_config
from torchssc.engine.checkpoint import epoch_path, load_model
from torchssc.engine.evaluate import score_model, scoring_dataset
from torchssc.engine.logs import json_ready
from torchssc.io.prepared import read_frame
from torchssc.metrics import PROTOCOLS, SSCMetrics


def test_decode_replaces_the_argmax(tmp_path):
    run = _make_run(tmp_path)
    cfg = load_config(run / "config.yaml")
    model, _ = load_model(epoch_path(run, 2), cfg)
    three = Decoded(model, lambda logits: torch.full_like(logits[:, 0], 3, dtype=torch.long))
    scores = score_model(three, scoring_dataset(cfg, "test", PROTOCOLS), protocols=PROTOCOLS, progress=False)
    want = {p: SSCMetrics(p) for p in PROTOCOLS}
    for frame_id in IDS:
        f = read_frame(run.parent.parent / "data", frame_id, visibility=True)
        for m in want.values():
            m.update(np.full((1, *f.label.shape), 3, np.uint8), f.label[None], label_weight=f.label_weight[None],
                     mapping=f.mapping[None], visibility=f.visibility[None])
    for protocol in PROTOCOLS:
        _same_metrics(json_ready(scores.metrics[protocol].compute()), want[protocol].compute())


def test_occupancy_first_decoding():
    logits = torch.zeros(1, 12, 1, 1, 3)
    logits[0, 0, 0, 0] = torch.tensor([5.0, 0.0, 0.0])  # empty, then occupied twice
    logits[0, 4, 0, 0, 1] = 1.0  # class 4 wins among 1..11
    logits[0, 7, 0, 0, 2] = 0.5  # P(empty) < 0.5, though empty would win the argmax
    logits[0, 0, 0, 0, 2] = 2.0
    assert logits.argmax(1).flatten().tolist() == [0, 4, 0]
    assert occupancy_first(logits).flatten().tolist() == [0, 4, 7]
