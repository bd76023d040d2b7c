"""The SketchAwareSSC loss (docs/model.md) on a hand-made case, every term computed by hand."""

import math

import pytest
import torch

from torchssc.losses import get_loss, list_losses


def _case():
    # one frame, grid (1, 1, 3): voxels 0 and 1 selected (label_weight 1), voxel 2 not
    semantic = torch.zeros(1, 12, 1, 1, 3)
    semantic[0, 2, 0, 0, 0] = math.log(3.0)        # voxel 0: p(class 2) = 3 / 14
    semantic[0, 7, 0, 0, 1] = 5.0                  # voxel 1 is 255 (ignored)
    semantic[0, 4, 0, 0, 2] = -9.0                 # voxel 2 unselected: must not matter
    raw = torch.tensor([[0.0, 1.0], [2.0, 0.0], [7.0, -7.0]]).T.reshape(1, 2, 1, 1, 3)
    post = torch.tensor([[1.0, 1.0], [0.0, 3.0], [0.0, 0.0]]).T.reshape(1, 2, 1, 1, 3)
    prior = torch.tensor([[0.5, 0.0], [0.0, 0.0], [1.0, 2.0]]).T.reshape(1, 2, 1, 1, 3)
    outputs = {
        "semantic": semantic, "sketch_raw": raw, "sketch_posterior": post, "sketch_prior": prior,
        "latent_mean": torch.tensor([[0.5, -1.0]]), "latent_logvar": torch.tensor([[0.0, math.log(2.0)]]),
    }
    batch = {
        "label": torch.tensor([2, 255, 5]).view(1, 1, 1, 3),
        "label_weight": torch.tensor([1.0, 1.0, 0.0]).view(1, 1, 1, 3),
        "sketch_gt": torch.tensor([1, 0, 1]).view(1, 1, 1, 3),
    }
    return outputs, batch


def _ce2(logits, target):
    return -logits[target] + math.log(math.exp(logits[0]) + math.exp(logits[1]))


def test_registered():
    assert "sketch_aware" in list_losses()


@pytest.mark.parametrize("reduction", ["all_selected", "valid"])
def test_terms_by_hand(reduction):
    outputs, batch = _case()
    terms = get_loss("sketch_aware", semantic_reduction=reduction)(outputs, batch)
    ce0 = -math.log(3.0 / 14.0)
    semantic = ce0 / 2 if reduction == "all_selected" else ce0 / 1
    raw = (_ce2([0.0, 1.0], 1) + _ce2([2.0, 0.0], 0)) / 2
    post = (_ce2([1.0, 1.0], 1) + _ce2([0.0, 3.0], 0)) / 2
    prior = (_ce2([0.5, 0.0], 1) + _ce2([0.0, 0.0], 0)) / 2
    kl = -0.5 * ((1 + 0 - 0.25 - 1) + (1 + math.log(2.0) - 1 - 2)) / 2
    expected = {"semantic": semantic, "sketch_raw": raw, "sketch_posterior": post,
                "sketch_prior": prior, "kl": kl,
                "total": semantic + raw + post + 1.5 * prior + 2 * kl}
    assert set(terms) == set(expected)
    for key, value in expected.items():
        assert terms[key].item() == pytest.approx(value, rel=1e-5), key


def test_weights_and_absent_training_terms():
    outputs, batch = _case()
    for key in ("sketch_posterior", "latent_mean", "latent_logvar"):
        del outputs[key]
    terms = get_loss("sketch_aware", sketch_prior_weight=0.0)(outputs, batch)
    assert set(terms) == {"semantic", "sketch_raw", "sketch_prior", "total"}
    assert terms["total"].item() == pytest.approx((terms["semantic"] + terms["sketch_raw"]).item())


def test_empty_selection_is_zero_not_nan():
    outputs, batch = _case()
    batch["label_weight"].zero_()
    terms = get_loss("sketch_aware")(outputs, batch)
    assert terms["semantic"].item() == 0.0 and terms["sketch_raw"].item() == 0.0


def test_gradient_flows_and_bad_inputs():
    outputs, batch = _case()
    outputs["semantic"].requires_grad_(True)
    get_loss("sketch_aware")(outputs, batch)["total"].backward()
    grad = outputs["semantic"].grad
    assert grad[0, :, 0, 0, 0].abs().sum() > 0
    assert grad[0, :, 0, 0, 1:].abs().sum() == 0            # ignored and unselected voxels
    with pytest.raises(ValueError, match="label_weight"):
        get_loss("sketch_aware")(outputs, {k: v for k, v in batch.items() if k != "label_weight"})
    with pytest.raises(ValueError, match="semantic_reduction"):
        get_loss("sketch_aware", semantic_reduction="mean")
