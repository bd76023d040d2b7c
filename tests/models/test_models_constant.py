"""The parameter-free baselines: constant classes and the lifted 2D prior, vs naive loops."""

from __future__ import annotations

import numpy as np
import torch

from torchssc.models.constant import PRIOR13_TO_CLASSES, ConstantSSC, LiftedPrior


def test_lifted_prior_matches_a_loop():
    rng = np.random.default_rng(0)
    grid, (h, w) = (3, 2, 4), (5, 7)
    n = int(np.prod(grid))
    prior = torch.from_numpy(rng.integers(0, 14, (2, h, w)))
    mapping = torch.from_numpy(rng.integers(0, h * w + 1, (2, n)))  # h*w = no pixel
    mapping[0, :5] = h * w
    batch = {"prior": prior, "mapping": mapping, "tsdf": torch.zeros(2, 1, *grid)}
    pred = LiftedPrior()(batch)["semantic"].argmax(1).reshape(2, -1)
    for i in range(2):
        for v in range(n):
            m = int(mapping[i, v])
            expected = 0 if m == h * w else PRIOR13_TO_CLASSES[int(prior[i].reshape(-1)[m])]
            assert int(pred[i, v]) == expected
    assert (pred[0, :5] == 0).all()


def test_constant():
    out = ConstantSSC(3)({"tsdf": torch.zeros(1, 1, 2, 3, 4)})["semantic"]
    assert out.shape == (1, 12, 2, 3, 4) and (out.argmax(1) == 3).all()
