"""The "Adding a model" checklist of docs/architecture.md, followed step by step with a new model
that reads existing inputs (TSDF and the lifted 2D prior): a class, a registration declaring its
inputs, a recipe part. Nothing else is written, and the model trains through the engine."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import yaml

from _toy import write_toy_dataset, write_toy_spec
from test_models_registry import check_model
from torchssc.cli import main as cli_main
from torchssc.config import load_config
from torchssc.models.lifting import lift_labels
from torchssc.models.registry import MODELS, register_model


class PriorLinearSSC(nn.Module):
    """Step 1, the model: ``{"tsdf", "mapping", "prior"}`` -> ``{"semantic": (B, K, D, H, W)}``, a
    1x1x1 conv over the TSDF and the one-hot prior lifted through the Mapping."""

    def __init__(self, *, num_classes: int = 12, prior_classes: int = 14) -> None:
        super().__init__()
        self.prior_classes = prior_classes
        self.head = nn.Conv3d(1 + prior_classes, num_classes, 1)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        tsdf = batch["tsdf"]  # (B, 1, D, H, W)
        lifted = lift_labels(batch["prior"], batch["mapping"], tuple(tsdf.shape[2:]), self.prior_classes)
        return {"semantic": self.head(torch.cat([tsdf, lifted.to(tsdf.dtype)], dim=1))}


def _register() -> None:
    if "checklist_prior_linear" not in MODELS.names():
        # Step 2, the registration: its name and the batch keys it reads (num_classes is a named
        # parameter of the builder, so the dataset spec's class count reaches it).
        @register_model("checklist_prior_linear", inputs=("tsdf", "mapping", "prior"))
        def checklist_prior_linear(*, num_classes: int = 12, prior_classes: int = 14) -> PriorLinearSSC:
            return PriorLinearSSC(num_classes=num_classes, prior_classes=prior_classes)


def test_adding_a_model_with_existing_inputs(tmp_path):
    _register()
    spec = write_toy_spec(tmp_path)
    root = write_toy_dataset(tmp_path / "data", spec, train=3, test=1)
    # Step 3, the recipe part: the model with its loss (configs/model/<name>.yaml in the library).
    part = tmp_path / "model" / "checklist_prior_linear.yaml"
    part.parent.mkdir()
    part.write_text(yaml.safe_dump({"model": {"name": "checklist_prior_linear"},
                                    "loss": {"name": "class_weighted_ce", "kwargs": {"class_weights": "dataset"}}}))
    # Step 4, the every-model checks hold for it (the registry-driven test runs them on every
    # library model; this model lives in a test, so it is checked here).
    check_model(load_config(part, [f"data.dataset={spec}"]))
    # Step 5, a recipe composing it trains and evaluates with no other change.
    recipe = tmp_path / "checklist_toy.yaml"
    recipe.write_text(yaml.safe_dump({
        "compose": ["model/checklist_prior_linear", "schedule/adamw_linear"],
        "data": {"dataset": str(spec), "root": str(root), "num_workers": 0},
        "train": {"epochs": 1, "iters_per_epoch": 2, "global_batch": 1, "device": "cpu", "progress": False},
        "run": {"dir": str(tmp_path / "runs"), "name": "checklist"},
    }))
    assert cli_main(["train", str(recipe)]) == 0
    assert cli_main(["eval", str(tmp_path / "runs" / "checklist"), "--no-progress"]) == 0
