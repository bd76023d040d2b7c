"""``torchssc plan``'s synthetic full-size batch (and gpu_check's) carries every key each registered
model and its recipe's loss read, at the dataset's full-size shapes."""

from __future__ import annotations

import pytest
import torch

from _model_batches import all_models, example_batch
from torchssc.config import load_config
from torchssc.engine.plan import synthetic_batch
from torchssc.geometry import FINE_SHAPE, LABEL_SHAPE

SLOW = {"forknet"}


class Recording(dict):
    """A batch that remembers the keys read from it."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key) -> bool:
        self.read.add(key)
        return super().__contains__(key)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in all_models()])
def test_synthetic_batch_has_every_key_the_model_and_loss_read(name):
    ex = example_batch(name, batch_size=2)
    torch.manual_seed(0)
    model, loss_fn = ex.build()
    batch = Recording(ex.batch)
    loss_fn(model(batch), batch)
    used = batch.read & set(ex.batch)
    full = synthetic_batch(load_config(ex.recipe), batch_size=2)
    missing = used - set(full)
    assert not missing, f"{ex.recipe}: synthetic_batch lacks {sorted(missing)}"
    for key in used:
        assert full[key].dtype == ex.batch[key].dtype and full[key].dim() == ex.batch[key].dim(), key
    assert full["label"].shape[1:] == LABEL_SHAPE
    if "tsdf_fine" in used:
        assert full["tsdf_fine"].shape[2:] == FINE_SHAPE
