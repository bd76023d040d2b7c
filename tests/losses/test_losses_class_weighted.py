"""The U-Net baseline's loss: class-weighted CE on label_weight voxels, against a per-voxel loop;
its default class weights, recomputed from their counts (and the counts from the real data)."""

import math

import numpy as np
import pytest
import torch

from torchssc.losses import get_loss, list_losses
from torchssc.losses.class_weighted import NYU_CLASS_WEIGHTS, NYU_TRAIN_CLASS_COUNTS, median_frequency_weights


def _random_case(seed=0, b=2, grid=(3, 2, 5)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, 12, *grid, generator=g, dtype=torch.float64) * 2
    label = torch.randint(0, 12, (b, *grid), generator=g)
    label[torch.rand(b, *grid, generator=g) < 0.2] = 255
    label_weight = (torch.rand(b, *grid, generator=g) < 0.6).double()
    return {"semantic": logits}, {"label": label, "label_weight": label_weight}


def _loop(outputs, batch, weights):
    """sum w[y] * CE / sum w[y] over the voxels with label_weight > 0 and label != 255, by hand."""
    logits, label, lw = outputs["semantic"], batch["label"], batch["label_weight"]
    num = den = 0.0
    for idx in np.ndindex(*label.shape):
        y = int(label[idx])
        if lw[idx] <= 0 or y == 255:
            continue
        z = [float(logits[idx[0], c][idx[1:]]) for c in range(12)]
        ce = -z[y] + math.log(sum(math.exp(v) for v in z))
        num += weights[y] * ce
        den += weights[y]
    return num / den


def test_registered_and_default_weights():
    assert "class_weighted_ce" in list_losses()
    loss = get_loss("class_weighted_ce")
    assert loss.class_weights.tolist() == pytest.approx(list(NYU_CLASS_WEIGHTS))
    assert NYU_CLASS_WEIGHTS == (0.226, 2.117, 0.579, 0.629, 1.753, 1.409, 0.907, 1.129, 1.187, 3.568, 0.446, 0.649)


@pytest.mark.parametrize("weights", [None, [1.0] * 12, [0.1, 2, 0, 1, 1, 3, 1, 1, 1, 5, 0.5, 1]])
def test_matches_per_voxel_loop(weights):
    outputs, batch = _random_case()
    got = get_loss("class_weighted_ce", class_weights=weights)(outputs, batch)
    expected = _loop(outputs, batch, NYU_CLASS_WEIGHTS if weights is None else weights)
    assert set(got) == {"total", "semantic"} and got["total"].dtype == torch.float32
    assert float(got["total"]) == pytest.approx(expected, rel=1e-5)
    if weights == [1.0] * 12:  # unweighted: the plain mean CE of the selected, non-ignored voxels
        sel = (batch["label_weight"] > 0) & (batch["label"] != 255)
        plain = torch.nn.functional.cross_entropy(outputs["semantic"].movedim(1, -1)[sel], batch["label"][sel])
        assert float(got["total"]) == pytest.approx(float(plain), rel=1e-5)


def test_unselected_voxels_do_not_matter_and_gradients_flow():
    outputs, batch = _random_case(seed=1)
    logits = outputs["semantic"].float().requires_grad_(True)
    loss = get_loss("class_weighted_ce")({"semantic": logits}, batch)["total"]
    loss.backward()
    dropped = ((batch["label_weight"] <= 0) | (batch["label"] == 255)).unsqueeze(1).expand_as(logits)
    assert (logits.grad[dropped] == 0).all() and logits.grad.abs().sum() > 0
    changed = logits.detach().clone()
    changed[dropped] = 100.0
    again = get_loss("class_weighted_ce")({"semantic": changed}, batch)["total"]
    assert float(again) == pytest.approx(float(loss.detach()), rel=1e-6)


def test_empty_selection_is_zero_and_bf16_computes_in_float32():
    outputs, batch = _random_case(seed=2)
    batch["label_weight"].zero_()
    logits = outputs["semantic"].float().requires_grad_(True)
    loss = get_loss("class_weighted_ce")({"semantic": logits}, batch)["total"]
    assert float(loss.detach()) == 0.0
    loss.backward()
    outputs, batch = _random_case(seed=3)
    low = get_loss("class_weighted_ce")({"semantic": outputs["semantic"].bfloat16()}, batch)["total"]
    assert low.dtype == torch.float32 and torch.isfinite(low)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="12 entries"):
        get_loss("class_weighted_ce", class_weights=[1.0] * 11)
    with pytest.raises(ValueError, match="non-negative"):
        get_loss("class_weighted_ce", class_weights=[-1.0] + [1.0] * 11)
    outputs, batch = _random_case()
    del batch["label_weight"]
    with pytest.raises(ValueError, match="label_weight"):
        get_loss("class_weighted_ce")(outputs, batch)


def test_median_frequency_weights_formula():
    # frequencies 0.5, 0.25, 0.125, 0.125: median 0.1875
    assert median_frequency_weights([4, 2, 1, 1], power=1) == [0.375, 0.75, 1.5, 1.5]
    assert median_frequency_weights([4, 2, 1, 1]) == [round(math.sqrt(x), 3) for x in (0.375, 0.75, 1.5, 1.5)]
    assert median_frequency_weights([3, 0, 1]) == [round(math.sqrt(2 / 3), 3), 0.0, round(math.sqrt(2), 3)]
    assert tuple(median_frequency_weights(NYU_TRAIN_CLASS_COUNTS)) == NYU_CLASS_WEIGHTS


def test_nyu_counts_are_the_release_train_split(nyu_release):
    """The documented counts: label_weight > 0 and label != 255 voxels per class, 795 scenes."""
    ids = (nyu_release / "train.txt").read_text().split()
    assert len(ids) == 795
    counts = np.zeros(12, np.int64)
    for i in ids:
        label = np.load(nyu_release / "L" / f"{i}.npz")["arr_0"]
        weight = np.load(nyu_release / "T" / f"{i}.npz")["arr_1"]
        counts += np.bincount(label[(weight > 0) & (label != 255)], minlength=12)
    assert tuple(counts.tolist()) == NYU_TRAIN_CLASS_COUNTS
